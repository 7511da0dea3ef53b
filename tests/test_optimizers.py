"""FusedAdam equals Keras' Adam step by step; FlowModel.fit traces its train step once."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import mirrored_strategy
from tfresflow.optimizers import FusedAdam


def _run(optimizer, dtype, steps=5, compiled=False):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype(dtype), dtype=dtype) for s in ([3, 4], [4], [])]
    grads = [[tf.constant(rng.normal(size=v.shape).astype(dtype)) for v in variables]
             for _ in range(steps)]
    apply = optimizer.apply
    if compiled:
        apply = tf.function(lambda g: optimizer.apply(g, variables))
    for g in grads:
        apply(g) if compiled else apply(g, variables)
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3},
                                    {"weight_decay": 0.1}])
def test_fused_adam_matches_keras_adam(dtype, compiled, kwargs):
    expected = _run(keras.optimizers.Adam(0.05, **kwargs), dtype, compiled=compiled)
    got = _run(FusedAdam(0.05, **kwargs), dtype, compiled=compiled)
    # Keras' own update carries float32 roundoff even for float64 weights (its learning rate
    # is a float32 variable), and the fused kernel associates the step differently.
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def _numpy_adam(theta, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma & Ba (2015), Algorithm 1, with the epsilon of Keras (added to sqrt(v_t))."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        theta = theta - lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (
            np.sqrt(v) + epsilon)
    return theta


def test_fused_adam_is_algorithm_1_in_float64():
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=[5])
    grads = rng.normal(size=[7, 5])
    lr = float(np.float32(0.05))  # Keras keeps the learning rate as a float32 variable
    v = keras.Variable(theta0, dtype="float64")
    opt = FusedAdam(0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-3)
    for g in grads:
        opt.apply([tf.constant(g)], [v])
    np.testing.assert_allclose(v.numpy(), _numpy_adam(theta0, grads, lr, 0.8, 0.99, 1e-3),
                               rtol=1e-12, atol=1e-14)


def test_fused_adam_closed_form_first_step():
    """Step 1 of Adam moves every weight by -lr * sign(g) (up to epsilon): m/sqrt(v) = sign."""
    v = keras.Variable(np.array([1.0, -2.0, 3.0]), dtype="float64")
    FusedAdam(0.1, epsilon=1e-12).apply([tf.constant([0.3, -5.0, 2.0], tf.float64)], [v])
    lr = float(np.float32(0.1))  # Keras keeps the learning rate as a float32 variable
    np.testing.assert_allclose(v.numpy(), [1.0 - lr, -2.0 + lr, 3.0 - lr], rtol=1e-10)


def test_fused_adam_serialises():
    opt = FusedAdam(0.01, beta_1=0.8)
    back = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(back, FusedAdam) and back.get_config() == opt.get_config()


def test_fit_traces_the_train_step_once():
    """The optimizer is built before fit traces the step, so the step is traced once (Keras
    without a strategy builds it inside the first trace, which makes TF trace twice)."""
    model = trf.models.build_model("coupling", 2, n_steps=2, hidden_units=(8,))
    model.compile(optimizer=FusedAdam(1e-3))
    calls = []
    step = model.train_step

    def counting_step(data):
        calls.append(1)
        return step(data)

    model.train_step = counting_step
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert len(calls) == 1
    assert model.optimizer.built


def test_fused_adam_under_mirrored_strategy_equals_keras_adam():
    """Two replicas (the suite's one shared strategy): the fused update, per mirrored copy,
    trains a flow exactly as Keras' Adam does (same data, same seed)."""
    x = np.random.default_rng(3).normal(size=(64, 2)).astype("float32")
    weights = []
    for make in (keras.optimizers.Adam, FusedAdam):
        with mirrored_strategy().scope():
            keras.utils.set_random_seed(0)
            model = trf.models.build_model("coupling", 2, n_steps=2, hidden_units=(8,), seed=0)
            model.compile(optimizer=make(1e-2))
        initial = [v.numpy() for v in model.trainable_variables]
        model.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0)
        weights.append([v.numpy() for v in model.trainable_variables])
        assert max(np.max(np.abs(w - w0)) for w, w0 in zip(weights[-1], initial)) > 1e-3
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
