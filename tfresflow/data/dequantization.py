"""Uniform dequantisation of 8-bit images and bits per dimension of the discrete data.

**Dequantisation** (Theis et al., 2016; Dinh et al., 2017; used by Residual Flows and
i-DenseNets). An image holds integers ``x in {0, ..., 255}^D``. Keeping its top ``n_bits`` bits
(``n_bits = 5`` for the papers' 5-bit CelebA) gives ``k = floor(x / 2^(8 - n_bits))`` in
``{0, ..., K - 1}^D`` with ``K = 2^n_bits`` bins, and the flow models the continuous

    y = (k + u) / K,    u ~ U[0, 1)^D   (a fresh u for every batch),

which lies in ``[0, 1)^D`` (for ``n_bits = 8``: ``y = (x + u) / 256``).

**Bits per dimension.** A density ``p`` of ``y`` on ``[0, 1)^D`` defines the discrete model
``P(k) = integral over the cell [k/K, (k+1)/K) of p(y) dy``, and by Jensen's inequality

    log P(k) >= E_u[ log p((k + u) / K) ] - D log K,

so ``-log p(y) + D log K`` (nats) is, in expectation over ``u``, an upper bound on the
discrete data's code length, and in bits per dimension

    bpd = ( -log p(y) + D log K ) / (D log 2),

:func:`bits_per_dim`. What is counted: ``log p(y)`` is the full flow log-density of the
dequantised ``y`` in ``[0, 1)^D``, so the logit transform (the flow's first bijector,
``LogitTransform``) and every other step's log-det are already inside it; the ``D log K`` term
is the change of variables of the ``1 / K`` scaling (the density of ``k + u`` on ``[0, K)^D`` is
``p(y) / K^D``); the dequantisation noise ``u`` is uniform, so its own log-density is 0 and
adds nothing (the reference code's ``logpu`` is nonzero only for its padding variant). A model
that is uniform on ``[0, 1)^D`` (``log p = 0``) scores exactly ``log2 K`` = 8 bits/dim for
8-bit data. This is the ``compute_loss`` of the Residual Flows code,
``bpd = -(logpz - delta_logp - D log 256) / (D ln 2)``, with ``D = H W C`` of the image.

References:
  Theis, van den Oord & Bethge (2016), "A note on the evaluation of generative models", ICLR,
    arXiv:1511.01844 (uniform dequantisation, the bound above).
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR,
    arXiv:1605.08803 (dequantisation, logit transform, bits/dim).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative
    Modeling", NeurIPS, arXiv:1906.02735 (Table 2 in bits/dim; 5-bit CelebA).
"""
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.validation import check_positive_int

__all__ = ["bits_per_dim", "check_n_bits", "dequantize", "n_bins", "quantize"]


def check_n_bits(n_bits, name="n_bits"):
    """``int(n_bits)`` for an integer in ``1..8`` (bits kept of 8-bit pixels), else ValueError."""
    n_bits = check_positive_int(n_bits, name)
    if n_bits > 8:
        raise ValueError(f"`{name}` must be an integer in 1..8 (bits kept of 8-bit pixels), "
                         f"got {n_bits!r}.")
    return n_bits


def n_bins(n_bits=8):
    """``K = 2^n_bits``: the number of pixel levels after keeping the top ``n_bits`` bits."""
    return 2 ** check_n_bits(n_bits)


def dequantize(images, seed, n_bits=8):
    """``y = (floor(x / 2^(8 - n_bits)) + u) / 2^n_bits`` with ``u ~ U[0, 1)``, float32.

    Args:
      images: integer pixels ``x`` in ``0..255`` (uint8 array or tensor, any shape, e.g.
        ``[n, H, W, C]``).
      seed: stateless seed of the noise ``u`` (:func:`tfresflow.random.as_seed`): the same seed
        and shape give the same ``u``.
      n_bits: bits kept per pixel (8: all; 5 for the papers' 5-bit CelebA).

    Returns:
      A float32 tensor of the shape of ``images`` with values in ``[0, 1)``, each strictly
      inside its pixel's bin ``[k / K, (k + 1) / K)`` (also where float32 rounding of
      ``k + u`` would reach ``k + 1``), so ``floor(K y) = k`` exactly.
    """
    k = n_bins(n_bits)
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_integer:
        raise ValueError(f"`images` must hold integer pixels 0..255 (e.g. uint8), got dtype "
                         f"{images.dtype.name}.")
    levels = tf.cast(tf.cast(images, tf.int32) // (256 // k), tf.float32)
    u = tf.random.stateless_uniform(tf.shape(images), trf_random.as_seed(seed), dtype=tf.float32)
    # In float32, levels + u rounds up to levels + 1 when u is within half an ulp of 1 (for
    # levels = 255, u > 1 - 2^-17): y would leave its bin (and reach 1.0). The bin's upper end
    # (levels + 1) / k is exact (k is a power of 2); y stays strictly below it.
    upper = tf.math.nextafter((levels + 1.0) / float(k), tf.zeros_like(levels))
    return tf.minimum((levels + u) / float(k), upper)


def quantize(y, n_bits=8):
    """uint8 pixels of values ``y`` on the ``[0, 1]`` scale (e.g. samples of an image flow).

    ``k = min(floor(K clip(y, 0, 1)), K - 1)`` with ``K = 2^n_bits``, returned on the 8-bit
    scale as ``k * 2^(8 - n_bits)``: the bin :func:`dequantize` put ``y`` in, so
    ``quantize(dequantize(x, seed, n), n)`` is ``x`` with its low ``8 - n`` bits cleared.
    Non-finite values raise a ValueError naming ``y``.
    """
    k = n_bins(n_bits)
    y = np.asarray(y, np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"`y` holds {int(np.sum(~np.isfinite(y)))} non-finite values.")
    levels = np.minimum(np.floor(np.clip(y, 0.0, 1.0) * k), k - 1)
    return (levels * (256 // k)).astype(np.uint8)


def bits_per_dim(log_prob, event_size, n_bits=8):
    """``( -log_prob + D log K ) / (D log 2)``: bits/dim of the discrete data, per example.

    See the module docstring for what is counted (``log_prob`` must be the flow's log-density
    in nats of the dequantised data in ``[0, 1)^D``, logit transform included).

    Args:
      log_prob: log-densities in nats (scalar or array, one per example).
      event_size: ``D``, the number of pixel values of one image (``H W C``).
      n_bits: bits per pixel of the discrete data (``K = 2^n_bits`` bins; 8 for 8-bit images).

    Returns:
      float64 numpy array of the shape of ``log_prob`` (bits per dimension).
    """
    d = check_positive_int(event_size, "event_size")
    n_bits = check_n_bits(n_bits)
    log_prob = np.asarray(log_prob, np.float64)
    return n_bits - log_prob / (d * np.log(2.0))   # log2(K) = n_bits exactly
