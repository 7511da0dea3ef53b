"""The shared non-convergence policy (tfresflow.solvers.policy): eager, graph and XLA."""
import warnings

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow.solvers import policy


def _outcome(converged):
    return policy.Outcome(tf.constant(converged), tf.constant(7), tf.constant(0.25),
                          (("estimated error", tf.constant(0.5)),))


def _report(x, converged, mode):
    return policy.report_nonconvergence(x, _outcome(converged), mode, "test solver",
                                        "max|f(x) - z|", "a hint.")


def test_options_and_one_error_class():
    assert policy.ON_NONCONVERGENCE == ("raise", "warn", "ignore")
    assert policy.check_on_nonconvergence("warn") == "warn"
    with pytest.raises(ValueError, match="on_nonconvergence"):
        policy.check_on_nonconvergence("maybe")
    from tfresflow.bijectors.fixed_point import FixedPointError   # the old import path
    assert FixedPointError is policy.NonConvergenceError is trf.solvers.NonConvergenceError
    assert issubclass(FixedPointError, RuntimeError)


def test_eager_raise_warn_ignore():
    x = tf.constant([1.0, 2.0])
    text = (r"test solver did not converge: after 7 iterations the residual max\|f\(x\) - z\| "
            r"is 0.25 \(estimated error 0.5\); a hint.")
    with pytest.raises(policy.NonConvergenceError, match=text):
        _report(x, [True, False], "raise")
    with pytest.warns(RuntimeWarning, match=text):
        assert _report(x, [True, False], "warn") is x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _report(x, [True, False], "ignore") is x
        assert _report(x, [True, True], "raise") is x


def test_graph_raise_asserts_and_warn_prints(capfd):
    x = tf.constant([1.0, 2.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="test solver did not converge"):
        tf.function(lambda v: _report(v, [True, False], "raise"))(x)
    out = tf.function(lambda v: _report(v, [True, False], "warn"))(x)
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0])
    assert "WARNING: test solver did not converge" in capfd.readouterr().err


def test_xla_raise_poisons_the_non_converged_part_and_warn_warns_when_tracing():
    x = tf.constant([1.0, 2.0])
    out = tf.function(lambda v: _report(v, [True, False], "raise"), jit_compile=True)(x)
    np.testing.assert_array_equal(out.numpy(), [1.0, np.nan])
    with pytest.warns(RuntimeWarning, match="under XLA"):
        out = tf.function(lambda v: _report(v, [True, False], "warn"), jit_compile=True)(x)
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0])   # compiles: no tf.print


def test_finite_input():
    z = tf.constant([[1.0, 2.0], [np.nan, 0.0], [3.0, np.inf]])
    with pytest.raises(policy.NonConvergenceError,
                       match=r"s: non-finite input \(NaN or inf\) in 2 example\(s\), first at "
                             r"flat index 1"):
        policy.finite_input(z, "raise", "s", axis=[1])
    with pytest.warns(RuntimeWarning, match=r"in 2 element\(s\)"):
        z_safe, finite = policy.finite_input(z, "warn", "s")
    np.testing.assert_array_equal(z_safe.numpy(), [[1, 2], [0, 0], [3, 0]])
    np.testing.assert_array_equal(finite.numpy(), [[1, 1], [0, 1], [1, 0]])
    z_safe, finite = policy.finite_input(z, "ignore", "s", axis=[1])
    np.testing.assert_array_equal(z_safe.numpy(), [[1, 2], [0, 0], [0, 0]])
    assert finite.shape == (3, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite input"):
        tf.function(lambda v: policy.finite_input(v, "raise", "s")[0])(z)
    xla = tf.function(lambda v: policy.finite_input(v, "raise", "s", axis=[1]),
                      jit_compile=True)(z)
    np.testing.assert_array_equal(xla[0].numpy(), [[1, 2], [0, 0], [0, 0]])


def test_what_xla_keeps():
    """The premise of the XLA branch (TensorFlow 2.21, XLA:CPU): asserts and numerics checks
    are dropped inside ``jit_compile`` and ``tf.print`` does not compile. If this starts
    failing, XLA reports failures itself and the NaN poisoning of
    :mod:`tfresflow.solvers.policy` can be revisited."""
    @tf.function(jit_compile=True)
    def checks(v):
        bad = v * np.nan
        with tf.control_dependencies([tf.debugging.Assert(False, ["dropped"])]):
            return tf.debugging.check_numerics(bad, "dropped too") + 0.0

    assert np.isnan(checks(tf.constant([1.0])).numpy()).all()

    @tf.function(jit_compile=True)
    def prints(v):
        tf.print("not compilable")
        return v

    with pytest.raises(tf.errors.InvalidArgumentError, match="PrintV2|StringFormat"):
        prints(tf.constant([1.0]))
