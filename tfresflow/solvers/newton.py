"""Elementwise inverse ``x = s^{-1}(z)`` of a strictly increasing map by safeguarded Newton.

For a strictly increasing, differentiable ``s`` of R onto R (the invertible activations of
relative-gradient flows, Gresele et al. 2020, App. H, eqs. 34-35) each element of ``z`` has a
unique root of ``s(x) = z``. Newton's iteration

    x_{k+1} = x_k - (s(x_k) - z) / s'(x_k)

converges quadratically near the root but can cycle or overshoot far from it (e.g. on the
non-convex ``tanh(alpha x) + beta x``). Safeguard: every element keeps a bracket ``[lo, hi]``
known to contain its root, shrunk with the sign of ``s(x_k) - z`` at each iterate, and a Newton
step that leaves the open bracket is replaced by the bracket midpoint (bisection), so the
iteration converges for any increasing ``s``. The reference code instead runs 100 unguarded
Newton steps from 0.

Gradient (implicit function theorem, elementwise): ``dx/dz = 1 / s'(x)``
(:func:`with_inverse_gradient`); the loop is never differentiated.

Non-convergence after ``max_iterations`` and a non-finite ``z`` are reported by the shared
policy of :mod:`tfresflow.solvers.policy` (``on_nonconvergence``): eager ``"raise"`` raises
:class:`~tfresflow.solvers.policy.NonConvergenceError` with the iterations and the largest
residual ``|s(x) - z|``; in a graph a ``tf.debugging.Assert``; under XLA (``jit_compile=True``),
where asserts are dropped, the non-converged elements are NaN. Non-finite elements of ``z`` are
passed through unchanged (``s^{-1}(+-inf) = +-inf`` for a map onto R; NaN stays NaN).

References:
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090 (Appendix H).
"""
import numpy as np
import tensorflow as tf

from tfresflow.solvers.policy import Outcome, finite_input, report_nonconvergence
from tfresflow.validation import check_number, check_positive_int, renamed_argument


def newton_inverse(fn, dfn, z, lo, hi, x0, xtol, max_iterations=None,
                   on_nonconvergence="raise", name="newton_inverse", max_iter=None):
    """Solves ``fn(x) = z`` elementwise for a strictly increasing ``fn``.

    Safeguarded Newton: the bracket ``[lo, hi]`` (which must contain the root) shrinks with
    the sign of ``fn(x) - z`` at every iterate, and a Newton step landing outside the open
    bracket is replaced by the bracket midpoint, so the iteration converges for any increasing
    ``fn`` (quadratically near the root). An element stops when its Newton step is at most
    ``xtol * (1 + |x|)``, its bracket is narrower than that, or its residual is at the
    floating-point noise floor ``2 eps (1 + |z|)``.

    Args:
      fn, dfn: the elementwise map and its (positive) derivative.
      z: targets (any shape).
      lo, hi: elementwise bounds with ``fn(lo) <= z <= fn(hi)``.
      x0: starting points inside ``[lo, hi]``.
      xtol: relative step tolerance in ``(0, 1)``.
      max_iterations: iteration cap (default 100). ``max_iter``: its deprecated old name.
      on_nonconvergence: ``"raise"`` (default), ``"warn"`` or ``"ignore"``, see
        :mod:`tfresflow.solvers.policy`.
      name: named in the messages.

    Returns:
      ``x`` with ``fn(x) ~= z`` (no gradient through the loop: see
      :func:`with_inverse_gradient`). Under XLA with ``"raise"``: NaN where not converged.

    Raises:
      NonConvergenceError: eager, ``"raise"``, if some element has not converged after
        ``max_iterations`` iterations (the message gives the largest residual
        ``|fn(x) - z|``), or ``z`` is not finite (before iterating).
      tf.errors.InvalidArgumentError: the same, at run time of a graph.
    """
    max_iterations = check_positive_int(
        renamed_argument("max_iterations", max_iterations, "max_iter", max_iter, 100),
        "max_iterations")
    xtol = check_number(xtol, "xtol", 0.0, 1.0, low_open=True, high_open=True)
    z = tf.stop_gradient(tf.convert_to_tensor(z))
    what = f"{name}: Newton inverse"
    z_safe, finite = finite_input(z, on_nonconvergence, what)
    # A non-finite element iterates on the bracket [0, 0]: done at once, output replaced below.
    lo, hi, x0 = (tf.where(finite, tf.convert_to_tensor(b, z.dtype), tf.zeros_like(z))
                  for b in (lo, hi, x0))
    x, iterations, done = _safeguarded_newton(fn, dfn, z_safe, lo, hi, x0, xtol,
                                              max_iterations)
    residual = tf.reduce_max(tf.where(finite, tf.abs(fn(x) - z_safe), tf.zeros_like(x)))
    x = tf.where(finite, x, z)
    return report_nonconvergence(x, Outcome(done, iterations, residual), on_nonconvergence,
                                 what, "max|s(x) - z|",
                                 "raise `max_iterations` (or loosen `xtol`).")


def _safeguarded_newton(fn, dfn, z, lo, hi, x0, xtol, max_iterations):
    """The loop of :func:`newton_inverse`: ``(x, iterations, done)`` (``done`` elementwise)."""
    dtype = z.dtype
    eps = np.finfo(dtype.as_numpy_dtype).eps
    noise = 2.0 * eps * (1.0 + tf.abs(z))

    def body(i, x, lo, hi, done):
        f = fn(x) - z
        lo = tf.where(f < 0, x, lo)
        hi = tf.where(f > 0, x, hi)
        step = f / dfn(x)
        x_newton = x - step
        scale = xtol * (1.0 + tf.abs(x))
        now_done = (tf.abs(step) <= scale) | (hi - lo <= scale) | (tf.abs(f) <= noise)
        # Far from the root a Newton step leaving the open bracket is replaced by bisection;
        # a converging element keeps its last (tiny) Newton update and freezes.
        outside = (x_newton <= lo) | (x_newton >= hi)
        x_next = tf.where(now_done, tf.clip_by_value(x_newton, lo, hi),
                          tf.where(outside, 0.5 * (lo + hi), x_newton))
        x = tf.where(done, x, x_next)
        return i + 1, x, lo, hi, done | now_done

    def cond(i, x, lo, hi, done):
        return (i < max_iterations) & ~tf.reduce_all(done)

    x0 = tf.clip_by_value(x0, lo, hi)
    done0 = tf.zeros_like(z, dtype=tf.bool)
    i, x, _, _, done = tf.while_loop(cond, body, (tf.constant(0), x0, lo, hi, done0))
    return x, i, done


def with_inverse_gradient(solve, dfn):
    """Wraps ``z -> x = s^{-1}(z)`` (a solver loop) with the implicit gradient ``1 / s'(x)``.

    ``s`` must have no trainable weights (the gradient is with respect to ``z`` only).
    """
    @tf.custom_gradient
    def inverse(z):
        x = solve(tf.stop_gradient(z))

        def grad(dx):
            return dx / dfn(x)
        return x, grad
    return inverse
