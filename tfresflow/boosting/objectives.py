"""Stage objectives of gradient boosted flows: the loss the new component ``g`` minimises.

Stage ``c`` trains ``g = g_c`` with the fixed mixture ``G`` of the other trained components
frozen. Each objective here is one small object whose ``loss_fn`` returns a function
``seed -> scalar loss`` (stateless, so a ``tf.function`` training step can fold the step number
into the seed). With no fixed component (the first stage) every objective is the plain flow
objective: maximum likelihood for the density objectives, reverse KL for matching.

* :class:`DensityBoosting` (the paper's): the functional gradient of ``-E_p[log G]`` at ``G`` is
  ``-p / G``, so ``g`` is fitted to the residual target ``p / G`` by weighted maximum likelihood
  (Rosset & Segal 2002; the reference code),

      minimise  - sum_n w_n log g(x_n),    w_n ∝ G(x_n)^(-1/lambda)   (self-normalised per batch).

  ``lambda = 1`` gives the boosting weights ``1/G``; a larger ``lambda`` flattens them towards
  plain maximum likelihood (more regularisation, as the entropy weight of eq. 11; the paper
  defines ``lambda`` only for the variational objective). ``max_weight`` optionally clips each
  normalised weight (the reference clips at 0.1) and renormalises.
* :class:`GreedyMixture` (greedy mixture learning, Li & Barron 1999): the likelihood of the
  next mixture with the new weight held at ``rho_0``,

      minimise  - mean_n log((1 - rho_0) G(x_n) + rho_0 g(x_n)),

  whose gradient weights each point by ``g``'s responsibility ``rho_0 g / M`` instead of
  ``1/G``, so the new component is not pulled towards sparse tail points; the two density
  objectives are compared in ``benchmarks/boosted.py``.
* :class:`ReverseKLMatching` (variational; eq. 11-12): with ``z`` reparameterised through
  ``g``'s flow,

      minimise  E_{z ~ g}[ log G(z) - log p~(z) + lambda log g(z) ],

  ``G`` evaluated at the new samples through *all* fixed components' inverses (an exact
  ``logsumexp``; the paper and the reference code use one randomly drawn fixed component). The
  optimum over all densities is ``g* ∝ (p~ / G)^(1/lambda)``. Without a floor the objective is
  unbounded below whenever ``G`` has lighter tails than ``p~`` (the new component runs away to
  where ``G`` vanishes), so ``max(log G, floor)`` (the reference uses -10) bounds the reward
  for leaving ``G``.

:func:`make_objective` maps the public string options of ``BoostedFlowTrainer``
(``objective="density"|"matching"``, ``density_objective="boosting"|"mixture"``) to these.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eqs. 11-12).
  Rosset & Segal (2002), "Boosting Density Estimation", NeurIPS.
  Li & Barron (1999), "Mixture Density Estimation", NeurIPS.
"""
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.validation import check_choice, check_number

OBJECTIVES = ("density", "matching")
DENSITY_OBJECTIVES = ("boosting", "mixture")

__all__ = ["DensityBoosting", "GreedyMixture", "ReverseKLMatching", "make_objective",
           "OBJECTIVES", "DENSITY_OBJECTIVES"]


def _check_regularization(regularization):
    return check_number(regularization, "regularization", 0.0, low_open=True)


class _DataObjective:
    """A density objective: mini-batches of data, ``log G`` at the data precomputed."""

    uses_data = True

    def loss_fn(self, component, batch_size, x, log_fixed=None, rho=None):
        """``seed -> loss`` of ``component`` on random mini-batches of ``x``.

        Args:
          component: the new component (a ``FlowModel``).
          batch_size: rows per mini-batch (drawn with replacement).
          x: the training data, a ``[n, *event]`` float32 tensor.
          log_fixed: ``log G(x_n)`` ``[n]``, or None on the first stage (plain likelihood).
          rho: the new component's weight ``rho_0`` held during training.
        """
        n_data = int(x.shape[0])

        def loss(seed):
            s_idx, s_model = tf.unstack(trf_random.split(seed, 2))
            idx = tf.random.stateless_uniform([batch_size], s_idx, 0, n_data, tf.int32)
            log_g = component.log_prob(tf.gather(x, idx), seed=s_model, training=True)
            if log_fixed is None:
                return -tf.reduce_mean(log_g)
            return self.boosted_loss(log_g, tf.gather(log_fixed, idx), rho)
        return loss

    def boosted_loss(self, log_g, log_fixed, rho):
        raise NotImplementedError


class DensityBoosting(_DataObjective):
    """Residual-weighted likelihood ``- sum_n w_n log g(x_n)``, ``w ∝ G^(-1/lambda)``.

    See the module docstring. ``regularization`` is ``lambda > 0``; ``max_weight`` an optional
    cap in (0, 1] on each normalised weight (then renormalised).
    """

    name = "boosting"

    def __init__(self, regularization=1.0, max_weight=None):
        self.regularization = _check_regularization(regularization)
        self.max_weight = None if max_weight is None else check_number(
            max_weight, "max_weight", 0.0, 1.0, low_open=True)

    def boosted_loss(self, log_g, log_fixed, rho=None):
        w = tf.nn.softmax(-log_fixed / self.regularization)
        if self.max_weight is not None:
            w = tf.minimum(w, self.max_weight)
            w = w / tf.reduce_sum(w)
        return -tf.reduce_sum(tf.stop_gradient(w) * log_g)


class GreedyMixture(_DataObjective):
    """Next-mixture likelihood ``- mean_n log((1 - rho_0) G(x_n) + rho_0 g(x_n))``.

    See the module docstring; ``rho_0`` (in [0, 1]) is passed to :meth:`loss_fn`.
    """

    name = "mixture"

    def boosted_loss(self, log_g, log_fixed, rho):
        rho = check_number(rho, "rho", 0.0, 1.0)
        with np.errstate(divide="ignore"):
            log_1m_rho, log_rho = np.log1p(-rho), np.log(rho)
        return -tf.reduce_mean(tf.reduce_logsumexp(tf.stack(
            [log_1m_rho + log_fixed, log_rho + log_g], -1), -1))


class ReverseKLMatching:
    """Boosted reverse KL ``E_g[max(log G, floor) - log p~ + lambda log g]`` (eq. 11-12).

    Args:
      target_log_prob: callable ``z [n, *event] -> log p~(z) [n]``, differentiable in ``z``.
      regularization: ``lambda > 0``, the weight of the entropy term.
      log_mixture_floor: floor on ``log G`` (``None``: no floor); see the module docstring.
    """

    name = "matching"
    uses_data = False

    def __init__(self, target_log_prob, regularization=1.0, log_mixture_floor=-10.0):
        if not callable(target_log_prob):
            raise ValueError("objective='matching' needs a callable `target_log_prob` "
                             "(unnormalised target log-density).")
        self.target_log_prob = target_log_prob
        self.regularization = _check_regularization(regularization)
        self.log_mixture_floor = None if log_mixture_floor is None else check_number(
            log_mixture_floor, "log_mixture_floor")

    def loss_fn(self, component, batch_size, fixed_mixture=None):
        """``seed -> loss`` from ``batch_size`` reparameterised samples of ``component``.

        ``fixed_mixture`` is the fixed ``BoostedFlow`` ``G`` (None on the first stage: plain
        reverse KL ``E_g[log g - log p~]``).
        """
        lam, floor = self.regularization, self.log_mixture_floor

        def loss(seed):
            s_g, s_big = tf.unstack(trf_random.split(seed, 2))
            z, log_g = component.sample_and_log_prob(batch_size, seed=s_g)
            log_p = self.target_log_prob(z)
            if fixed_mixture is None:
                return tf.reduce_mean(log_g - log_p)
            # log G at the new samples: through every fixed component's inverse.
            log_big = fixed_mixture.log_prob(z, seed=s_big)
            if floor is not None:
                log_big = tf.maximum(log_big, floor)
            return tf.reduce_mean(log_big - log_p + lam * log_g)
        return loss


def make_objective(objective="density", density_objective="boosting", target_log_prob=None,
                   regularization=1.0, max_weight=None, log_mixture_floor=-10.0):
    """The stage objective named by ``BoostedFlowTrainer``'s string options.

    ``objective="matching"`` gives :class:`ReverseKLMatching`; ``objective="density"`` gives
    :class:`DensityBoosting` (``density_objective="boosting"``) or :class:`GreedyMixture`
    (``"mixture"``, which uses neither ``regularization`` nor ``max_weight``; both are still
    checked so that a bad setting fails whichever objective is chosen).
    """
    check_choice(objective, "objective", OBJECTIVES)
    check_choice(density_objective, "density_objective", DENSITY_OBJECTIVES)
    boosting = DensityBoosting(regularization, max_weight)
    if objective == "matching":
        return ReverseKLMatching(target_log_prob, regularization, log_mixture_floor)
    return boosting if density_objective == "boosting" else GreedyMixture()
