"""Bits/dim of image models (``tfresflow.evaluation``) against closed-form densities."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow import evaluation
from tfresflow.bijectors.logit import LogitTransform

tfd = tfp.distributions


class _Density:
    """A stand-in model: ``log_prob(x, seed)`` of a given function of the dequantised x."""

    def __init__(self, fn):
        self.fn = fn
        self.has_stochastic_log_det = False

    def log_prob(self, x, seed=None):
        return tf.constant(self.fn(np.asarray(x, np.float64)), tf.float32)


def _images(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice([0, 30, 200, 255], p=[.6, .2, .1, .1], size=(n, 2, 2, 1)).astype(np.uint8)


def test_the_uniform_density_scores_eight_bits_per_dim():
    uniform = _Density(lambda y: np.zeros(len(y)))
    assert evaluation.image_bits_per_dim(uniform, _images(), batch_size=64) == (8.0, 0.0)
    assert evaluation.image_bits_per_dim(uniform, _images(), n_bits=5) == (5.0, 0.0)


def test_an_independent_pixel_model_scores_its_code_length_with_its_stderr():
    x = _images(300)
    flat = x.reshape(len(x), -1)
    d = flat.shape[1]
    freq = np.stack([np.bincount(flat[:, j], minlength=256) for j in range(d)]) / len(x)

    def log_prob(y):   # 256 * freq in each pixel's bin: a density on [0, 1)^D
        levels = np.floor(y.reshape(len(y), -1) * 256).astype(int)
        return np.sum(np.log(256 * freq[np.arange(d), levels]), axis=1)

    bits = -np.sum(np.log2(freq[np.arange(d), flat]), axis=1) / d   # per image, from pixels
    bpd, se = evaluation.image_bits_per_dim(_Density(log_prob), x, batch_size=128)
    assert np.isclose(bpd, bits.mean(), rtol=1e-6)
    assert np.isclose(se, bits.std(ddof=1) / np.sqrt(len(bits)), rtol=1e-5)
    # The same from per-example log-densities:
    assert np.allclose(evaluation.bits_per_dim_with_stderr(log_prob(x / 256.0 + 1e-3), d),
                       (bits.mean(), bits.std(ddof=1) / np.sqrt(len(bits))))


@pytest.mark.parametrize("alpha", [1e-5, 0.05])
def test_the_logit_transform_log_det_is_counted(alpha):
    # z = logit(alpha + (1 - 2 alpha) y) with z ~ Logistic(0, 1) makes y uniform with density
    # (1 - 2 alpha) per pixel, so bits/dim = 8 - log2(1 - 2 alpha) exactly.
    flow = tfd.TransformedDistribution(
        tfd.Independent(tfd.Logistic(tf.zeros([4, 4, 3]), 1.0), 3), LogitTransform(alpha))
    model = _Density(lambda y: flow.log_prob(tf.constant(y, tf.float32)).numpy())
    images = np.random.default_rng(1).integers(0, 256, size=(20, 4, 4, 3), dtype=np.uint8)
    bpd, se = evaluation.image_bits_per_dim(model, images)
    assert abs(bpd - (8 - np.log2(1 - 2 * alpha))) < 1e-4 and se < 1e-5


def test_mean_and_stderr():
    assert evaluation.mean_and_stderr([2.0]) == (2.0, 0.0)
    mean, se = evaluation.mean_and_stderr([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and np.isclose(se, np.sqrt(14 / 3 / 4))
    with pytest.raises(ValueError, match="`values`"):
        evaluation.mean_and_stderr([])
