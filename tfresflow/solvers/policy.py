"""One non-convergence policy for every numerical inverse of the package.

An iterative inverse (the fixed-point inverse of a residual block, Behrmann et al. 2019,
Algorithm 1; the safeguarded Newton inverse of an elementwise activation, Gresele et al. 2020,
App. H) either reaches its tolerance or stops at its iteration cap. ``on_nonconvergence`` says
what happens in the second case, the same way for every solver:

=========  ==================================  ==========================  ======================
policy     eager                               graph (``tf.function``)     XLA (``jit_compile``)
=========  ==================================  ==========================  ======================
"raise"    :class:`NonConvergenceError` with   ``tf.debugging.Assert``:    the non-converged
           the iterations and the residual     ``InvalidArgumentError``    examples' outputs are
           reached                             at run time, same numbers   NaN (see below)
"warn"     ``RuntimeWarning``, same message    ``tf.print`` to stderr      a ``RuntimeWarning``
                                                                           when tracing; results
                                                                           returned unchanged
"ignore"   the last iterate                    the last iterate            the last iterate
=========  ==================================  ==========================  ======================

Under XLA (TensorFlow 2.21 on XLA:CPU; ``tests/solvers/test_policy.py::test_what_xla_keeps``
checks this premise) ``tf.debugging.Assert`` and ``tf.debugging.assert_*`` are silently dropped,
``tf.debugging.check_numerics`` /
``assert_all_finite`` do not raise either (they pass NaN through), and ``tf.print`` (``PrintV2``,
``StringFormat``) is not compilable at all: the function fails to compile. The only run-time
signal XLA keeps is the value itself, so ``"raise"`` replaces the solution of every example (or
element) that did not converge by NaN; check ``tf.math.is_finite`` on the result outside the
compiled function to turn that into an error. ``"warn"`` cannot print at run time under XLA, so
it warns once while tracing that non-convergence will not be reported.

Non-finite input. A NaN or inf in the right-hand side is not a convergence failure of the
solver: it is reported separately ("non-finite input", eager as :class:`NonFiniteInputError`,
a ``ValueError``; same policy: eager before iterating,
graph by an ``Assert`` that runs before the iteration). The solver iterates on zeros in place of
the non-finite examples (so they cost no iterations and do not block convergence of the others)
and their non-finite values pass through to the output, under XLA too.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (Algorithm 1).
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090 (Appendix H).
"""
import contextlib
import sys
import warnings
from typing import NamedTuple, Tuple

import numpy as np
import tensorflow as tf

from tfresflow._compat import in_xla_context
from tfresflow.validation import check_choice

ON_NONCONVERGENCE = ("raise", "warn", "ignore")
_NON_FINITE_INPUT = "non-finite input (NaN or inf)"
#: First item of every graph-mode report, so :func:`as_nonconvergence_error` can recognise it.
GRAPH_MARK = "[tfresflow solver]"


class NonConvergenceError(RuntimeError):
    """A numerical inverse did not reach its tolerance (or was given a non-finite input)."""


class NonFiniteInputError(NonConvergenceError, ValueError):
    """A numerical inverse was given NaN or inf: bad input, reported before any iteration.

    Both a ``ValueError`` (the package's error for bad input) and, as before, a
    :class:`NonConvergenceError`.
    """


def check_on_nonconvergence(value, name="on_nonconvergence"):
    """``value`` if it is one of :data:`ON_NONCONVERGENCE`, else a ValueError."""
    return check_choice(value, name, ON_NONCONVERGENCE)


class Outcome(NamedTuple):
    """What a solver reached, for :func:`report_nonconvergence`."""

    converged: tf.Tensor   #: bool, broadcastable to the solution: which examples converged
    iterations: tf.Tensor  #: number of iterations run
    residual: tf.Tensor    #: the largest residual reached (scalar)
    details: Tuple = ()    #: further ``(label, scalar tensor)`` pairs for the message


def _emit(text, on_nonconvergence, error=NonConvergenceError):
    if on_nonconvergence == "raise":
        raise error(text)
    warnings.warn(text, RuntimeWarning, stacklevel=4)


def report_nonconvergence(x, outcome, on_nonconvergence, what, residual_name, hint=""):
    """Applies the policy to a solver's result ``x``; returns ``x`` (guarded).

    Args:
      x: the solution.
      outcome: an :class:`Outcome`.
      on_nonconvergence: one of :data:`ON_NONCONVERGENCE`.
      what: the solver, for the message (e.g. ``"fixed-point inverse"``).
      residual_name: what the residual measures (e.g. ``"max|x + g(x) - z|"``).
      hint: the likely cause, appended to the eager message.

    Returns:
      ``x``; in graph mode with a control dependency on the check, under XLA with
      ``"raise"`` with NaN where ``outcome.converged`` is false.
    """
    check_on_nonconvergence(on_nonconvergence)
    if on_nonconvergence == "ignore":
        return x
    all_converged = tf.reduce_all(outcome.converged)
    labels = ["iterations", f"residual {residual_name}"] + [l for l, _ in outcome.details]
    values = [outcome.iterations, outcome.residual] + [v for _, v in outcome.details]
    if tf.executing_eagerly():
        if not bool(all_converged):
            extra = "".join(f" ({label} {float(v)})" for label, v in outcome.details)
            _emit(f"{what} did not converge: after {int(outcome.iterations)} iterations the "
                  f"residual {residual_name} is {float(outcome.residual)}{extra}"
                  + (f"; {hint}" if hint else "."), on_nonconvergence)
        return x
    head = f"{what} did not converge ({', '.join(labels)}):"
    if in_xla_context():
        if on_nonconvergence == "warn":
            warnings.warn(f"{what}: under XLA (jit_compile) non-convergence cannot be reported "
                          "at run time; non-converged results are returned unchanged (use "
                          "on_nonconvergence='raise' to get NaN for them).", RuntimeWarning,
                          stacklevel=3)
            return x
        # Added (not selected): the gradient still flows, so the non-converged examples'
        # gradients are not silently zero.
        return x + tf.where(outcome.converged, tf.constant(0.0, x.dtype),
                            tf.constant(np.nan, x.dtype))
    return _graph_check(x, all_converged, [head, *values], on_nonconvergence)


def _graph_check(x, ok, data, on_nonconvergence):
    """``x`` after an ``Assert`` (``"raise"``) or a conditional ``tf.print`` (``"warn"``)."""
    if on_nonconvergence == "raise":
        check = tf.debugging.Assert(ok, [GRAPH_MARK, *data])
    else:
        def warn():
            tf.print("WARNING:", *data, output_stream=sys.stderr)
            return tf.constant(True)
        check = tf.cond(ok, lambda: tf.constant(True), warn)
    with tf.control_dependencies([check]):
        return tf.identity(x)


@contextlib.contextmanager
def as_nonconvergence_error():
    """Re-raises a graph-mode report (an ``InvalidArgumentError`` of the ``Assert``) as the
    eager :class:`NonConvergenceError`, with the same text; used where a compiled function
    serves an eager call (``FlowModel.sample`` / ``log_prob``)."""
    try:
        yield
    except tf.errors.InvalidArgumentError as err:
        if GRAPH_MARK not in err.message:
            raise
        text = err.message[err.message.index(GRAPH_MARK) + len(GRAPH_MARK):].split("\n")[0]
        # The Assert prints its data as "[a] [b] ...": one line "a b ..." is the message.
        message = " ".join(part.strip(" []") for part in text.split("] [")).strip()
        error = NonFiniteInputError if _NON_FINITE_INPUT in message else NonConvergenceError
        raise error(message) from None


def finite_input(z, on_nonconvergence, what, axis=None):
    """Reports a non-finite right-hand side; returns ``(z_safe, finite)``.

    ``finite`` is ``tf.math.is_finite(z)`` reduced (``all``) over ``axis`` with ``keepdims``
    (``axis``: the event axes for a per-example solver, ``None`` for an elementwise one), and
    ``z_safe`` is ``z`` with zeros in place of the non-finite examples, for the solver to iterate
    on. Eager: raises :class:`NonConvergenceError` (``"raise"``) or warns (``"warn"``) here,
    before any iteration; graph: ``z_safe`` carries the ``Assert`` / ``tf.print``; XLA: nothing
    is reported (the non-finite values reach the output).
    """
    check_on_nonconvergence(on_nonconvergence)
    finite = tf.math.is_finite(z)
    if axis is not None:
        finite = tf.reduce_all(finite, axis=axis, keepdims=True)
    z_safe = tf.where(finite, z, tf.zeros_like(z))
    if on_nonconvergence == "ignore":
        return z_safe, finite
    unit = "element" if axis is None else "example"
    if tf.executing_eagerly():
        bad = np.flatnonzero(~finite.numpy().ravel())
        if bad.size:
            _emit(f"{what}: {_NON_FINITE_INPUT} in {bad.size} {unit}(s), first at "
                  f"flat index {int(bad[0])}; their output is non-finite.", on_nonconvergence,
                  NonFiniteInputError)
        return z_safe, finite
    if in_xla_context():
        return z_safe, finite
    count = tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.int32))
    data = [f"{what}: {_NON_FINITE_INPUT}, number of {unit}s:", count]
    return _graph_check(z_safe, tf.reduce_all(finite), data, on_nonconvergence), finite
