"""Stage objectives: closed forms of the matching and density-boosting losses."""
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.boosting import (BoostedFlowTrainer, DensityBoosting, GreedyMixture,
                                ReverseKLMatching, make_objective)
from tests.boosting.helpers import FAR, gaussian_component, log_normal


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


def test_greedy_mixture_and_first_stage_losses_match_numpy():
    # One data point: every mini-batch row is that point, so the losses are exact values.
    comp = gaussian_component([0.0, 0.0], "m0")
    x = tf.constant(np.array([[1.0, -0.5]], np.float32))
    log_g = log_normal(x.numpy(), 0.0)[0]
    log_fixed = -3.0
    rho = 0.25
    loss = GreedyMixture().loss_fn(comp, 8, x, tf.constant([log_fixed]), rho)
    assert float(loss([1, 2])) == pytest.approx(
        -np.log((1 - rho) * np.exp(log_fixed) + rho * np.exp(log_g)), abs=1e-5)
    first = DensityBoosting().loss_fn(comp, 8, x)  # no fixed component: plain NLL
    assert float(first([1, 2])) == pytest.approx(-log_g, abs=1e-5)


def test_make_objective_maps_the_trainer_options():
    target = lambda z: -tf.reduce_sum(tf.square(z), -1)  # noqa: E731
    assert isinstance(make_objective("density", "boosting"), DensityBoosting)
    assert isinstance(make_objective("density", "mixture"), GreedyMixture)
    assert isinstance(make_objective("matching", target_log_prob=target), ReverseKLMatching)
    with pytest.raises(ValueError, match="max_weight"):
        make_objective("density", max_weight=1.5)
    with pytest.raises(ValueError, match="target_log_prob"):
        make_objective("matching")
