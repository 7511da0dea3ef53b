"""The image steps on event shape ``[H, W, C]``, checked against mathematics.

``LogitTransform``, ``Squeeze``, per-channel ``ActNorm``, the flatten step (TFP's
``tfb.Reshape``), the convolutional ``ResidualBlock`` (``LipschitzCNN``) and the convolutional
``DenseBlock`` (i-DenseNet), on 4x4x1 and 4x4x3 images in float32 and float64:

* round trip ``forward(inverse(x)) == x`` and ``inverse(forward(z)) == z``;
* ``inverse_log_det_jacobian`` equals ``log|det|`` of the brute-force Jacobian
  (``GradientTape.batch_jacobian`` of the flattened event), ``forward_log_det_jacobian`` its
  negative;

every call on fresh tensors (TFP caches results by tensor identity). Then the closed forms of
the logit transform and of the squeeze permutation, their event shapes, ActNorm's data-dependent
initialisation (eagerly, in a Keras ``fit`` and under a two-replica ``MirroredStrategy``) and the
power-series estimators on image events.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tests.helpers import brute_force_ildj, mirrored_strategy

tfb = tfp.bijectors

SHAPES = [[4, 4, 1], [4, 4, 3]]
DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: 2e-4, np.float64: 1e-9}


def _logit(shape, dtype):
    return trf.bijectors.LogitTransform(alpha=0.05)


def _squeeze(shape, dtype):
    return trf.bijectors.Squeeze()


def _actnorm(shape, dtype):
    b = trf.bijectors.ActNorm(shape, dtype=np.dtype(dtype).name)
    b.initialize(np.random.default_rng(1).normal(1.0, 2.0, size=(16, *shape)).astype(dtype))
    return b


def _flatten(shape, dtype):
    # data [H, W, C] -> latent [H W C] in the density direction (TFP inverse).
    return tfb.Reshape(event_shape_out=shape, event_shape_in=[int(np.prod(shape))])


def _solver_options(dtype):
    tol = 1e-7 if dtype == np.float32 else 1e-13
    return dict(inverse_atol=tol, inverse_rtol=tol, max_iterations=2000)


def _residual_cnn(shape, dtype):
    keras.utils.set_random_seed(2)
    net = trf.nets.LipschitzCNN(shape[-1], hidden_channels=6, coeff=0.9,
                                dtype=np.dtype(dtype).name)
    b = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Exact(), event_ndims=3,
                                    **_solver_options(dtype))
    b.build(shape)
    return b


def _dense_block(shape, dtype):
    keras.utils.set_random_seed(3)
    net = trf.nets.DenseNet(shape[-1], depth=2, growth=4, coeff=0.9, conv=True,
                            dtype=np.dtype(dtype).name)
    b = trf.bijectors.DenseBlock(net, logdet=trf.logdet.Exact(), event_ndims=3,
                                 **_solver_options(dtype))
    b.build(shape)
    return b


STEPS = {"logit": _logit, "squeeze": _squeeze, "actnorm": _actnorm, "flatten": _flatten,
         "residual_cnn": _residual_cnn, "dense_block_conv": _dense_block}


def _images(shape, dtype, batch=(5,), seed=0, unit=False):
    v = np.random.default_rng(seed).normal(size=(*batch, *shape))
    if unit:
        v = 1.0 / (1.0 + np.exp(-v))   # pixels in (0, 1), the logit transform's domain
    return v.astype(dtype)


@pytest.mark.parametrize("kind", list(STEPS))
@pytest.mark.parametrize("shape", SHAPES, ids=["4x4x1", "4x4x3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_round_trip_and_log_det_against_brute_force(kind, shape, dtype):
    step = STEPS[kind](shape, dtype)
    tol = TOLERANCE[dtype]
    x = _images(shape, dtype, batch=(2, 3), unit=kind == "logit")
    latent_shape = step.inverse_event_shape(shape).as_list()
    z = step.inverse(tf.constant(x))
    assert z.dtype == dtype and z.shape.as_list() == [2, 3, *latent_shape]
    z = z.numpy()
    np.testing.assert_allclose(step.forward(tf.constant(z)).numpy(), x, rtol=tol, atol=tol)
    # the other way round, from latents that never came out of ``inverse``
    z_new = step.inverse(tf.constant(_images(shape, dtype, seed=1, unit=kind == "logit")))
    z_new = z_new.numpy()
    x_new = step.forward(tf.constant(z_new)).numpy()
    np.testing.assert_allclose(step.inverse(tf.constant(x_new)).numpy(), z_new, rtol=tol,
                               atol=tol)
    ildj = step.inverse_log_det_jacobian(tf.constant(x), event_ndims=3).numpy()
    if kind == "flatten":   # TFP returns a constant Jacobian's log-det unbroadcast (0.0)
        ildj = np.broadcast_to(ildj, (2, 3))
    assert ildj.shape == (2, 3)
    np.testing.assert_allclose(ildj, brute_force_ildj(step, x, shape), rtol=tol, atol=tol)
    fldj = step.forward_log_det_jacobian(tf.constant(z), event_ndims=len(latent_shape))
    np.testing.assert_allclose(fldj.numpy(), -ildj, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- LogitTransform
def test_logit_transform_closed_form():
    alpha = 0.05
    x = _images([4, 4, 3], np.float64, unit=True)
    step = trf.bijectors.LogitTransform(alpha)
    s = alpha + (1 - 2 * alpha) * x
    np.testing.assert_allclose(step.inverse(tf.constant(x)), np.log(s / (1 - s)), rtol=1e-12)
    per_pixel = np.log(1 - 2 * alpha) - np.log(s) - np.log(1 - s)
    np.testing.assert_allclose(step.inverse_log_det_jacobian(tf.constant(x), event_ndims=3),
                               per_pixel.sum(axis=(1, 2, 3)), rtol=1e-12)
    # alpha keeps pixels at 0 and 1 finite; the plain logit (alpha = 0) sends them to -inf/inf
    edges = tf.constant([0.0, 1.0], tf.float64)
    assert np.all(np.isfinite(step.inverse(edges)))
    assert np.all(np.isinf(trf.bijectors.LogitTransform(0.0).inverse(tf.constant([0.0, 1.0]))))


def test_logit_transform_arguments_and_domain_check():
    for alpha in (-0.1, 0.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            trf.bijectors.LogitTransform(alpha)
    checked = trf.bijectors.LogitTransform(0.0, validate_args=True, name="logit_checked")
    with pytest.raises(tf.errors.InvalidArgumentError, match="logit_checked.*domain"):
        checked.inverse(tf.constant([[0.5, 1.5]]))
    np.testing.assert_allclose(checked.inverse(tf.constant([[0.5]])), [[0.0]])


# ----------------------------------------------------------------------------- Squeeze
def test_squeeze_is_the_space_to_depth_permutation():
    h, w, c = 4, 6, 3
    x = np.arange(2 * h * w * c, dtype=np.float32).reshape(2, h, w, c)
    z = trf.bijectors.Squeeze().inverse(tf.constant(x)).numpy()
    assert z.shape == (2, h // 2, w // 2, 4 * c)
    for i in range(2):
        for j in range(2):
            for ch in range(c):
                np.testing.assert_array_equal(z[:, :, :, (i * 2 + j) * c + ch],
                                              x[:, i::2, j::2, ch])


def test_squeeze_event_shapes():
    step = trf.bijectors.Squeeze()
    assert step.inverse_event_shape([8, 6, 3]).as_list() == [4, 3, 12]
    assert step.forward_event_shape([4, 3, 12]).as_list() == [8, 6, 3]
    np.testing.assert_array_equal(step.inverse_event_shape_tensor([8, 6, 3]), [4, 3, 12])
    np.testing.assert_array_equal(step.forward_event_shape_tensor([4, 3, 12]), [8, 6, 3])
    assert step.inverse_event_shape(tf.TensorShape([None, 6, 3])).as_list() == [None] * 3
    four = trf.bijectors.Squeeze(factor=4)
    assert four.inverse_event_shape([8, 8, 1]).as_list() == [2, 2, 16]
    chain = tfb.Chain([trf.bijectors.Squeeze(name="s1"), trf.bijectors.Squeeze(name="s2")])
    assert chain.inverse_event_shape([8, 8, 1]).as_list() == [2, 2, 16]
    assert chain.forward_event_shape([2, 2, 16]).as_list() == [8, 8, 1]
    x = _images([8, 8, 1], np.float32, batch=(3,))
    np.testing.assert_array_equal(chain.forward(chain.inverse(tf.constant(x))), x)


def test_squeeze_rejects_bad_shapes():
    with pytest.raises(ValueError, match="factor"):
        trf.bijectors.Squeeze(factor=0)
    step = trf.bijectors.Squeeze(name="sq")
    with pytest.raises(ValueError, match="sq: expected an event shape"):
        step.build([5, 4, 1])
    with pytest.raises(ValueError, match="sq: expected an event shape"):
        step.inverse(tf.zeros([2, 5, 4, 1]))
    with pytest.raises(ValueError, match="sq: latents need a multiple of 4"):
        step.forward(tf.zeros([2, 2, 2, 3]))


# ----------------------------------------------------------------------------- ActNorm
def _channel_images(n=64, shape=(4, 4, 3), seed=0):
    """Images whose channels have very different means and scales."""
    x = np.random.default_rng(seed).normal(size=(n, *shape))
    return (x * [0.5, 3.0, 1.0][:shape[-1]] + [2.0, -1.0, 0.0][:shape[-1]]).astype(np.float32)


def _per_channel_moments(z):
    flat = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
    return flat.mean(0), flat.std(0)


def test_actnorm_initialisation_standardises_every_channel_of_the_first_batch():
    x = _channel_images()
    step = trf.bijectors.ActNorm([4, 4, 3])
    step.build([4, 4, 3])
    mean, std = _per_channel_moments(step.inverse(tf.constant(x)).numpy())
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-5)
    # per channel, not per pixel: the parameters are one scale and shift per channel
    assert step.parameters_layer.log_scale.shape == (3,)
    later = x[:8] * 3.0 + 1.0           # a later batch does not re-initialise
    flat = x.reshape(-1, 3).astype(np.float64)
    expected = (later - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-6)
    np.testing.assert_allclose(step.inverse(tf.constant(later)), expected, rtol=1e-4, atol=1e-4)


def test_actnorm_initialisation_in_graph_mode_and_inside_keras_fit():
    x = _channel_images(seed=1)
    graph_step = trf.bijectors.ActNorm([4, 4, 3])
    graph_step.build([4, 4, 3])
    z = tf.function(lambda v: graph_step.inverse(v))(tf.constant(x))
    mean, std = _per_channel_moments(z.numpy())
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-5)

    model = trf.models.FlowModel(trf.bijectors.ActNorm([4, 4, 3], name="an"),
                                 event_shape=[4, 4, 3])
    model.compile(optimizer=keras.optimizers.SGD(0.0))   # weights stay at their initial value
    model.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
    model.fit(x * 5.0, batch_size=64, epochs=1, verbose=0)   # no second initialisation
    z = model.bijector.inverse(tf.constant(x)).numpy()
    mean, std = _per_channel_moments(z)
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(std, 1.0, atol=1e-4)
    assert float(model.steps[0].parameters_layer.initialized.numpy()) == 1.0


def test_actnorm_initialisation_on_images_under_a_mirrored_strategy():
    strategy = mirrored_strategy()
    x = _channel_images(seed=2)
    x[:32] += 4.0   # the two replicas see different halves of the batch
    with strategy.scope():
        model = trf.models.FlowModel(trf.bijectors.ActNorm([4, 4, 3], name="an_mirrored"),
                                     event_shape=[4, 4, 3])
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
    params = model.steps[0].parameters_layer
    for var in (params.log_scale, params.shift):
        values = [v.numpy() for v in strategy.experimental_local_results(var.value)]
        np.testing.assert_allclose(values[0], values[1])
    mean, std = _per_channel_moments(model.bijector.inverse(tf.constant(x)).numpy())
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)     # moments of the whole batch
    np.testing.assert_allclose(std, 1.0, atol=1e-4)


# ----------------------------------------------------------------------------- estimators
def test_power_series_estimator_on_image_events_is_unbiased_for_the_exact_log_det():
    """The Hutchinson series over an ``[H, W, C]`` event (probes on every pixel and channel):
    the mean over many examples equals the brute-force log-det of the conv block."""
    keras.utils.set_random_seed(4)
    net = trf.nets.LipschitzCNN(2, hidden_channels=8, coeff=0.6)
    block = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Truncated(24, probe="rademacher"),
                                        event_ndims=3)
    block.build([4, 4, 2])
    exact = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Exact(), event_ndims=3)
    x = np.repeat(_images([4, 4, 2], np.float32, batch=(1,), seed=5), 4000, axis=0)
    draws = block.inverse_log_det_jacobian(tf.constant(x), event_ndims=3, seed=[1, 2]).numpy()
    truth = float(exact.inverse_log_det_jacobian(tf.constant(x[:1]), event_ndims=3)[0])
    assert abs(truth) > 1e-2   # a non-trivial log-det
    z = (draws.mean() - truth) / (draws.std() / np.sqrt(len(draws)))
    assert abs(z) < 4.0, (draws.mean(), truth, z)
