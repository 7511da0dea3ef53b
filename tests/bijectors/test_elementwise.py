"""Elementwise activations of relative-gradient flows: closed forms, Newton inverse, log-dets."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tfresflow.bijectors.serialization import deserialize_bijector, serialize_bijector
from tfresflow.solvers import NonConvergenceError
from tests.helpers import brute_force_log_det

tfb = tfp.bijectors

ACTIVATIONS = [
    ("slrelu_0.3", lambda dt: trf.bijectors.SmoothLeakyReLU(alpha=0.3, dtype=dt),
     lambda x: 0.3 * x + 0.7 * np.logaddexp(x, 0.0)),
    ("slrelu_0.01", lambda dt: trf.bijectors.SmoothLeakyReLU(alpha=0.01, dtype=dt),
     lambda x: 0.01 * x + 0.99 * np.logaddexp(x, 0.0)),
    ("tanh_1_0.1", lambda dt: trf.bijectors.TanhLinear(alpha=1.0, beta=0.1, dtype=dt),
     lambda x: np.tanh(x) + 0.1 * x),
    ("tanh_3_0.05", lambda dt: trf.bijectors.TanhLinear(alpha=3.0, beta=0.05, dtype=dt),
     lambda x: np.tanh(3.0 * x) + 0.05 * x),
]
IDS = [a[0] for a in ACTIVATIONS]


def _inputs(dtype, n=200, d=5, scale=3.0, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)) * scale
    x[0, :] = [0.0, 1e-3, -1e-3, 25.0, -25.0]  # the kink region and far tails
    return x.astype(dtype)


@pytest.mark.parametrize("name,make,closed_form", ACTIVATIONS, ids=IDS)
def test_density_direction_is_the_closed_form(name, make, closed_form):
    act = make(tf.float64)
    x = _inputs(np.float64)
    np.testing.assert_allclose(act.inverse(tf.constant(x)).numpy(), closed_form(x), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name,make,closed_form", ACTIVATIONS, ids=IDS)
def test_newton_inverse_recovers_inputs_float32(name, make, closed_form):
    act = make(tf.float32)
    x = _inputs(np.float32)
    z = act.inverse(tf.constant(x)).numpy()
    x_back = act.forward(tf.constant(z)).numpy()  # fresh tensor: no cache hit
    np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-5)
    mild = np.abs(x) <= 5.0
    assert np.abs(x_back - x)[mild].max() <= 1e-5


@pytest.mark.parametrize("name,make,closed_form", ACTIVATIONS, ids=IDS)
def test_newton_inverse_recovers_inputs_float64(name, make, closed_form):
    act = make(tf.float64)
    x = _inputs(np.float64, scale=30.0, seed=1)
    x[1, :] = [1e3, -1e3, 300.0, -300.0, 1e-12]
    x_back = act.forward(tf.constant(closed_form(x))).numpy()
    np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,make,closed_form", ACTIVATIONS, ids=IDS)
def test_log_det_matches_autodiff_jacobian(name, make, closed_form):
    act = make(tf.float64)
    x = _inputs(np.float64, n=20, seed=2)
    ildj = act.inverse_log_det_jacobian(tf.constant(x), event_ndims=1).numpy()
    np.testing.assert_allclose(ildj, brute_force_log_det(act.inverse, x), rtol=1e-10, atol=1e-10)
    z = closed_form(_inputs(np.float64, n=20, seed=3))
    fldj = act.forward_log_det_jacobian(tf.constant(z), event_ndims=1).numpy()
    np.testing.assert_allclose(fldj, brute_force_log_det(act.forward, z), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name,make,closed_form", ACTIVATIONS, ids=IDS)
def test_inverse_gradient_is_implicit_derivative(name, make, closed_form):
    act = make(tf.float64)
    z = tf.constant(closed_form(_inputs(np.float64, n=10, seed=4)))
    with tf.GradientTape() as tape:
        tape.watch(z)
        x = act.forward(z)
    dxdz = tape.gradient(x, z).numpy()
    xv = tf.constant(x.numpy())
    with tf.GradientTape() as tape:
        tape.watch(xv)
        zz = act.inverse(xv)
    np.testing.assert_allclose(dxdz, 1.0 / tape.gradient(zz, xv).numpy(), rtol=1e-10)


def test_works_in_graph_mode_with_batch_dimensions():
    act = trf.bijectors.TanhLinear()
    x = _inputs(np.float32, n=12).reshape(3, 4, 5)

    @tf.function
    def round_trip(x):
        return act.forward(tf.identity(act.inverse(x)))

    np.testing.assert_allclose(round_trip(tf.constant(x)).numpy(), x, rtol=1e-5, atol=1e-5)
    ildj = act.inverse_log_det_jacobian(tf.constant(x), event_ndims=1)
    assert ildj.shape == (3, 4)


def test_non_convergence_is_reported_with_the_residual():
    z = tf.constant([[0.5, -0.3, 0.9]])
    act = trf.bijectors.TanhLinear(max_iterations=1)
    with pytest.raises(NonConvergenceError, match="did not converge.*residual"):
        act.forward(z)
    with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge.*residual"):
        tf.function(act.forward)(tf.constant(z.numpy()))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        trf.bijectors.TanhLinear(max_iterations=1, on_nonconvergence="warn").forward(z)
    trf.bijectors.TanhLinear(max_iterations=1, on_nonconvergence="ignore").forward(z)


@pytest.mark.parametrize("make", [trf.bijectors.TanhLinear, trf.bijectors.SmoothLeakyReLU])
def test_non_convergence_under_xla_gives_nan_not_a_wrong_sample(make):
    act = make(max_iterations=1)
    z = tf.constant(_inputs(np.float32, n=8) * 4.0)
    x = tf.function(act.forward, jit_compile=True)(z).numpy()
    residual = np.abs(act.activation(tf.constant(np.nan_to_num(x))).numpy() - z.numpy())
    assert np.isnan(x).any()
    assert np.all(np.isnan(x) | (residual <= 1e-4 * (1.0 + np.abs(z.numpy()))))


def test_max_iter_is_a_deprecated_alias_also_in_old_configs():
    with pytest.warns(DeprecationWarning, match="max_iter"):
        act = trf.bijectors.TanhLinear(max_iter=7)
    assert act.max_iterations == 7 and "max_iter" not in act.get_config()
    with pytest.raises(TypeError, match="max_iterations"):
        trf.bijectors.SmoothLeakyReLU(max_iterations=5, max_iter=5)
    old = dict(alpha=0.3, xtol=1e-6, max_iter=9, dtype="float32", name="old_slrelu")
    loaded = trf.bijectors.SmoothLeakyReLU.from_config(old)
    assert loaded.max_iterations == 9 and loaded.on_nonconvergence == "raise"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="alpha"):
        trf.bijectors.SmoothLeakyReLU(alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        trf.bijectors.SmoothLeakyReLU(alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        trf.bijectors.TanhLinear(beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        trf.bijectors.TanhLinear(alpha=-1.0)
    with pytest.raises(ValueError, match="xtol"):
        trf.bijectors.TanhLinear(xtol=2.0)
    with pytest.raises(ValueError, match="max_iter"), pytest.warns(DeprecationWarning):
        trf.bijectors.SmoothLeakyReLU(max_iter=0)
    with pytest.raises(ValueError, match="max_iterations"):
        trf.bijectors.SmoothLeakyReLU(max_iterations=0)
    with pytest.raises(ValueError, match="on_nonconvergence"):
        trf.bijectors.TanhLinear(on_nonconvergence="maybe")
    with pytest.raises(ValueError, match="event shape"):
        trf.bijectors.SmoothLeakyReLU().build([2, 2])


def test_no_weights_and_serialisation_round_trip():
    act = trf.bijectors.TanhLinear(alpha=2.0, beta=0.2, name="act")
    assert act.keras_layers() == [] and act.trainable_variables == ()
    act.build([3])
    copy = deserialize_bijector(serialize_bijector(tfb.Chain([act])))
    x = _inputs(np.float32, n=4)[:, :3]
    np.testing.assert_allclose(copy.inverse(tf.constant(x)).numpy(),
                               act.inverse(tf.constant(x)).numpy())
    assert copy.bijectors[0].get_config() == act.get_config()
