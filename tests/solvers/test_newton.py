"""Safeguarded Newton inverse ``s(x) = z`` (tfresflow.solvers.newton), checked on the equation."""
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.solvers import NonConvergenceError, newton_inverse, with_inverse_gradient


def cubic(x):
    return x ** 3 + x


def dcubic(x):
    return 3 * x ** 2 + 1


def test_newton_inverse_generic_function():
    z = tf.constant(np.linspace(-50, 50, 101))

    def fn(x):
        return x ** 3 + x

    x = newton_inverse(fn, lambda x: 3 * x ** 2 + 1, z, z - 50.0, z + 50.0, tf.zeros_like(z),
                       xtol=1e-12, max_iterations=200)
    np.testing.assert_allclose(fn(x).numpy(), z.numpy(), atol=1e-9)


def test_bisection_safeguard_on_a_map_where_plain_newton_cycles():
    """``tanh(3x) + 0.01 x`` (non-convex): Newton from far away overshoots; the bracket keeps
    every iterate inside, and the root satisfies ``s(x) = z``."""
    def fn(x):
        return tf.tanh(3.0 * x) + 0.01 * x

    def dfn(x):
        return 3.0 / tf.cosh(3.0 * x) ** 2 + 0.01

    z = tf.constant(np.linspace(-3.0, 3.0, 61))
    x = newton_inverse(fn, dfn, z, (z - 1.0) / 0.01, (z + 1.0) / 0.01, z / 3.01, xtol=1e-12,
                       max_iterations=300)
    np.testing.assert_allclose(fn(x).numpy(), z.numpy(), atol=1e-10)


def test_max_iter_is_a_deprecated_alias():
    z = tf.constant([0.5, 2.0], tf.float64)
    with pytest.warns(DeprecationWarning, match="max_iter"):
        x = newton_inverse(cubic, dcubic, z, z - 5.0, z + 5.0, z, xtol=1e-12, max_iter=100)
    np.testing.assert_allclose(cubic(x).numpy(), z.numpy(), atol=1e-12)
    with pytest.raises(TypeError, match="max_iterations"):
        newton_inverse(cubic, dcubic, z, z - 5.0, z + 5.0, z, 1e-12, 100, max_iter=100)
    with pytest.raises(ValueError, match="xtol"):
        newton_inverse(cubic, dcubic, z, z - 5.0, z + 5.0, z, xtol=0.0)


def test_implicit_gradient_is_one_over_the_derivative():
    z = tf.constant(np.linspace(-4.0, 4.0, 9))
    inverse = with_inverse_gradient(
        lambda v: newton_inverse(cubic, dcubic, v, v - 10.0, v + 10.0, v, xtol=1e-12), dcubic)
    with tf.GradientTape() as tape:
        tape.watch(z)
        x = inverse(z)
    np.testing.assert_allclose(tape.gradient(x, z).numpy(), 1.0 / dcubic(x).numpy(), rtol=1e-12)


def _slow(on_nonconvergence="raise", max_iterations=1):
    def solve(z):
        return newton_inverse(cubic, dcubic, z, z - 50.0, z + 50.0, z - 50.0, xtol=1e-12,
                              max_iterations=max_iterations, on_nonconvergence=on_nonconvergence)
    return solve


def test_nonconvergence_policy():
    z = tf.constant([3.0, 30.0], tf.float64)
    with pytest.raises(NonConvergenceError, match=r"after 1 iterations the residual .* is \d"):
        _slow()(z)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        _slow("warn")(z)
    assert np.all(np.isfinite(_slow("ignore")(z).numpy()))
    with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge"):
        tf.function(_slow())(z)


def test_nonconvergence_under_xla_is_nan_not_a_wrong_answer():
    z = tf.constant(np.linspace(-30.0, 30.0, 13))
    x = tf.function(_slow(max_iterations=2), jit_compile=True)(z).numpy()
    residual = np.abs(cubic(x) - z.numpy())
    assert np.isnan(x).any()
    assert np.all(np.isnan(x) | (residual <= 1e-9))
    converged = tf.function(_slow(max_iterations=200), jit_compile=True)(z).numpy()
    np.testing.assert_allclose(cubic(converged), z.numpy(), atol=1e-9)


def test_non_finite_input_is_reported_before_iterating_and_passed_through():
    z = tf.constant([1.0, np.nan, np.inf, -np.inf, 10.0], tf.float64)
    calls = []

    def counted(x):
        calls.append(1)
        return cubic(x)

    message = r"non-finite input \(NaN or inf\) in 3 element\(s\), first at flat index 1"
    with pytest.raises(NonConvergenceError, match=message):
        newton_inverse(counted, dcubic, z, z - 50.0, z + 50.0, z, xtol=1e-12)
    assert not calls
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite input"):
        tf.function(lambda v: newton_inverse(cubic, dcubic, v, v - 50.0, v + 50.0, v,
                                             xtol=1e-12))(z)
    with pytest.warns(RuntimeWarning, match="non-finite input") as record:
        x = newton_inverse(cubic, dcubic, z, z - 50.0, z + 50.0, z, xtol=1e-12,
                           on_nonconvergence="warn").numpy()
    assert len(record) == 1   # the finite elements converged: no non-convergence report
    np.testing.assert_array_equal(x[1:4], [np.nan, np.inf, -np.inf])
    np.testing.assert_allclose(cubic(x[[0, 4]]), [1.0, 10.0], atol=1e-12)
