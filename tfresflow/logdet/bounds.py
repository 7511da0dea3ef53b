"""i-ResNet bounds on log-determinants and on the truncation bias (Behrmann et al., 2019).

For a residual block ``F(x) = x + g(x)`` on ``R^d`` with ``L = Lip(g) < 1``:

* Lemma 7 (appendix): ``d log(1 - L) <= log det J_F(x) <= d log(1 + L)`` for every ``x``; for a
  composition of blocks the bounds add up.
* Theorem 3 (appendix): the ``n``-term power series ``PS(J_g, n)`` misses the log-determinant by

      |PS(J_g, n) - log det(I + J_g)| <= -d (log(1 - L) + sum_{k=1}^{n} L^k / k)
                                       = d sum_{k>n} L^k / k,

  which is evaluated here in the second (tail) form to avoid cancellation.

These are diagnostics for choosing estimator settings (e.g. the number of terms of
:class:`~tfresflow.logdet.Truncated`, or checking a trained model's log-dets), not estimators.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (appendix Lemma 7, Theorem 3).
"""
import math

import numpy as np

from tfresflow.validation import check_number, check_positive_int


def _check_lipschitz(lipschitz):
    lip = np.asarray(lipschitz, dtype=np.float64)
    if lip.size == 0 or np.any(~(lip >= 0.0)) or np.any(lip >= 1.0):
        raise ValueError(f"`lipschitz` must be in [0, 1) (a contractive residual branch), got "
                         f"{lipschitz!r}.")
    return lip


def _check_dim(dim):
    return check_positive_int(dim, "dim", integral_floats=False)


def series_tail(lipschitz, n_terms):
    """``sum_{k > n} L^k / k`` (the tail of ``-log(1 - L)``), accurate for tiny tails."""
    lip = float(_check_lipschitz(lipschitz))
    check_positive_int(n_terms, "n_terms", minimum=0, integral_floats=False)
    if lip == 0.0:
        return 0.0
    if n_terms == 0:
        return -math.log1p(-lip)
    total, k, term = 0.0, n_terms + 1, lip ** (n_terms + 1)
    while term > 0.0:
        total += term / k
        if term / k < 1e-17 * total:
            # Remaining terms are below L^k/k * 1/(1-L) relative to total: negligible.
            total += term * lip / ((k + 1) * (1.0 - lip))
            break
        k += 1
        term *= lip
    return total


def truncation_error_bound(lipschitz, dim, n_terms):
    """Bound on the bias of the ``n_terms``-term series (appendix Theorem 3): ``d * tail``."""
    return _check_dim(dim) * series_tail(lipschitz, n_terms)


def terms_for_tolerance(lipschitz, dim, tolerance, max_terms=100000):
    """Smallest ``n`` whose truncation-error bound is at most ``tolerance``.

    Raises:
      ValueError: for a non-positive tolerance, or if more than ``max_terms`` would be needed.
    """
    check_number(tolerance, "tolerance", 0.0, low_open=True)
    dim = _check_dim(dim)
    lip = float(_check_lipschitz(lipschitz))

    def ok(n):
        return dim * series_tail(lip, n) <= tolerance

    # The bound decreases with n: double an upper bracket, then bisect.
    low, high = -1, 1
    while not ok(high):
        low, high = high, 2 * high
        if low > max_terms:
            raise ValueError(f"More than `max_terms`={max_terms} terms are needed for Lip "
                             f"{lip} and tolerance {tolerance}.")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    if high > max_terms:
        raise ValueError(f"More than `max_terms`={max_terms} terms are needed for Lip {lip} "
                         f"and tolerance {tolerance}.")
    return high


def log_det_bounds(lipschitz, dim):
    """``(lower, upper)`` bounds on ``log det J_F`` (appendix Lemma 7).

    Args:
      lipschitz: ``Lip(g)`` of one block, or a sequence of them for a composition of blocks.
      dim: the dimension ``d``.
    """
    lip = np.atleast_1d(_check_lipschitz(lipschitz))
    dim = _check_dim(dim)
    return float(dim * np.sum(np.log1p(-lip))), float(dim * np.sum(np.log1p(lip)))
