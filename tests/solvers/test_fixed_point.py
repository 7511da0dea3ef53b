"""Fixed-point inverse of ``x + g(x) = z`` (tfresflow.solvers.fixed_point), checked on the
equation and on the analytic solution and gradient of a linear ``g``."""
import numpy as np
import pytest
import tensorflow as tf

from tests.bijectors.residual_block_checks import contractive_mlp
from tfresflow.solvers import (FixedPointError, example_scale, fixed_point_inverse,
                               solve_fixed_point)


def _matrix(dim, norm, seed=0):
    """A random ``dim x dim`` matrix with spectral norm ``norm``."""
    w = np.random.default_rng(seed).normal(size=(dim, dim))
    return w * (norm / np.linalg.svd(w, compute_uv=False)[0])


def test_solution_satisfies_the_equation():
    net = contractive_mlp(4, lipschitz=0.9, seed=3)
    z = tf.constant(np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32) * 3)
    x = fixed_point_inverse(net, z)
    np.testing.assert_allclose((x + net(x)).numpy(), z.numpy(), atol=2e-5)


def test_solve_fixed_point_reaches_the_tolerance():
    """``x = cos(x)`` (rate ``sin(0.739...) = 0.67``): the Dottie number to the tolerance."""
    x0 = tf.zeros([1, 1], tf.float64)
    result = solve_fixed_point(tf.cos, x0, example_scale(x0), atol=1e-12, rtol=0.0)
    assert bool(result.converged) and bool(tf.reduce_all(result.converged_elements))
    assert float(result.error_estimate) <= 1e-12
    np.testing.assert_allclose(result.x.numpy(), 0.7390851332151607, atol=1e-12)
    assert 20 < int(result.iterations) < 200


def test_linear_g_solution_and_implicit_gradient_are_analytic():
    """``g(x) = x W``: ``x* = z (I + W)^{-1}``; for ``L = sum(u * x*)``,
    ``dL/dz = u (I + W)^{-T}`` and ``dL/dW = -x*^T u (I + W)^{-T}``."""
    dim = 5
    w = tf.Variable(_matrix(dim, 0.8))
    rng = np.random.default_rng(2)
    z = tf.constant(rng.normal(size=(6, dim)))
    u = rng.normal(size=(6, dim))
    with tf.GradientTape() as tape:
        tape.watch(z)
        x = fixed_point_inverse(lambda v: v @ w, z, atol=1e-13, rtol=1e-13)
        loss = tf.reduce_sum(u * x)
    dz, dw = tape.gradient(loss, [z, w])
    a_inv = np.linalg.inv(np.eye(dim) + w.numpy())
    x_exact = z.numpy() @ a_inv
    np.testing.assert_allclose(x.numpy(), x_exact, atol=1e-11)
    np.testing.assert_allclose(dz.numpy(), u @ a_inv.T, atol=1e-10)
    np.testing.assert_allclose(dw.numpy(), -x_exact.T @ u @ a_inv.T, atol=1e-10)


def _expanding(v):
    return 1.5 * v     # Lip(g) = 1.5: x <- z - 1.5 x diverges


def test_nonconvergence_raises_with_iterations_and_residual():
    z = tf.constant([[1.0, -2.0]])
    with pytest.raises(FixedPointError, match=r"after 40 iterations the residual .* is \d"):
        fixed_point_inverse(_expanding, z, max_iterations=40)
    with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge"):
        tf.function(lambda v: fixed_point_inverse(_expanding, v, max_iterations=40))(z)


def test_nonconvergence_under_xla_is_nan_per_example():
    """Example 0 is contractive (``g = 0.5 x``), example 1 is not (``g = 1.5 x``): under
    ``jit_compile`` the first is solved, the second is NaN (never a wrong finite sample), and
    its gradient is NaN too."""
    scale = tf.constant([[0.5], [1.5]])
    z = tf.constant([[1.0, -2.0], [3.0, 0.5]])

    @tf.function(jit_compile=True)
    def solve(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            x = fixed_point_inverse(lambda y: scale * y, v, max_iterations=60)
            loss = tf.reduce_sum(x)
        return x, tape.gradient(loss, v)

    x, dz = (t.numpy() for t in solve(z))
    np.testing.assert_allclose(x[0], z.numpy()[0] / 1.5, rtol=1e-5)
    assert np.all(np.isnan(x[1]))
    np.testing.assert_allclose(dz[0], 1.0 / 1.5, rtol=1e-5)
    assert np.all(np.isnan(dz[1]))


def test_contractive_solve_under_xla_matches_eager():
    net = contractive_mlp(3, lipschitz=0.9, seed=1)
    z = tf.constant(np.random.default_rng(4).normal(size=(8, 3)).astype(np.float32))
    x = tf.function(lambda v: fixed_point_inverse(net, v), jit_compile=True)(z)
    np.testing.assert_allclose(x.numpy(), fixed_point_inverse(net, z).numpy(), atol=1e-6)


def test_non_finite_input_is_reported_before_iterating():
    z = tf.constant([[1.0, np.nan], [0.5, 0.2], [np.inf, 0.0]])
    calls = []

    def g(v):
        calls.append(1)
        return 0.5 * tf.tanh(v)

    with pytest.raises(FixedPointError, match=r"non-finite input .* in 2 example\(s\)"):
        fixed_point_inverse(g, z)
    assert not calls    # reported before the first iteration, not after 1,000
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite input"):
        tf.function(lambda v: fixed_point_inverse(g, v))(z)
    with pytest.warns(RuntimeWarning, match="non-finite input") as record:
        x = fixed_point_inverse(g, z, on_nonconvergence="warn").numpy()
    assert len(record) == 1    # the finite example converged
    assert not np.isfinite(x[0]).all() and not np.isfinite(x[2]).all()
    np.testing.assert_allclose(x[1] + 0.5 * np.tanh(x[1]), [0.5, 0.2], atol=1e-5)


def test_bad_options_raise():
    z = tf.zeros([1, 2])
    for kwargs, name in [(dict(atol=-1.0), "inverse_atol"), (dict(rtol=-1.0), "inverse_rtol"),
                         (dict(atol=0.0, rtol=0.0), "not both be 0"),
                         (dict(max_iterations=0), "max_iterations"),
                         (dict(max_iterations=True), "max_iterations"),
                         (dict(on_nonconvergence="maybe"), "on_nonconvergence")]:
        with pytest.raises(ValueError, match=name):
            fixed_point_inverse(tf.tanh, z, **kwargs)
