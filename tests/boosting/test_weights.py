"""Algorithm 1 and the log-mixture helpers (pure numpy) against closed forms and grid searches."""
import numpy as np
import pytest

from tfresflow.boosting.weights import (density_weight_gradient, fit_mixture_weight,
                                        log_mixture, matching_weight_gradient,
                                        mixture_weights_with, weighted_log_mixture)


def log_normal_1d(x, mu):
    return -0.5 * (x - mu) ** 2 - 0.5 * np.log(2 * np.pi)


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


def test_density_weight_matches_a_grid_search_of_the_likelihood():
    # Data from 0.35 N(2, 1) + 0.65 N(0, 1); G = N(0, 1) fixed, g = N(2, 1) new. The optimum of
    # the convex F(rho) = -mean log((1 - rho) G + rho g) is found by a fine grid search.
    rng = np.random.default_rng(3)
    x = np.where(rng.uniform(size=5000) < 0.35, 2.0, 0.0) + rng.normal(size=5000)
    log_big, log_new = log_normal_1d(x, 0.0), log_normal_1d(x, 2.0)
    grid = np.linspace(1e-4, 1 - 1e-4, 100001)
    nll = [-np.mean(log_mixture(r, log_big, log_new)) for r in grid]
    best = grid[int(np.argmin(nll))]
    rho, iters, _ = fit_mixture_weight(density_weight_gradient(log_new, log_big), len(x), 0.9,
                                       step_size=0.2, decay=0.0, tolerance=1e-9,
                                       max_iters=20000, batch_size=None)
    assert iters < 20000
    assert rho == pytest.approx(best, abs=2e-4)


def test_matching_weight_gradient_is_the_derivative_of_the_reverse_kl():
    # F(rho) = KL(M_rho || p~) on a 1-D grid (quadrature); the Monte Carlo gradient
    # E_g[gamma] - E_G[gamma] from 200k draws of each must match its finite difference.
    G, g = (0.0, 1.0), (3.0, 1.0)  # (mean, std)
    log_p = lambda z: np.logaddexp(np.log(0.3) + log_normal_1d(z, 3.0),  # noqa: E731
                                   np.log(0.7) + log_normal_1d(z, 0.5))
    rho = 0.6
    z = np.linspace(-12, 15, 200001)
    dz = z[1] - z[0]

    def kl(r):
        log_m = log_mixture(r, log_normal_1d(z, G[0]), log_normal_1d(z, g[0]))
        return np.sum(np.exp(log_m) * (log_m - log_p(z))) * dz
    h = 1e-4
    expected = (kl(rho + h) - kl(rho - h)) / (2 * h)
    rng = np.random.default_rng(0)
    pools = []
    for mean, _ in (g, G):
        s = rng.normal(size=200000) + mean
        pools.append((log_normal_1d(s, g[0]), log_normal_1d(s, G[0]), log_p(s)))
    grad = matching_weight_gradient(*pools)(rho, slice(None))
    assert grad == pytest.approx(expected, abs=0.02)


def test_log_mixture_helpers_match_the_direct_formulas():
    rng = np.random.default_rng(1)
    cols = rng.normal(size=(7, 3))
    w = np.array([0.2, 0.0, 0.8])
    np.testing.assert_allclose(weighted_log_mixture(cols, w), np.log(np.exp(cols) @ w),
                               rtol=1e-12)
    lb, lg = cols[:, 0], cols[:, 1]
    np.testing.assert_allclose(log_mixture(0.3, lb, lg),
                               np.log(0.7 * np.exp(lb) + 0.3 * np.exp(lg)), rtol=1e-12)
    assert np.all(log_mixture(0.0, lb, lg) == lb)  # rho = 0: the fixed mixture alone


def test_mixture_weights_with_adds_one_component():
    w = mixture_weights_with(4, [0, 2], [0.25, 0.75], 3, 0.2)
    np.testing.assert_allclose(w, [0.2, 0.0, 0.6, 0.2])
    np.testing.assert_allclose(mixture_weights_with(3, [], [], 1, 1.0), [0.0, 1.0, 0.0])
