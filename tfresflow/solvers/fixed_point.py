"""Inverse of a residual map ``F(x) = x + g(x)`` (``Lip(g) < 1``) by fixed-point iteration.

Behrmann et al. (2019, "Invertible Residual Networks", Algorithm 1 and Theorem 1): the map
``x -> z - g(x)`` is a contraction, so for any ``z``

    x_0 = z,    x_{k+1} = z - g(x_k)

converges to the unique ``x*`` with ``x* + g(x*) = z`` (Banach fixed-point theorem), linearly
with rate ``Lip(g)``.

Stopping rule. The step ``x_{k+1} - x_k = z - x_k - g(x_k)`` is the residual of ``x_k``, and for a
contraction with rate ``r`` the distance to the solution is at most ``r / (1 - r)`` times the last
step. The iteration stops when, for every element,

    |x_{k+1} - x_k| * r_hat / (1 - r_hat) <= atol + rtol * max|z|      (estimated error)

with ``r_hat`` the observed contraction rate (the larger of the last two ratios of successive
largest steps), after at most ``max_iterations`` iterations. When the steps stop shrinking
(``r_hat >= 1``: the first step, or steps at the float-noise floor of ``g``) the residual
``|x_{k+1} - x_k|`` itself is compared with the tolerance; at the noise floor the error of ``x``
is about ``(rounding error of g) / (1 - Lip)``, the best the iteration can reach.
``max|z|`` is taken over each example (rounding errors of ``g`` scale with the whole vector, and
the iteration amplifies them by ``1 / (1 - Lip)``, so a per-element relative tolerance would be
unreachable in float32 for small elements). ``atol``/``rtol`` are thus tolerances on the error
of ``x``, not on the step (the reference code compares the *squared* step with the tolerance,
which is much looser, see the reference notes).

Gradients. :func:`fixed_point_inverse` is differentiable by the implicit function theorem:
with ``x* = F^{-1}(z)``, ``dx* = (I + J_g(x*))^{-1} (dz - dg_theta)``. The returned tensor is
``z - g(x*)`` (one more iteration, ``x*`` held constant) passed through an identity whose
gradient maps the upstream ``u`` to ``a = (I + J_g(x*))^{-T} u``, itself found by the fixed-point
iteration ``a <- u - J_g(x*)^T a``; backpropagating ``a`` through ``z - g(x*)`` then gives
``dL/dz = a`` and ``dL/dtheta = -(dg/dtheta)^T a``. No iteration is ever unrolled.

Non-convergence (``Lip(g) >= 1``, too small ``max_iterations``) and a non-finite ``z`` are
reported by the shared policy of :mod:`tfresflow.solvers.policy` (``on_nonconvergence``):
eager ``"raise"`` raises :class:`FixedPointError` (the one solver error class,
``NonConvergenceError``) with the iterations and the residual reached, before iterating for a
non-finite ``z``; in a graph a ``tf.debugging.Assert``. Under XLA (``jit_compile=True``), where
asserts are dropped, ``"raise"`` returns NaN for every example whose iteration did not
converge (and the adjoint iteration of the gradient likewise gives NaN gradients), so a
non-contractive ``g`` never yields a silently wrong finite answer; a non-finite example of
``z`` gives a non-finite output.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (Algorithm 1, Theorem 1).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
"""
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfresflow.solvers.policy import (ON_NONCONVERGENCE, NonConvergenceError,  # noqa: F401
                                      Outcome, check_on_nonconvergence, finite_input,
                                      report_nonconvergence)
from tfresflow.validation import check_number, check_positive_int

#: The error of a non-converged fixed-point inverse: the one solver error class.
FixedPointError = NonConvergenceError

_HINT = ("the residual branch may not be a contraction (Lip(g) >= 1) or `max_iterations` is "
         "too small.")
#: The hint when the iteration stopped because the map returned NaN or inf for a finite input.
_NON_FINITE_HINT = ("g(x) returned NaN or inf although z is finite, so the iteration stopped: "
                    "the residual branch's weights or activations are not finite (e.g. after a "
                    "diverged fit); it is not a question of Lip(g) or `max_iterations`.")
#: The hint when later iterates overflowed: the iteration diverged.
_OVERFLOW_HINT = ("the iterates grew until they overflowed to NaN or inf, so the iteration "
                  "stopped: the residual branch is not a contraction (Lip(g) >= 1).")


class FixedPointResult(NamedTuple):
    """Outcome of :func:`solve_fixed_point`."""

    x: tf.Tensor               #: the last iterate
    iterations: tf.Tensor      #: number of evaluations of the map
    residual: tf.Tensor        #: ``max |x_k - x_{k-1}|`` of the last step (sup-norm residual)
    error_estimate: tf.Tensor  #: ``max`` estimated distance to the solution (may be inf)
    converged: tf.Tensor       #: bool: every element within tolerance
    converged_elements: tf.Tensor  #: bool, shape of ``x``: elements within tolerance
    finite: tf.Tensor = True   #: bool: every value of the map was finite (else stopped there)


def check_solver_options(atol, rtol, max_iterations, on_nonconvergence):
    """The validated options ``(atol, rtol, max_iterations, on_nonconvergence)`` (floats, int);
    a ValueError naming the bad one otherwise."""
    atol = check_number(atol, "inverse_atol", low=0.0)
    rtol = check_number(rtol, "inverse_rtol", low=0.0)
    if atol + rtol <= 0.0:
        raise ValueError(f"`inverse_atol` and `inverse_rtol` must not both be 0, got "
                         f"{atol!r} and {rtol!r}.")
    return (atol, rtol, check_positive_int(max_iterations, "max_iterations"),
            check_on_nonconvergence(on_nonconvergence))


def event_axes(z):
    """The event axes ``1 .. rank - 1`` of a ``[batch, *event]`` tensor."""
    return list(range(1, z.shape.rank))


def example_scale(z):
    """``max |z|`` over each example's event, broadcastable to ``z`` (``[batch, 1, ...]``)."""
    return tf.reduce_max(tf.abs(z), axis=event_axes(z), keepdims=True)


def solve_fixed_point(step, x0, scale, atol=1e-6, rtol=1e-5, max_iterations=1000):
    """Iterates ``x <- step(x)`` from ``x0`` until the estimated error is within tolerance.

    Args:
      step: the contraction (e.g. ``x -> z - g(x)``).
      x0: starting point.
      scale: non-negative tensor broadcastable to ``x0`` for the relative tolerance
        (``max|z|`` per example, :func:`example_scale`).
      atol, rtol: elementwise tolerance ``atol + rtol * scale`` on the estimated error.
      max_iterations: cap on the number of ``step`` evaluations.

    The iteration also stops at the first step whose values are not all finite (``step``
    returned NaN or inf): no later iterate can converge. ``finite`` of the result then is
    false.

    Returns:
      A :class:`FixedPointResult` (no gradient flows through the iteration).
    """
    x0 = tf.stop_gradient(x0)
    dtype = x0.dtype
    scale = tf.stop_gradient(scale)
    tol = atol + rtol * scale
    inf = tf.constant(np.inf, dtype)

    def body(i, x, last_step, rate, err, ok):
        x_new = tf.stop_gradient(step(x))
        dx = tf.abs(x_new - x)
        step_max = tf.reduce_max(dx)
        ratio = tf.math.divide_no_nan(step_max, last_step)
        r_hat = tf.where(i > 0, tf.maximum(ratio, rate), inf)   # last two ratios
        # Contracting: error <= r/(1-r) * step. Not contracting (first step, or steps at
        # float-noise level): fall back to the residual itself.
        factor = tf.where(r_hat < 1.0, r_hat / (1.0 - r_hat), tf.ones_like(r_hat))
        elem_err = dx * factor
        return i + 1, x_new, step_max, ratio, tf.reduce_max(elem_err), elem_err <= tol

    def cond(i, x, last_step, rate, err, ok):
        # Before the first step last_step is +inf; afterwards NaN or inf means a non-finite map.
        finite = (i == 0) | tf.math.is_finite(last_step)
        return tf.logical_not(tf.reduce_all(ok)) & finite

    state = (tf.constant(0, tf.int32), x0, inf, tf.constant(0.0, dtype), inf,
             tf.zeros_like(x0, dtype=tf.bool))
    i, x, last_step, _, err, ok = tf.while_loop(cond, body, state,
                                                maximum_iterations=max_iterations)
    return FixedPointResult(x=x, iterations=i, residual=last_step, error_estimate=err,
                            converged=tf.reduce_all(ok), converged_elements=ok,
                            finite=(i == 0) | tf.math.is_finite(last_step))


def _report(y, result, on_nonconvergence, what, residual_name):
    """``y`` guarded by the shared policy; under XLA whole examples are poisoned."""
    converged = result.converged_elements
    if converged.shape.rank > 1:
        converged = tf.reduce_all(converged, axis=event_axes(converged), keepdims=True)
    outcome = Outcome(converged, result.iterations, result.residual,
                      (("estimated error", result.error_estimate),))
    hint = _HINT
    if tf.executing_eagerly() and not bool(result.finite):
        hint = _NON_FINITE_HINT if int(result.iterations) == 1 else _OVERFLOW_HINT
    return report_nonconvergence(y, outcome, on_nonconvergence, what, residual_name, hint)


def _implicit_gradient(g, x_star, atol, rtol, max_iterations, on_nonconvergence):
    """Identity whose gradient maps ``u`` to ``(I + J_g(x_star))^{-T} u``."""

    @tf.custom_gradient
    def identity(y):
        def grad_fn(upstream):
            what = "adjoint fixed-point (gradient of the inverse)"
            given = upstream
            upstream, finite = finite_input(given, on_nonconvergence, what,
                                            axis=event_axes(given))
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x_star)
                gx = g(x_star)

            def adjoint_step(a):
                return upstream - tape.gradient(gx, x_star, output_gradients=a,
                                                unconnected_gradients=tf.UnconnectedGradients.ZERO)

            result = solve_fixed_point(adjoint_step, upstream, example_scale(upstream),
                                       atol=atol, rtol=rtol, max_iterations=max_iterations)
            adjoint = tf.where(finite, result.x, given)   # non-finite upstream passes through
            return _report(adjoint, result, on_nonconvergence, what, "max|a + J_g(x)^T a - u|")

        return tf.identity(y), grad_fn

    return identity


def fixed_point_inverse(g, z, atol=1e-6, rtol=1e-5, max_iterations=1000,
                        on_nonconvergence="raise"):
    """Solves ``x + g(x) = z`` for ``x``; differentiable (implicit function theorem).

    Args:
      g: the contractive residual function (acting on each example separately).
      z: the right-hand side ``[batch, *event]``.
      atol, rtol, max_iterations: see :func:`solve_fixed_point`.
      on_nonconvergence: ``"raise"`` (default), ``"warn"`` or ``"ignore"``: see
        :mod:`tfresflow.solvers.policy`. Eager ``"raise"``: :class:`FixedPointError` with the
        iterations and residual reached; graph: ``InvalidArgumentError`` at run time; XLA
        (``jit_compile=True``): NaN in the non-converged examples of the result.

    Returns:
      ``x`` with ``x + g(x) = z`` to tolerance; the examples of ``z`` holding NaN or inf
      (reported as "non-finite input") give non-finite rows.
    """
    atol, rtol, max_iterations, on_nonconvergence = check_solver_options(
        atol, rtol, max_iterations, on_nonconvergence)
    z_safe, _ = finite_input(tf.stop_gradient(z), on_nonconvergence, "fixed-point inverse",
                             axis=event_axes(z))
    result = solve_fixed_point(lambda x: z_safe - g(x), z_safe, example_scale(z_safe),
                               atol=atol, rtol=rtol, max_iterations=max_iterations)
    x_star = result.x
    hook = _implicit_gradient(g, x_star, atol, rtol, max_iterations, on_nonconvergence)
    return _report(hook(z - g(x_star)), result, on_nonconvergence, "fixed-point inverse",
                   "max|x + g(x) - z|")
