import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tfresflow.bijectors.coupling import coupling_partition
from tests.helpers import brute_force_log_det, randomize_weights

tfb, tfd = tfp.bijectors, tfp.distributions


def make_coupling(d, mask="half", reverse=False, seed=0):
    b = trf.bijectors.AffineCoupling(event_size=d, hidden_units=(16, 16), mask=mask,
                                     reverse=reverse)
    b.build([d])
    randomize_weights(b.keras_layers(), seed=seed)
    return b


@pytest.mark.parametrize("mask", ["half", "alternating", "checkerboard"])
@pytest.mark.parametrize("d", [2, 3, 6])
def test_partition_covers_every_coordinate_once(mask, d):
    for reverse in (False, True):
        cond, trans = coupling_partition(d, mask, reverse)
        assert sorted(np.concatenate([cond, trans]).tolist()) == list(range(d))
        assert len(cond) > 0 and len(trans) > 0


@pytest.mark.parametrize("mask", ["half", "alternating"])
@pytest.mark.parametrize("d", [2, 5])
def test_log_det_matches_brute_force_jacobian(mask, d):
    b = make_coupling(d, mask, reverse=True)
    x = np.random.default_rng(1).normal(size=(7, d)).astype(np.float32)
    ildj = b.inverse_log_det_jacobian(tf.constant(x), event_ndims=1).numpy()
    np.testing.assert_allclose(ildj, brute_force_log_det(b.inverse, x), rtol=1e-4, atol=1e-4)
    z = np.random.default_rng(2).normal(size=(7, d)).astype(np.float32)
    fldj = b.forward_log_det_jacobian(tf.constant(z), event_ndims=1).numpy()
    np.testing.assert_allclose(fldj, brute_force_log_det(b.forward, z), rtol=1e-4, atol=1e-4)


def test_inverse_of_forward_is_identity_on_fresh_tensors():
    b = make_coupling(4, "alternating")
    z = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    x = b.forward(tf.constant(z)).numpy()
    assert np.abs(x - z).max() > 1e-2  # the map is not trivially the identity
    z_back = b.inverse(tf.constant(x)).numpy()  # fresh tensor: no cache hit
    np.testing.assert_allclose(z_back, z, atol=1e-5)


def test_only_transformed_half_changes():
    b = make_coupling(4, "half")
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
    z = b.inverse(tf.constant(x)).numpy()
    np.testing.assert_array_equal(z[:, :2], x[:, :2])


def test_composes_with_chain_invert_and_transformed_distribution():
    b1, b2 = make_coupling(3, seed=1), make_coupling(3, reverse=True, seed=2)
    chain = tfb.Chain([b1, b2])
    base = tfd.MultivariateNormalDiag(tf.zeros(3))
    dist = tfd.TransformedDistribution(base, chain)
    x = np.random.default_rng(5).normal(size=(6, 3)).astype(np.float32)
    z = b2.inverse(b1.inverse(tf.constant(x)))
    manual = base.log_prob(z) + brute_force_log_det(lambda t: b2.inverse(b1.inverse(t)), x)
    np.testing.assert_allclose(dist.log_prob(tf.constant(x)).numpy(), manual.numpy(),
                               rtol=1e-4, atol=1e-4)
    inv = tfb.Invert(chain)
    np.testing.assert_allclose(inv.forward(tf.constant(x)).numpy(),
                               chain.inverse(tf.constant(x)).numpy(), atol=1e-6)
    np.testing.assert_allclose(inv.forward_log_det_jacobian(tf.constant(x), 1).numpy(),
                               chain.inverse_log_det_jacobian(tf.constant(x), 1).numpy(),
                               atol=1e-5)


def test_trainable_variables_list_every_weight_and_receive_gradients():
    b = make_coupling(4)
    layer_weights = {id(v) for v in b.conditioner.trainable_weights}
    assert {id(v) for v in b.trainable_variables} == layer_weights
    assert len(b.trainable_variables) == 6  # 3 dense layers x (kernel, bias)
    x = tf.constant(np.random.default_rng(6).normal(size=(8, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(b.inverse_log_det_jacobian(x, 1) + tf.reduce_sum(b.inverse(x), -1))
    grads = tape.gradient(loss, b.trainable_variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_distinct_blocks_never_share_cache_entries():
    b1, b2 = make_coupling(2, seed=1), make_coupling(2, seed=2)
    x = tf.constant([[0.3, -0.7]])
    assert not np.allclose(b1.inverse(x).numpy(), b2.inverse(x).numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(event_size=1), "event_size"),
    (dict(event_size=2, mask="diagonal"), "mask"),
    (dict(event_size=2, log_scale_clamp=0.0), "log_scale_clamp"),
    (dict(event_size=2, hidden_units=(0,)), "hidden_units"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trf.bijectors.AffineCoupling(**kwargs)
