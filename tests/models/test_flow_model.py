import numpy as np
import pytest
import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tests.helpers import (assert_keras_round_trip, brute_force_log_det, mirrored_strategy,
                           randomize_weights)

tfb, tfd = tfp.bijectors, tfp.distributions


def coupling_model(d=2, n_steps=2, seed=0):
    return trf.models.build_model("coupling", d, n_steps=n_steps, hidden_units=(16, 16),
                                  seed=seed)


def test_log_prob_is_base_density_plus_brute_force_log_det():
    model = coupling_model(3)
    randomize_weights(model.flow_layers)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    z = model.bijector.inverse(tf.constant(x))
    expected = (tfd.MultivariateNormalDiag(tf.zeros(3)).log_prob(z).numpy()
                + brute_force_log_det(model.bijector.inverse, x))
    np.testing.assert_allclose(model.log_prob(tf.constant(x)).numpy(), expected, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(model(tf.constant(x)).numpy(), expected, rtol=1e-4, atol=1e-4)
    dist = model.distribution()
    np.testing.assert_allclose(dist.log_prob(tf.constant(x)).numpy(), expected, rtol=1e-4,
                               atol=1e-4)


def test_fit_on_never_called_model_lowers_nll():
    x = trf.data.sample("moons", 1024, seed=0)
    model = coupling_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(x, verbose=0)
    hist = model.fit(x, epochs=4, batch_size=128, verbose=0)
    after = model.evaluate(x, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert after < before - 0.2
    # evaluate reports the mean NLL in nats
    np.testing.assert_allclose(after, -np.mean(model.log_prob(x).numpy()), rtol=1e-4)


def test_sample_is_seeded_and_matches_forward_of_base_draws():
    model = coupling_model()
    randomize_weights(model.flow_layers)
    a = model.sample(100, seed=[3, 4]).numpy()
    b = model.sample(100, seed=[3, 4]).numpy()
    c = model.sample(100, seed=[3, 5]).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    x, lp = model.sample_and_log_prob(64, seed=[1, 1])
    np.testing.assert_allclose(lp.numpy(), model.log_prob(tf.constant(x.numpy())).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_sample_weights_weight_the_loss():
    model = coupling_model()
    randomize_weights(model.flow_layers)
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32))
    w = tf.constant([0.0, 1.0, 2.0, 0.0, 1.0, 0.5])
    nll = -model(x).numpy()
    loss = model.compute_loss(x, None, model(x), sample_weight=w).numpy()
    np.testing.assert_allclose(loss, np.mean(w.numpy() * nll), rtol=1e-5)


def test_keras_round_trip_restores_every_weight(tmp_path):
    model = coupling_model(3)
    randomize_weights(model.flow_layers, seed=4)
    x = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
    assert_keras_round_trip(model, str(tmp_path / "m.keras"), x)


def test_fit_under_mirrored_strategy_matches_single_device_update():
    """One SGD step on 2 replicas equals the same step on one device (loss scaled per replica)."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py must configure 2 logical CPUs"
    x = trf.data.sample("moons", 256, seed=2)
    strategy = mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        dist_model = coupling_model(seed=1)
        dist_model.compile(optimizer=keras.optimizers.SGD(0.05))
    single = coupling_model(seed=1)
    single.compile(optimizer=keras.optimizers.SGD(0.05))
    randomize_weights(single.flow_layers, seed=7)
    for v_d, v_s in zip(dist_model.weights, single.weights):
        v_d.assign(v_s.numpy())
    dist_model.fit(x, batch_size=256, epochs=1, shuffle=False, verbose=0)
    single.fit(x, batch_size=256, epochs=1, shuffle=False, verbose=0)
    for v_d, v_s in zip(dist_model.trainable_weights, single.trainable_weights):
        np.testing.assert_allclose(v_d.numpy(), v_s.numpy(), rtol=1e-4, atol=1e-6)
    hist = dist_model.fit(x, batch_size=128, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))


def test_replicas_draw_different_seeds():
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = mirrored_strategy()
    per_replica = strategy.run(lambda: trf.random.fold_in_replica([5, 6]))
    seeds = [s.numpy() for s in strategy.experimental_local_results(per_replica)]
    assert len(seeds) == 2 and not np.array_equal(seeds[0], seeds[1])


@pytest.mark.parametrize("data, message", [
    (np.zeros((10, 3), np.float32), "shape"),
    (np.zeros((0, 2), np.float32), "empty"),
    (np.array([[0.0, np.nan], [1.0, 2.0]], np.float32), "non-finite"),
    (np.array([[0.0, np.inf]], np.float32), "non-finite"),
    ([["a", "b"]], "numeric"),
])
def test_bad_training_data_raises_clear_error(data, message):
    model = coupling_model()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=message):
        model.fit(data, epochs=1, verbose=0)


def test_labels_and_wrong_event_shape_are_rejected():
    model = coupling_model()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="labels"):
        model.fit(np.zeros((4, 2), np.float32), np.zeros(4), verbose=0)
    with pytest.raises(ValueError, match="event shape"):
        model.log_prob(np.zeros((4, 5), np.float32))


def test_duplicate_step_names_are_made_unique_and_untrackable_variables_rejected():
    a = trf.bijectors.AffineCoupling(2, name="same")
    b = trf.bijectors.AffineCoupling(2, name="same")
    model = trf.models.FlowModel(tfb.Chain([a, b]), event_shape=[2])
    assert [s.name for s in model.steps] == ["same", "same_1"]
    assert a.name == "same" and b.name == "same"  # the user's steps are not renamed
    # The renamed copy shares b's weights, and the flow is still a then b (data -> latent).
    assert model.steps[1].conditioner is b.conditioner
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    expected = tfd.TransformedDistribution(model.base(), tfb.Chain([a, b])).log_prob(
        tf.constant(x))
    np.testing.assert_allclose(model.log_prob(tf.constant(x)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="tf.Variables"):
        trf.models.FlowModel(tfb.Shift(tf.Variable([0.0, 0.0])), event_shape=[2])
    with pytest.raises(ValueError, match="base distribution"):
        trf.models.FlowModel(trf.bijectors.AffineCoupling(2), event_shape=[2],
                             base_distribution="cauchy-ish")


def test_exact_log_prob_matches_exact_flows_and_the_unbiased_mean():
    model = coupling_model(3)
    randomize_weights(model.flow_layers)
    x = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(model.exact_log_prob(tf.constant(x)).numpy(),
                               model.log_prob(tf.constant(x)).numpy(), rtol=1e-4, atol=1e-4)
    resflow = trf.models.build_model("resflow", 2, n_steps=2, hidden_units=(16,))
    xr = x[:, :2]
    exact = resflow.exact_log_prob(tf.constant(xr)).numpy()
    draws = np.stack([resflow.log_prob(tf.constant(xr), seed=[5, i]).numpy()
                      for i in range(200)])
    z = (draws.mean(0) - exact) / (draws.std(0, ddof=1) / np.sqrt(len(draws)) + 1e-12)
    assert np.all(np.abs(z) < 4.5), z
    with pytest.raises(ValueError, match="event size"):
        model.exact_log_prob(x, max_event_size=2)


def test_fit_with_validation_data_on_a_lipschitz_flow():
    model = trf.models.build_model("resflow", 2, n_steps=1, hidden_units=(8,))
    model.compile(optimizer="adam")
    x = trf.data.sample("moons", 256, seed=0)
    hist = model.fit(x, validation_data=trf.data.sample("moons", 128, seed=1), epochs=2,
                     batch_size=128, verbose=0)
    assert len(hist.history["val_loss"]) == 2 and np.all(np.isfinite(hist.history["val_loss"]))


def alternating_permute_chain():
    """RealNVP as TFP users write it: couplings alternating with tfb.Permute (all "permute")."""
    steps = []
    for i in range(4):
        steps.append(trf.bijectors.AffineCoupling(2, hidden_units=(16,), mask="half"))
        steps.append(tfb.Permute([1, 0]))
    return tfb.Chain(steps)


def test_chain_of_couplings_and_tfp_permutes_trains_saves_and_reloads(tmp_path):
    flow = alternating_permute_chain()
    assert [b.name for b in flow.bijectors[1::2]] == ["permute"] * 4
    model = trf.models.FlowModel(flow, event_shape=[2], seed=0)
    x = trf.data.sample("moons", 2048, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(model.evaluate(x, verbose=0))
    model.fit(x, epochs=3, batch_size=256, verbose=0)
    after = float(model.evaluate(x, verbose=0))
    assert after < before - 0.3, (before, after)
    # The flow is the composition: log p(x) = log N(f^{-1}(x)) + log|det J| with the Permutes
    # applied between the couplings (checked against the brute-force Jacobian).
    x0 = x[:16]
    z = flow.inverse(tf.constant(x0))
    expected = model.base().log_prob(z) + brute_force_log_det(flow.inverse, x0)
    np.testing.assert_allclose(model.log_prob(tf.constant(x0)), expected, rtol=1e-4, atol=1e-4)
    path = str(tmp_path / "permute.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    names = [type(b).__name__ for b in trf.bijectors.tree.leaves(loaded.bijector)]
    assert names == ["AffineCoupling", "Permute"] * 4
    np.testing.assert_allclose(loaded.log_prob(tf.constant(x0)),
                               model.log_prob(tf.constant(x0)), rtol=1e-6, atol=1e-6)


def test_single_events_and_default_sample_shape():
    model = trf.models.FlowModel(alternating_permute_chain(), event_shape=[2])
    point = np.array([0.3, -0.2], np.float32)
    single = model.log_prob(tf.constant(point))
    assert single.shape == []
    np.testing.assert_allclose(single, model.log_prob(tf.constant(point[None]))[0], rtol=1e-6)
    assert model.distribution().sample(seed=[1, 2]).shape == [2]


def small_resflow():
    return trf.models.build_model("resflow", 2, n_steps=3, hidden_units=(16,), coeff=0.9,
                                  seed=0)


def test_eager_calls_are_compiled_once_and_match_op_by_op_execution():
    model = small_resflow()
    x = trf.data.sample("moons", 64, seed=1)
    compiled = model.log_prob(tf.constant(x), seed=[3, 4]).numpy()
    model.log_prob(tf.constant(x[:10]), seed=[3, 5])           # another batch size
    fn = model._compiled["log_prob_False"]
    assert fn.experimental_get_tracing_count() <= 2             # relaxed shape: no retrace per n
    samples = model.sample(100, seed=[7, 7]).numpy()
    model.sample(37, seed=[7, 8])
    assert model._compiled["sample"].experimental_get_tracing_count() <= 2
    model.compile(run_eagerly=True)                             # the op-by-op path
    np.testing.assert_allclose(model.log_prob(tf.constant(x), seed=[3, 4]), compiled,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.sample(100, seed=[7, 7]), samples, rtol=1e-5, atol=1e-5)
    # Round trip of the compiled fixed-point inverse at its tolerance.
    z = model.bijector.inverse(tf.constant(samples)).numpy()
    x_back = model.bijector.forward(tf.constant(z)).numpy()
    np.testing.assert_allclose(x_back, samples, atol=1e-5)


def test_compiled_calls_draw_fresh_seeds_and_report_nonconvergence():
    model = small_resflow()
    a, b = model.sample(50).numpy(), model.sample(50).numpy()
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model.sample(50, seed=[1, 2]), model.sample(50, seed=[1, 2]))
    net = keras.Sequential([keras.Input([2]), keras.layers.Dense(2, use_bias=False)])
    net.layers[0].kernel.assign(-1.5 * np.eye(2, dtype=np.float32))   # not a contraction
    block = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Exact(), max_iterations=30)
    expanding = trf.models.FlowModel(block, event_shape=[2])
    with pytest.raises(trf.solvers.NonConvergenceError,
                       match=r"^fixed-point inverse did not converge .*: 30 "):
        expanding.sample(5, seed=[0, 1])
