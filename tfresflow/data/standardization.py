"""Per-channel standardisation of dequantised images: the hybrid models' preprocessing.

Where the papers use it: Residual Flows (Chen et al., 2019, App. E) "for hybrid modeling on
CIFAR-10, we replaced the logit transform with normalization by the standard preprocessing of
subtracting the mean and dividing by the standard deviation across the training data"; "the
MNIST and SVHN architectures for hybrid modeling were the same as those for density modeling"
(so they keep the logit transform). i-DenseNets (Perugachi-Diaz et al., 2021, App. B): "for
hybrid models, instead of the logit transform, the images use normalization
x = (x - mu) / sigma" (CIFAR-10). Density models never use it.

The map. For dequantised pixels ``y in [0, 1)^D`` (:func:`~tfresflow.data.dequantization.
dequantize`) of an ``[H, W, C]`` image,

    s[h, w, c] = (y[h, w, c] - mu_c) / sigma_c,

with ``mu_c, sigma_c`` the mean and standard deviation of channel ``c`` over the training set.
:func:`channel_statistics` computes them exactly for the *dequantised* training data (the
expectation over the uniform noise, no sampling): with ``k`` the pixel levels of channel ``c``
(``K = 2^n_bits`` bins) and ``y = (k + u) / K``, ``u ~ U[0, 1)`` independent of ``k``,

    mu_c = (E[k] + 1/2) / K,    sigma_c^2 = (Var[k] + 1/12) / K^2,

the moments over all training pixels of the channel (population variance).

Bits/dim. ``s`` is a fixed affine map of ``y``, so ``log |det ds/dy| = -H W sum_c log sigma_c``,
a constant per image (:meth:`Standardization.log_det`), and ``log p_Y(y) = log p_S(s) +
log_det``. Two ways to keep bits/dim those of the 8-bit data
(:func:`~tfresflow.data.dequantization.bits_per_dim` wants the log-density of ``y`` in
``[0, 1)^D``):

* standardise inside the flow: :meth:`Standardization.bijector` as the flow's first step
  instead of the ``LogitTransform`` (its ``inverse`` is the map above, its log-det counted by
  ``log_prob`` like every step's), and feed the flow the unstandardised batches; or
* standardise the batches (``image_batches(..., standardization=...)``) and convert the
  flow's log-densities with :meth:`Standardization.data_log_prob` before ``bits_per_dim``.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative
    Modeling", NeurIPS, arXiv:1906.02735 (Appendix E).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Appendix B).
"""
import dataclasses
from typing import Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow.data.dequantization import n_bins

tfb = tfp.bijectors

__all__ = ["Standardization", "as_standardization", "channel_statistics"]


@dataclasses.dataclass(frozen=True)
class Standardization:
    """The fixed per-channel affine map ``s = (y - mean) / std`` (module docstring).

    Attributes:
      mean, std: one float per channel (``std > 0``), on the scale of the dequantised
        ``y in [0, 1)``.
    """
    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    def __post_init__(self):
        mean = np.asarray(self.mean, np.float64).reshape(-1)
        std = np.asarray(self.std, np.float64).reshape(-1)
        if mean.size == 0 or mean.shape != std.shape:
            raise ValueError("`mean` and `std` must hold one value per channel (the same "
                             f"number), got {mean.size} and {std.size}.")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"`std` must be finite and positive and `mean` finite, got mean "
                             f"{mean.tolist()} and std {std.tolist()}.")
        object.__setattr__(self, "mean", tuple(float(v) for v in mean))
        object.__setattr__(self, "std", tuple(float(v) for v in std))

    @property
    def channels(self):
        return len(self.mean)

    def apply(self, y):
        """``(y - mean) / std`` over the last (channel) axis, float32 (or ``y``'s float dtype)."""
        y = tf.convert_to_tensor(y)
        y = y if y.dtype.is_floating else tf.cast(y, tf.float32)
        return (y - tf.constant(self.mean, y.dtype)) / tf.constant(self.std, y.dtype)

    def log_det(self, event_shape):
        """``log |det ds/dy| = -H W sum_c log std_c`` for one image ``event_shape`` ``[H, W, C]``
        (a Python float, the same for every image)."""
        shape = [int(d) for d in event_shape]
        if len(shape) < 1 or shape[-1] != self.channels:
            raise ValueError(f"`event_shape` must end with the {self.channels} channels of "
                             f"this standardisation, got {shape}.")
        return -float(np.prod(shape[:-1])) * float(np.sum(np.log(self.std)))

    def data_log_prob(self, log_prob, event_shape):
        """``log p_Y(y) = log p_S(s) + log_det``: the log-density of the dequantised ``y``
        (what :func:`~tfresflow.data.dequantization.bits_per_dim` takes) from a flow's
        log-density ``log_prob`` of the standardised ``s`` (numpy, float64)."""
        return np.asarray(log_prob, np.float64) + self.log_det(event_shape)

    def bijector(self, dtype=tf.float32):
        """The standardisation as a TFP bijector step of a flow (TFP direction: ``inverse``,
        data -> latent, is ``s = (y - mean) / std``; ``forward`` is ``y = std s + mean``),
        ``tfb.Chain([tfb.Shift(mean), tfb.Scale(std)])``, whose log-det ``log_prob`` counts.
        Stateless TFP steps: ``FlowModel`` files serialise them."""
        return tfb.Chain([tfb.Shift(np.asarray(self.mean, dtype.as_numpy_dtype),
                                    name="standardize_shift"),
                          tfb.Scale(np.asarray(self.std, dtype.as_numpy_dtype),
                                    name="standardize_scale")],
                         name="standardize")


def as_standardization(value, name="standardization"):
    """``value`` as a :class:`Standardization`: one already, a ``(mean, std)`` pair or a
    ``{"mean": ..., "std": ...}`` dict; ``None`` stays ``None``; else a ValueError naming
    ``name``."""
    if value is None or isinstance(value, Standardization):
        return value
    if isinstance(value, dict) and set(value) == {"mean", "std"}:
        return Standardization(tuple(np.ravel(value["mean"])), tuple(np.ravel(value["std"])))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Standardization(tuple(np.ravel(value[0])), tuple(np.ravel(value[1])))
    raise ValueError(f"`{name}` must be None, a Standardization, a (mean, std) pair or a "
                     f"{{'mean': ..., 'std': ...}} dict, got {type(value).__name__}.")


def channel_statistics(images, n_bits=8):
    """The :class:`Standardization` of the dequantised training ``images`` (exact moments).

    ``mean_c = (E[k] + 1/2) / K`` and ``std_c^2 = (Var[k] + 1/12) / K^2``, with ``k = floor(x / 2^(8 - n_bits))`` the levels of
    channel ``c`` over all pixels of all images and ``K = 2^n_bits``: the mean and variance of
    ``y = (k + u) / K`` with uniform noise ``u`` (module docstring).

    Args:
      images: uint8 array ``[n, H, W, C]`` of the training split (e.g. :func:`load_images`).
      n_bits: bits per pixel kept, as for ``dequantize``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] == 0:
        raise ValueError(f"`images` must be a non-empty uint8 array [n, H, W, C], got dtype "
                         f"{images.dtype} and shape {list(images.shape)}.")
    k = n_bins(n_bits)
    levels = (images.astype(np.int64) // (256 // k)).reshape(-1, images.shape[-1])
    levels = levels.astype(np.float64)
    mean = (levels.mean(axis=0) + 0.5) / k
    std = np.sqrt((levels.var(axis=0) + 1.0 / 12.0) / k ** 2)
    return Standardization(tuple(mean), tuple(std))
