"""BoostedFlowTrainer: weights re-fitted by Algorithm 1, stages, fine-tuning, argument checks."""
import os

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow.boosting import BoostedFlowTrainer
from tfresflow.models import boosted_coupling_components
from tests.boosting.helpers import FAR, mixture_data, two_gaussian_trainer

# ---------------------------------------------------------------- Algorithm 1 in the trainer
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


# --------------------------------------------------------------------------- training
def test_boosting_improves_test_nll_on_a_multimodal_toy():
    x = trf.data.sample("8gaussians", 6000, seed=0)
    x_test = trf.data.sample("8gaussians", 2000, seed=1)
    for objective in ("mixture", "boosting"):
        comps = boosted_coupling_components(3, 2, n_steps=2, hidden_units=(32, 32), seed=1)
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
    comps = boosted_coupling_components(2, 2, n_steps=1, hidden_units=(16,))
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


def test_density_matching_runs_end_to_end():
    comps = boosted_coupling_components(2, 2, n_steps=2, hidden_units=(16, 16))
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




def test_component_builder_registered_with_deprecated_flow_steps():
    comps = trf.models.build_model("boosted", 2, num_components=3, n_steps=2, hidden_units=(8,))
    assert len(comps) == 3 and all(len(c.steps) == 2 for c in comps)
    assert len({c.seed for c in comps}) == 3  # one seed stream per component
    with pytest.warns(DeprecationWarning, match="flow_steps"):
        old = boosted_coupling_components(2, 2, flow_steps=3, hidden_units=(8,))
    assert len(old[0].steps) == 3
    assert len(boosted_coupling_components(1, 2, 2, hidden_units=(8,))[0].steps) == 2
    with pytest.raises(TypeError, match="n_steps"):
        boosted_coupling_components(1, 2, n_steps=2, flow_steps=2)
    with pytest.raises(ValueError, match="num_components"):
        boosted_coupling_components(0, 2)
