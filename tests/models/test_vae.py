"""FlowVAE: importance-sampled NLL against a closed form, component invertibility, mixture
density, ELBO <= log p, KL warm-up, SavedModel export, argument errors."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tests.helpers import randomize_weights
from tfresflow.evaluation import mean_and_stderr
from tfresflow.models import FlowVAE, kl_warmup_beta
from tfresflow.models.vae_evaluation import (importance_sampled_log_likelihood,
                                             vae_negative_elbo, vae_nll)

SHAPE = (8, 8, 1)
TINY = dict(encoder_depth=3, decoder_depth=3, encoder_channels=(8, 8, 16),
            decoder_channels=(8, 8, 8), flow_steps=2, flow_hidden_units=(16,), context_size=6)


def _images(n=24, seed=0):
    """Binarised sklearn digits (8 x 8): pixel > 7 -> 1."""
    from sklearn.datasets import load_digits
    x = load_digits().images[:n] > 7
    return x.astype(np.float32)[..., None]


def _vae(latent=4, components=2, weights=None, seed=1, **kwargs):
    cfg = {**TINY, **kwargs}
    m = FlowVAE(SHAPE, latent_size=latent, num_components=components, mixture_weights=weights,
                seed=seed, **cfg)
    randomize_weights(m.components, scale=0.3, seed=seed)
    return m


# --------------------------------------------------------------------------- (a) IS vs exact
def _linear_gaussian(seed=0, dz=2, dx=3, s=0.5, n=200):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(dx, dz))
    b = rng.normal(size=dx)
    z = rng.normal(size=(n, dz))
    x = z @ w.T + b + s * rng.normal(size=(n, dx))
    cov = w @ w.T + s ** 2 * np.eye(dx)
    diff = x - b
    exact = -0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                    + np.linalg.slogdet(cov)[1] + dx * np.log(2 * np.pi))
    # Exact posterior N(m, P^-1), P = I + W^T W / s^2; the proposal is deliberately off:
    # shifted mean and a broadened diagonal.
    prec = np.eye(dz) + w.T @ w / s ** 2
    post_cov = np.linalg.inv(prec)
    post_mean = diff @ w @ post_cov.T / s ** 2
    q_mean = post_mean + 0.3
    q_std = 1.5 * np.sqrt(np.diag(post_cov))
    return w, b, s, x, exact, q_mean, q_std


def test_importance_sampled_nll_matches_linear_gaussian_closed_form():
    """-log (1/S) sum p(x, z_s) / q(z_s|x) -> -log p(x) (closed form N(b, W W^T + s^2 I)):
    within its standard error at S = 2000 (drawn in batches of 300), and its bias (the
    Jensen gap, NLL above the truth) shrinks as S grows."""
    w, b, s, x, exact, q_mean, q_std = _linear_gaussian()
    tfd = tfp.distributions
    wt, bt = tf.constant(w, tf.float64), tf.constant(b, tf.float64)
    xt = tf.constant(x)
    prior = tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64), tf.ones(2, tf.float64))
    q = tfd.MultivariateNormalDiag(tf.constant(q_mean), tf.constant(q_std))

    def log_joint(z):
        mean = tf.einsum("sbk,dk->sbd", z, wt) + bt
        lik = tfd.MultivariateNormalDiag(mean, s * tf.ones_like(mean)).log_prob(xt)
        return (lik + prior.log_prob(z)).numpy()

    def proposal(n, seed):
        z = q.sample(n, seed=seed)
        return z, q.log_prob(z).numpy()

    gaps = []
    for n_samples, batch in [(1, 1), (10, 10), (100, 100), (2000, 300)]:
        est = importance_sampled_log_likelihood(log_joint, proposal, n_samples, batch, seed=3)
        gaps.append(mean_and_stderr(exact - est))
    means = [g[0] for g in gaps]
    assert means[0] > 3 * gaps[0][1]            # S = 1 (the ELBO) is clearly below log p
    assert means == sorted(means, reverse=True)  # the NLL decreases towards the exact one
    mean, se = gaps[-1]
    assert abs(mean) <= 3 * se + 1e-3, gaps


# --------------------------------------------------------------------------- (b) components
def _fresh(a):
    return tf.constant(np.array(a))


def _inverse_check(m, c, z, z0, h, ldj):
    """inverse(forward(z0)) = z0 (fresh tensors), its log-det = -forward's, and both against
    the brute-force Jacobian of the inverse."""
    back, ildj = m.component_inverse(c, _fresh(z), _fresh(h))
    np.testing.assert_allclose(back.numpy(), z0, atol=1e-4)
    np.testing.assert_allclose(ildj.numpy(), -ldj, atol=1e-4)
    with tf.GradientTape() as tape:
        v = tf.constant(z)
        tape.watch(v)
        out = m.component_inverse(c, v, tf.constant(h))[0]
    jac = tape.batch_jacobian(out, v)
    np.testing.assert_allclose(ildj.numpy(), tf.linalg.slogdet(jac)[1].numpy(), atol=1e-4)


def _global_vae(kind, latent):
    small = {k: v for k, v in TINY.items() if k != "flow_steps"}
    if kind == "global":
        flows = [tfp.bijectors.Chain([trf.bijectors.AffineCoupling(latent, (8,), reverse=r,
                                                                     name=f"c{i}_{r}")
                                      for r in (False, True)]) for i in range(2)]
    else:   # residual blocks (fixed-point forward) with the exact log-det, ActNorm first
        flows = [trf.models.residual_flow(latent, n_steps=1, hidden_units=(8,),
                                          logdet=trf.logdet.Exact()) for _ in range(2)]
    m = FlowVAE(SHAPE, latent_size=latent, num_components=2, flow=flows, seed=1, **small)
    for comp in m.components:
        for v in comp.trainable_weights:
            v.assign(np.random.default_rng(4).normal(0, 0.3, v.shape).astype(np.float32))
    return m


@pytest.mark.parametrize("kind", ["coupling", "global", "residual"])
def test_component_round_trip_and_log_det_match_brute_force_jacobian(kind):
    latent = 4
    m = _vae(latent=latent, components=2) if kind == "coupling" else _global_vae(kind, latent)
    rng = np.random.default_rng(0)
    z0 = rng.normal(size=(5, latent)).astype(np.float32)
    h = rng.normal(size=(5, m.context_size if kind == "coupling" else 0)).astype(np.float32)
    for c in range(2):
        z, ldj = m.component_forward(c, _fresh(z0), _fresh(h))
        assert not np.allclose(z.numpy(), z0, atol=1e-3)     # not the identity
        if kind != "residual":   # (the fixed-point forward is checked through the inverse)
            with tf.GradientTape() as tape:
                v = tf.constant(z0)
                tape.watch(v)
                out = m.component_forward(c, v, tf.constant(h))[0]
            jac = tape.batch_jacobian(out, v)
            np.testing.assert_allclose(ldj.numpy(), tf.linalg.slogdet(jac)[1].numpy(),
                                       atol=1e-4)
        _inverse_check(m, c, z.numpy(), z0, h, ldj.numpy())


def test_component_sample_density_equals_density_through_the_inverse():
    m = _vae(latent=4, components=2)
    x = _images(3)
    enc = m.encode(x)
    for c in range(2):
        z, log_g = m.component_sample(enc, c, 6, seed=[1, c])
        np.testing.assert_allclose(m.component_log_prob(c, _fresh(z.numpy()), enc).numpy(),
                                   log_g.numpy(), atol=1e-4)
    # Leading sample dims broadcast against [B] examples everywhere.
    assert m.log_likelihood(x, z).shape == (6, 3) and m.prior_log_prob(z).shape == (6, 3)


def test_prior_and_base_densities_are_normalised_gaussians():
    """Both carry -0.5 D log 2 pi (the reference code's KL is off by 0.5 D log 2 pi)."""
    m = _vae(latent=4, components=1)
    z = np.random.default_rng(3).normal(size=(7, 2, 4)).astype(np.float32)
    ref = tfp.distributions.MultivariateNormalDiag(tf.zeros(4), tf.ones(4))
    np.testing.assert_allclose(m.prior_log_prob(z).numpy(), ref.log_prob(z).numpy(), rtol=1e-5)
    mu, log_sigma, h = m.encode(_images(2))
    q0 = tfp.distributions.MultivariateNormalDiag(mu, tf.exp(log_sigma))
    np.testing.assert_allclose(m.base_log_prob(z, (mu, log_sigma, h)).numpy(),
                               q0.log_prob(z).numpy(), rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- (c) mixture
def test_mixture_log_prob_is_weighted_logsumexp_and_integrates_to_one():
    weights = [0.2, 0.5, 0.3]
    m = _vae(latent=2, components=3, weights=weights, seed=5)
    x = _images(2)
    enc = m.encode(x)
    z = np.random.default_rng(1).normal(size=(9, 2, 2)).astype(np.float32)
    by_hand = np.log(sum(w * np.exp(m.component_log_prob(c, _fresh(z), enc).numpy()
                                    .astype(np.float64)) for c, w in enumerate(weights)))
    np.testing.assert_allclose(m.mixture_log_prob(_fresh(z), enc).numpy(), by_hand, atol=1e-4)
    # Sub-mixture with explicit weights (renormalised): components 0 and 2 with [1, 3].
    sub = np.log(0.25 * np.exp(m.component_log_prob(0, _fresh(z), enc).numpy())
                 + 0.75 * np.exp(m.component_log_prob(2, _fresh(z), enc).numpy()))
    np.testing.assert_allclose(m.mixture_log_prob(_fresh(z), enc, components=[0, 2],
                                                  weights=[1.0, 3.0]).numpy(), sub, atol=1e-4)
    # Numeric integral over the 2-D latent of the first example's posterior density.
    samples = m.mixture_sample(enc, 4000, seed=2)[0].numpy()[:, 0]
    lo, hi = samples.min(0) - 3.0, samples.max(0) + 3.0
    n = 300
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    grid = np.stack([g0.ravel(), g1.ravel()], -1).astype(np.float32)[:, None, :]
    enc0 = tuple(t[:1] for t in enc)
    dens = np.exp(m.mixture_log_prob(tf.constant(grid), enc0).numpy().astype(np.float64))
    cell = (hi[0] - lo[0]) / (n - 1) * (hi[1] - lo[1]) / (n - 1)
    assert dens.sum() * cell == pytest.approx(1.0, abs=0.02)


def test_mixture_sample_draws_a_component_per_sample():
    weights = np.array([0.2, 0.5, 0.3])
    m = _vae(latent=4, components=3, weights=weights)
    enc = m.encode(_images(4))
    z, ids, log_own = m.mixture_sample(enc, 500, seed=7)
    ids = ids.numpy()
    assert z.shape == (500, 4, 4) and ids.shape == (500, 4)
    assert all(len(np.unique(ids[:, b])) == 3 for b in range(4))   # not one per batch
    counts = np.bincount(ids.ravel(), minlength=3)
    total = ids.size
    z_scores = (counts - total * weights) / np.sqrt(total * weights * (1 - weights))
    assert np.all(np.abs(z_scores) < 4), z_scores
    # Each draw carries the density of the component that produced it.
    for c in range(3):
        sel = ids == c
        own = m.component_log_prob(c, _fresh(z.numpy()), enc).numpy()
        np.testing.assert_allclose(own[sel], log_own.numpy()[sel], atol=1e-4)
    # Zero weight: never drawn.
    _, ids0, _ = m.mixture_sample(enc, 200, seed=8, weights=[0.0, 1.0, 1.0],
                                  components=[0, 1, 2])
    assert not np.any(ids0.numpy() == 0)


# --------------------------------------------------------------------------- (d) bounds
def test_elbo_is_below_the_importance_sampled_log_likelihood_after_training():
    x = _images(48)
    m = FlowVAE(SHAPE, latent_size=4, num_components=2, seed=0, kl_warmup_steps=5, **TINY)
    m.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = m.fit(x, batch_size=16, epochs=2, verbose=0)
    assert set(hist.history) >= {"loss", "reconstruction", "kl"}
    xe = x[:16]
    neg_elbo = vae_negative_elbo(m, xe, n_samples=30, seed=1)
    nll = vae_nll(m, xe, n_samples=200, sample_batch=120, seed=2)
    gap = neg_elbo["negative_elbo"] - nll["nll"]   # = log p - ELBO estimates, >= 0 in expectation
    mean, se = mean_and_stderr(gap)
    assert mean > 3 * se, (mean, se)
    # The paper's protocol defaults: 3C samples; the per-component ELBO is looser on average.
    assert vae_negative_elbo(m, xe, seed=1)["n_samples"] == 6
    comp = vae_negative_elbo(m, xe, n_samples=30, density="component", seed=1)
    assert comp["mean"] >= neg_elbo["mean"] - 3 * comp["stderr"]


# --------------------------------------------------------------------------- (e) KL warm-up
def test_kl_warmup_schedule():
    assert [kl_warmup_beta(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert kl_warmup_beta(10, 0) == 1.0
    m = FlowVAE(SHAPE, latent_size=3, flow=None, kl_warmup_steps=4, seed=0,
                **{k: v for k, v in TINY.items() if k not in ("flow_steps",)})
    assert float(m.kl_beta()) == 0.25
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = m.fit(_images(8), batch_size=4, epochs=3, verbose=0)   # 2 steps per epoch
    # `beta` is the weight used in the epoch's last step: steps 1, 3, 5 (0-based).
    np.testing.assert_allclose(hist.history["beta"], [0.5, 1.0, 1.0])
    assert float(m.kl_step.numpy()) == 6.0 and float(m.kl_beta()) == 1.0
    m.reset_kl_warmup()
    assert float(m.kl_beta()) == 0.25
    assert not any(v is m.kl_step for v in m.trainable_variables)


def test_frozen_components_do_not_move_in_training():
    m = _vae(latent=4, components=2)
    m.freeze_components([0])
    assert m.trainable_components == [False, True]
    before = [v.numpy().copy() for v in m.components[0].weights]
    other = [v.numpy().copy() for v in m.components[1].weights]
    m.compile(optimizer=keras.optimizers.Adam(1e-2))
    m.fit(_images(8), batch_size=4, epochs=1, verbose=0)
    for a, v in zip(before, m.components[0].weights):
        np.testing.assert_array_equal(a, v.numpy())
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(other, m.components[1].weights))
    m.set_mixture_weights([1.0, 3.0])
    np.testing.assert_allclose(m.mixture_weights.numpy(), [0.25, 0.75])


def test_keras_round_trip(tmp_path):
    m = _vae(latent=4, components=2, weights=[0.4, 0.6])
    m.save(str(tmp_path / "vae.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "vae.keras"))
    x = _images(3)
    np.testing.assert_allclose(loaded.elbo(x, n_samples=4, seed=3)["elbo"].numpy(),
                               m.elbo(x, n_samples=4, seed=3)["elbo"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(loaded.mixture_weights.numpy(), [0.4, 0.6], rtol=1e-6)


# --------------------------------------------------------------------------- (f) export
RELOAD_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
x = np.load(sys.argv[1]); z = np.load(sys.argv[2])
m = tf.saved_model.load(sys.argv[3])
mu, log_sigma, h = m.encode(tf.constant(x))
print(json.dumps({
    "elbo": m.elbo(tf.constant(x), tf.constant([1, 2])).numpy().tolist(),
    "mu": mu.numpy().tolist(), "log_sigma": log_sigma.numpy().tolist(),
    "h": h.numpy().tolist(),
    "decode": m.decode(tf.constant(z)).numpy().tolist(),
    "sample": m.sample(tf.constant(3), tf.constant([4, 5])).numpy().tolist(),
    "imported_tfresflow": any(k.startswith("tfresflow") for k in sys.modules)}))
"""


def test_saved_model_reloads_without_tfresflow(tmp_path):
    m = _vae(latent=4, components=2, weights=[0.3, 0.7])
    path = trf.export.export_vae_saved_model(m, str(tmp_path / "sm"))
    x = _images(5)
    z = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "z.npy", z)
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "x.npy"),
                           str(tmp_path / "z.npy"), path], capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported_tfresflow"] is False
    np.testing.assert_allclose(out["elbo"], m.elbo(x, n_samples=6, seed=[1, 2])["elbo"].numpy(),
                               rtol=1e-5, atol=1e-4)
    for got, want in zip([out["mu"], out["log_sigma"], out["h"]], m.encode(x)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["decode"], m.decode(z).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["sample"], m.sample(3, seed=[4, 5]).numpy(), atol=1e-5)


# --------------------------------------------------------------------------- (g) errors
def test_bad_arguments_give_clear_errors():
    small = {k: v for k, v in TINY.items() if k not in ("flow_steps",)}
    with pytest.raises(ValueError, match="image_shape"):
        FlowVAE((8, 8), **small)
    with pytest.raises(ValueError, match="latent_size"):
        FlowVAE(SHAPE, latent_size=0, **small)
    with pytest.raises(ValueError, match="num_components=1"):
        FlowVAE(SHAPE, latent_size=4, flow=None, num_components=2, **small)
    with pytest.raises(ValueError, match="flow"):
        FlowVAE(SHAPE, latent_size=4, flow="planar", **small)
    with pytest.raises(ValueError, match="one per component"):
        FlowVAE(SHAPE, latent_size=4, num_components=2,
                flow=[trf.bijectors.AffineCoupling(4, (4,))], **small)
    with pytest.raises(ValueError, match="mixture_weights"):
        FlowVAE(SHAPE, latent_size=4, num_components=2, mixture_weights=[1.0, -1.0], **small)
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        FlowVAE(SHAPE, latent_size=4, kl_warmup_steps=-1, **small)
    m = _vae(latent=4, components=2)
    x = _images(2)
    enc = m.encode(x)
    with pytest.raises(ValueError, match="mixture_weights"):
        m.set_mixture_weights([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="`c` must be a component index"):
        m.component_sample(enc, 2, 3)
    with pytest.raises(ValueError, match="`weights` must have shape"):
        m.mixture_log_prob(tf.zeros((1, 2, 4)), enc, weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="`weights` must be finite"):
        m.mixture_sample(enc, 3, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="density"):
        m.elbo(x, density="iwae")
    with pytest.raises(ValueError, match="n_samples"):
        m.elbo(x, n_samples=0)
    with pytest.raises(ValueError, match=r"`x` must have shape \[n, 8, 8, 1\]"):
        m.encode(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="no labels"):
        m.fit(x, np.zeros(2))
    with pytest.raises(ValueError, match="n_samples"):
        vae_nll(m, x, n_samples=0)
    with pytest.raises(ValueError, match="sample_batch"):
        vae_nll(m, x, sample_batch=0)
