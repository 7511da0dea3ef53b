"""Statically binarised datasets (``tfresflow.data.binarized``)."""
import numpy as np
import pytest

from tfresflow.data.binarized import (BINARIZED_DATASETS, binarize, binary_batches,
                                      load_binarized)
from tfresflow.data.images import load_images


def test_bernoulli_binarisation_has_the_intensity_as_probability():
    # 4000 copies would share one content-addressed draw; use distinct images of one level
    # per column: pixel j of every image has intensity levels[j], plus a distinct tag pixel.
    levels = np.array([0, 32, 64, 128, 191, 255], np.uint8)
    n = 4000
    images = np.zeros((n, 8), np.uint8)
    images[:, :6] = levels
    images[:, 6] = np.arange(n) % 256
    images[:, 7] = np.arange(n) // 256
    b = binarize(images, "bernoulli", seed=3)
    assert b.dtype == np.uint8 and set(np.unique(b)) <= {0, 1}
    p = levels / 255.0
    freq = b[:, :6].mean(0)
    se = np.sqrt(p * (1 - p) / n)
    z = np.abs(freq - p) / np.maximum(se, 1e-12)
    assert np.all(z[1:-1] < 4.5)
    assert freq[0] == 0.0 and freq[-1] == 1.0   # 0 never on, 255 always on
    # Pixels are independent: P(both on) = p_a p_b for two columns.
    joint = np.mean(b[:, 3] * b[:, 4])
    pj = p[3] * p[4]
    assert abs(joint - pj) < 4.5 * np.sqrt(pj * (1 - pj) / n)


def test_binarisation_is_static_and_content_addressed():
    images, _ = load_images("digits", "test")
    a, b = binarize(images, seed=0), binarize(images, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, binarize(images, seed=1))
    # An image binarises the same way wherever it sits in the array.
    perm = np.random.default_rng(0).permutation(len(images))
    np.testing.assert_array_equal(binarize(images[perm], seed=0), a[perm])


def test_threshold_binarisation():
    images = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(binarize(images, "threshold"), [[0, 0, 1, 1]])


@pytest.mark.parametrize("name, shape", [("mnist5k", (28, 28, 1)), ("digits", (8, 8, 1))])
def test_offline_binarised_sets(name, shape):
    train, train_y = load_binarized(name, "train")
    test, _ = load_binarized(name, "test")
    raw, raw_y = load_images(name, "train")
    assert train.shape == (len(raw), *shape) and train.dtype == np.uint8
    assert set(np.unique(np.concatenate([train, test]))) == {0, 1}
    np.testing.assert_array_equal(train_y, raw_y)
    # Static: the same data every time; the mean on-fraction is the mean intensity.
    np.testing.assert_array_equal(load_binarized(name, "test")[0], test)
    p = raw / 255.0
    se = np.sqrt(np.sum(p * (1 - p))) / p.size
    assert abs(train.mean() - p.mean()) < 5 * se
    # Only pixels with intensity > 0 can be on, and only pixels < 255 off.
    assert not np.any(train[raw == 0]) and np.all(train[raw == 255])
    # The split seed picks images, not their binarisation: a test image keeps its pixels.
    other, _ = load_binarized(name, "train", seed=5)
    rows = {im.tobytes(): b for im, b in zip(load_images(name, "train", seed=5)[0], other)}
    for im, b in zip(raw[:50], train[:50]):
        if im.tobytes() in rows:
            np.testing.assert_array_equal(rows[im.tobytes()], b)
    thr, _ = load_binarized(name, "train", binarization="threshold", max_examples=10)
    np.testing.assert_array_equal(thr, (raw[:10] >= 128).astype(np.uint8))


@pytest.mark.parametrize("kwargs, argument", [
    (dict(name="binarized_mnist"), "name"),
    (dict(name="digits", split="validation"), "split"),
    (dict(name="digits", binarization="dither"), "binarization"),
    (dict(name="digits", binarize_seed=-1), "binarize_seed"),
    (dict(name="digits", max_examples=0), "max_examples"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        load_binarized(**kwargs)


def test_binarize_rejects_non_8_bit_input():
    with pytest.raises(ValueError, match="`images`"):
        binarize(np.zeros((2, 3), np.float32))


def test_tfds_binarized_mnist_on_mock_data():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=6):
        images, labels = load_binarized("tfds:binarized_mnist", "validation")
        few, _ = load_binarized("tfds:binarized_mnist", "test", max_examples=2)
    assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8 and labels is None
    assert set(np.unique(images)) == {0, 1}
    assert few.shape == (2, 28, 28, 1)
    assert BINARIZED_DATASETS["tfds:binarized_mnist"].splits == ("train", "validation", "test")


def test_tfds_binarized_mnist_keeps_the_stored_zero_one_pixels():
    import tensorflow as tf
    import tensorflow_datasets as tfds
    frame = np.zeros((28, 28, 1), np.uint8)
    frame[5:20, 10:12] = 1

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensors({"image": frame}).repeat(3)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        images, _ = load_binarized("tfds:binarized_mnist", "train")
    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(images[1], frame)


def test_binary_batches_are_float_step_indexed():
    images, _ = load_binarized("digits", "train")
    batches = list(binary_batches(images, 16, seed=2, stop_step=3).as_numpy_iterator())
    assert len(batches) == 3 and batches[0].dtype == np.float32
    assert batches[0].shape == (16, 8, 8, 1) and set(np.unique(batches[0])) <= {0.0, 1.0}
    resumed = next(binary_batches(images, 16, seed=2, start_step=2).as_numpy_iterator())
    np.testing.assert_array_equal(resumed, batches[2])
    with pytest.raises(ValueError, match="`images`"):
        binary_batches(images * 3, 16, seed=0)
