"""The i-ResNet estimator: a fixed truncation of the log-det power series (biased).

    log det(I + J_g) ~ sum_{k=1}^{n} (-1)^{k+1} v^T J_g^k v / k,    v a Hutchinson probe

(Behrmann et al., 2019, "Invertible Residual Networks", eq. 4). The value is a biased
estimate: its mean is the truncated series, whose error is bounded by
:func:`tfresflow.logdet.bounds.truncation_error_bound` (appendix Theorem 3). With the Neumann
gradient (default) the gradient's mean is the exact gradient of the truncated series,
``sum_{k=0}^{n-1} (-1)^k tr(J^k dJ)``; ``neumann_grad=False`` backpropagates through the ``n``
terms as the i-ResNet code does (same mean, memory growing with ``n``).

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (eq. 4; appendix Theorem 3).
  Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics - Simulation and Computation.
"""
import tensorflow as tf

from tfresflow.logdet.base import register_estimator
from tfresflow.logdet.series import PowerSeriesEstimator
from tfresflow.validation import check_positive_int


@register_estimator
class Truncated(PowerSeriesEstimator):
    """Biased ``n_terms``-term power series with Hutchinson probes (i-ResNet).

    Args:
      n_terms: number of series terms (vector-Jacobian products) ``n``, used in training and
        evaluation.
      n_probes, probe, neumann_grad, grad_in_forward: see
        :class:`~tfresflow.logdet.series.PowerSeriesEstimator`.
    """

    is_unbiased = False

    def __init__(self, n_terms, n_probes=1, probe="gaussian", neumann_grad=True,
                 grad_in_forward=False):
        self.n_terms = check_positive_int(n_terms, "n_terms")
        self.static_terms = self.n_terms
        super().__init__(n_probes=n_probes, probe=probe, neumann_grad=neumann_grad,
                         grad_in_forward=grad_in_forward)

    def get_config(self):
        return dict(n_terms=self.n_terms, **self._config())

    def _plan(self, seed, training):
        return tf.constant(self.n_terms, tf.int32), lambda k: tf.constant(1.0, tf.float64)
