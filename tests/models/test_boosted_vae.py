"""Stage-wise boosting of a FlowVAE posterior (``tfresflow.models.boosted_vae``).

One tiny boosted run (8 x 8 binarised digits, latent 4, two components, a few steps per stage,
one GBF+ pass) is shared by the tests that inspect its stages.
"""
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.data.binarized import load_binarized
from tfresflow.models.boosted_vae import BoostedVAETrainer, boosted_neg_elbo, shock_rate
from tfresflow.models.vae import FlowVAE

STEPS = 12
FINETUNE_STEPS = 6
WARMUP = 4
BATCH = 32


def tiny_vae(num_components=2, seed=0, flow="coupling"):
    keras.utils.set_random_seed(seed)
    return FlowVAE((8, 8, 1), latent_size=4, num_components=num_components, flow=flow,
                   flow_steps=2, flow_hidden_units=(8,), context_size=4, encoder_depth=2,
                   decoder_depth=2, encoder_channels=[8, 16], decoder_channels=[16, 8],
                   kl_warmup_steps=WARMUP, seed=seed)


@pytest.fixture(scope="module")
def digits():
    x, _ = load_binarized("digits", "train")
    xt, _ = load_binarized("digits", "test")
    return x[:512].astype(np.float32), xt[:64].astype(np.float32)


def _snapshot(layer):
    return [np.array(v) for v in layer.weights]


@pytest.fixture(scope="module")
def boosted_run(digits, tmp_path_factory):
    x, xt = digits
    model = tiny_vae()
    trainer = BoostedVAETrainer(model, batch_size=BATCH, rho_pool_size=64, monitor_every=4,
                                eval_samples=20, verbose=0, seed=1)
    snaps = []
    initial = [_snapshot(c) for c in model.components]

    def on_stage_end(t, record):
        snaps.append({"components": [_snapshot(c) for c in t.model.components],
                      "decoder": _snapshot(t.model.decoder),
                      "kl_step": float(t.model.kl_step.numpy())})

    directory = tmp_path_factory.mktemp("boosted_vae") / "checkpoints"
    trainer.fit(x, steps_per_component=STEPS, finetune_passes=1, finetune_steps=FINETUNE_STEPS,
                eval_data=xt, monitor_data=xt[:32], checkpoint_dir=str(directory),
                on_stage_end=on_stage_end)
    return trainer, snaps, directory, initial


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_fixed_components_frozen_while_decoder_learns(boosted_run):
    trainer, snaps, _, initial = boosted_run
    # Stage 1 (boost component 1): component 0 is fixed; the decoder and component 1 learn.
    assert _same(snaps[0]["components"][0], snaps[1]["components"][0])
    assert not _same(snaps[0]["components"][1], snaps[1]["components"][1])
    assert not _same(snaps[0]["decoder"], snaps[1]["decoder"])
    # Stage 0 trained component 0 only.
    assert _same(initial[1], snaps[0]["components"][1])
    assert not _same(initial[0], snaps[0]["components"][0])
    # GBF+ stage 2 re-trains component 0 with component 1 fixed, stage 3 the reverse.
    assert _same(snaps[1]["components"][1], snaps[2]["components"][1])
    assert not _same(snaps[1]["components"][0], snaps[2]["components"][0])
    assert _same(snaps[2]["components"][0], snaps[3]["components"][0])
    assert [r["phase"] for r in trainer.history] == ["boost", "boost", "finetune", "finetune"]
    assert np.isclose(sum(trainer.weights), 1.0) and np.all(trainer.weights > 0)
    record = trainer.history[-1]
    assert np.isfinite(record["negative_elbo"]) and record["negative_elbo_stderr"] > 0
    # The mixture's ELBO is tighter than the component-density protocol; the NLL below both.
    assert record["nll"] <= record["negative_elbo"] + 3 * record["negative_elbo_stderr"]
    assert record["negative_elbo"] <= record["negative_elbo_component"] + 1e-6


def test_kl_warmup_restarts_each_boosting_stage(boosted_run):
    trainer, snaps, _, _ = boosted_run
    stage = np.array(trainer.steps["stage"])
    beta = np.array(trainer.steps["beta"])
    expected = np.minimum(1.0, (np.arange(STEPS) + 1.0) / WARMUP)
    for s in (0, 1):
        np.testing.assert_allclose(beta[stage == s], expected, rtol=1e-6)
    for s in (2, 3):   # fine-tuning: no warm-up (finetune_kl_warmup_steps=0)
        np.testing.assert_allclose(beta[stage == s], 1.0)
    # The model's warm-up counter restarted each stage and counted that stage's steps.
    assert [s["kl_step"] for s in snaps] == [STEPS, STEPS, FINETUNE_STEPS, FINETUNE_STEPS]


def test_decoder_shock_rate_schedule(boosted_run):
    assert shock_rate(0, 11) == 0.0 and shock_rate(10, 11) == 0.5
    assert shock_rate(5, 11) == pytest.approx(0.25)
    assert shock_rate(3, 7, max_rate=0.3) == pytest.approx(0.15)
    assert shock_rate(0, 1) == 0.0
    np.testing.assert_allclose(shock_rate(tf.constant([0, 5, 10], tf.int64), 11).numpy(),
                               [0.0, 0.25, 0.5])
    trainer, _, _, _ = boosted_run
    stage = np.array(trainer.steps["stage"])
    rate = np.array(trainer.steps["rate"])
    blended = np.array(trainer.steps["blended"])
    assert np.all(rate[stage == 0] == 0) and np.all(blended[stage == 0] == 0)
    np.testing.assert_allclose(rate[stage == 1], 0.5 * np.arange(STEPS) / (STEPS - 1), atol=1e-6)
    # Examples are blended independently with probability rate: the count over the stage is
    # a sum of Bernoulli draws (z-score bound).
    p = rate[stage == 1]
    mean, var = BATCH * p.sum(), BATCH * np.sum(p * (1 - p))
    count = BATCH * blended[stage == 1].sum()
    assert abs(count - mean) < 4.5 * np.sqrt(var)
    assert blended[stage == 1][0] == 0.0


def test_no_shock_fix_blends_nothing_and_the_encoder_rests(digits):
    x, _ = digits
    trainer = BoostedVAETrainer(tiny_vae(), batch_size=BATCH, shock_fix=False, verbose=0,
                                rho_pool_size=32, rho_max_iters=2, rho_min_iters=1)
    snaps = []
    trainer.fit(x, steps_per_component=3, on_stage_end=lambda t, r: snaps.append(
        (_snapshot(t.model.encoder), _snapshot(t.model.decoder))))
    assert np.all(np.array(trainer.steps["blended"]) == 0)
    assert np.all(np.array(trainer.steps["rate"]) == 0)
    # Without blended examples the boosting stage sends no gradient into the encoder
    # (boost_encoder=False: its outputs are seen with their gradient stopped), and the decoder
    # learns.
    assert _same(snaps[0][0], snaps[1][0])
    assert not _same(snaps[0][1], snaps[1][1])


def test_resume_from_a_stage_checkpoint_reproduces_the_next_stage(boosted_run, digits,
                                                                  tmp_path):
    x, xt = digits
    trainer, _, directory, _ = boosted_run
    resumed_dir = tmp_path / "checkpoints"
    resumed_dir.mkdir()
    shutil.copytree(directory / "stage_00", resumed_dir / "stage_00")
    # A fresh model with other initial weights: everything comes from the checkpoint.
    other = BoostedVAETrainer(tiny_vae(seed=5), batch_size=BATCH, rho_pool_size=64,
                              monitor_every=4, eval_samples=20, verbose=0, seed=1)
    assert other.resume(str(resumed_dir)).endswith("stage_00")
    assert len(other.history) == 1
    other.fit(x, steps_per_component=STEPS, monitor_data=xt[:32],
              checkpoint_dir=str(resumed_dir))   # (evaluation draws no training randomness)
    stage = np.array(trainer.steps["stage"])
    again = np.array(other.steps["stage"])
    np.testing.assert_allclose(np.array(other.steps["loss"])[again == 1],
                               np.array(trainer.steps["loss"])[stage == 1], rtol=1e-5)
    assert other.history[1]["rho"] == pytest.approx(trainer.history[1]["rho"], rel=1e-5)


def _shift_component(model, c, shift):
    """Makes component ``c`` move every latent by ``shift`` (its couplings' shift biases)."""
    for net in model.components[c].conditioners:
        bias = net.output_layer.bias
        half = bias.shape[0] // 2
        bias.assign(np.concatenate([np.full(half, shift), np.zeros(half)]).astype(np.float32))


@pytest.mark.parametrize("bad", [0, 1])
def test_rho_moves_towards_the_better_component(digits, bad):
    """Component ``bad`` shifts every latent by 6 (far into the prior's tail: log p(z) drops by
    about 0.5 * 36 * 4 = 72 nats); the other is the base posterior (a fresh coupling flow is
    the identity). Algorithm 1 on component 1 must raise rho_1 from 1/2 when component 0 is
    the bad one, and lower it otherwise.
    """
    x, _ = digits
    model = tiny_vae()
    trainer = BoostedVAETrainer(model, batch_size=BATCH, verbose=0, rho_pool_size=128)
    trainer.trained[:] = True
    trainer.weights = np.array([1.0, 0.0])
    _shift_component(model, bad, 6.0)
    rho, _ = trainer.fit_weight(1, x[:128], rho_init=0.5)
    if bad == 0:
        assert rho > 0.6
    else:
        assert rho < 0.4


def test_boosted_objective_formula():
    recon = tf.constant([3.0, 4.0])
    log_g = tf.constant([-1.0, -2.0])
    log_p = tf.constant([-5.0, -6.0])
    np.testing.assert_allclose(boosted_neg_elbo(recon, log_g, log_p, 0.5).numpy(),
                               [3 + 0.5 * 4, 4 + 0.5 * 4])
    log_big = tf.constant([-3.0, -20.0])
    # recon + max(log G, floor) + beta (lam log g - log p); the floor binds on the second.
    out = boosted_neg_elbo(recon, log_g, log_p, 0.5, log_big, regularization=2.0, floor=-10.0)
    np.testing.assert_allclose(out.numpy(), [3 - 3 + 0.5 * (-2 + 5), 4 - 10 + 0.5 * (-4 + 6)])


def test_bad_settings_fail_before_training(digits):
    x, _ = digits
    model = tiny_vae()
    with pytest.raises(ValueError, match="`log_mixture_floor`"):
        BoostedVAETrainer(model, log_mixture_floor="median")
    with pytest.raises(ValueError, match="`shock_max_rate`"):
        BoostedVAETrainer(model, shock_max_rate=1.5)
    trainer = BoostedVAETrainer(model, verbose=0)
    with pytest.raises(ValueError, match="`x`"):
        trainer.fit(x[:, :4], steps_per_component=1)
    with pytest.raises(ValueError, match="binary"):
        trainer.fit(x * 0.5, steps_per_component=1)
    single = BoostedVAETrainer(tiny_vae(num_components=1), verbose=0)
    with pytest.raises(ValueError, match="`finetune_passes`"):
        single.fit(x, steps_per_component=1, finetune_passes=1)
    assert not trainer.history
