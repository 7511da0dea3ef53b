"""Evaluation of :class:`~tfresflow.models.FlowVAE`: negative ELBO and importance-sampled NLL.

* Negative ELBO with the paper's protocol (GBF section 5.2): averaged over ``3 C`` draws of the
  mixture posterior per example (3 for ``C = 1``), :func:`vae_negative_elbo`.
* Importance-sampled log-likelihood (Rezende, Mohamed & Wierstra, 2014; Burda et al., 2016):

      log p(x) ~= log (1/S) sum_s p(x, z_s) / q(z_s|x),    z_s ~ q(.|x),

  with ``q`` the mixture posterior ``G`` (:meth:`FlowVAE.mixture_log_prob`) and ``S``
  importance samples (2000 in the paper). By Jensen's inequality its expectation is a lower
  bound of ``log p(x)`` that increases with ``S`` to ``log p(x)`` (the NLL estimate
  decreases towards the true NLL); it is consistent for any proposal covering the posterior.
  :func:`importance_sampled_log_likelihood` is the generic estimator over log-joint and
  proposal callables (so tests compare it with a closed form); the ``S`` samples are drawn in
  batches of ``sample_batch`` and the log-sum-exp accumulated across batches (float64), so
  memory is ``O(sample_batch)``.

Both are returned per example and as mean with standard error over examples
(:func:`tfresflow.evaluation.mean_and_stderr`).

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (section 5.2).
  Rezende, Mohamed & Wierstra (2014), "Stochastic Backpropagation and Approximate Inference in
    Deep Generative Models", ICML, arXiv:1401.4082 (appendix E, importance-sampled likelihood).
  Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR,
    arXiv:1509.00519 (the bound increases with S).
"""
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.evaluation import mean_and_stderr
from tfresflow.validation import check_choice, check_positive_int, check_samples

__all__ = ["importance_sampled_log_likelihood", "vae_log_likelihood", "vae_nll",
           "vae_negative_elbo", "evaluate_vae"]


def importance_sampled_log_likelihood(log_joint, sample_proposal, n_samples, sample_batch=500,
                                      seed=0):
    """``log (1/S) sum_s exp(log_joint(z_s) - log_q(z_s))`` per example, ``z_s ~ q``.

    Args:
      log_joint: callable ``z [s, B, ...] -> log p(x, z) [s, B]``.
      sample_proposal: callable ``(s, seed) -> (z [s, B, ...], log q(z|x) [s, B])`` (``s`` a
        Python int, ``seed`` a stateless int32 ``[2]`` seed).
      n_samples: ``S`` importance samples per example.
      sample_batch: samples drawn per call (memory ``O(sample_batch * B)``).
      seed: seed of the draws (batch ``i`` uses ``split(seed)[i]``-style fold-ins).

    Returns:
      float64 numpy array ``[B]`` of log-likelihood estimates.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    sample_batch = check_positive_int(sample_batch, "sample_batch")
    seed = trf_random.fold_in_tag(seed, "vae/importance_sampling")
    total = None
    for i, start in enumerate(range(0, n_samples, sample_batch)):
        s = min(sample_batch, n_samples - start)
        z, log_q = sample_proposal(s, tf.random.experimental.stateless_fold_in(seed, i))
        log_w = np.asarray(log_joint(z), np.float64) - np.asarray(log_q, np.float64)
        m = log_w.max(0)
        part = m + np.log(np.exp(log_w - m).sum(0))
        total = part if total is None else np.logaddexp(total, part)
    result = total - np.log(n_samples)
    if not np.all(np.isfinite(result)):
        raise FloatingPointError(f"non-finite importance-sampled log-likelihood for "
                                 f"{int(np.sum(~np.isfinite(result)))} examples")
    return result


def _batches(x, batch_size):
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


def vae_log_likelihood(model, x, n_samples=2000, sample_batch=500, batch_size=100, seed=0):
    """Importance-sampled ``log p(x)`` per example (float64 ``[N]``) with the mixture posterior
    ``G(z|x)`` of ``model`` as proposal (:func:`importance_sampled_log_likelihood`).

    ``log p(x, z) = log p(x|z) + log p(z)``; ``log q = model.mixture_log_prob``. Examples are
    processed ``batch_size`` at a time.
    """
    x = check_samples(x, model.image_shape, name="x")
    n_samples = check_positive_int(n_samples, "n_samples")
    sample_batch = check_positive_int(sample_batch, "sample_batch")
    batch_size = check_positive_int(batch_size, "batch_size")

    @tf.function(reduce_retracing=True)
    def proposal(xb, s, seed_i):
        enc = model.encode(xb)
        z, _, _ = model.mixture_sample(enc, s, seed=seed_i)
        return z, model.mixture_log_prob(z, enc)

    @tf.function(reduce_retracing=True)
    def joint(xb, z):
        return model.log_likelihood(xb, z) + model.prior_log_prob(z)

    out = []
    for j, xb in enumerate(_batches(x, batch_size)):
        xb = tf.constant(xb)
        out.append(importance_sampled_log_likelihood(
            lambda z, xb=xb: joint(xb, z).numpy(),
            lambda s, sd, xb=xb: [t.numpy() for t in proposal(xb, tf.constant(s, tf.int32), sd)],
            n_samples, sample_batch, seed=trf_random.fold_in_tag(seed, f"batch/{j}")))
    return np.concatenate(out)


def vae_nll(model, x, n_samples=2000, sample_batch=500, batch_size=100, seed=0):
    """Importance-sampled NLL: ``{"nll": [N], "mean", "stderr", "n_samples"}`` (nats)."""
    nll = -vae_log_likelihood(model, x, n_samples, sample_batch, batch_size, seed)
    mean, stderr = mean_and_stderr(nll)
    return {"nll": nll, "mean": mean, "stderr": stderr, "n_samples": int(n_samples)}


def vae_negative_elbo(model, x, n_samples=None, density="mixture", batch_size=100, seed=0):
    """Negative ELBO per example, averaged over ``n_samples`` mixture draws (default ``3 C``,
    GBF section 5.2; 3 for ``C = 1``).

    ``density``: ``"mixture"`` (``q = G``, the mixture's ELBO) or ``"component"`` (each draw
    scored by its own component, the paper's eq. 5 protocol; a looser bound). Returns
    ``{"negative_elbo": [N], "mean", "stderr", "reconstruction", "kl", "n_samples"}`` with
    ``reconstruction`` and ``kl`` the means over examples of ``E log p(x|z)`` and
    ``E[log q(z|x) - log p(z)]``.
    """
    x = check_samples(x, model.image_shape, name="x")
    check_choice(density, "density", ("mixture", "component"))
    n_samples = 3 * int(model.num_components) if n_samples is None \
        else check_positive_int(n_samples, "n_samples")
    batch_size = check_positive_int(batch_size, "batch_size")

    @tf.function(reduce_retracing=True)
    def parts(xb, seed_j):
        return model.elbo(xb, n_samples=n_samples, seed=seed_j, density=density)

    neg, recon, kl = [], [], []
    for j, xb in enumerate(_batches(x, batch_size)):
        p = parts(tf.constant(xb), trf_random.fold_in_tag(seed, f"vae/elbo/{j}"))
        neg.append(-p["elbo"].numpy())
        recon.append(p["reconstruction"].numpy())
        kl.append(p["kl"].numpy())
    neg = np.concatenate(neg).astype(np.float64)
    mean, stderr = mean_and_stderr(neg)
    return {"negative_elbo": neg, "mean": mean, "stderr": stderr,
            "reconstruction": float(np.mean(np.concatenate(recon))),
            "kl": float(np.mean(np.concatenate(kl))), "n_samples": n_samples}


def evaluate_vae(model, x, n_importance=2000, sample_batch=500, batch_size=100, seed=0):
    """Both scores of ``model`` on ``x`` as plain numbers (JSON-ready):
    ``negative_elbo``, ``negative_elbo_stderr``, ``nll``, ``nll_stderr``, ``reconstruction``,
    ``kl``, ``elbo_samples``, ``importance_samples``."""
    elbo = vae_negative_elbo(model, x, batch_size=batch_size,
                             seed=trf_random.fold_in_tag(seed, "elbo"))
    nll = vae_nll(model, x, n_importance, sample_batch, batch_size,
                  seed=trf_random.fold_in_tag(seed, "nll"))
    return {"negative_elbo": elbo["mean"], "negative_elbo_stderr": elbo["stderr"],
            "nll": nll["mean"], "nll_stderr": nll["stderr"],
            "reconstruction": elbo["reconstruction"], "kl": elbo["kl"],
            "elbo_samples": elbo["n_samples"], "importance_samples": nll["n_samples"]}
