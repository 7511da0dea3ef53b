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
"""
import sys
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

ON_NONCONVERGENCE = ("raise", "warn", "ignore")


class FixedPointError(RuntimeError):
    """The fixed-point iteration did not reach its tolerance."""


class FixedPointResult(NamedTuple):
    """Outcome of :func:`solve_fixed_point`."""

    x: tf.Tensor               #: the last iterate
    iterations: tf.Tensor      #: number of evaluations of the map
    residual: tf.Tensor        #: ``max |x_k - x_{k-1}|`` of the last step (sup-norm residual)
    error_estimate: tf.Tensor  #: ``max`` estimated distance to the solution (may be inf)
    converged: tf.Tensor       #: bool


def check_solver_options(atol, rtol, max_iterations, on_nonconvergence):
    """Validates the solver options, raising ValueError naming the bad one."""
    if not atol >= 0.0 or not rtol >= 0.0 or atol + rtol <= 0.0:
        raise ValueError(f"`inverse_atol` and `inverse_rtol` must be >= 0 and not both 0, got "
                         f"{atol!r} and {rtol!r}.")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) \
            or max_iterations < 1:
        raise ValueError(f"`max_iterations` must be a positive integer, got {max_iterations!r}.")
    if on_nonconvergence not in ON_NONCONVERGENCE:
        raise ValueError(f"`on_nonconvergence` must be one of {list(ON_NONCONVERGENCE)}, got "
                         f"{on_nonconvergence!r}.")


def example_scale(z):
    """``max |z|`` over each example's event, broadcastable to ``z`` (``[batch, 1, ...]``)."""
    return tf.reduce_max(tf.abs(z), axis=list(range(1, z.shape.rank)), keepdims=True)


def solve_fixed_point(step, x0, scale, atol=1e-6, rtol=1e-5, max_iterations=1000):
    """Iterates ``x <- step(x)`` from ``x0`` until the estimated error is within tolerance.

    Args:
      step: the contraction (e.g. ``x -> z - g(x)``).
      x0: starting point.
      scale: non-negative tensor broadcastable to ``x0`` for the relative tolerance
        (``max|z|`` per example, :func:`example_scale`).
      atol, rtol: elementwise tolerance ``atol + rtol * scale`` on the estimated error.
      max_iterations: cap on the number of ``step`` evaluations.

    Returns:
      A :class:`FixedPointResult` (no gradient flows through the iteration).
    """
    x0 = tf.stop_gradient(x0)
    dtype = x0.dtype
    scale = tf.stop_gradient(scale)
    tol = atol + rtol * scale
    inf = tf.constant(np.inf, dtype)

    def body(i, x, last_step, rate, err, done):
        x_new = tf.stop_gradient(step(x))
        dx = tf.abs(x_new - x)
        step_max = tf.reduce_max(dx)
        ratio = tf.math.divide_no_nan(step_max, last_step)
        r_hat = tf.where(i > 0, tf.maximum(ratio, rate), inf)   # last two ratios
        # Contracting: error <= r/(1-r) * step. Not contracting (first step, or steps at
        # float-noise level): fall back to the residual itself.
        factor = tf.where(r_hat < 1.0, r_hat / (1.0 - r_hat), tf.ones_like(r_hat))
        elem_err = dx * factor
        return (i + 1, x_new, step_max, ratio, tf.reduce_max(elem_err),
                tf.reduce_all(elem_err <= tol))

    state = (tf.constant(0, tf.int32), x0, inf, tf.constant(0.0, dtype), inf,
             tf.constant(False))
    i, x, last_step, _, err, done = tf.while_loop(
        lambda i, x, s, r, e, done: tf.logical_not(done), body, state,
        maximum_iterations=max_iterations)
    return FixedPointResult(x=x, iterations=i, residual=last_step, error_estimate=err,
                            converged=done)


def report_nonconvergence(result, on_nonconvergence, what="fixed-point inverse"):
    """Raises / warns / ignores a non-converged :class:`FixedPointResult`.

    Eager: raises :class:`FixedPointError` or warns with the residual reached. Graph mode:
    ``"raise"`` adds a ``tf.debugging.Assert`` (an ``InvalidArgumentError`` at run time) and
    ``"warn"`` prints to stderr. Returns a list of control dependencies (graph mode).
    """
    if on_nonconvergence == "ignore":
        return []
    message = (f"{what} did not converge: after {{}} iterations the residual "
               f"max|x + g(x) - z| is {{}} (estimated error {{}}); the residual branch may "
               "not be a contraction (Lip(g) >= 1) or `max_iterations` is too small.")
    if tf.executing_eagerly():
        if not bool(result.converged):
            text = message.format(int(result.iterations), float(result.residual),
                                  float(result.error_estimate))
            if on_nonconvergence == "raise":
                raise FixedPointError(text)
            warnings.warn(text, RuntimeWarning, stacklevel=3)
        return []
    head = f"{what} did not converge (iterations, residual max|x + g(x) - z|, estimated error):"
    if on_nonconvergence == "raise":
        return [tf.debugging.Assert(result.converged, [head, result.iterations, result.residual,
                                                       result.error_estimate])]

    def warn():
        tf.print("WARNING:", head, result.iterations, result.residual, result.error_estimate,
                 output_stream=sys.stderr)
        return tf.constant(True)

    return [tf.cond(result.converged, lambda: tf.constant(True), warn)]


def _implicit_gradient(g, x_star, atol, rtol, max_iterations, on_nonconvergence):
    """Identity whose gradient maps ``u`` to ``(I + J_g(x_star))^{-T} u``."""

    @tf.custom_gradient
    def identity(y):
        def grad_fn(upstream):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x_star)
                gx = g(x_star)

            def adjoint_step(a):
                return upstream - tape.gradient(gx, x_star, output_gradients=a,
                                                unconnected_gradients=tf.UnconnectedGradients.ZERO)

            result = solve_fixed_point(adjoint_step, upstream, example_scale(upstream),
                                       atol=atol, rtol=rtol, max_iterations=max_iterations)
            deps = report_nonconvergence(result, on_nonconvergence,
                                         what="adjoint fixed-point (gradient of the inverse)")
            with tf.control_dependencies(deps):
                return tf.identity(result.x)

        return tf.identity(y), grad_fn

    return identity


def fixed_point_inverse(g, z, atol=1e-6, rtol=1e-5, max_iterations=1000,
                        on_nonconvergence="raise"):
    """Solves ``x + g(x) = z`` for ``x``; differentiable (implicit function theorem).

    Args:
      g: the contractive residual function.
      z: the right-hand side ``[batch, *event]``.
      atol, rtol, max_iterations: see :func:`solve_fixed_point`.
      on_nonconvergence: ``"raise"`` (default), ``"warn"`` or ``"ignore"``, see
        :func:`report_nonconvergence`.
    """
    check_solver_options(atol, rtol, max_iterations, on_nonconvergence)
    z_const = tf.stop_gradient(z)
    result = solve_fixed_point(lambda x: z_const - g(x), z_const, example_scale(z_const),
                               atol=atol, rtol=rtol, max_iterations=max_iterations)
    deps = report_nonconvergence(result, on_nonconvergence)
    with tf.control_dependencies(deps):
        x_star = tf.identity(result.x)
    hook = _implicit_gradient(g, x_star, atol, rtol, max_iterations, on_nonconvergence)
    return hook(z - g(x_star))
