"""Power-series log-determinant estimators with Hutchinson probes and three gradient modes.

The series (Behrmann et al., 2019, eq. 3) with a Hutchinson probe ``v`` and term weights ``c_k``:

    log det(I + J) ~ sum_{k=1}^{n} (-1)^{k+1} c_k / k * v^T J^k v,     J = J_g(x),

computed by a chain of ``n`` vector-Jacobian products ``w_k = (J^T)^k v`` in a ``tf.while_loop``
(so ``n`` may be drawn in-graph), with ``g(x)`` evaluated once under a persistent inner tape.
Subclasses choose ``n`` and ``c_k``: :class:`~tfresflow.logdet.Truncated` (fixed ``n``,
``c_k = 1``; biased) and :class:`~tfresflow.logdet.Unbiased` (Russian roulette; unbiased).

Gradient modes (``neumann_grad``, ``grad_in_forward``):

* **backprop** (``neumann_grad=False``): differentiate through all ``n`` terms (Chen et al.,
  2019, eq. 6). Memory grows linearly with ``n``.
* **Neumann** (default): ``d log det(I+J) = tr((I+J)^{-1} dJ) = sum_{k>=0} (-1)^k tr(J^k dJ)``
  (Chen et al., 2019, Theorem 2 and Appendix C). With the same ``n``, ``c_k`` and ``v``,

      u = sum_{k=1}^{n} (-1)^{k-1} c_k w_{k-1}        (not differentiated)
      s = u^T J v                                     (one recorded VJP, second-order autodiff)

  and ``log_det = stop_gradient(estimate) + s - stop_gradient(s)``: the value is the estimate,
  the gradient is ``d s``. Since ``E_v[d s] = sum_k (-1)^{k-1} c_k tr(J^{k-1} dJ)`` is exactly
  ``d E_v[estimate]`` for every ``n`` and ``c_k``, the Neumann gradient has the same mean as
  the backprop gradient (unbiased for the Russian roulette, the gradient of the truncated series
  for ``Truncated``), at a memory cost that does not depend on ``n``.
* **backward-in-forward** (``grad_in_forward=True``, training only): the Neumann gradient is
  computed during the forward pass and its graph released (Chen et al., 2019, Section 3.2),
  see :mod:`tfresflow.logdet.backward_in_forward`.

The chain runs inside a ``tf.function`` (one trace per network, shape and mode), so eager callers
also get the memory behaviour of graph mode: with the Neumann gradient the chain's
intermediates are never kept for backprop. ``benchmarks/logdet_memory.py`` measures the memory
and time of the three modes against ``n`` (snapshots in ``docs/results/logdet_memory*.json``).

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (eq. 3).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (eq. 6, Theorem 2, Section 3.2, Appendix C).
  Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics - Simulation and Computation.
"""
import contextlib
import functools

import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow._compat import in_xla_context
from tfresflow.logdet.backward_in_forward import backward_in_forward
from tfresflow.logdet.base import LogDetEstimator, event_axes
from tfresflow.logdet.probes import PROBES, hutchinson_probes
from tfresflow.validation import check_choice, check_positive_int


def series_chain(vjp, v, n_terms, weight, neumann, max_terms=None):
    """Runs the VJP chain ``w_k = J^T w_{k-1}``, ``w_0 = v`` for ``k = 1..n_terms``.

    Args:
      vjp: ``w -> J^T w`` for probe tensors of shape ``[n_probes, batch, *event]``.
      v: the probes ``[n_probes, batch, *event]``.
      n_terms: int32 scalar tensor ``n``.
      weight: ``k -> c_k`` (int32 scalar tensor to a float scalar tensor).
      neumann: also accumulate the Neumann vector ``u``.
      max_terms: optional static bound on ``n_terms`` (lets XLA differentiate the loop).

    Returns:
      ``(estimate, u)``: the per-example series estimate ``[batch]`` (mean over probes) and
      ``u`` (``None`` unless ``neumann``).
    """
    axes = list(range(2, v.shape.rank))
    dtype = v.dtype

    def body(k, w, est, *acc):
        kf = tf.cast(k, dtype)
        c = tf.cast(weight(k), dtype)
        sign = tf.where(tf.equal(k % 2, 1), tf.constant(1.0, dtype), tf.constant(-1.0, dtype))
        if neumann:
            acc = (acc[0] + (sign * c) * w,)          # (-1)^(k-1) c_k w_{k-1}
        w = vjp(w)                                    # w_k = (J^T)^k v
        term = tf.reduce_mean(tf.reduce_sum(w * v, axis=axes), axis=0)
        return (k + 1, w, est + (sign * c / kf) * term) + tuple(acc)

    est0 = tf.zeros(tf.shape(v)[1:2], dtype)
    state = (tf.constant(1, tf.int32), v, est0) + ((tf.zeros_like(v),) if neumann else ())
    out = tf.while_loop(lambda k, *_: k <= n_terms, body, state, maximum_iterations=max_terms)
    return out[2], (out[3] if neumann else None)


class PowerSeriesEstimator(LogDetEstimator):
    """Base of the Hutchinson power-series estimators (see the module docstring).

    Subclasses implement ``_plan(seed, training) -> (n_terms, weight)`` and may set
    ``static_terms`` (a Python bound on the number of terms, needed to backpropagate through
    the loop under XLA).

    Args:
      n_probes: number of Hutchinson probes per example (estimates are averaged).
      probe: ``"gaussian"`` or ``"rademacher"``.
      neumann_grad: use the Neumann-series gradient (memory constant in the number of terms)
        instead of backpropagating through every term.
      grad_in_forward: in training, compute the (Neumann) log-det gradient in the forward pass
        and release its graph; requires ``neumann_grad=True``.
    """

    is_exact = False
    static_terms = None

    def __init__(self, n_probes=1, probe="gaussian", neumann_grad=True, grad_in_forward=False):
        self.n_probes = check_positive_int(n_probes, "n_probes")
        self.probe = check_choice(probe, "probe", PROBES)
        if not isinstance(neumann_grad, bool) or not isinstance(grad_in_forward, bool):
            raise TypeError("`neumann_grad` and `grad_in_forward` must be bools, got "
                            f"{neumann_grad!r} and {grad_in_forward!r}.")
        if grad_in_forward and not neumann_grad:
            raise ValueError("`grad_in_forward=True` computes the Neumann-series gradient in the "
                             "forward pass and needs `neumann_grad=True`.")
        self.neumann_grad = neumann_grad
        self.grad_in_forward = grad_in_forward
        self._compiled = tf.function(self._run, reduce_retracing=True, autograph=False)

    def _config(self):
        return dict(n_probes=self.n_probes, probe=self.probe, neumann_grad=self.neumann_grad,
                    grad_in_forward=self.grad_in_forward)

    @property
    def gradient_mode(self):
        """``"backprop"``, ``"neumann"`` or ``"backward_in_forward"`` (training mode)."""
        if self.grad_in_forward:
            return "backward_in_forward"
        return "neumann" if self.neumann_grad else "backprop"

    def _plan(self, seed, training):
        raise NotImplementedError

    def _estimate(self, g, x, training, seed):
        return self._compiled(g, x, seed, training)

    def _run(self, g, x, seed, training):
        if training and not self.neumann_grad and self.static_terms is None \
                and in_xla_context():
            raise ValueError(
                "neumann_grad=False backpropagates through a while loop with a random number of "
                "terms, which XLA cannot compile (it needs a static bound); use the Neumann "
                "gradient (neumann_grad=True) or compile with jit_compile=False.")
        if training and self.grad_in_forward:
            surrogate = functools.partial(self.series_pass, g, training=training, neumann=True)
            return backward_in_forward(g, surrogate, x, seed)
        gx, est, s = self.series_pass(g, x, seed, training=training, neumann=self.neumann_grad)
        if s is None:
            return gx, est
        return gx, est + (s - tf.stop_gradient(s))

    def series_pass(self, g, x, seed, training, neumann, outer_tape=None):
        """One evaluation: ``(g(x), estimate, surrogate)``.

        With ``neumann=True`` the estimate carries no gradient and ``surrogate`` is the
        per-example Neumann surrogate ``s = u^T J v`` whose gradient is the log-det gradient;
        otherwise the estimate is differentiable through all terms and ``surrogate`` is None.
        The same ``seed`` always gives the same number of terms and probes. ``outer_tape``
        (a tape recording this pass) is paused during the Neumann chain, so that it never
        holds (or, under XLA, tries to differentiate) the loop.
        """
        seed_n, seed_v = tf.unstack(trf_random.split(seed, 2))
        n_terms, weight = self._plan(seed_n, training)
        shape = tf.concat([[self.n_probes], tf.shape(x)], axis=0)
        with tf.control_dependencies([x]):   # drawn when this block runs, not at graph start
            v = hutchinson_probes(shape, seed_v, self.probe, x.dtype)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            gx = g(x)

        def vjp(w):
            return tf.stack([
                tape.gradient(gx, x, output_gradients=w[i],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
                for i in range(self.n_probes)])

        pause = outer_tape.stop_recording() if neumann and outer_tape is not None \
            else contextlib.nullcontext()
        with pause:
            est, u = series_chain(vjp, v, n_terms, weight, neumann, self.static_terms)
        if not neumann:
            return gx, est, None
        ju = vjp(tf.stop_gradient(u))                 # recorded: J^T u, differentiable
        s = tf.reduce_mean(tf.reduce_sum(ju * v, axis=[a + 1 for a in event_axes(x)]), axis=0)
        return gx, tf.stop_gradient(est), s
