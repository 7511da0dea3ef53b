"""Non-finite values in a fixed-point inverse are named for what they are, at once.

* a NaN/inf right-hand side ``z`` is bad input: :class:`NonFiniteInputError`, a ``ValueError``
  (and a ``NonConvergenceError``), before any iteration, also through FlowModel's compiled path;
* a map ``g`` that returns NaN for a finite ``z`` (non-finite weights, e.g. after a diverged fit)
  stops the iteration at its first step, and the message says so instead of blaming
  ``Lip(g) >= 1`` after 1,000 iterations;
* iterates of a non-contraction that overflow stop there, with the contraction named.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.solvers import (NonConvergenceError, NonFiniteInputError, as_nonconvergence_error,
                               fixed_point_inverse)


def _counting(fn):
    calls = []

    def g(v):
        calls.append(1)
        return fn(v)
    return g, calls


def test_non_finite_right_hand_side_is_a_value_error_eager_and_compiled():
    z = tf.constant([[1.0, np.nan], [0.5, 0.2]])
    g, calls = _counting(lambda v: 0.5 * tf.tanh(v))
    with pytest.raises(ValueError, match=r"non-finite input \(NaN or inf\) in 1 example") as info:
        fixed_point_inverse(g, z)
    assert isinstance(info.value, NonConvergenceError) and not calls
    compiled = tf.function(lambda v: fixed_point_inverse(lambda u: 0.5 * tf.tanh(u), v))
    with pytest.raises(NonFiniteInputError, match="non-finite input"):
        with as_nonconvergence_error():
            compiled(tf.constant([[np.inf, 0.0]]))


def test_non_finite_map_values_stop_at_the_first_step():
    g, calls = _counting(lambda v: v * tf.constant(np.nan, tf.float32))   # NaN "weights"
    with pytest.raises(NonConvergenceError) as info:
        fixed_point_inverse(g, tf.constant([[0.5, -1.0], [2.0, 0.0]]))
    message = str(info.value)
    assert "after 1 iterations" in message and "g(x) returned NaN or inf although z is finite" \
        in message and "Lip(g) >= 1)" not in message, message
    assert len(calls) <= 3   # one traced loop body (and the final z - g(x)), not 1,000 calls
    assert not isinstance(info.value, ValueError)   # the input was fine


def test_overflowing_iterates_of_a_non_contraction_stop_there():
    # x <- z - 2x doubles |x| each step: float32 overflows after about 128 steps
    with pytest.raises(NonConvergenceError,
                       match=r"after (\d+) iterations .*overflowed.*not a contraction") as info:
        fixed_point_inverse(lambda v: 2.0 * v, tf.constant([[1.0, 0.5]]), max_iterations=1000)
    iterations = int(str(info.value).split("after ")[1].split()[0])
    assert 100 < iterations < 200


def test_a_contraction_is_unaffected():
    z = np.array([[0.3, -2.0]], np.float32)
    x = fixed_point_inverse(lambda v: 0.5 * tf.tanh(v), tf.constant(z)).numpy()
    np.testing.assert_allclose(x + 0.5 * np.tanh(x), z, atol=1e-5)
