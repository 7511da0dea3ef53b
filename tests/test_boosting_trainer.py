"""BoostedFlowTrainer: Algorithm 1 weights, boosting objectives, stages, checkpoints."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tfresflow.bijectors import AffineCoupling
from tfresflow.models import (BoostedFlowTrainer, FlowModel, boosted_coupling_components,
                              fit_mixture_weight)

tfb = tfp.bijectors

FAR = np.array([8.0, 8.0], np.float32)


def gaussian_component(mu, name):
    """A FlowModel that is exactly N(mu, I): a shift and an identity (zero-initialised) coupling."""
    flow = tfb.Chain([tfb.Shift(np.asarray(mu, np.float32), name=f"{name}_shift"),
                      AffineCoupling(2, hidden_units=(8,), name=f"{name}_coupling")])
    return FlowModel(flow, event_shape=[2], name=name)


def log_normal(z, mu, var=1.0):
    return -0.5 * np.sum((z - mu) ** 2, -1) / var - np.log(2 * np.pi * var)


def two_gaussian_trainer(objective="density", target=None, **kwargs):
    comps = [gaussian_component([0.0, 0.0], "g0"), gaussian_component(FAR, "g1")]
    trainer = BoostedFlowTrainer(comps, objective=objective, target_log_prob=target, verbose=0,
                                 **kwargs)
    trainer.trained[:] = True
    trainer.weights[:] = [0.5, 0.5]
    return trainer


def mixture_data(frac_far, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    far = rng.uniform(size=n) < frac_far
    return (rng.normal(size=(n, 2)) + far[:, None] * FAR).astype(np.float32), far.mean()


# --------------------------------------------------------------------------- Algorithm 1
def test_fit_mixture_weight_converges_clips_and_stops():
    rho, iters, trace = fit_mixture_weight(lambda r, idx: r - 0.3, pool_size=10, rho_init=0.9,
                                           step_size=0.5, decay=0.0, tolerance=1e-6,
                                           max_iters=1000)
    assert rho == pytest.approx(0.3, abs=1e-5) and iters < 1000
    assert np.all(np.diff(trace) <= 0)  # monotone descent on a convex quadratic
    rho, _, _ = fit_mixture_weight(lambda r, idx: -1.0, 10, 0.5, bounds=(0.0, 0.8))
    assert rho == 0.8
    with pytest.raises(ValueError, match="bounds"):
        fit_mixture_weight(lambda r, idx: 0.0, 10, 0.5, bounds=(0.5, 0.2))


def test_rho_moves_weight_away_from_a_useless_component_density():
    x, _ = mixture_data(0.0)
    trainer = two_gaussian_trainer()
    rho = trainer.refit_weight(1, x, rho_init=0.5)
    assert rho < 0.01
    assert trainer.weights[0] > 0.99 and trainer.weights.sum() == pytest.approx(1.0)


def test_rho_recovers_the_mixing_fraction_density():
    # Separated components: the likelihood's stationary point is rho = fraction of far points.
    x, frac = mixture_data(0.3)
    rho = two_gaussian_trainer(rho_batch_size=None).refit_weight(1, x, rho_init=0.5)
    assert rho == pytest.approx(frac, abs=0.01)


def test_rho_moves_weight_away_from_a_useless_component_matching():
    target = lambda z: tf.reduce_sum(-0.5 * tf.square(z), -1)  # N(0, I), unnormalised
    trainer = two_gaussian_trainer("matching", target)
    assert trainer.refit_weight(1, rho_init=0.5) < 0.01


def test_rho_recovers_the_mixing_fraction_matching():
    def target(z):  # 0.3 N(FAR, I) + 0.7 N(0, I), normalised
        return tf.reduce_logsumexp(tf.stack(
            [np.log(0.7) + tf.reduce_sum(-0.5 * tf.square(z), -1),
             np.log(0.3) + tf.reduce_sum(-0.5 * tf.square(z - FAR), -1)], -1), -1) \
            - np.log(2 * np.pi)
    rho = two_gaussian_trainer("matching", target).refit_weight(1, rho_init=0.8)
    assert rho == pytest.approx(0.3, abs=0.02)


# --------------------------------------------------------------------------- objectives
def test_matching_objective_matches_closed_form():
    # g1 = N(m, I) is new, G = g0 = N(0, I) fixed, p~(z) = exp(-|z|^2 / 4). With z ~ N(m, I):
    # E[log G] = -log 2pi - (|m|^2 + 2)/2, E[log p~] = -(|m|^2 + 2)/4, E[log g] = -log 2pi - 1.
    m = np.array([1.0, -0.5])
    comps = [gaussian_component([0.0, 0.0], "h0"), gaussian_component(m, "h1")]
    lam = 0.7
    target = lambda z: -tf.reduce_sum(tf.square(z), -1) / 4.0
    trainer = BoostedFlowTrainer(comps, objective="matching", target_log_prob=target,
                                 regularization=lam, batch_size=50000,
                                 log_mixture_floor=None, verbose=0)
    trainer.trained[0], trainer.weights[0] = True, 1.0
    m2 = float(m @ m)
    expected = (-np.log(2 * np.pi) - (m2 + 2) / 2) + (m2 + 2) / 4 + lam * (-np.log(2 * np.pi) - 1)
    # Per-sample std of the integrand is ~1.5; 50k samples -> standard error ~0.007.
    assert trainer.stage_loss(1) == pytest.approx(expected, abs=0.04)


def test_density_boosting_weights_follow_inverse_fixed_density():
    # With the new component equal to N(0, I) and G = N(FAR, I), the weighted NLL is
    # -sum_n w_n log g(x_n) with w_n ∝ 1/G(x_n)^(1/lambda): a batch of points all at the same
    # distance from FAR has equal weights, so the loss is the plain mean NLL.
    comps = [gaussian_component(FAR, "k0"), gaussian_component([0.0, 0.0], "k1")]
    trainer = BoostedFlowTrainer(comps, batch_size=64, verbose=0)
    trainer.trained[0], trainer.weights[0] = True, 1.0
    angle = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    x = (FAR + 1.5 * np.stack([np.cos(angle), np.sin(angle)], 1)).astype(np.float32)
    # Every point is at distance 1.5 from FAR; log g(x) varies, the weights do not.
    loss = trainer.stage_loss(1, x)
    assert np.min(-log_normal(x, 0.0)) <= loss <= np.max(-log_normal(x, 0.0))
    # The far point gets all the weight when G explains it worst.
    x2 = np.array([FAR, FAR + 0.1, [0.0, 0.0]] * 30, np.float32)
    trainer2 = BoostedFlowTrainer(comps, batch_size=256, verbose=0)
    trainer2.trained[0], trainer2.weights[0] = True, 1.0
    assert trainer2.stage_loss(1, x2) == pytest.approx(-log_normal(np.zeros(2), 0.0), abs=1e-3)


# --------------------------------------------------------------------------- training
def test_boosting_improves_test_nll_on_a_multimodal_toy():
    x = trf.data.sample("8gaussians", 6000, seed=0)
    x_test = trf.data.sample("8gaussians", 2000, seed=1)
    for objective in ("mixture", "boosting"):
        comps = boosted_coupling_components(3, 2, flow_steps=2, hidden_units=(32, 32), seed=1)
        trainer = BoostedFlowTrainer(comps, density_objective=objective, learning_rate=3e-3,
                                     batch_size=256, seed=1, verbose=0)
        history = trainer.fit(x, steps_per_component=400, validation_data=x_test)
        nll = [r["val_nll"] for r in history]
        # Non-increasing within noise (test-NLL standard error here is ~0.03 nats).
        assert all(b <= a + 0.05 for a, b in zip(nll, nll[1:])), (objective, nll)
        if objective == "mixture":
            assert nll[-1] < nll[0] - 0.1, nll
        assert trainer.evaluate(x_test) == pytest.approx(nll[-1], abs=1e-4)
        assert sum(trainer.weights) == pytest.approx(1.0)


def test_stage_trains_only_the_new_component_and_finetune_pass(tmp_path):
    x = trf.data.sample("8gaussians", 2000, seed=0)
    comps = boosted_coupling_components(2, 2, flow_steps=1, hidden_units=(16,))
    trainer = BoostedFlowTrainer(comps, batch_size=128, verbose=0)
    snapshots = {}

    def on_stage_end(t, record):
        snapshots[record["stage"]] = [[v.numpy().copy() for v in c.trainable_variables]
                                      for c in t.components]
    history = trainer.fit(x, steps_per_component=30, finetune_passes=1, finetune_steps=20,
                          on_stage_end=on_stage_end, checkpoint_dir=str(tmp_path / "ckpt"))
    assert [(r["phase"], r["component"]) for r in history] == [
        ("boost", 0), ("boost", 1), ("finetune", 0), ("finetune", 1)]
    for stage, c in ((1, 1), (2, 0), (3, 1)):  # only component c moved in stage `stage`
        for j in range(2):
            changed = any(not np.array_equal(a, b) for a, b in
                          zip(snapshots[stage - 1][j], snapshots[stage][j]))
            assert changed == (j == c), (stage, j)
    assert np.all(trainer.weights > 0) and trainer.weights.sum() == pytest.approx(1.0)
    assert sorted(os.listdir(tmp_path / "ckpt")) == [f"stage_0{k}" for k in range(4)]


def test_checkpoint_restores_and_resumes(tmp_path):
    x = trf.data.sample("moons", 1500, seed=0)

    def make():
        return BoostedFlowTrainer(boosted_coupling_components(2, 2, flow_steps=1,
                                                              hidden_units=(16,)),
                                  batch_size=128, verbose=0)
    trainer = make()
    trainer.fit(x, steps_per_component=20, checkpoint_dir=str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    restored = make().load_checkpoint(str(tmp_path / "stage_01"))
    x_eval = tf.constant(x[:100])
    np.testing.assert_allclose(restored.mixture().log_prob(x_eval).numpy(),
                               trainer.mixture().log_prob(tf.constant(x[:100])).numpy(),
                               rtol=1e-6)
    assert restored.history == trainer.history
    assert len(restored.fit(x, steps_per_component=20)) == 2  # nothing left to do
    resumed = make().load_checkpoint(str(tmp_path / "stage_00"))
    assert len(resumed.fit(x, steps_per_component=20)) == 2  # only stage 1 ran
    with pytest.raises(ValueError, match="not a boosted-flow checkpoint"):
        make().load_checkpoint(str(tmp_path))


def test_density_matching_runs_end_to_end():
    comps = boosted_coupling_components(2, 2, flow_steps=2, hidden_units=(16, 16))
    trainer = BoostedFlowTrainer(comps, objective="matching",
                                 target_log_prob=trf.data.log_density("U1"), batch_size=128,
                                 log_mixture_floor=-10.0, verbose=0)
    history = trainer.fit(steps_per_component=60)
    assert len(history) == 2 and history[1]["num_fixed"] == 1
    for r in history:
        assert np.isfinite([r["final_loss"], r["kl_minus_log_z"], r["log_z_estimate"]]).all()
    assert trainer.weights.sum() == pytest.approx(1.0)


def test_bad_arguments_raise_clear_errors():
    comps = boosted_coupling_components(2, 2)
    with pytest.raises(ValueError, match="objective"):
        BoostedFlowTrainer(comps, objective="vi")
    with pytest.raises(ValueError, match="target_log_prob"):
        BoostedFlowTrainer(comps, objective="matching")
    with pytest.raises(ValueError, match="regularization"):
        BoostedFlowTrainer(comps, regularization=0.0)
    with pytest.raises(ValueError, match="density_objective"):
        BoostedFlowTrainer(comps, density_objective="em")
    with pytest.raises(TypeError, match=r"components\[0\]"):
        BoostedFlowTrainer([comps[0].distribution()])
    with pytest.raises(ValueError, match="needs training data"):
        BoostedFlowTrainer(comps, verbose=0).fit(None)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        BoostedFlowTrainer(comps, verbose=0).fit(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="No trained component"):
        BoostedFlowTrainer(comps).mixture()


def test_cli_train_boosted_and_match_write_their_outputs(tmp_path):
    import json

    from tfresflow import cli
    out = tmp_path / "train"
    assert cli.main(["train", "--model", "boosted", "--components", "2", "--flow-steps", "1",
                     "--hidden", "8", "--steps", "20", "--data", "moons", "--n-train", "500",
                     "--n-test", "200", "--quiet", "--option", "density_objective=mixture",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and np.isfinite(metrics["test_nll"])
    assert {"stage_00_density.png", "stage_01_density.png", "density.png",
            "samples.png"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "checkpoints")) == ["stage_00", "stage_01"]
    assert cli.main(["train", "--model", "boosted", "--option", "nope=1",
                     "--out", str(tmp_path / "bad")]) == 2
    out = tmp_path / "match"
    assert cli.main(["match", "--energy", "u2", "--components", "2", "--flow-steps", "1",
                     "--hidden", "8", "--steps", "20", "--batch-size", "64", "--quiet",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["reverse_kl"]) and len(metrics["history"]) == 2
    assert {"target.png", "stage_00_density.png", "stage_01_density.png", "density.png",
            "samples.png"} <= set(os.listdir(out))
    assert cli.main(["match", "--energy", "U9", "--out", str(tmp_path / "m9")]) == 2
