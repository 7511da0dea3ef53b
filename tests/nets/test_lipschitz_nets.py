"""Lipschitz residual functions: Lip(g) <= coeff checked on exact Jacobians (batch_jacobian)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow import lipschitz


def _train_towards_large_jacobian(net, x, steps=30, lr=0.05, seed=0):
    """Adam steps maximising ||g(x + d) - g(x)||^2 / ||d||^2 (pushes Lip(g) up), each followed
    by the Lipschitz update, so the bound is tested where the constraint is active."""
    rng = np.random.default_rng(seed)
    opt = keras.optimizers.Adam(lr)
    for _ in range(steps):
        d = tf.constant(1e-2 * rng.normal(size=x.shape), tf.float32)
        with tf.GradientTape() as tape:
            diff = net(x + d) - net(x)
            axes = list(range(1, len(x.shape)))
            ratio = tf.reduce_sum(tf.square(diff), axes) / tf.reduce_sum(tf.square(d), axes)
            loss = -tf.reduce_mean(ratio)
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        lipschitz.update_lipschitz_layers(net)


def _jacobians(net, x):
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = net(x)
    jac = tape.batch_jacobian(y, x).numpy()
    n = x.shape[0]
    return jac.reshape(n, int(np.prod(y.shape[1:])), int(np.prod(x.shape[1:])))


@pytest.mark.parametrize("activation", ["lipswish", "clipswish", "leakylswish", "elu"])
def test_mlp_lipschitz_bound_from_exact_jacobians(activation):
    coeff = 0.9
    net = trf.nets.LipschitzMLP(event_size=3, hidden_units=(32, 32), activation=activation,
                                coeff=coeff)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(128, 3)), tf.float32)
    assert net(x).shape == (128, 3)
    _train_towards_large_jacobian(net, x)
    points = 2.0 * rng.normal(size=(1024, 3))
    norms = np.linalg.svd(_jacobians(net, points), compute_uv=False)[:, 0]
    assert norms.max() <= coeff + 1e-5
    assert norms.max() > 0.2 * coeff          # the training made the constraint matter


def test_mlp_infinity_norm_bound():
    """With all orders inf, Lip(g) <= coeff in ||.||_inf: max abs row sum of J (eq. (11))."""
    coeff = 0.8
    net = trf.nets.LipschitzMLP(event_size=4, hidden_units=(16, 16), coeff=coeff,
                                domains=["inf"] * 3)
    assert all(layer.domain == float("inf") and layer.codomain == float("inf")
               for layer in net.linears)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(64, 4)), tf.float32)
    net(x)
    _train_towards_large_jacobian(net, x, steps=20)
    jac = _jacobians(net, 2.0 * rng.normal(size=(512, 4)))
    assert np.abs(jac).sum(axis=2).max() <= coeff + 1e-5


def test_mlp_mixed_orders_chain_and_validation():
    net = trf.nets.LipschitzMLP(event_size=2, hidden_units=(8, 8), domains=[2, 1, "inf"])
    assert [l.domain for l in net.linears] == [2.0, 1.0, float("inf")]
    assert [l.codomain for l in net.linears] == [1.0, float("inf"), 2.0]
    with pytest.raises(ValueError, match="must chain"):
        trf.nets.LipschitzMLP(event_size=2, hidden_units=(8,), domains=[2, 1], codomains=[1, 1])
    with pytest.raises(ValueError, match="elementwise"):
        trf.nets.LipschitzMLP(event_size=2, hidden_units=(8,), domains=[1, 1],
                              activation="clipswish")
    with pytest.raises(ValueError, match="one order per linear layer"):
        trf.nets.LipschitzMLP(event_size=2, hidden_units=(8,), domains=[2, 2, 2])
    with pytest.raises(ValueError, match="coeff"):
        trf.nets.LipschitzMLP(event_size=2, coeff=1.0)
    with pytest.raises(ValueError, match="event_size"):
        trf.nets.LipschitzMLP(event_size=2)(tf.zeros((3, 5)))


def test_mlp_learnable_orders_are_shared_and_trained():
    net = trf.nets.LipschitzMLP(event_size=2, hidden_units=(8, 8), learn_orders=True, coeff=0.5)
    for i, layer in enumerate(net.linears):
        assert layer.codomain is net.linears[(i + 1) % 3].domain
    x = tf.constant(np.random.default_rng(3).normal(size=(32, 2)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(net(x)))
    raw = [order.raw_order for order in net.norm_orders]
    grads = tape.gradient(loss, raw)
    assert all(g is not None and np.isfinite(g.numpy()) for g in grads)
    assert len({id(v) for v in net.trainable_variables}) == len(net.trainable_variables)


@pytest.mark.parametrize("activation,padding", [("lipswish", "same"), ("clipswish", "circular")])
def test_cnn_lipschitz_bound_from_exact_jacobians(activation, padding):
    keras.utils.set_random_seed(0)  # the initial weights: not whatever earlier tests left
    coeff = 0.9
    net = trf.nets.LipschitzCNN(channels=2, hidden_channels=6, kernel_sizes=(3, 1, 3),
                                activation=activation, coeff=coeff, padding=padding)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(16, 5, 5, 2)), tf.float32)
    assert net(x).shape == (16, 5, 5, 2)
    assert net.compute_output_shape((None, 5, 5, 2)) == (None, 5, 5, 2)
    _train_towards_large_jacobian(net, x, steps=15)
    norms = np.linalg.svd(_jacobians(net, 2.0 * rng.normal(size=(24, 5, 5, 2))),
                          compute_uv=False)[:, 0]
    assert norms.max() <= coeff + 1e-5
    assert norms.max() > 0.2 * coeff


def test_cnn_argument_errors():
    with pytest.raises(ValueError, match="kernel_sizes"):
        trf.nets.LipschitzCNN(2, kernel_sizes=(3, 2, 3))
    with pytest.raises(ValueError, match="hidden_channels"):
        trf.nets.LipschitzCNN(2, hidden_channels=(4,), kernel_sizes=(3, 1, 3))
    with pytest.raises(ValueError, match="known height"):
        trf.nets.LipschitzCNN(2, hidden_channels=4).build((None, None, None, 2))
    with pytest.raises(ValueError, match="channels"):
        trf.nets.LipschitzCNN(2, hidden_channels=4)(tf.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="coeff"):
        trf.nets.LipschitzCNN(2, coeff=0.0)


def test_keras_round_trip_of_nets(tmp_path):
    inputs = keras.Input((4, 4, 2))
    h = trf.nets.LipschitzCNN(2, hidden_channels=4, activation="clipswish")(inputs)
    h = keras.layers.Flatten()(h)
    h = trf.nets.LipschitzMLP(event_size=32, hidden_units=(8,), activation="leakylswish")(h)
    out = trf.nets.LipschitzMLP(event_size=32, hidden_units=(8,), learn_orders=True,
                                domains=[2.5, 1.5])(h)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(5)
    for w in model.trainable_weights:
        w.assign(w.numpy() + rng.normal(0.0, 0.2, size=w.shape).astype(np.float32))
    lipschitz.update_lipschitz_layers(model)
    x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    path = tmp_path / "nets.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(tf.constant(x)).numpy(), model(tf.constant(x)).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert len(loaded.weights) == len(model.weights)
    for layer in (model.layers[1], model.layers[3], model.layers[4]):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize("net_fn,shape", [
    (lambda: trf.nets.LipschitzMLP(event_size=3, hidden_units=(8,), activation="clipswish"),
     (4, 3)),
    (lambda: trf.nets.LipschitzCNN(2, hidden_channels=3, activation="leakylswish"),
     (2, 4, 4, 2))])
def test_second_order_gradients_reach_every_weight(net_fn, shape):
    """Log-det estimators backpropagate through a VJP of g: every weight that shapes J_g
    (all but the output bias) gets a finite gradient."""
    net = net_fn()
    rng = np.random.default_rng(9)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    probe = tf.constant(rng.normal(size=shape), tf.float32)
    net(x)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = net(x)
        vjp = inner.gradient(y, x, output_gradients=probe)
        surrogate = tf.reduce_sum(vjp * probe)
    grads = outer.gradient(surrogate, net.trainable_variables)
    last_bias = net.linears[-1].bias          # J_g does not depend on the output bias
    for var, grad in zip(net.trainable_variables, grads):
        if var is last_bias:
            assert grad is None
        else:
            assert grad is not None and np.all(np.isfinite(grad.numpy())), var.path


def test_output_init_scale_scales_the_last_kernel_and_round_trips():
    """The reference's near-zero start: the last kernel is the usual draw times the scale."""
    x = tf.constant(np.random.default_rng(5).normal(size=(8, 2)), tf.float32)
    nets = []
    for scale in (1.0, 1e-3):
        keras.utils.set_random_seed(3)
        net = trf.nets.LipschitzMLP(2, hidden_units=(16, 16), coeff=0.9,
                                    output_init_scale=scale)
        net(x)
        nets.append(net)
    plain, scaled = nets
    for a, b in zip(plain.linears[:-1], scaled.linears[:-1]):
        np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
    np.testing.assert_allclose(scaled.linears[-1].kernel.numpy(),
                               1e-3 * plain.linears[-1].kernel.numpy(), rtol=1e-6)
    # g(x) ~ 0: the same hidden features times a last kernel 1e-3 W that needs no spectral
    # normalisation, against W / max(1, sigma(W) / coeff) in the plain net (biases start at 0):
    # scaled(x) = c plain(x) with c = 1e-3 max(1, sigma / coeff) (up to the estimate's margin).
    ratio = scaled(x).numpy() / plain(x).numpy()
    c = np.median(ratio)
    np.testing.assert_allclose(ratio, c, rtol=1e-4)
    sigma = np.linalg.svd(plain.linears[-1].kernel.numpy(), compute_uv=False)[0]
    assert 1e-3 * max(1.0, sigma / 0.9) * 0.99 <= c <= 1e-3 * max(1.0, sigma / 0.9) * 1.05
    clone = trf.nets.LipschitzMLP.from_config(scaled.get_config())
    assert clone.output_init_scale == 1e-3
    with pytest.raises(ValueError, match="output_init_scale"):
        trf.nets.LipschitzMLP(2, output_init_scale=0.0)


def test_resflow_builder_passes_lipschitz_and_init_options():
    model = trf.models.build_model("resflow", 2, n_steps=2, hidden_units=(8,), coeff=0.9,
                                   output_init_scale=1e-3, lipschitz_kwargs={"block_size": 1})
    nets = [b.net for b in model.steps if isinstance(b, trf.bijectors.ResidualBlock)]
    assert len(nets) == 2
    for net in nets:
        assert net.output_init_scale == 1e-3
        assert all(layer.block_size == 1 for layer in net.linears)
