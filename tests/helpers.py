"""Shared test utilities (mathematical references, not code under test)."""
import pathlib
import re

import keras
import numpy as np
import tensorflow as tf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


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


def brute_force_ildj(bijector, x, event_shape):
    """``log|det d inverse(x) / dx|`` per example of ``x`` ``[..., *event_shape]``, from the
    autodiff Jacobian of the flattened event (the latent may have another shape) and a
    float64 ``slogdet``."""
    size = int(np.prod(event_shape))
    lead = list(x.shape[:x.ndim - len(event_shape)])
    flat = tf.constant(x.reshape(-1, size))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        z = bijector.inverse(tf.reshape(flat, [*lead, *event_shape]))
        z_flat = tf.reshape(z, [-1, size])
    jac = tape.batch_jacobian(z_flat, flat)
    return tf.linalg.slogdet(tf.cast(jac, tf.float64))[1].numpy().reshape(lead)


_STRATEGY = []


def mirrored_strategy():
    """The process-wide 2-replica ``MirroredStrategy`` on the logical CPUs of conftest.py.

    One shared instance: several ``MirroredStrategy`` objects in one process reuse collective
    instance keys, and their all-reduces then collide ("Shape mismatch in the collective
    instance"), which poisons the collective executor for the rest of the process.
    """
    if not _STRATEGY:
        devices = tf.config.list_logical_devices("CPU")
        assert len(devices) >= 2, "tests/conftest.py must configure 2 logical CPUs"
        _STRATEGY.append(tf.distribute.MirroredStrategy([d.name for d in devices[:2]]))
    return _STRATEGY[0]


def readme_python_blocks(start=None, end=None):
    """The README's ```python blocks between the lines ``start`` and ``end`` (headings, e.g.
    ``"## Command line"``; ``None``: the beginning / the next heading after ``start``, or the
    end when neither is given)."""
    text = README.read_text(encoding="utf-8")
    if start is not None:
        text = text.split(start, 1)[1]
        end = "\n## " if end is None else end
    if end is not None:
        text = text.split(end, 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def assert_keras_round_trip(model, path, x):
    """Saves ``model`` to ``path`` (.keras), loads it, checks every weight and the log-density
    of ``x`` (fresh tensors) are those of ``model``; returns the loaded model."""
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(loaded.log_prob(tf.constant(x)).numpy(),
                               model.log_prob(tf.constant(x)).numpy(), rtol=1e-6)
    return loaded
