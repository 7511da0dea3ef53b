"""Log-det estimators checked against mathematics (closed forms, brute-force Jacobians,
many-draw statistics with z-score bounds, fixed seeds)."""
import math
import warnings

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow.logdet import bounds, roulette
from tfresflow.logdet.series import series_chain
from tests.bijectors.residual_block_checks import (brute_force_residual_log_det,
                                         check_log_det_gradient_unbiased,
                                         check_log_det_unbiased, check_same_gradients,
                                         contractive_mlp, linear_net, make_residual_block,
                                         sample_inputs, z_scores)

L = trf.logdet


def symmetric_matrix(dim, eigenvalues, seed=0):
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))[0]
    return q @ np.diag(eigenvalues) @ q.T


def truncated_series(matrix, n_terms):
    """``sum_{k=1}^n (-1)^{k+1} tr(A^k) / k`` (exact traces)."""
    power, total = np.eye(len(matrix)), 0.0
    for k in range(1, n_terms + 1):
        power = power @ matrix
        total += (-1) ** (k + 1) * np.trace(power) / k
    return total


def estimates(estimator, net, x, n_draws, training=True, seed=0):
    return np.stack([estimator(net, tf.constant(x), training=training, seed=[seed, i])[1].numpy()
                     for i in range(n_draws)])


# ----------------------------------------------------------------------------- Exact
@pytest.mark.parametrize("dim", [2, 5])
def test_exact_matches_closed_form_of_linear_map(dim):
    w = np.random.default_rng(dim).normal(size=(dim, dim)) * 0.3
    x = sample_inputs(3, dim)
    gx, ld = L.Exact()(linear_net(w), tf.constant(x))
    np.testing.assert_allclose(gx, x @ w, rtol=1e-5, atol=1e-6)
    sign, expected = np.linalg.slogdet(np.eye(dim) + w)
    np.testing.assert_allclose(ld, np.full(3, expected), rtol=1e-5)


def test_exact_matches_finite_differences_of_nonlinear_map():
    net = contractive_mlp(2, 0.9, seed=3)
    x = sample_inputs(4, 2, seed=3).astype(np.float64)
    _, ld = L.Exact()(net, tf.constant(x, tf.float32))
    eps = 1e-3
    for i in range(len(x)):
        jac = np.zeros((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = eps
            f = lambda v: (v + net(tf.constant(v[None], tf.float32)).numpy()[0].astype(
                np.float64))
            jac[:, j] = (f(x[i] + e) - f(x[i] - e)) / (2 * eps)
        np.testing.assert_allclose(ld[i], np.log(abs(np.linalg.det(jac))), atol=2e-4)


def test_exact_gradient_is_autodiff_of_slogdet():
    net = contractive_mlp(3, 0.8, seed=1)
    x = tf.constant(sample_inputs(4, 3))
    with tf.GradientTape() as tape:
        _, ld = L.Exact()(net, x)
        total = tf.reduce_sum(ld)
    grads = tape.gradient(total, net.trainable_variables)
    eps = 1e-2
    kernel = net.layers[0].kernel
    base = kernel.numpy()
    for idx in [(0, 0), (1, 3), (2, 7)]:
        vals = []
        for sign in (1, -1):
            k = base.copy()
            k[idx] += sign * eps
            kernel.assign(k)
            vals.append(brute_force_residual_log_det(net, x.numpy()).sum())
        kernel.assign(base)
        np.testing.assert_allclose(grads[0].numpy()[idx], (vals[0] - vals[1]) / (2 * eps),
                                   rtol=2e-2, atol=1e-4)


def test_exact_refuses_large_events():
    net = linear_net(np.zeros((9, 9)))
    with pytest.raises(ValueError, match="max_dim"):
        L.Exact(max_dim=8)(net, tf.zeros([1, 9]))
    with pytest.warns(UserWarning, match="backward passes"):
        L.Exact(warn_dim=4)(net, tf.zeros([1, 9]))


# ----------------------------------------------------------------------------- series machinery
def test_series_chain_is_the_power_series_and_the_neumann_vector():
    """Linear VJP ``w -> w A``: the chain reproduces ``sum (-1)^{k+1} v^T A^k v / k`` and the
    Neumann vector ``u -> (I + A)^{-1} v`` (row-vector convention ``w A``)."""
    rng = np.random.default_rng(0)
    a = symmetric_matrix(4, [0.6, -0.5, 0.3, 0.1]) + 0.1 * rng.normal(size=(4, 4))
    v = rng.normal(size=(1, 3, 4))
    est, u = series_chain(lambda w: tf.matmul(w, tf.constant(a)), tf.constant(v),
                          tf.constant(60), lambda k: tf.constant(1.0, tf.float64), True)
    expected, power = np.zeros(3), np.eye(4)
    for k in range(1, 61):
        power = power @ a
        expected += (-1) ** (k + 1) / k * np.einsum("bi,ij,bj->b", v[0], power, v[0])
    np.testing.assert_allclose(est, expected, rtol=1e-10)
    np.testing.assert_allclose(u[0], v[0] @ np.linalg.inv(np.eye(4) + a), rtol=1e-8, atol=1e-10)


def test_roulette_tails_match_empirical_frequencies():
    for dist in [roulette.Geometric(0.4), roulette.Poisson(2.0), roulette.Pareto(2.0)]:
        seeds = tf.stack([tf.fill([4000], 7), tf.range(4000)], axis=1)
        draws = tf.function(lambda s: tf.map_fn(dist.sample, s, fn_output_signature=tf.int32))(
            seeds).numpy()
        for m in range(0, 6):
            p = float(dist.tail(tf.constant(m)))
            freq = np.mean(draws >= m)
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 4000) + 1e-9, (dist.name, m)
        se_mean = draws.std() / math.sqrt(len(draws))
        if dist.name != "pareto":   # infinite variance of N itself for alpha = 2
            assert abs(draws.mean() - dist.mean) < 4 * se_mean, dist.name


def test_roulette_distribution_facts():
    assert roulette.Pareto(2.0).mean == pytest.approx(math.pi ** 2 / 6, rel=1e-6)
    assert roulette.Geometric(0.5).has_finite_variance(0.6)
    assert not roulette.Geometric(0.5).has_finite_variance(0.9)
    assert not roulette.Poisson(2.0).has_finite_variance(0.5)
    assert roulette.Pareto(2.0).has_finite_variance(0.99)
    with pytest.raises(ValueError, match="lam"):
        L.Unbiased(distribution="geometric", lam=2.0)
    with pytest.raises(ValueError, match="distribution"):
        L.Unbiased(distribution="binomial")
    with pytest.warns(UserWarning, match="infinite variance"):
        L.Unbiased(distribution="geometric", p=0.5, lipschitz=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.Unbiased(lipschitz=0.99)


# ----------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("dim", [2, 5, 10])
def test_unbiased_default_is_unbiased(dim):
    check_log_det_unbiased(make_residual_block, dim, L.Unbiased(), n_draws=500, seed=dim,
                           lipschitz=0.9)


@pytest.mark.parametrize("config", [
    dict(distribution="geometric", p=0.5),
    dict(distribution="poisson", lam=2.0, probe="rademacher"),
    dict(n_exact_terms=0, n_probes=2),
])
def test_unbiased_variants_are_unbiased(config):
    check_log_det_unbiased(make_residual_block, 3, L.Unbiased(**config), n_draws=500,
                           lipschitz=0.6)


def test_unbiased_evaluation_mode_is_unbiased_and_nearly_the_full_series():
    """Evaluation = 20 exact terms + roulette tail: unbiased, and for the same seed (same
    probes) within the tiny tail of the 60-term series."""
    check_log_det_unbiased(make_residual_block, 4, L.Unbiased(), n_draws=100, training=False,
                           lipschitz=0.9)
    net, x = contractive_mlp(4, 0.9), sample_inputs(4, 4)
    evaluate = estimates(L.Unbiased(), net, x, 20, training=False)
    train = estimates(L.Unbiased(), net, x, 20, training=True)
    full = estimates(L.Truncated(60), net, x, 20)
    assert np.max(np.abs(evaluate - full)) < 1e-3 < np.max(np.abs(train - full))


def test_truncated_shows_its_bias():
    """i-ResNet's 2-term series on a map with eigenvalues up to 0.9: the mean matches the
    truncated series (exact traces) and misses the log-det by many standard errors."""
    a = symmetric_matrix(4, [0.9, 0.8, 0.5, -0.3])
    net, x = linear_net(a), sample_inputs(6, 4)
    # A linear map has the same log-det everywhere: pool the examples' independent draws.
    draws = estimates(L.Truncated(2), net, x, 400).reshape(-1, 1)
    exact = np.linalg.slogdet(np.eye(4) + a)[1]
    assert abs(z_scores(draws, truncated_series(a, 2))[0]) < 4
    assert abs(z_scores(draws, exact)[0]) > 8
    bound = bounds.truncation_error_bound(0.9, 4, 2)
    assert abs(truncated_series(a, 2) - exact) <= bound


def test_truncated_with_many_terms_matches_exact():
    net = contractive_mlp(3, 0.5, seed=2)
    x = sample_inputs(4, 3, seed=2)
    draws = estimates(L.Truncated(30, probe="rademacher"), net, x, 300)
    assert np.all(np.abs(z_scores(draws, brute_force_residual_log_det(net, x))) < 4)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("dim,logdet", [
    (2, L.Unbiased()),
    (6, L.Unbiased(grad_in_forward=True)),
    (3, L.Unbiased(neumann_grad=False)),
])
def test_gradient_mean_is_the_exact_log_det_gradient(dim, logdet):
    check_log_det_gradient_unbiased(make_residual_block, dim, logdet, n_draws=250, seed=dim)


@pytest.mark.parametrize("weights", [None, [1.0, 0.2, 3.0, -1.0, 0.5]])
def test_backward_in_forward_equals_neumann(weights):
    check_same_gradients(make_residual_block, 4, L.Unbiased(grad_in_forward=True),
                         L.Unbiased(), weights=weights)


def test_truncated_gradient_modes_agree_in_mean():
    """For ``Truncated`` the Neumann gradient's mean is the gradient of the truncated series,
    as is the mean of the backprop gradient (exact traces of a linear map's parameters)."""
    x = sample_inputs(3, 3)
    mean = {}
    for mode in (True, False):
        block = make_residual_block(3, logdet=L.Truncated(3, neumann_grad=mode), seed=4,
                                    lipschitz=0.8)
        grads = []
        for i in range(300):
            with tf.GradientTape() as tape:
                total = tf.reduce_sum(block.inverse_log_det_jacobian(
                    tf.constant(x), 1, training=True, seed=[2, i]))
            grads.append(tape.gradient(total, block.net.layers[0].kernel).numpy())
        mean[mode] = (np.mean(grads, 0), np.std(grads, 0) / np.sqrt(300))
    diff = mean[True][0] - mean[False][0]
    assert np.all(np.abs(diff) < 5 * np.hypot(mean[True][1], mean[False][1]) + 1e-6)


def test_backward_in_forward_under_fit_weights_and_tf_function():
    """Non-uniform weights inside one tf.function: the slow (recompute) path is exact."""
    block_bif = make_residual_block(3, logdet=L.Unbiased(grad_in_forward=True), seed=5)
    block_ref = make_residual_block(3, logdet=L.Unbiased(), seed=5)
    x = tf.constant(sample_inputs(4, 3))

    @tf.function
    def grads(block, w):
        with tf.GradientTape() as tape:
            z = block.inverse(tf.identity(x), training=True, seed=tf.constant([3, 4]))
            ld = block.inverse_log_det_jacobian(tf.identity(x), 1, training=True,
                                                seed=tf.constant([3, 4]))
            loss = tf.reduce_sum(w * ld) + tf.reduce_sum(z ** 2)
        return tape.gradient(loss, list(block.trainable_variables))

    for w in (tf.ones([4]), tf.constant([1.0, 2.0, 0.0, -1.0])):
        for a, b in zip(grads(block_bif, w), grads(block_ref, w)):
            np.testing.assert_allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------- contract
def test_value_is_the_estimate_not_the_surrogate():
    """With the Neumann gradient the value equals the backprop-mode value for the same seed."""
    net, x = contractive_mlp(3, 0.8), sample_inputs(4, 3)
    for training in (True, False):
        a = L.Unbiased()(net, tf.constant(x), training=training, seed=[1, 1])[1]
        b = L.Unbiased(neumann_grad=False)(net, tf.constant(x), training=training,
                                            seed=[1, 1])[1]
        c = L.Unbiased(grad_in_forward=True)(net, tf.constant(x), training=training,
                                             seed=[1, 1])[1]
        np.testing.assert_allclose(a, b, rtol=1e-5)
        np.testing.assert_allclose(a, c, rtol=1e-5)


def test_gx_is_g_of_x_with_its_gradient():
    net, x = contractive_mlp(3, 0.8), tf.constant(sample_inputs(4, 3))
    for est in (L.Exact(), L.Truncated(2), L.Unbiased(), L.Unbiased(grad_in_forward=True)):
        with tf.GradientTape() as tape:
            gx, _ = est(net, x, training=True, seed=[0, 1])
            total = tf.reduce_sum(gx ** 2)
        got = tape.gradient(total, net.trainable_variables)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(net(x) ** 2)
        want = tape.gradient(total, net.trainable_variables)
        np.testing.assert_allclose(gx, net(x), rtol=1e-6)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_seeds_are_reproducible_and_work_in_tf_function():
    net, x = contractive_mlp(3, 0.8), sample_inputs(4, 3)
    est = L.Unbiased()
    a = est(net, tf.constant(x), training=True, seed=[5, 6])[1]
    b = est(net, tf.constant(x), training=True, seed=[5, 6])[1]
    c = est(net, tf.constant(x), training=True, seed=[5, 7])[1]
    d = tf.function(lambda v, s: est(net, v, training=True, seed=s)[1])(
        tf.constant(x), tf.constant([5, 6]))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(a, d, rtol=1e-6)
    # Unseeded calls draw fresh noise.
    e = est(net, tf.constant(x), training=True)[1]
    f = est(net, tf.constant(x), training=True)[1]
    assert not np.allclose(e, f)


def test_properties_and_serialisation():
    assert L.Exact().is_exact and not L.Exact().has_stochastic_log_det
    assert L.Unbiased().is_unbiased and L.Unbiased().has_stochastic_log_det
    assert not L.Truncated(3).is_unbiased and not L.Truncated(3).is_exact
    for est in (L.Exact(max_dim=32), L.Truncated(4, probe="rademacher"),
                L.Unbiased(distribution="geometric", p=0.3, grad_in_forward=True),
                L.Unbiased(distribution="poisson", lam=3.0, n_eval_exact_terms=10)):
        again = L.deserialize_estimator(L.serialize_estimator(est))
        assert again == est and type(again) is type(est)
    assert L.Unbiased().gradient_mode == "neumann"
    assert L.Unbiased(neumann_grad=False).gradient_mode == "backprop"
    assert L.Unbiased(n_exact_terms=3).expected_terms() == pytest.approx(3 + 1.6449, 1e-3)
    assert L.Unbiased().expected_terms(training=False) == pytest.approx(20 + 1.6449, 1e-3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_exact_terms=-1), "n_exact_terms"),
    (dict(n_probes=0), "n_probes"),
    (dict(probe="uniform"), "probe"),
    (dict(grad_in_forward=True, neumann_grad=False), "neumann_grad"),
    (dict(distribution="geometric", p=1.5), "p"),
    (dict(alpha=1.0), "alpha"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.Unbiased(**kwargs)


def test_naive_backprop_is_refused_under_xla():
    net, x = contractive_mlp(2, 0.5), tf.constant(sample_inputs(2, 2))

    @tf.function(jit_compile=True)
    def f(v):
        return L.Unbiased(neumann_grad=False)(net, v, training=True, seed=[0, 1])[1]

    with pytest.raises(ValueError, match="XLA"):
        f(x)


def test_neumann_and_backward_in_forward_compile_with_xla():
    """Under XLA (whose stateless samplers differ from the CPU kernels, so values differ
    from eager ones): deterministic given the seed, and backward-in-forward gives the
    Neumann gradient, also with non-uniform weights."""
    net, x = contractive_mlp(2, 0.5), tf.constant(sample_inputs(3, 2))

    def compiled(est):
        @tf.function(jit_compile=True)
        def grads(v, w):
            with tf.GradientTape() as tape:
                ld = est(net, v, training=True, seed=[0, 1])[1]
                total = tf.reduce_sum(w * ld)
            return [ld, *tape.gradient(total, net.trainable_variables)]
        return grads

    neumann = compiled(L.Unbiased(distribution="poisson"))
    bif = compiled(L.Unbiased(grad_in_forward=True, distribution="poisson"))
    for w in (tf.ones([3]), tf.constant([1.0, -2.0, 0.5])):
        for a, b, c in zip(neumann(x, w), bif(x, w), neumann(x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(a, c)
    truncated = compiled(L.Truncated(3, neumann_grad=False))(x, tf.ones([3]))
    assert all(np.all(np.isfinite(t)) for t in truncated)


# ----------------------------------------------------------------------------- bounds
def test_truncation_bound_holds_and_is_tight_for_the_worst_case():
    for lip, n in [(0.5, 1), (0.9, 5), (0.97, 20)]:
        # Worst case of Theorem 3: J = Lip * I with alternating signs adding up: J = -Lip I.
        a = -lip * np.eye(3)
        error = abs(truncated_series(a, n) - 3 * math.log1p(-lip))
        bound = bounds.truncation_error_bound(lip, 3, n)
        assert error <= bound * (1 + 1e-9)
        np.testing.assert_allclose(error, bound, rtol=1e-8)
        direct = -3 * (math.log1p(-lip) + sum(lip ** k / k for k in range(1, n + 1)))
        np.testing.assert_allclose(bound, direct, rtol=1e-6)


def test_terms_for_tolerance_is_minimal():
    for lip, dim, tol in [(0.5, 2, 1e-3), (0.9, 10, 1e-4), (0.98, 3072, 1e-2)]:
        n = bounds.terms_for_tolerance(lip, dim, tol)
        assert bounds.truncation_error_bound(lip, dim, n) <= tol
        assert n == 0 or bounds.truncation_error_bound(lip, dim, n - 1) > tol
    with pytest.raises(ValueError, match="tolerance"):
        bounds.terms_for_tolerance(0.5, 2, 0.0)
    with pytest.raises(ValueError, match="lipschitz"):
        bounds.truncation_error_bound(1.0, 2, 3)


def test_log_det_bounds_contain_brute_force_log_dets():
    lips = [0.5, 0.9]
    nets = [contractive_mlp(3, lip, seed=i) for i, lip in enumerate(lips)]
    x = sample_inputs(64, 3, seed=9) * 3
    lower, upper = bounds.log_det_bounds(lips, 3)
    total = brute_force_residual_log_det(nets[0], x) + brute_force_residual_log_det(
        nets[1], x + nets[0](tf.constant(x)).numpy())
    assert np.all(total >= lower) and np.all(total <= upper)
    for lip, net in zip(lips, nets):
        lo, hi = bounds.log_det_bounds(lip, 3)
        ld = brute_force_residual_log_det(net, x)
        assert np.all(ld >= lo) and np.all(ld <= hi)
    a = 0.9 * np.eye(3)   # attains the upper bound
    np.testing.assert_allclose(np.linalg.slogdet(np.eye(3) + a)[1],
                               bounds.log_det_bounds(0.9, 3)[1])
