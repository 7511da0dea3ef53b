"""Reusable mathematical checks for residual-type blocks (``z = x + g(x)``, ``Lip(g) < 1``).

Every check takes a *block factory* ``make_block(dim, logdet=None, seed=0, lipschitz=0.7)``
returning a built block (a ``ResidualBlock`` or a subclass such as an i-DenseNet block) on
vectors of size ``dim`` whose residual branch is ``block.net`` and whose weights depend only on
``seed``, so two calls with the same seed give identical blocks. References are computed from
the mathematics here (brute-force Jacobians with ``GradientTape.batch_jacobian`` and
``slogdet``), never from the estimators under test. Inputs are fresh ``tf.constant``\\ s for
every call (TFP caches bijector results by tensor identity).
"""
import keras
import numpy as np
import tensorflow as tf

import tfresflow as trf
from tests.helpers import brute_force_log_det


# --------------------------------------------------------------------------- test networks
def rescale_to_lipschitz(net, lipschitz):
    """Rescales every Dense kernel of ``net`` to spectral norm ``lipschitz ** (1/L)`` (exact SVD).

    With 1-Lipschitz activations between the ``L`` layers, ``Lip(net) <= lipschitz``.
    """
    kernels = [layer.kernel for layer in net.layers if hasattr(layer, "kernel")]
    per_layer = lipschitz ** (1.0 / len(kernels))
    for kernel in kernels:
        k = kernel.numpy()
        kernel.assign(k * (per_layer / np.linalg.svd(k, compute_uv=False)[0]))
    return net


def lipschitz_upper_bound(net):
    """Product of the exact spectral norms of the Dense kernels (activations 1-Lipschitz)."""
    return float(np.prod([np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
                          for layer in net.layers if hasattr(layer, "kernel")]))


@keras.saving.register_keras_serializable(package="tfresflow_tests")
class SpectralNormCap(keras.constraints.Constraint):
    """Kernel constraint ``W <- W * min(1, cap / ||W||_2)`` (exact SVD), applied by Keras
    optimizers after every update, so trained test nets stay contractive."""

    def __init__(self, cap):
        self.cap = float(cap)

    def __call__(self, w):
        sigma = tf.linalg.svd(w, compute_uv=False)[0]
        return w * tf.minimum(1.0, self.cap / sigma)

    def get_config(self):
        return {"cap": self.cap}


def contractive_mlp(dim, lipschitz=0.7, hidden=(16,), activation="tanh", seed=0,
                    constrain=False):
    """A built Keras MLP ``dim -> hidden -> dim`` with ``Lip <= lipschitz`` (SVD rescaling);
    ``constrain=True`` keeps the bound during training (:class:`SpectralNormCap`)."""
    rng = np.random.default_rng(seed)
    cap = lipschitz ** (1.0 / (len(hidden) + 1))
    constraint = (lambda: SpectralNormCap(cap)) if constrain else (lambda: None)
    layers = [keras.Input((dim,))]
    layers += [keras.layers.Dense(h, activation=activation, kernel_constraint=constraint())
               for h in hidden]
    layers.append(keras.layers.Dense(dim, kernel_constraint=constraint()))
    net = keras.Sequential(layers)
    for layer in net.layers:
        layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype(np.float32))
        layer.bias.assign(0.3 * rng.normal(size=layer.bias.shape).astype(np.float32))
    return rescale_to_lipschitz(net, lipschitz)


def linear_net(matrix):
    """``g(x) = x @ matrix`` as a Keras layer (Jacobian ``matrix^T``)."""
    matrix = np.asarray(matrix, np.float32)
    net = keras.Sequential([keras.Input((matrix.shape[0],)),
                            keras.layers.Dense(matrix.shape[1], use_bias=False)])
    net.layers[0].kernel.assign(matrix)
    return net


def make_residual_block(dim, logdet=None, seed=0, lipschitz=0.7, **kwargs):
    """The default factory: ``ResidualBlock`` around :func:`contractive_mlp`."""
    block = trf.bijectors.ResidualBlock(contractive_mlp(dim, lipschitz, seed=seed),
                                        logdet=logdet, **kwargs)
    block.build([dim])
    return block


def sample_inputs(batch, dim, seed=0):
    return np.random.default_rng(seed + 1000).normal(size=(batch, dim)).astype(np.float32)


# --------------------------------------------------------------------------- references
def brute_force_residual_log_det(g, x):
    """``log |det(I + J_g(x))|`` per example, from the full Jacobian of ``x + g(x)``."""
    return brute_force_log_det(lambda v: v + g(v), np.asarray(x, np.float32))


def brute_force_log_det_gradient(g, x, variables):
    """Gradient of ``sum_i log det(I + J_g(x_i))`` w.r.t. ``variables`` and ``x``, flattened.

    Autodiff of the explicit objective (batch Jacobian + ``slogdet``).
    """
    x = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            gx = g(x)
        jac = inner.batch_jacobian(gx, x)
        eye = tf.eye(jac.shape[-1], dtype=jac.dtype)
        total = tf.reduce_sum(tf.linalg.slogdet(eye + jac)[1])
    return _flatten(outer.gradient(total, [*variables, x]), [*variables, x])


def _flatten(grads, sources):
    return np.concatenate([np.zeros(np.prod(s.shape)) if gr is None
                           else np.asarray(gr, np.float64).ravel()
                           for gr, s in zip(grads, sources)])


# --------------------------------------------------------------------------- draws
def log_det_draws(block, x, n_draws, training=True, seed=0):
    """``[n_draws, batch]`` log-det estimates for seeds ``[seed, 0..n_draws-1]``."""
    return np.stack([
        block.inverse_log_det_jacobian(tf.constant(x), event_ndims=1, training=training,
                                       seed=[seed, i]).numpy()
        for i in range(n_draws)])


def log_det_gradient(block, x, seed, training=True, weights=None):
    """Flattened gradient of ``sum_i w_i ILDJ_i`` w.r.t. the block's variables and ``x``."""
    x = tf.constant(x)
    w = tf.ones([x.shape[0]]) if weights is None else tf.constant(weights, tf.float32)
    variables = list(block.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(x)
        ld = block.inverse_log_det_jacobian(x, event_ndims=1, training=training, seed=seed)
        total = tf.reduce_sum(w * ld)
    return _flatten(tape.gradient(total, [*variables, x]), [*variables, x])


def z_scores(draws, reference):
    """``(mean - reference) / standard error`` per component (0 where both spreads vanish)."""
    draws = np.asarray(draws, np.float64)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    diff = mean - reference
    scale = np.abs(reference).max() + 1e-12
    exact_match = (se == 0.0) & (np.abs(diff) <= 1e-5 * scale)
    return np.where(exact_match, 0.0, diff / np.maximum(se, 1e-12 * scale))


# --------------------------------------------------------------------------- checks
def check_log_det_unbiased(make_block, dim, logdet, n_draws=600, batch=4, seed=0,
                           training=True, z_max=4.0, lipschitz=0.7):
    """The mean of ``n_draws`` seeded estimates is within ``z_max`` standard errors of the
    brute-force log-det, for every example of the batch. Returns the z-scores."""
    block = make_block(dim, logdet=logdet, seed=seed, lipschitz=lipschitz)
    x = sample_inputs(batch, dim, seed)
    exact = brute_force_residual_log_det(block.net, x)
    z = z_scores(log_det_draws(block, x, n_draws, training=training, seed=seed), exact)
    assert np.all(np.abs(z) < z_max), f"log-det z-scores {z} (exact {exact})"
    return z


def check_log_det_gradient_unbiased(make_block, dim, logdet, n_draws=300, batch=3, seed=0,
                                    z_max=5.0, lipschitz=0.7):
    """The mean over seeds of the estimator's gradient (w.r.t. every weight and the input)
    matches the gradient of the brute-force log-det within ``z_max`` standard errors, and
    the mean is close in direction (cosine > 0.99). Returns the z-scores."""
    block = make_block(dim, logdet=logdet, seed=seed, lipschitz=lipschitz)
    x = sample_inputs(batch, dim, seed)
    exact = brute_force_log_det_gradient(block.net, x, block.trainable_variables)
    draws = np.stack([log_det_gradient(block, x, seed=[seed, i]) for i in range(n_draws)])
    z = z_scores(draws, exact)
    mean = draws.mean(0)
    cosine = mean @ exact / (np.linalg.norm(mean) * np.linalg.norm(exact))
    assert np.max(np.abs(z)) < z_max, f"gradient z-scores up to {np.max(np.abs(z))}"
    assert cosine > 0.99, f"cosine(mean gradient, exact gradient) = {cosine}"
    return z


def check_same_gradients(make_block, dim, logdet_a, logdet_b, weights=None, seed=0,
                         batch=5, training=True, atol=1e-5):
    """Two estimators give the same value and gradient for the same seed (e.g. backward-in-
    forward vs the plain Neumann gradient), also with non-uniform per-example weights."""
    block_a = make_block(dim, logdet=logdet_a, seed=seed)
    block_b = make_block(dim, logdet=logdet_b, seed=seed)
    x = sample_inputs(batch, dim, seed)
    for s in range(3):
        val_a = block_a.inverse_log_det_jacobian(tf.constant(x), 1, training=training,
                                                  seed=[seed, s])
        val_b = block_b.inverse_log_det_jacobian(tf.constant(x), 1, training=training,
                                                  seed=[seed, s])
        np.testing.assert_allclose(val_a, val_b, atol=atol)
        grad_a = log_det_gradient(block_a, x, [seed, s], training=training, weights=weights)
        grad_b = log_det_gradient(block_b, x, [seed, s], training=training, weights=weights)
        scale = np.abs(grad_b).max()
        np.testing.assert_allclose(grad_a, grad_b, atol=atol * max(scale, 1.0))


def check_reconstruction(make_block, dim, seed=0, batch=64, atol=1e-5, train_steps=0,
                         lipschitz=0.7, **block_kwargs):
    """``forward(inverse(x)) == x`` and ``inverse(forward(z)) == z`` on fresh tensors, for an
    untrained block or after ``train_steps`` maximum-likelihood Adam steps (kernels projected
    back to ``Lip <= lipschitz`` after every step, as a Lipschitz layer would)."""
    block = make_block(dim, logdet=trf.logdet.Unbiased(), seed=seed, lipschitz=lipschitz,
                       **block_kwargs)
    x = sample_inputs(batch, dim, seed)
    if train_steps:
        optimizer = keras.optimizers.Adam(0.05)
        data = x * np.linspace(0.5, 2.0, dim, dtype=np.float32) + 1.0
        for step in range(train_steps):
            with tf.GradientTape() as tape:
                xd = tf.constant(data)   # one tensor: value and log-det from one cached pass
                kwargs = dict(training=True, seed=[seed, step])
                z = block.inverse(xd, **kwargs)
                ld = block.inverse_log_det_jacobian(xd, 1, **kwargs)
                loss = tf.reduce_mean(0.5 * tf.reduce_sum(z ** 2, -1) - ld)
            variables = list(block.trainable_variables)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            rescale_to_lipschitz(block.net, lipschitz)
    z = block.inverse(tf.constant(x)).numpy()
    x_back = block.forward(tf.constant(z)).numpy()
    np.testing.assert_allclose(x_back, x, atol=atol)
    z_back = block.inverse(tf.constant(x_back)).numpy()
    np.testing.assert_allclose(z_back, z, atol=atol)
    return block
