"""Lipschitz activations: derivative bounds checked by autodiff on dense grids, closed forms."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from tfresflow.lipschitz import activations

SOFTPLUS_HALF = math.log1p(math.exp(0.5))      # beta of the reference initialisation


def _derivative(layer, x):
    """Elementwise derivative phi'(x) by autodiff (valid for elementwise activations)."""
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return tape.gradient(y, x).numpy()


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _swish_slope(t):
    """d/dt [t sigmoid(t)], written out independently of the package."""
    return _sigmoid(t) + t * _sigmoid(t) * (1.0 - _sigmoid(t))


def _grid(beta):
    # LipSwish's derivative depends on beta * x: cover t = beta * x in [-40, 40] densely.
    t = np.concatenate([np.linspace(-40.0, 40.0, 160001), np.linspace(2.0, 3.0, 20001)])
    return (t / beta).astype(np.float32)[:, None]


@pytest.mark.parametrize("beta_raw", [-2.0, 0.5, 3.0])
def test_lipswish_derivative_bounded_and_attained(beta_raw):
    layer = activations.LipSwish(beta_raw_init=beta_raw)
    beta = math.log1p(math.exp(beta_raw))
    x = _grid(beta)
    d = _derivative(layer, x)
    expected = _swish_slope(beta * x.astype(np.float64)) / 1.1
    np.testing.assert_allclose(d, expected, atol=2e-6)
    assert np.abs(d).max() <= 1.0 + 1e-6
    assert np.abs(d).max() >= 0.9995          # ~0.99985: the /1.1 hardly over-shrinks


def test_lipswish_reference_initialisation_and_per_channel():
    layer = activations.LipSwish(per_channel=True)
    y = layer(tf.constant(np.ones((2, 5)), tf.float32))
    assert layer.beta_raw.shape == (5,)
    np.testing.assert_allclose(layer.beta.numpy(), SOFTPLUS_HALF, rtol=1e-6)
    np.testing.assert_allclose(y.numpy(), _sigmoid(SOFTPLUS_HALF) / 1.1, rtol=1e-6)
    assert activations.LipSwish().output_multiplier == 1


@pytest.mark.parametrize("alpha_raw,beta_raw", [(-3.0, 0.5), (0.0, -1.0), (2.0, 2.0), (-8.0, 0.5)])
def test_leaky_lswish_derivative_bounded(alpha_raw, beta_raw):
    layer = activations.LeakyLSwish(alpha_raw_init=alpha_raw, beta_raw_init=beta_raw)
    beta = math.log1p(math.exp(beta_raw))
    d = _derivative(layer, _grid(beta))
    alpha = 1.0 / (1.0 + math.exp(-alpha_raw))
    assert np.abs(d).max() <= 1.0 + 1e-6
    # attained: alpha + (1 - alpha) * max LipSwish' with max LipSwish' = 0.99985
    assert np.abs(d).max() >= alpha + (1 - alpha) * 0.9995


def test_leaky_lswish_initial_alpha():
    layer = activations.LeakyLSwish()
    layer.build((None, 3))
    np.testing.assert_allclose(layer.alpha.numpy(), 1.0 / (1.0 + math.exp(3.0)), rtol=1e-6)


@pytest.mark.parametrize("name", ["elu", "softplus", "identity"])
def test_simple_activations_bounded_and_attained(name):
    layer = activations.get(name)
    d = _derivative(layer, np.linspace(-30, 30, 60001, dtype=np.float32)[:, None])
    assert np.abs(d).max() <= 1.0 + 1e-6
    assert np.abs(d).max() >= 0.999
    assert layer.output_multiplier == 1 and layer.elementwise


def test_clipswish_constant_matches_independent_maximisation():
    def neg_norm(t):
        return -math.sqrt(_swish_slope(t) ** 2 + _swish_slope(-t) ** 2) / 1.1

    res = optimize.minimize_scalar(neg_norm, bounds=(0.5, 5.0), method="bounded",
                                   options={"xatol": 1e-12})
    assert activations.clipswish_lipschitz_constant() == pytest.approx(-res.fun, abs=1e-9)
    assert activations.clipswish_lipschitz_constant() == pytest.approx(1.004, abs=5e-4)  # paper


@pytest.mark.parametrize("beta_raw", [-2.0, 0.5, 3.0])
def test_clipswish_jacobian_spectral_norm_at_most_one(beta_raw):
    """CLipSwish is not elementwise: check sigma_max of its exact 2d x d Jacobian."""
    layer = activations.CLipSwish(beta_raw_init=beta_raw, per_channel=True)
    beta = math.log1p(math.exp(beta_raw))
    t = np.linspace(-12.0, 12.0, 4001)
    rng = np.random.default_rng(0)
    x = np.stack([t, rng.permutation(t), rng.normal(size=t.size) * 3], axis=1) / beta
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    assert y.shape == (x.shape[0], 6)
    jac = tape.batch_jacobian(y, x).numpy()
    sv = np.linalg.svd(jac, compute_uv=False)[:, 0]
    assert sv.max() <= 1.0 + 1e-6
    assert sv.max() >= 0.9995                  # the bound is attained: nothing over-shrunk


def test_clipswish_shapes_and_values():
    layer = activations.get("CLipSwish")
    assert layer.output_multiplier == 2 and not layer.elementwise
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    y = layer(tf.constant(x)).numpy()
    beta = SOFTPLUS_HALF

    def lipswish(v):
        return v * _sigmoid(beta * v) / 1.1

    const = activations.clipswish_lipschitz_constant()
    expected = np.concatenate([lipswish(x), lipswish(-x)], axis=-1) / const
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    assert layer.compute_output_shape((None, 4, 4, 3)) == (None, 4, 4, 6)


def test_get_unknown_and_copies():
    with pytest.raises(ValueError, match="Unknown Lipschitz activation"):
        activations.get("relu")
    with pytest.raises(ValueError, match="Unknown Lipschitz activation"):
        activations.get(3)
    original = activations.LipSwish(beta_raw_init=1.5, name="act")
    copy = activations.get(original)
    assert copy is not original and copy.beta_raw_init == 1.5
    for name in ["lipswish", "clipswish", "leakylswish", "elu", "softplus", "identity"]:
        assert isinstance(activations.get(name), activations.LipschitzActivation)


@pytest.mark.parametrize("name", ["lipswish", "clipswish", "leakylswish", "elu"])
def test_keras_round_trip(tmp_path, name):
    layer = activations.get(name, **({"per_channel": True} if "swish" in name else {}))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    for w in model.weights:
        w.assign(w.numpy() + 0.3)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    path = tmp_path / "act.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(tf.constant(x)).numpy(), model(tf.constant(x)).numpy(),
                               rtol=1e-6)
