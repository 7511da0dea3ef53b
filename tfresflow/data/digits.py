"""scikit-learn's bundled handwritten digits (8 x 8 images, D = 64): an offline real dataset.

1,797 images with integer pixel values 0..16 (``sklearn.datasets.load_digits``, shipped with
scikit-learn, no download). Preparation, all seeded:

1. seeded shuffle and train / validation / test split;
2. uniform dequantisation ``v = (pixel + u) / 17`` with ``u ~ U[0, 1)``, so ``v`` has a density
   on ``[0, 1)^64`` (Theis et al., 2016);
3. standardisation with the *training* mean and standard deviation per pixel,
   ``x = (v - mean) / std``.

Training with fresh noise. The fixed noise ``u`` of step 2 is one draw; a model trained on it
for many epochs can fit that particular draw. The dequantised likelihood is
``E_u[log p((pixel + u) / 17)]``, so the standard practice for image flows (RealNVP, Glow,
Residual Flows) is a new ``u`` for every minibatch: :meth:`Digits.dequantized_train_dataset`
does this (same standardisation); validation and test keep their one fixed draw.

Log-likelihoods of the standardised data convert to the dequantised ``[0, 1)^64`` space by
adding :attr:`Digits.log_det_standardise` ``= -sum log std`` (nats per image), and to
(dequantised) pixel units ``[0, 17)^64`` by adding a further ``-64 log 17``.

References:
  Theis, van den Oord & Bethge (2016), "A note on the evaluation of generative models", ICLR,
    arXiv:1511.01844 (uniform dequantisation).
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tfresflow.validation import check_number, check_positive_int

EVENT_SIZE = 64
LEVELS = 17


@dataclasses.dataclass(frozen=True)
class Digits:
    """Standardised, dequantised digits splits (float32 ``[n, 64]`` arrays).

    Attributes:
      train, validation, test: the splits (``validation`` may be empty).
      mean, std: per-pixel training statistics of the dequantised ``[0, 1)`` data.
      log_det_standardise: ``-sum(log std)``: add to a log-density of the standardised data to
        get the log-density of the dequantised ``[0, 1)^64`` data.
      train_pixels: the training split's integer pixel values ``0..16`` (float32), for
        :meth:`dequantized_train_dataset`.
    """
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    log_det_standardise: float
    train_pixels: np.ndarray

    def dequantized_train_dataset(self, batch_size, seed=0):
        """Endless shuffled training batches with fresh dequantisation noise in every batch.

        Each batch is ``((pixel + u) / 17 - mean) / std`` with a new ``u ~ U[0, 1)^64`` (seeded:
        the same ``seed`` gives the same stream), standardised like :attr:`train`.

        Args:
          batch_size: examples per batch (the last partial batch of a pass is dropped).
          seed: integer seed of the shuffling and of the noise.

        Returns:
          A ``tf.data.Dataset`` of float32 ``[batch_size, 64]`` batches.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size > len(self.train_pixels):
            raise ValueError(f"`batch_size` must be at most the training set size "
                             f"{len(self.train_pixels)}, got {batch_size}.")
        mean, std = self.mean.astype(np.float32), self.std.astype(np.float32)
        seeds = tf.data.Dataset.random(seed=seed).batch(2)   # one [2] noise seed per batch
        pixels = (tf.data.Dataset.from_tensor_slices(self.train_pixels)
                  .shuffle(len(self.train_pixels), seed=seed, reshuffle_each_iteration=True)
                  .repeat().batch(batch_size, drop_remainder=True))

        def dequantise(batch, noise_seed):
            u = tf.random.stateless_uniform(tf.shape(batch), tf.cast(noise_seed, tf.int32))
            return ((batch + u) / LEVELS - mean) / std

        return (tf.data.Dataset.zip(pixels, seeds)
                .map(dequantise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))

    def to_unit_cube(self, x):
        """Maps standardised data back to the dequantised ``[0, 1)^64`` scale."""
        return np.asarray(x) * self.std + self.mean


def load_digits(test_fraction=0.2, validation_fraction=0.0, seed=0):
    """Loads, splits, dequantises and standardises the bundled digits.

    Args:
      test_fraction: fraction of the 1,797 images held out for testing, in (0, 1).
      validation_fraction: fraction held out for validation, in [0, 1).
      seed: integer seed of the split and of the dequantisation noise.

    Returns:
      A :class:`Digits`.

    Raises:
      ValueError: for fractions outside their ranges or leaving no training data.
      ImportError: if scikit-learn is not installed (``pip install scikit-learn``).
    """
    check_number(test_fraction, "test_fraction", 0.0, 1.0, low_open=True, high_open=True)
    check_number(validation_fraction, "validation_fraction", 0.0, 1.0, high_open=True)
    if test_fraction + validation_fraction >= 1:
        raise ValueError("`test_fraction` + `validation_fraction` must be < 1 (training data "
                         f"is needed), got {test_fraction!r} + {validation_fraction!r}.")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise ImportError("tfresflow.data.digits needs scikit-learn (its bundled digits "
                          "dataset): pip install scikit-learn") from err
    pixels = sk_load_digits().data.astype(np.float64)
    rng = np.random.default_rng(seed)
    pixels = pixels[rng.permutation(len(pixels))]
    unit = (pixels + rng.uniform(size=pixels.shape)) / LEVELS
    n = len(unit)
    n_test = int(round(test_fraction * n))
    n_val = int(round(validation_fraction * n))
    train_rows = slice(n_test + n_val, None)
    test, val, train = unit[:n_test], unit[n_test:n_test + n_val], unit[train_rows]
    mean, std = train.mean(0), train.std(0)

    def standardise(v):
        return ((v - mean) / std).astype(np.float32)

    return Digits(train=standardise(train), validation=standardise(val),
                  test=standardise(test), mean=mean, std=std,
                  log_det_standardise=float(-np.sum(np.log(std))),
                  train_pixels=pixels[train_rows].astype(np.float32))
