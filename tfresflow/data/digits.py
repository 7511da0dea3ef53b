"""scikit-learn's bundled handwritten digits (8 x 8 images, D = 64): an offline real dataset.

1,797 images with integer pixel values 0..16 (``sklearn.datasets.load_digits``, shipped with
scikit-learn, no download). Preparation, all seeded:

1. seeded shuffle and train / validation / test split;
2. uniform dequantisation ``v = (pixel + u) / 17`` with ``u ~ U[0, 1)``, so ``v`` has a density
   on ``[0, 1)^64`` (Theis et al., 2016);
3. standardisation with the *training* mean and standard deviation per pixel,
   ``x = (v - mean) / std``.

Log-likelihoods of the standardised data convert to the dequantised ``[0, 1)^64`` space by
adding :attr:`Digits.log_det_standardise` ``= -sum log std`` (nats per image), and to
(dequantised) pixel units ``[0, 17)^64`` by adding a further ``-64 log 17``.
"""
import dataclasses

import numpy as np

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
    """
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    log_det_standardise: float

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
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in [0, 1), got "
                         f"{validation_fraction!r}.")
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
    test, val, train = unit[:n_test], unit[n_test:n_test + n_val], unit[n_test + n_val:]
    mean, std = train.mean(0), train.std(0)

    def standardise(v):
        return ((v - mean) / std).astype(np.float32)

    return Digits(train=standardise(train), validation=standardise(val),
                  test=standardise(test), mean=mean, std=std,
                  log_det_standardise=float(-np.sum(np.log(std))))
