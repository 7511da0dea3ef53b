"""The hybrid models' data (Residual Flows, App. E): labels, random crops after reflection
padding, per-channel standardisation, labelled training batches.

Checked against independent references: crops against windows of ``np.pad(mode="reflect")``,
offsets uniform (counts within a z-bound), standardisation statistics against many dequantised
draws (z-bounds) and its log-det against the brute-force Jacobian, labels against the image
they were loaded with.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.bijectors.serialization import deserialize_bijector, serialize_bijector
from tfresflow.data.dequantization import bits_per_dim, dequantize
from tfresflow.data.images import (IMAGE_DATASETS, image_batches, labelled_image_batches,
                                   load_images, random_crop)
from tfresflow.data.standardization import Standardization, channel_statistics
from tests.helpers import brute_force_ildj


def _distinct_images(n, h, w, c):
    """Images whose pixels are all different within each image (the crop offset is readable)."""
    base = np.arange(h * w * c).reshape(h, w, c)
    return ((base[None] + 7 * np.arange(n)[:, None, None, None]) % 256).astype(np.uint8)


def _offset(crop, image, pad):
    """The ``(i, j)`` with ``crop == np.pad(image, reflect)[i:i+H, j:j+W]`` (asserts one)."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
    hits = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
            if np.array_equal(padded[i:i + h, j:j + w], crop)]
    assert len(hits) == 1, hits
    return hits[0]


# ---------------------------------------------------------------- random crops

@pytest.mark.parametrize("shape,pad", [((8, 8, 1), 4), ((6, 5, 3), 2), ((4, 4, 2), 1)])
def test_crops_are_windows_of_the_reflection_padded_image_with_uniform_offsets(shape, pad):
    images = _distinct_images(40, *shape)
    counts = np.zeros((2 * pad + 1, 2 * pad + 1))
    for step in range(10):
        crops = random_crop(tf.constant(images), pad, seed=[3, step]).numpy()
        assert crops.shape == images.shape and crops.dtype == np.uint8
        for crop, image in zip(crops, images):
            counts[_offset(crop, image, pad)] += 1
    # 400 offsets, uniform over (2 pad + 1)^2 cells: every count within 5 sd of its mean
    n, cells = counts.sum(), counts.size
    p = 1.0 / cells
    assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)) + 1)
    if cells <= 25:
        assert np.all(counts > 0)


def test_crop_pad_is_tf_reflect_is_numpy_reflect_and_zero_pad_is_identity():
    image = _distinct_images(1, 5, 5, 1)
    np.testing.assert_array_equal(random_crop(image, 0, seed=1).numpy(), image)
    # The window at the centre offset is the image; the corner windows are numpy's reflection.
    seen = set()
    for s in range(200):
        crop = random_crop(image, 2, seed=[s, 0]).numpy()[0]
        seen.add(_offset(crop, image[0], 2))
        if len(seen) == 25:
            break
    assert len(seen) == 25


def test_crops_are_seeded():
    images = _distinct_images(16, 8, 8, 1)
    a = random_crop(images, 3, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(a, random_crop(images, 3, seed=[1, 2]).numpy())
    assert not np.array_equal(a, random_crop(images, 3, seed=[1, 3]).numpy())


def test_batches_with_crops_are_reproducible_fresh_per_step_and_resumable():
    images = _distinct_images(8, 8, 8, 1)
    kwargs = dict(batch_size=8, seed=4, crop_padding=2, flip=True)
    first = [b.numpy() for b in image_batches(images, stop_step=5, **kwargs)]
    again = [b.numpy() for b in image_batches(images, stop_step=5, **kwargs)]
    resumed = [b.numpy() for b in image_batches(images, start_step=3, stop_step=5, **kwargs)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a, b)
    levels = [np.floor(b.astype(np.float64) * 256).astype(np.uint8) for b in first]
    assert not np.array_equal(np.sort(levels[0], axis=0), np.sort(levels[1], axis=0))
    # every image of every batch is a (maybe mirrored) window of a padded training image
    for batch in levels:
        for crop in batch:
            matches = 0
            for image in images:
                for cand in (crop, crop[:, ::-1]):
                    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)], mode="reflect")
                    matches += any(np.array_equal(padded[i:i + 8, j:j + 8], cand)
                                   for i in range(5) for j in range(5))
            assert matches >= 1
    # the defaults do not change the batches of image_batches without the new options
    plain = next(iter(image_batches(images, 8, seed=4, stop_step=1))).numpy()
    same = next(iter(image_batches(images, 8, seed=4, stop_step=1, crop_padding=0,
                                   standardization=None))).numpy()
    np.testing.assert_array_equal(plain, same)


# ---------------------------------------------------------------- labels

def test_labelled_batches_keep_labels_with_their_images():
    rng = np.random.default_rng(0)
    n = 60
    values = rng.permutation(256)[:n]                   # image i is constant values[i]
    images = np.broadcast_to(values[:, None, None, None], (n, 6, 6, 2)).astype(np.uint8)
    labels = rng.integers(0, 10, size=n)
    label_of = dict(zip(values.tolist(), labels.tolist()))
    batches = list(labelled_image_batches(images, labels, 16, seed=2, stop_step=12,
                                          flip=True, crop_padding=2))
    seen = set()
    for x, y in batches:
        assert x.dtype == tf.float32 and x.shape == (16, 6, 6, 2)
        assert y.dtype == tf.int64 and y.shape == (16,)
        v = np.floor(x.numpy().astype(np.float64) * 256).astype(np.int64)
        assert np.all(v == v[:, :1, :1, :1])            # crops of constant images stay constant
        assert [label_of[int(k)] for k in v[:, 0, 0, 0]] == y.numpy().tolist()
        seen.update(v[:, 0, 0, 0].tolist())
    assert seen == set(values.tolist())                 # 192 draws cover the 60 images
    # the images are exactly those of image_batches with the same arguments
    plain = list(image_batches(images, 16, seed=2, stop_step=12, flip=True, crop_padding=2))
    for (x, _), p in zip(batches, plain):
        np.testing.assert_array_equal(x.numpy(), p.numpy())


def test_loaders_labels_and_dataset_attributes():
    images, labels = load_images("digits", "train", max_examples=100)
    x, y = next(iter(labelled_image_batches(images, labels, 100, seed=0, stop_step=1)))
    assert sorted(y.numpy().tolist()) == sorted(labels.tolist())
    assert {n: d.num_classes for n, d in IMAGE_DATASETS.items()} == {
        "digits": 10, "mnist5k": 10, "tfds:mnist": 10, "tfds:cifar10": 10,
        "tfds:svhn_cropped": 10, "tfds:celeb_a": None}
    assert {n for n, d in IMAGE_DATASETS.items() if d.hybrid_crop_padding} == {
        "tfds:cifar10", "tfds:svhn_cropped"}
    assert IMAGE_DATASETS["tfds:cifar10"].hybrid_crop_padding == 4
    assert {n for n, d in IMAGE_DATASETS.items() if d.hybrid_standardize} == {"tfds:cifar10"}


@pytest.mark.parametrize("kwargs, argument", [
    (dict(labels=None), "labels"),
    (dict(labels=np.zeros(3, np.int64)), "labels"),
    (dict(labels=np.zeros(4, np.float32)), "labels"),
    (dict(labels=-np.ones(4, np.int64)), "labels"),
    (dict(crop_padding=4), "crop_padding"),      # not < 4 (reflection of a 4 x 4 image)
    (dict(crop_padding=-1), "crop_padding"),
    (dict(standardization=(0.5, 0.2)), "standardization"),
    (dict(standardization=Standardization((0.5,), (0.2,))), "standardization"),   # 1 vs 2 ch.
])
def test_bad_labelled_batch_arguments_name_the_argument(kwargs, argument):
    args = dict(images=np.zeros((4, 4, 4, 2), np.uint8), labels=np.arange(4), batch_size=2,
                seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        labelled_image_batches(**args)


# ---------------------------------------------------------------- standardisation

def test_channel_statistics_are_the_moments_of_the_dequantised_data():
    rng = np.random.default_rng(1)
    images = np.stack([rng.integers(0, 256, (10, 4, 4)), rng.integers(0, 60, (10, 4, 4)),
                       np.full((10, 4, 4), 200)], axis=-1).astype(np.uint8)
    stats = channel_statistics(images)
    draws = np.stack([dequantize(images, [s, 1]).numpy() for s in range(50)]).reshape(-1, 3)
    draws = draws.astype(np.float64)
    m = len(draws)
    # mean within 5 standard errors; the variance of a constant channel is that of u / 256
    np.testing.assert_array_less(np.abs(draws.mean(0) - stats.mean),
                                 5 * draws.std(0) / np.sqrt(m))
    np.testing.assert_allclose(draws.std(0), stats.std, rtol=0.03)
    np.testing.assert_allclose(stats.mean[2], 200.5 / 256)
    np.testing.assert_allclose(stats.std[2], np.sqrt(1 / 12) / 256)
    # standardised batches: per channel mean 0 and standard deviation 1 over the data
    batches = image_batches(images, 10, seed=3, stop_step=50, standardization=stats)
    s = np.stack([b.numpy() for b in batches]).reshape(-1, 3).astype(np.float64)
    np.testing.assert_array_less(np.abs(s.mean(0)), 5 / np.sqrt(m))
    np.testing.assert_allclose(s.std(0), 1.0, rtol=0.03)
    # 5 bits: levels of x >> 3
    five = channel_statistics(images, n_bits=5)
    np.testing.assert_allclose(five.mean[0], ((images[..., 0] >> 3).mean() + 0.5) / 32)


def test_standardization_log_det_bijector_and_bits_per_dim():
    st = Standardization((0.3, 0.5), (0.2, 0.05))
    shape = [3, 2, 2]
    y = np.random.default_rng(2).uniform(size=(4, *shape)).astype(np.float64)
    expected = -6 * (np.log(0.2) + np.log(0.05))
    assert st.log_det(shape) == pytest.approx(expected)
    b = st.bijector(tf.float64)
    np.testing.assert_allclose(b.inverse(tf.constant(y)).numpy(), st.apply(y).numpy())
    np.testing.assert_allclose(st.apply(y).numpy(), (y - [0.3, 0.5]) / [0.2, 0.05])
    np.testing.assert_allclose(brute_force_ildj(b, y, shape), expected, rtol=1e-12)
    np.testing.assert_allclose(b.inverse_log_det_jacobian(tf.constant(y), event_ndims=3),
                               expected, rtol=1e-12)
    # a N(0, I) model of the standardised values: log p(y) by the bijector = data_log_prob
    import tensorflow_probability as tfp
    base = tfp.distributions.Independent(tfp.distributions.Normal(
        tf.zeros(shape, tf.float64), 1.0), 3)
    flow = tfp.distributions.TransformedDistribution(base, b)
    s = st.apply(y)
    np.testing.assert_allclose(flow.log_prob(tf.constant(y)).numpy(),
                               st.data_log_prob(base.log_prob(s).numpy(), shape), rtol=1e-12)
    bpd = bits_per_dim(st.data_log_prob(base.log_prob(s).numpy(), shape), 12)
    np.testing.assert_allclose(bpd, bits_per_dim(flow.log_prob(tf.constant(y)).numpy(), 12))
    # the bijector is a stateless TFP chain: FlowModel files serialise it
    again = deserialize_bijector(serialize_bijector(st.bijector()))
    np.testing.assert_allclose(again.inverse(tf.constant(y, tf.float32)).numpy(),
                               st.apply(y.astype(np.float32)).numpy(), rtol=1e-6)


def test_standardization_arguments():
    with pytest.raises(ValueError, match="`std`"):
        Standardization((0.5,), (0.0,))
    with pytest.raises(ValueError, match="`mean` and `std`"):
        Standardization((0.5, 0.1), (0.2,))
    with pytest.raises(ValueError, match="`event_shape`"):
        Standardization((0.5,), (0.2,)).log_det([4, 4, 3])
    with pytest.raises(ValueError, match="`images`"):
        channel_statistics(np.zeros((0, 4, 4, 1), np.uint8))
