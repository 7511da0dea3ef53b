"""The Residual Flows estimator: Russian roulette over the log-det power series (unbiased).

    log det(I + J_g) = E_{N, v}[ sum_{k=1}^{n_exact + N} (-1)^{k+1} c_k v^T J_g^k v / k ],
    c_k = 1 / P(N >= k - n_exact)   (c_k = 1 for k <= n_exact)

(Chen et al., 2019, "Residual Flows", Theorem 1, with ``n_exact`` terms always computed as in
their code). ``N`` is drawn in-graph from a stateless seed (one draw per call, shared by the
batch; the probes are per example), so the estimator works inside ``tf.function`` and XLA.

Training (``training=True``) computes ``n_exact_terms`` exact terms plus the roulette tail;
evaluation computes ``n_eval_exact_terms`` (default 20) exact terms plus the roulette tail, which
is still unbiased and has a much smaller variance (the paper's evaluation protocol, Section 5).

Default distribution. The paper's Geometric(0.5) has *infinite variance* once the spectral radius
of ``J_g`` exceeds ``sqrt(0.5) = 0.71`` (Lipschitz coefficients 0.9 to 0.98 are common), and the
Poisson tail of the reference image code has infinite variance for every non-zero ``J_g`` (see
:mod:`tfresflow.logdet.roulette`). The default is therefore ``distribution="pareto"`` with
``alpha = 2`` (``P(N >= m) = m^-2``): unbiased, finite variance for every ``Lip(g) < 1``, and
``2 + zeta(2) = 3.64`` expected terms in training (Geometric(0.5): 4).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Theorem 1; Section 5).
  Kahn (1955), "Use of different Monte Carlo sampling techniques", Symposium on Monte Carlo Methods
    (Russian roulette).
  Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics - Simulation and Computation.
"""
import warnings

from tfresflow.logdet.base import register_estimator
from tfresflow.logdet.roulette import make_distribution, roulette_weight
from tfresflow.logdet.series import PowerSeriesEstimator
from tfresflow.validation import check_number, check_positive_int


@register_estimator
class Unbiased(PowerSeriesEstimator):
    """Unbiased Russian-roulette log-det estimator (Residual Flows).

    Args:
      n_exact_terms: terms always computed in training (weight 1).
      distribution: law of the number ``N`` of extra terms: ``"pareto"`` (default, parameter
        ``alpha`` = 2), ``"geometric"`` (``p`` = 0.5) or ``"poisson"`` (``lam`` = 2); see
        :mod:`tfresflow.logdet.roulette` for their variance.
      p, lam, alpha: the distribution's parameter (only the one that applies may be given).
      n_probes, probe, neumann_grad, grad_in_forward: see
        :class:`~tfresflow.logdet.series.PowerSeriesEstimator`.
      n_eval_exact_terms: terms always computed in evaluation (``training=False``).
      lipschitz: optional upper bound on ``Lip(g)``; when given, a distribution whose estimate
        would have infinite variance at that Lipschitz constant triggers a warning.
    """

    is_unbiased = True

    def __init__(self, n_exact_terms=2, distribution="pareto", p=None, lam=None, alpha=None,
                 n_probes=1, probe="gaussian", neumann_grad=True, grad_in_forward=False,
                 n_eval_exact_terms=20, lipschitz=None):
        self.n_exact_terms = check_positive_int(n_exact_terms, "n_exact_terms", minimum=0)
        self.n_eval_exact_terms = check_positive_int(n_eval_exact_terms, "n_eval_exact_terms",
                                                     minimum=0)
        self.distribution = make_distribution(distribution, p=p, lam=lam, alpha=alpha)
        if lipschitz is not None:
            lipschitz = check_number(lipschitz, "lipschitz", 0.0, 1.0, low_open=True,
                                     high_open=True)
            if not self.distribution.has_finite_variance(lipschitz):
                warnings.warn(
                    f"Unbiased(distribution={distribution!r}, {self.distribution.get_config()}) "
                    f"has infinite variance when Lip(g) = {lipschitz} (geometric needs "
                    "Lip^2 < 1 - p; Poisson never has finite variance); consider "
                    "distribution='pareto'.", stacklevel=2)
        self.lipschitz = None if lipschitz is None else float(lipschitz)
        super().__init__(n_probes=n_probes, probe=probe, neumann_grad=neumann_grad,
                         grad_in_forward=grad_in_forward)

    def get_config(self):
        return dict(n_exact_terms=self.n_exact_terms, distribution=self.distribution.name,
                    **self.distribution.get_config(), **self._config(),
                    n_eval_exact_terms=self.n_eval_exact_terms, lipschitz=self.lipschitz)

    def expected_terms(self, training=True):
        """Expected number of vector-Jacobian products per call."""
        n_exact = self.n_exact_terms if training else self.n_eval_exact_terms
        return n_exact + self.distribution.mean

    def _plan(self, seed, training):
        n_exact = self.n_exact_terms if training else self.n_eval_exact_terms
        n_terms = n_exact + self.distribution.sample(seed)
        return n_terms, lambda k: roulette_weight(self.distribution, k, n_exact)
