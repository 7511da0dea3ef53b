"""Mixture weights of a gradient boosted flow: Algorithm 1 and the stable log-mixture (numpy).

The boosted model after stage ``c`` is the mixture (Giaquinto & Banerjee 2020, eq. 7)

    G^(c)(x) = (1 - rho_c) G^(c-1)(x) + rho_c g_c(x).

With the components frozen only ``rho_c`` is left to fit. Writing ``M_rho = (1 - rho) G + rho g``
for the fixed mixture ``G`` and the new component ``g``, Algorithm 1 (Sec. 3.3) runs SGD

    rho_{t+1} = clip(rho_t - delta_t * dF/drho(rho_t), bounds),   delta_t = delta_0 / (1 + decay t)

until ``|rho_{t+1} - rho_t| < tolerance`` (after ``min_iters``) or ``max_iters``. The Monte
Carlo gradients of the two objectives are

* density (``F = -E_p log M_rho``):  ``dF/drho = -E_p[(g(x) - G(x)) / M_rho(x)]`` (the
  reference implementation's version of this has its sign flipped and is disabled there);
* matching (``F = KL(M_rho || p~)``): ``dF/drho = E_g[gamma] - E_G[gamma]`` with
  ``gamma = log M_rho - log p~``.

Everything is evaluated on a pool of log-densities computed once (nothing but ``rho`` changes
during the fit), so this module is pure numpy and knows nothing about flows.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eq. 7, Algorithm 1).
"""
import numpy as np

from tfresflow.validation import check_number, check_positive_int

__all__ = ["log_mixture", "logsumexp", "weighted_log_mixture", "density_weight_gradient",
           "matching_weight_gradient", "fit_mixture_weight", "mixture_weights_with",
           "fixed_mixture", "stage_schedule"]


def log_mixture(rho, log_big, log_new):
    """``log((1 - rho) G + rho g)`` from ``log G`` and ``log g`` (stable; ``rho`` in [0, 1])."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-rho) + log_big, np.log(rho) + log_new)


def logsumexp(a, axis):
    """``log sum exp(a)`` along ``axis`` (float64; rows of ``-inf`` give ``-inf``, no warning)."""
    a = np.asarray(a, np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def weighted_log_mixture(log_probs, weights):
    """``log sum_j w_j g_j(x_n)`` per row from ``log_probs[n, j] = log g_j(x_n)`` and ``w [J]``.

    Zero weights are allowed (their components drop out).
    """
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, np.float64))
    return logsumexp(log_w[None, :] + np.asarray(log_probs, np.float64), axis=1)


def mixture_weights_with(num_components, fixed, fixed_weights, c, rho):
    """The ``[C]`` weights of ``(1 - rho) G + rho g_c``, ``G = sum_{j in fixed} w_j g_j``.

    ``fixed_weights`` are normalised; components neither fixed nor ``c`` get weight zero. With
    no fixed component ``rho`` must be 1 (the first stage: the mixture is ``g_c`` alone).
    """
    weights = np.zeros(int(num_components))
    weights[list(fixed)] = (1.0 - rho) * np.asarray(fixed_weights, np.float64)
    weights[c] = rho
    return weights


def fixed_mixture(weights, trained, c):
    """Indices and normalised weights of the fixed mixture ``G`` that component ``c`` is
    trained against: every *other* trained component (``([], [])`` when there is none)."""
    idx = [j for j in range(len(weights)) if trained[j] and j != c]
    if not idx:
        return [], np.zeros(0)
    w = np.asarray(weights, np.float64)[idx]
    return idx, w / w.sum()


def stage_schedule(num_components, finetune_passes=0):
    """Stages as ``(phase, component)``: ``("boost", c)`` for ``c = 0 .. C-1``, then
    ``finetune_passes`` GBF+ passes of ``("finetune", c)`` (Sec. 3.3)."""
    stages = [("boost", c) for c in range(int(num_components))]
    return stages + [("finetune", c) for _ in range(int(finetune_passes))
                     for c in range(int(num_components))]


def density_weight_gradient(log_new, log_big):
    """``rho -> dF/drho`` for ``F(rho) = -mean_n log M_rho(x_n)`` at pooled data.

    ``log_new[n] = log g(x_n)``, ``log_big[n] = log G(x_n)``; returns a function of
    ``(rho, idx)`` evaluating ``-mean_{n in idx} (g - G) / M_rho`` at the rows ``idx``.
    """
    log_new, log_big = np.asarray(log_new, np.float64), np.asarray(log_big, np.float64)

    def grad(rho, idx):
        lg, lb = log_new[idx], log_big[idx]
        lm = log_mixture(rho, lb, lg)
        return -float(np.mean(np.exp(lg - lm) - np.exp(lb - lm)))
    return grad


def matching_weight_gradient(new_samples, big_samples):
    """``rho -> E_g[gamma] - E_G[gamma]`` with ``gamma = log M_rho - log p~`` (Sec. 3.3).

    Each argument is a triple ``(log g, log G, log p~)`` of arrays evaluated at samples of
    ``g`` (``new_samples``) or of ``G`` (``big_samples``); the returned function takes
    ``(rho, idx)`` and uses rows ``idx`` of both pools.
    """
    new = [np.asarray(a, np.float64) for a in new_samples]
    big = [np.asarray(a, np.float64) for a in big_samples]

    def gamma(rho, pool, idx):
        lg, lb, lp = (a[idx] for a in pool)
        return log_mixture(rho, lb, lg) - lp

    def grad(rho, idx):
        return float(np.mean(gamma(rho, new, idx)) - np.mean(gamma(rho, big, idx)))
    return grad


def fit_mixture_weight(grad_fn, pool_size, rho_init, step_size=0.05, decay=0.05,
                       tolerance=1e-3, max_iters=300, min_iters=10, batch_size=512,
                       bounds=(1e-4, 1 - 1e-4), seed=0):
    """Algorithm 1 of Giaquinto & Banerjee (2020): SGD on one mixture weight ``rho``.

    ``rho_{t+1} = clip(rho_t - step_size / (1 + decay t) * grad_fn(rho_t, idx_t), bounds)``
    with ``idx_t`` a random mini-batch of ``batch_size`` pool rows (the whole pool when
    ``batch_size`` is None or larger); stops when ``|rho_{t+1} - rho_t| < tolerance`` after at
    least ``min_iters`` iterations, or after ``max_iters``.

    Args:
      grad_fn: ``(rho, idx) -> dF/drho`` on pool rows ``idx`` (an index array or a slice),
        e.g. from :func:`density_weight_gradient` or :func:`matching_weight_gradient`.
      pool_size: number of pool rows.
      rho_init: starting weight (clipped into ``bounds``).
      seed: seed of the numpy generator drawing the mini-batches.

    Returns:
      ``(rho, iterations, trace)`` with ``trace`` the list of iterates.

    References:
      Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", arXiv:2002.11896,
      Algorithm 1.
    """
    lo = check_number(bounds[0], "bounds[0]", 0.0, 1.0)
    hi = check_number(bounds[1], "bounds[1]", lo, 1.0, low_open=True)
    step_size = check_number(step_size, "step_size", 0.0, low_open=True)
    decay = check_number(decay, "decay", 0.0)
    tolerance = check_number(tolerance, "tolerance", 0.0, low_open=True)
    max_iters = check_positive_int(max_iters, "max_iters", minimum=0)
    min_iters = check_positive_int(min_iters, "min_iters", minimum=0)
    pool_size = check_positive_int(pool_size, "pool_size")
    full = batch_size is None or check_positive_int(batch_size, "batch_size") >= pool_size
    rng = np.random.default_rng(seed)
    rho = float(np.clip(rho_init, lo, hi))
    trace = [rho]
    t = 0
    for t in range(1, max_iters + 1):
        idx = slice(None) if full else rng.integers(0, pool_size, int(batch_size))
        new = float(np.clip(rho - step_size / (1.0 + decay * (t - 1)) * grad_fn(rho, idx),
                            lo, hi))
        delta, rho = abs(new - rho), new
        trace.append(rho)
        if t >= min_iters and delta < tolerance:
            break
    return rho, t, trace
