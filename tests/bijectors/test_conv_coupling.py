"""``ConvAffineCoupling``: Real NVP coupling on images, against mathematics.

* round trip ``forward(inverse(x)) == x`` on fresh tensors, random non-zero weights;
* ``inverse_log_det_jacobian`` == ``log|det|`` of the brute-force autodiff Jacobian of the
  flattened image, float32 and float64, checkerboard (C = 1) and channel (C = 2, 3) masks;
* the conditioning part passes unchanged and the transformed part of the Jacobian is
  triangular (Real NVP, Eq. 6): the Jacobian's columns of conditioning coordinates are zero
  except their diagonal one;
* a fresh coupling (zero-initialised last convolution) is the identity;
* mask choice and argument errors.
"""
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import brute_force_ildj, randomize_weights

CASES = [([4, 4, 1], "auto", False), ([4, 4, 1], "checkerboard", True),
         ([4, 4, 3], "auto", False), ([4, 4, 3], "channel", True),
         ([4, 4, 2], "channel", False), ([4, 4, 2], "checkerboard", True)]


def _coupling(shape, mask, reverse, dtype, seed=0):
    b = trf.bijectors.ConvAffineCoupling(shape, hidden_channels=5, mask=mask, reverse=reverse,
                                         dtype=dtype)
    b.build(shape)
    randomize_weights(b.keras_layers(), scale=0.4, seed=seed)
    return b


def _images(shape, n, dtype, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n, *shape)).astype(dtype)


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-4), ("float64", 1e-10)])
@pytest.mark.parametrize("shape,mask,reverse", CASES)
def test_round_trip_and_log_det_against_brute_force(shape, mask, reverse, dtype, tol):
    b = _coupling(shape, mask, reverse, dtype)
    x = _images(shape, 3, dtype)
    z = b.inverse(tf.constant(x))
    assert z.dtype == tf.as_dtype(dtype) and z.shape == x.shape
    assert not np.allclose(z.numpy(), x)       # the weights are not trivial
    back = b.forward(tf.constant(z.numpy())).numpy()
    np.testing.assert_allclose(back, x, atol=tol, rtol=tol)
    ildj = b.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).numpy()
    assert np.all(np.abs(ildj) > 1e-3)
    np.testing.assert_allclose(ildj, brute_force_ildj(b, x, shape), atol=tol, rtol=tol)
    fldj = b.forward_log_det_jacobian(tf.constant(z.numpy()), event_ndims=3).numpy()
    np.testing.assert_allclose(fldj, -ildj, atol=tol, rtol=tol)


def _conditioning_flags(shape, mask, reverse):
    """Boolean ``[H, W, C]``: True on the coordinates the coupling conditions on."""
    h, w, c = shape
    if trf.bijectors.conv_coupling.resolve_image_mask(mask, c) == "channel":
        cond = np.arange(c) < c // 2
        cond = ~cond if reverse else cond
        return np.broadcast_to(cond, shape)
    parity = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == (1 if reverse else 0)
    return np.broadcast_to(parity[:, :, None], shape)


@pytest.mark.parametrize("shape,mask,reverse", CASES)
def test_conditioning_part_is_kept_and_the_jacobian_is_triangular(shape, mask, reverse):
    b = _coupling(shape, mask, reverse, "float64", seed=3)
    x = _images(shape, 2, "float64", seed=4)
    cond = _conditioning_flags(shape, mask, reverse).reshape(-1)
    assert 0 < cond.sum() < cond.size
    flat = tf.constant(x.reshape(2, -1))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        z = tf.reshape(b.inverse(tf.reshape(flat, [2, *shape])), [2, -1])
    jac = tape.batch_jacobian(z, flat).numpy()        # [n, out, in]
    np.testing.assert_array_equal(z.numpy()[:, cond], x.reshape(2, -1)[:, cond])
    # conditioning outputs depend on their own input only
    np.testing.assert_allclose(jac[:, cond][:, :, cond], np.broadcast_to(
        np.eye(cond.sum()), (2, cond.sum(), cond.sum())), atol=0)
    np.testing.assert_array_equal(jac[:, cond][:, :, ~cond], 0.0)
    # transformed outputs: diagonal in the transformed inputs (an elementwise affine map)
    block = jac[:, ~cond][:, :, ~cond]
    off = block - np.einsum("nii->ni", block)[:, :, None] * np.eye(block.shape[1])
    np.testing.assert_array_equal(off, 0.0)
    # log-det = sum of the log-scales = sum log of that diagonal
    ildj = b.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).numpy()
    np.testing.assert_allclose(ildj, np.log(np.einsum("nii->ni", block)).sum(-1), rtol=1e-12)


def test_batch_shapes_and_log_scale_clamp():
    b = _coupling([4, 4, 2], "channel", False, "float32")
    x = _images([4, 4, 2], 12, "float32").reshape(3, 4, 4, 4, 2)
    z = b.inverse(tf.constant(x))
    assert z.shape == x.shape
    assert b.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).shape == (3, 4)
    # |s| <= c per transformed coordinate (soft clamp), whatever the weights
    big = _coupling([4, 4, 2], "channel", False, "float32", seed=5)
    randomize_weights(big.keras_layers(), scale=30.0, seed=6)
    ildj = big.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).numpy()
    assert np.all(np.abs(ildj) <= 2.0 * 16 * 1 + 1e-3)


@pytest.mark.parametrize("shape", [[4, 4, 1], [4, 4, 3]])
def test_a_fresh_coupling_is_the_identity(shape):
    b = trf.bijectors.ConvAffineCoupling(shape, hidden_channels=4)
    x = _images(shape, 2, "float32")
    np.testing.assert_array_equal(b.inverse(tf.constant(x)).numpy(), x)
    np.testing.assert_array_equal(
        b.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).numpy(), 0.0)


def test_mask_choice_and_bad_arguments():
    assert trf.bijectors.ConvAffineCoupling([4, 4, 1], hidden_channels=2).mask == "checkerboard"
    assert trf.bijectors.ConvAffineCoupling([4, 4, 3], hidden_channels=2).mask == "channel"
    np.testing.assert_array_equal(trf.bijectors.conv_coupling.checkerboard_mask(2, 3)[..., 0],
                                  [[1, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="channel.*2 channels"):
        trf.bijectors.ConvAffineCoupling([4, 4, 1], mask="channel")
    with pytest.raises(ValueError, match="`mask`"):
        trf.bijectors.ConvAffineCoupling([4, 4, 2], mask="stripes")
    with pytest.raises(ValueError, match="event_shape"):
        trf.bijectors.ConvAffineCoupling([16])
    with pytest.raises(ValueError, match="kernel_sizes"):
        trf.bijectors.ConvAffineCoupling([4, 4, 2], kernel_sizes=(2,))
    with pytest.raises(ValueError, match="log_scale_clamp"):
        trf.bijectors.ConvAffineCoupling([4, 4, 2], log_scale_clamp=0.0)
    b = trf.bijectors.ConvAffineCoupling([4, 4, 2], hidden_channels=2, name="c0")
    with pytest.raises(ValueError, match="c0.*shape"):
        b.inverse(tf.zeros([2, 4, 4, 3]))
