"""One shared traced block function for identical residual blocks (bijectors/shared_call.py).

The shared path must give exactly what inline evaluation gives (values and gradients, for
blocks with different weights), and tracing a flow of N identical blocks must trace the block
once. Fresh tensors go to every call (TFP caches bijector results by tensor identity).
"""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import randomize_weights
from tfresflow.bijectors import shared_call
from tfresflow.models.builders import build_model

L = trf.logdet


@pytest.fixture(autouse=True)
def fresh_cache():
    shared_call.clear()
    yield
    shared_call.set_enabled(True)
    shared_call.clear()


def small_flow(n_steps=3, logdet=None, hidden=(16, 16), seed=0):
    keras.utils.set_random_seed(seed)
    model = build_model("resflow", 2, n_steps=n_steps, hidden_units=hidden, coeff=0.9,
                        actnorm=False, logdet=logdet, seed=seed)
    randomize_weights([layer for layer in model.flow_layers], scale=0.3, seed=seed)
    for layer in trf.lipschitz.find_lipschitz_layers(model.flow_layers):
        layer.update_normalization()
    return model


def data(n=64, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


def log_prob_and_grads(model, x, training, shared):
    shared_call.set_enabled(shared)

    @tf.function
    def run(x, seed):
        with tf.GradientTape() as tape:
            lp = model.log_prob(x, seed=seed, training=training)
            loss = -tf.reduce_mean(lp)
        return lp, tape.gradient(loss, model.trainable_variables)

    lp, grads = run(tf.constant(x), tf.constant([3, 7], tf.int32))
    return lp.numpy(), [None if g is None else g.numpy() for g in grads]


@pytest.mark.parametrize("logdet, training", [
    (L.Unbiased(), True), (L.Unbiased(), False), (L.Exact(), True),
    (L.Truncated(4, neumann_grad=False), True), (L.Unbiased(grad_in_forward=True), True)])
def test_shared_function_gives_the_inline_values_and_gradients(logdet, training):
    model = small_flow(logdet=logdet)
    x = data()
    lp_inline, g_inline = log_prob_and_grads(model, x, training, shared=False)
    assert shared_call.trace_count() == 0
    lp_shared, g_shared = log_prob_and_grads(model, x, training, shared=True)
    assert shared_call.trace_count() == 1
    np.testing.assert_allclose(lp_shared, lp_inline, rtol=1e-5, atol=1e-6)
    assert len(g_shared) == len(g_inline)
    for a, b, v in zip(g_shared, g_inline, model.trainable_variables):
        assert (a is None) == (b is None), v.path
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=v.path)
    # The blocks really differ (a shared function using one block's weights would not match).
    kernels = [b.net.linears[0].kernel.numpy() for b in model.steps]
    assert not np.allclose(kernels[0], kernels[1])


def test_fit_step_of_n_identical_blocks_traces_one_block_function():
    model = small_flow(n_steps=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    step = tf.function(lambda x: model.train_step((x,)))
    step.get_concrete_function(tf.constant(data()))
    key = shared_call.structure_key(model.steps[0].net, model.steps[0].logdet, True)
    assert key is not None
    assert shared_call.trace_count(key) == 1
    assert shared_call.trace_count() == 1
    # The log-det estimator inside it is traced once too.
    entry = shared_call._ENTRIES[key]
    assert entry.body.estimator._compiled.experimental_get_tracing_count() == 1
    # A second graph (another input shape) of the same blocks retraces once, not per block.
    step.get_concrete_function(tf.constant(data(32)))
    assert shared_call.trace_count() <= 2


def test_different_structures_get_different_functions():
    a, b = small_flow(n_steps=2, hidden=(16, 16)), small_flow(n_steps=2, hidden=(8, 8))
    for model in (a, b):
        log_prob_and_grads(model, data(), True, shared=True)
    assert shared_call.trace_count() == 2


def test_backward_in_forward_weighted_loss_through_the_shared_function():
    """Non-uniform upstream gradients (a weighted loss) take BIF's recompute branch; the
    explicit weight tensors must get the same gradients there as the inline variables."""
    model = small_flow(logdet=L.Unbiased(grad_in_forward=True))
    x = tf.constant(data())
    w = tf.constant(np.linspace(0.1, 2.0, 64).astype(np.float32))
    results = []
    for shared in (False, True):
        shared_call.set_enabled(shared)

        @tf.function
        def run(x, w):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(w * model.log_prob(x, seed=[5, 6], training=True))
            return tape.gradient(loss, model.trainable_variables)

        results.append([g.numpy() for g in run(tf.identity(x), tf.identity(w))])
    assert shared_call.trace_count() == 1
    for a, b, v in zip(*results, model.trainable_variables):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=v.path)


def test_eager_calls_stay_inline():
    model = small_flow(logdet=L.Unbiased(grad_in_forward=True))
    block = model.steps[0]
    block.inverse_log_det_jacobian(tf.constant(data()), event_ndims=1, training=True,
                                   seed=tf.constant([1, 2]))
    assert shared_call.trace_count() == 0      # eager: inline


class UntrackedVariableNet(keras.layers.Layer):
    """A net reading a tf.Variable that Keras does not track (stateless_call cannot map it)."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(2, 2), initializer="zeros")
        self.built = True

    def call(self, x):
        return tf.tanh(x @ (0.3 * self.kernel + self.hidden[0]))


def test_a_net_reading_an_untracked_variable_falls_back_to_inline():
    def make(value):
        net = UntrackedVariableNet()
        net.build((None, 2))
        object.__setattr__(net, "hidden", [tf.Variable(value * np.eye(2, dtype=np.float32))])
        return trf.bijectors.ResidualBlock(net, logdet=L.Exact())

    blocks = [make(0.2), make(-0.4)]

    @tf.function
    def run(x):
        return [b.inverse_log_det_jacobian(x, event_ndims=1) for b in blocks]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run(tf.constant(data(4)))
    assert any("stateless_call" in str(w.message) for w in caught)
    expected = [np.log((1.0 + 0.2 * (1 - np.tanh(0.2 * x) ** 2)).prod(axis=1))
                for x in [data(4)]] + [
                np.log((1.0 - 0.4 * (1 - np.tanh(-0.4 * x) ** 2)).prod(axis=1))
                for x in [data(4)]]
    for got, want in zip(out, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_fixed_point_inverse_is_shared_and_gives_the_inline_samples_and_gradients():
    """Sampling (the fixed-point inverse of every block) traces one inverse function for N
    identical blocks and gives the inline samples and their weight gradients (the implicit
    gradient of x* flows to the weights through z - g(x*))."""
    model = small_flow(n_steps=4)
    z = np.random.default_rng(2).normal(size=(32, 2)).astype(np.float32)
    results = []
    for shared in (False, True):
        shared_call.set_enabled(shared)

        @tf.function
        def run(z):
            with tf.GradientTape() as tape:
                x = model.bijector.forward(z)
                loss = tf.reduce_sum(tf.sin(x))
            return x, tape.gradient(loss, model.trainable_variables)

        x, grads = run(tf.identity(tf.constant(z)))
        results.append((x.numpy(), [g.numpy() for g in grads]))
    inverse = [k for k in shared_call._ENTRIES if k[0] == "inverse"]
    assert len(inverse) == 1 and shared_call.trace_count(inverse[0]) == 1
    (x_inline, g_inline), (x_shared, g_shared) = results
    np.testing.assert_allclose(x_shared, x_inline, rtol=1e-5, atol=1e-6)
    for a, b, v in zip(g_shared, g_inline, model.trainable_variables):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=v.path)
    # x really inverts the flow: x + g(x) = z block by block, checked on fresh tensors.
    z_back = model.bijector.inverse(tf.constant(x_shared) + 0.0)
    np.testing.assert_allclose(z_back.numpy(), z, atol=1e-4)
