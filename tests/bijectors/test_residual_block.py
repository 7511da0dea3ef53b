"""ResidualBlock, its fixed-point inverse and ActNorm, checked against mathematics."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tests.helpers import brute_force_log_det, mirrored_strategy
from tests.bijectors.residual_block_checks import (brute_force_residual_log_det, check_reconstruction,
                                         contractive_mlp, linear_net, make_residual_block,
                                         sample_inputs)
from tfresflow.bijectors.fixed_point import FixedPointError

tfb = tfp.bijectors
L = trf.logdet


# ----------------------------------------------------------------------------- block basics
def test_inverse_is_x_plus_net_with_batch_shapes():
    block = make_residual_block(3, logdet=L.Exact(), lipschitz=0.8)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    z = block.inverse(tf.constant(x))
    np.testing.assert_allclose(z, x + block.net(tf.constant(x.reshape(8, 3))).numpy().reshape(
        2, 4, 3), rtol=1e-6)
    ildj = block.inverse_log_det_jacobian(tf.constant(x), event_ndims=1)
    assert ildj.shape == (2, 4)
    np.testing.assert_allclose(ildj.numpy().ravel(),
                               brute_force_residual_log_det(block.net, x.reshape(8, 3)),
                               rtol=1e-5, atol=1e-6)
    fldj = block.forward_log_det_jacobian(tf.constant(z.numpy()), event_ndims=1)
    np.testing.assert_allclose(fldj, -ildj, rtol=1e-4, atol=1e-5)


def test_public_api_of_the_brief():
    est = L.Unbiased(n_exact_terms=2, distribution="geometric", p=0.5, neumann_grad=True,
                     grad_in_forward=True)
    block = trf.bijectors.ResidualBlock(contractive_mlp(2, 0.5), logdet=est)
    x = sample_inputs(5, 2)
    z = block.inverse(tf.constant(x))
    ld = block.inverse_log_det_jacobian(tf.constant(x), event_ndims=1, training=True,
                                        seed=[1, 2])
    x_back = block.forward(tf.constant(z.numpy()))
    assert ld.shape == (5,) and block.has_stochastic_log_det
    np.testing.assert_allclose(x_back, x, atol=1e-5)


@pytest.mark.parametrize("dim,lipschitz", [(2, 0.9), (5, 0.7), (10, 0.9)])
def test_reconstruction_untrained(dim, lipschitz):
    check_reconstruction(make_residual_block, dim, seed=dim, lipschitz=lipschitz)


def test_reconstruction_trained():
    check_reconstruction(make_residual_block, 3, seed=1, lipschitz=0.9, train_steps=15)


def test_reconstruction_inside_tf_function():
    block = make_residual_block(4, lipschitz=0.9)
    x = sample_inputs(16, 4)
    round_trip = tf.function(lambda v: block.forward(block.inverse(v) + 0.0))
    np.testing.assert_allclose(round_trip(tf.constant(x)), x, atol=1e-5)


def test_conv_block_with_three_event_dims():
    keras.utils.set_random_seed(3)
    net = keras.Sequential([keras.Input((4, 4, 2)),
                            keras.layers.Conv2D(4, 3, padding="same", activation="elu"),
                            keras.layers.Conv2D(2, 3, padding="same")])
    for layer in net.layers:   # crude contraction: ||conv|| <= sum |kernel| per output
        k = layer.kernel.numpy()
        layer.kernel.assign(k * 0.6 / np.abs(k).sum(axis=(0, 1, 2)).max())
    block = trf.bijectors.ResidualBlock(net, logdet=L.Unbiased(), event_ndims=3)
    block.build([4, 4, 2])
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 2)).astype(np.float32)
    exact = brute_force_log_det(lambda v: tf.reshape(block.inverse(tf.reshape(v, [-1, 4, 4, 2])),
                                                     [-1, 32]), x.reshape(3, 32))
    draws = np.stack([block.inverse_log_det_jacobian(tf.constant(x), 3, training=True,
                                                     seed=[4, i]) for i in range(300)])
    se = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - exact) < 4 * se)
    z = block.inverse(tf.constant(x))
    np.testing.assert_allclose(block.forward(tf.constant(z.numpy())), x, atol=1e-5)


def test_bijectors_with_different_nets_never_share_cache_entries():
    a = make_residual_block(3, logdet=L.Unbiased(), seed=1)
    b = make_residual_block(3, logdet=L.Unbiased(), seed=2)
    x, seed = tf.constant(sample_inputs(4, 3)), tf.constant([1, 1])
    la = a.inverse_log_det_jacobian(x, 1, training=True, seed=seed)
    lb = b.inverse_log_det_jacobian(x, 1, training=True, seed=seed)
    assert not np.allclose(la, lb)


def test_plain_callable_net_without_weights():
    block = trf.bijectors.ResidualBlock(lambda v: 0.5 * tf.tanh(v), logdet=L.Exact())
    block.build([3])
    assert block.keras_layers() == [] and block.trainable_variables == ()
    x = sample_inputs(4, 3)
    expected = np.sum(np.log1p(0.5 * (1 - np.tanh(x) ** 2)), -1)
    np.testing.assert_allclose(block.inverse_log_det_jacobian(tf.constant(x), 1), expected,
                               rtol=1e-5)
    z = block.inverse(tf.constant(x))
    np.testing.assert_allclose(block.forward(tf.constant(z.numpy())), x, atol=1e-5)


def test_bad_arguments_raise():
    net = contractive_mlp(3)
    with pytest.raises(TypeError, match="net"):
        trf.bijectors.ResidualBlock(3)
    with pytest.raises(TypeError, match="logdet"):
        trf.bijectors.ResidualBlock(net, logdet="exact")
    with pytest.raises(ValueError, match="on_nonconvergence"):
        trf.bijectors.ResidualBlock(net, on_nonconvergence="maybe")
    with pytest.raises(ValueError, match="max_iterations"):
        trf.bijectors.ResidualBlock(net, max_iterations=0)
    with pytest.raises(ValueError, match="event shape"):
        trf.bijectors.ResidualBlock(net).build([3, 1])
    with pytest.raises(ValueError, match="map event shape"):
        trf.bijectors.ResidualBlock(linear_net(np.zeros((3, 2)))).build([3])


# ----------------------------------------------------------------------------- fixed point
def expanding_block(**kwargs):
    block = trf.bijectors.ResidualBlock(linear_net(-1.5 * np.eye(2)), logdet=L.Exact(),
                                        max_iterations=50, **kwargs)
    block.build([2])
    return block


def test_nonconvergence_is_reported_with_the_residual():
    z = sample_inputs(3, 2)
    with pytest.raises(FixedPointError, match="residual"):
        expanding_block().forward(tf.constant(z))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        expanding_block(on_nonconvergence="warn").forward(tf.constant(z))
    expanding_block(on_nonconvergence="ignore").forward(tf.constant(z))
    block = expanding_block()
    graph_forward = tf.function(lambda v: block.forward(v))
    with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge"):
        graph_forward(tf.constant(z))


def test_nonconvergence_under_xla_gives_nan_samples():
    block = expanding_block()
    x = tf.function(lambda v: block.forward(v), jit_compile=True)(tf.constant(sample_inputs(3, 2)))
    assert np.all(np.isnan(x.numpy()))


def test_non_finite_input_is_reported_as_such():
    block = make_residual_block(2)
    z = sample_inputs(3, 2)
    z[1, 0] = np.nan
    with pytest.raises(FixedPointError, match="non-finite input"):
        block.forward(tf.constant(z))


def test_forward_gradient_is_the_implicit_derivative():
    """Gradient of a loss of the fixed point, w.r.t. ``z`` and the weights, equals autodiff
    through 300 unrolled iterations (the explicit objective)."""
    block = make_residual_block(3, lipschitz=0.8, seed=2)
    z = tf.constant(sample_inputs(4, 3) * 2)
    w = tf.constant(np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32))
    variables = list(block.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(w * block.forward(z) ** 2)
    got = tape.gradient(loss, [z, *variables])
    with tf.GradientTape() as tape:
        tape.watch(z)
        x = z
        for _ in range(300):
            x = z - block.net(x)
        loss = tf.reduce_sum(w * x ** 2)
    want = tape.gradient(loss, [z, *variables])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- in a FlowModel
def residual_flow(logdet, dim=2, seed=0, lipschitz=0.9):
    steps = [trf.bijectors.ResidualBlock(contractive_mlp(dim, lipschitz, seed=seed,
                                                         constrain=True),
                                         logdet=logdet, name="res_0"),
             trf.bijectors.ActNorm([dim], name="actnorm_0"),
             trf.bijectors.ResidualBlock(contractive_mlp(dim, lipschitz, seed=seed + 1,
                                                         constrain=True),
                                         logdet=logdet, name="res_1")]
    return trf.models.FlowModel(tfb.Chain(steps, name="resflow"), event_shape=[dim], seed=seed)


def toy_data(n=512, seed=0):
    return trf.data.sample("moons", n, seed=seed)


def exact_nll(model, x):
    """NLL with brute-force log-dets of every step (Lemma: log p = log p_Z(z) + sum ldj)."""
    x = tf.constant(x)
    z, total = x, np.zeros(len(x))
    for step in model.bijector.bijectors:   # tfb.Chain inverts its first step first
        total += brute_force_log_det(lambda v: step.inverse(v), z.numpy())
        z = step.inverse(tf.constant(z.numpy()))
    return -np.mean(model.base().log_prob(z).numpy() + total)


def test_flow_model_with_residual_blocks_trains_with_fit():
    model = residual_flow(L.Unbiased(grad_in_forward=True))
    assert model.has_stochastic_log_det
    x = toy_data()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x[:64], batch_size=64, epochs=1, verbose=0)   # ActNorm initialised here
    before = exact_nll(model, x)
    history = model.fit(x, batch_size=128, epochs=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = exact_nll(model, x)
    assert after < before - 0.05, (before, after)
    an = model.bijector.bijectors[1].parameters_layer
    assert float(an.initialized.numpy()) == 1.0


@pytest.mark.parametrize("weighted", [False, True])
def test_backward_in_forward_equals_neumann_in_fit_under_mirrored_strategy(weighted):
    """Same seeds, two replicas: the backward-in-forward model takes exactly the Neumann
    model's steps, without and with (non-uniform) sample weights."""
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = mirrored_strategy()
    x = toy_data(128)
    sample_weight = np.linspace(0.0, 2.0, 128).astype(np.float32) if weighted else None
    models = []
    for est in (L.Unbiased(grad_in_forward=True), L.Unbiased()):
        with strategy.scope():
            model = residual_flow(est, seed=3)
            model.compile(optimizer=keras.optimizers.SGD(0.05))
        model.fit(x, sample_weight=sample_weight, batch_size=64, epochs=1, shuffle=False,
                  verbose=0)
        models.append(model)
    for a, b in zip(models[0].trainable_weights, models[1].trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(models[0].trainable_weights[0].numpy(),
                           residual_flow(L.Exact(), seed=3).trainable_weights[0].numpy())


def test_exact_fit_under_mirrored_strategy_matches_single_device():
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = mirrored_strategy()
    x = toy_data(128)
    with strategy.scope():
        dist_model = residual_flow(L.Exact(), seed=4)
        dist_model.compile(optimizer=keras.optimizers.SGD(0.05))
    single = residual_flow(L.Exact(), seed=4)
    single.compile(optimizer=keras.optimizers.SGD(0.05))
    for model in (dist_model, single):
        model.fit(x, batch_size=128, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(dist_model.weights, single.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_keras_round_trip_preserves_log_probs(tmp_path):
    for logdet in (L.Exact(), L.Unbiased(distribution="poisson", n_exact_terms=3)):
        model = residual_flow(logdet, seed=5)
        x = toy_data(32, seed=1)
        model.log_prob(tf.constant(x))   # ActNorm data-dependent initialisation
        path = str(tmp_path / "resflow.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        block = loaded.bijector.bijectors[0]
        assert block.logdet == logdet and block.inverse_atol == 1e-6
        np.testing.assert_allclose(loaded.log_prob(tf.constant(x), seed=[1, 2]),
                                   model.log_prob(tf.constant(x), seed=[1, 2]), rtol=1e-5)
        samples = loaded.sample(8, seed=[3, 4])
        np.testing.assert_allclose(samples, model.sample(8, seed=[3, 4]), atol=1e-5)


# ----------------------------------------------------------------------------- ActNorm
def test_actnorm_standardises_the_first_batch_and_has_exact_log_det():
    x = (np.random.default_rng(0).normal(size=(200, 3)) * [1, 3, 0.2] + [5, 0, -1]).astype(
        np.float32)
    act = trf.bijectors.ActNorm([3])
    act.build([3])
    z = act.inverse(tf.constant(x)).numpy()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    later = x[:10] * 2   # no re-initialisation on later batches
    z_later = act.inverse(tf.constant(later)).numpy()
    np.testing.assert_allclose(z_later, (later - x.mean(0)) / x.std(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(act.inverse_log_det_jacobian(tf.constant(later), 1),
                               brute_force_log_det(lambda v: act.inverse(v), later), rtol=1e-5)
    np.testing.assert_allclose(act.forward(tf.constant(z_later)), later, rtol=1e-5, atol=1e-5)


def test_actnorm_on_images_counts_spatial_positions():
    x = np.random.default_rng(1).normal(size=(8, 2, 2, 3)).astype(np.float32) * 2 + 1
    act = trf.bijectors.ActNorm([2, 2, 3])
    act.build([2, 2, 3])
    z = act.inverse(tf.constant(x)).numpy()
    np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(
        act.inverse_log_det_jacobian(tf.constant(x), 3),
        brute_force_log_det(lambda v: tf.reshape(act.inverse(tf.reshape(v, [-1, 2, 2, 3])),
                                                 [-1, 12]), x.reshape(8, 12)), rtol=1e-5)


def test_actnorm_initialisation_is_replica_consistent():
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = mirrored_strategy()
    x = (np.random.default_rng(2).normal(size=(64, 2)) * [2, 0.5]).astype(np.float32)
    x[:32] += 3.0   # the replicas see different halves
    with strategy.scope():
        act = trf.bijectors.ActNorm([2])
        act.build([2])
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(64))
    batch = next(iter(dataset))
    tf.function(lambda b: strategy.run(act.inverse, args=(b,)))(batch)
    params = act.parameters_layer
    for var in (params.log_scale, params.shift):
        values = [v.numpy() for v in strategy.experimental_local_results(var.value)]
        np.testing.assert_allclose(values[0], values[1])
    std = np.sqrt(x.var(0) + 1e-6)
    np.testing.assert_allclose(params.log_scale.numpy(), -np.log(std), rtol=1e-4)
    np.testing.assert_allclose(params.shift.numpy(), -x.mean(0) / std, rtol=1e-4, atol=1e-5)


def test_actnorm_arguments():
    with pytest.raises(ValueError, match="event_shape"):
        trf.bijectors.ActNorm([])
    with pytest.raises(ValueError, match="expected event shape"):
        trf.bijectors.ActNorm([3]).build([2])
    act = trf.bijectors.ActNorm([2])
    act.initialize(np.array([[0.0, 1.0], [2.0, 3.0]], np.float32))
    np.testing.assert_allclose(act.inverse(tf.constant([[1.0, 2.0]])), [[0.0, 0.0]], atol=1e-5)
