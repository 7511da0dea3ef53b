"""Shared test utilities (mathematical references, not code under test)."""
import numpy as np
import tensorflow as tf


def randomize_weights(layers, scale=0.3, seed=0):
    """Overwrites every weight of ``layers`` with N(0, scale^2) draws (escape zero inits)."""
    rng = np.random.default_rng(seed)
    for layer in layers:
        for v in layer.weights:
            v.assign(rng.normal(0.0, scale, size=v.shape).astype(v.dtype))


def brute_force_log_det(fn, x):
    """log|det d fn(x) / dx| per example from the full autodiff Jacobian and slogdet."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    jac = tape.batch_jacobian(y, x)
    return tf.linalg.slogdet(jac)[1].numpy()
