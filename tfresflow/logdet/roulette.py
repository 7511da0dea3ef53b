"""Russian-roulette truncation of a series (Kahn, 1955; Chen et al., 2019, eq. 4).

For a convergent series ``S = sum_{k>=1} Delta_k`` and an integer random variable ``N``,

    S = E_N[ sum_{k=1}^{n_exact + N} w_k Delta_k ],   w_k = 1 / P(N >= k - n_exact)

(``w_k = 1`` for the ``n_exact`` terms that are always computed), provided ``P(N >= m) > 0``
for every ``m`` (Chen et al., 2019, Lemma 3 / Theorem 1).

Variance. Writing ``T_m`` for the tail sum beyond term ``n_exact + m - 1``, the estimator's
second moment is ``sum_m (T_m^2 - T_{m+1}^2) / P(N >= m)``. For the log-det series
``|T_m| ~ rho^m`` (``rho``: spectral radius of ``J_g``, at most ``Lip(g)``), so the variance is
finite iff ``rho^(2m) / P(N >= m)`` is summable:

* ``geometric(p)`` (support 1, 2, ...; ``P(N >= m) = (1-p)^(m-1)``; mean ``1/p``): finite
  variance only when ``rho^2 < 1 - p``. Geometric(0.5), the Residual Flows paper's choice, is
  heavy-tailed (infinite variance) as soon as ``rho > 0.71``.
* ``poisson(lam)`` (support 0, 1, ...; ``P(N >= m) = P(m, lam)``, the regularised lower
  incomplete gamma; mean ``lam``): the tail decays like ``lam^m / m!``, faster than any
  ``rho^(2m)``, so the variance is *infinite for every* ``rho > 0``. The divergent part comes
  from very unlikely draws (``P(N >= 20) ~ 1e-13`` for ``lam = 2``), so it rarely shows, but
  when it does a single estimate is huge.
* ``pareto(alpha)`` (support 1, 2, ...; ``P(N >= m) = m^(-alpha)``, drawn as
  ``floor(U^(-1/alpha))``; mean ``zeta(alpha)``, finite for ``alpha > 1``): the polynomial tail
  makes the variance finite for *every* ``rho < 1`` at a small expected cost
  (``zeta(2) = 1.64`` extra terms for ``alpha = 2``). This is the package default. Its price is a
  heavy-tailed *cost*: ``P(N >= 100) = 1e-4`` for ``alpha = 2`` (harmless with the Neumann
  gradient, whose memory does not grow with ``N``).

``N`` is clipped at :data:`MAX_DRAW` (``2**20``; probability ``2**-40`` under the defaults) so
that a draw can never overflow; the dropped terms are below float precision for ``Lip < 0.9999``.

References:
  Kahn (1955), "Use of different Monte Carlo sampling techniques", Symposium on Monte Carlo Methods
    (Russian roulette).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (eq. 4, Lemma 3, Theorem 1).
"""
import math

import tensorflow as tf

from tfresflow.registry import Registry
from tfresflow.validation import check_choice, check_number

DISTRIBUTIONS = ("pareto", "geometric", "poisson")
DEFAULTS = {"geometric": {"p": 0.5}, "poisson": {"lam": 2.0}, "pareto": {"alpha": 2.0}}
#: Upper clip of a draw of N.
MAX_DRAW = 2 ** 20


def _uniform_open_closed(seed):
    """One ``U ~ Uniform(0, 1]`` in float64 (fine resolution for far tails)."""
    return 1.0 - tf.random.stateless_uniform([], seed, dtype=tf.float64)


def _clip_draw(n):
    return tf.cast(tf.minimum(n, float(MAX_DRAW)), tf.int32)


class RouletteDistribution:
    """Distribution of the number ``N`` of random series terms (see the module docstring)."""

    name = None

    def sample(self, seed):
        """One draw of ``N`` (int32 scalar) from a stateless seed."""
        raise NotImplementedError

    def tail(self, m):
        """``P(N >= m)`` (float64) for an integer tensor ``m``; 1 below the support."""
        raise NotImplementedError

    @property
    def mean(self):
        """``E[N]`` (the expected number of extra terms)."""
        raise NotImplementedError

    def has_finite_variance(self, rho):
        """Whether the roulette log-det estimate has finite variance when ``rho(J_g) = rho``."""
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError


class Geometric(RouletteDistribution):
    """``P(N = n) = p (1-p)^(n-1)``, ``n = 1, 2, ...``."""

    name = "geometric"

    def __init__(self, p=0.5):
        self.p = check_number(p, "p", 0.0, 1.0, low_open=True, high_open=True)

    def sample(self, seed):
        u = _uniform_open_closed(seed)
        return _clip_draw(tf.floor(tf.math.log(u) / math.log1p(-self.p)) + 1.0)

    def tail(self, m):
        m = tf.cast(m, tf.float64)
        return tf.pow(tf.constant(1.0 - self.p, tf.float64), tf.maximum(m - 1.0, 0.0))

    @property
    def mean(self):
        return 1.0 / self.p

    def has_finite_variance(self, rho):
        return rho ** 2 < 1.0 - self.p

    def get_config(self):
        return {"p": self.p}


class Poisson(RouletteDistribution):
    """``P(N = n) = exp(-lam) lam^n / n!``, ``n = 0, 1, ...``."""

    name = "poisson"

    def __init__(self, lam=2.0):
        self.lam = check_number(lam, "lam", 0.0, low_open=True)

    def sample(self, seed):
        # Inverse CDF by sequential search (``stateless_poisson`` has no XLA kernel).
        u = _uniform_open_closed(seed)
        p0 = tf.exp(tf.constant(-self.lam, tf.float64))
        cap = int(self.lam + 50.0 * math.sqrt(self.lam) + 100.0)

        def body(n, pmf, cdf):
            n = n + 1.0
            pmf = pmf * self.lam / n
            return n, pmf, cdf + pmf

        n, _, _ = tf.while_loop(lambda n, pmf, cdf: cdf < u, body,
                                (tf.constant(0.0, tf.float64), p0, p0), maximum_iterations=cap)
        return _clip_draw(n)

    def tail(self, m):
        m = tf.cast(m, tf.float64)
        safe = tf.maximum(m, 1.0)
        return tf.where(m <= 0.0, tf.ones_like(m),
                        tf.math.igamma(safe, tf.constant(self.lam, tf.float64)))

    @property
    def mean(self):
        return self.lam

    def has_finite_variance(self, rho):
        return rho == 0.0

    def get_config(self):
        return {"lam": self.lam}


class Pareto(RouletteDistribution):
    """Discrete Pareto: ``P(N >= m) = m^(-alpha)``, ``m = 1, 2, ...``."""

    name = "pareto"

    def __init__(self, alpha=2.0):
        # alpha > 1: a finite expected number of terms.
        self.alpha = check_number(alpha, "alpha", 1.0, low_open=True)

    def sample(self, seed):
        u = _uniform_open_closed(seed)
        return _clip_draw(tf.floor(tf.pow(u, -1.0 / self.alpha)))

    def tail(self, m):
        m = tf.maximum(tf.cast(m, tf.float64), 1.0)
        return tf.pow(m, -self.alpha)

    @property
    def mean(self):
        # zeta(alpha) = sum_{m>=1} m^-alpha; direct sum plus an integral tail correction.
        m = 10000
        head = math.fsum(k ** -self.alpha for k in range(1, m))
        return head + m ** (1.0 - self.alpha) / (self.alpha - 1.0) + 0.5 * m ** -self.alpha

    def has_finite_variance(self, rho):
        return rho < 1.0

    def get_config(self):
        return {"alpha": self.alpha}


#: Roulette distributions of ``N`` by name.
ROULETTE_DISTRIBUTIONS = Registry("roulette distribution")
for _cls in (Pareto, Geometric, Poisson):
    ROULETTE_DISTRIBUTIONS.register(_cls.name, _cls)


def make_distribution(distribution, **params):
    """A :class:`RouletteDistribution` from its name and its parameters (``None`` = default).

    Raises:
      ValueError: for an unknown name, or a parameter that belongs to another distribution.
    """
    check_choice(distribution, "distribution", DISTRIBUTIONS)
    given = {k: v for k, v in params.items() if v is not None}
    foreign = sorted(set(given) - set(DEFAULTS[distribution]))
    if foreign:
        raise ValueError(f"{foreign} do not apply to distribution={distribution!r} "
                         f"(its parameter: {sorted(DEFAULTS[distribution])}).")
    return ROULETTE_DISTRIBUTIONS[distribution](**{**DEFAULTS[distribution], **given})


def roulette_weight(dist, k, n_exact):
    """``w_k = 1 / P(N >= k - n_exact)`` for term ``k`` (1 for ``k <= n_exact``), float64."""
    return 1.0 / dist.tail(tf.cast(k, tf.float64) - float(n_exact))
