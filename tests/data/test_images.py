"""Image datasets (``tfresflow.data.images``): offline sets, TFDS loaders, training batches."""
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.data.images import IMAGE_DATASETS, image_batches, load_images


def _rows(images):
    """The images as a sorted list of byte strings (a multiset of examples)."""
    return sorted(im.tobytes() for im in images)


# ---------------------------------------------------------------- offline sets

def test_digits_are_the_sklearn_digits_on_the_8_bit_scale():
    from sklearn.datasets import load_digits
    raw = load_digits()
    train, train_labels = load_images("digits", "train")
    test, test_labels = load_images("digits", "test")
    assert train.dtype == np.uint8 and train.shape[1:] == (8, 8, 1)
    assert len(train) + len(test) == 1797 and len(test) == int(1797 * 0.2)
    assert train_labels.dtype == np.int64 and set(train_labels) == set(range(10))
    # 0..16 -> round(v * 255 / 16): 0 -> 0, 16 -> 255, levels 16 apart, undone by round(x*16/255).
    assert train.min() == 0 and train.max() == 255
    levels = {int(v) for v in np.rint(np.arange(17) * 255 / 16)}
    assert {int(v) for v in np.unique(np.concatenate([train, test]))} <= levels
    pixels = np.concatenate([train, test])[..., 0].astype(np.float64)
    back = np.rint(pixels * 16 / 255).astype(np.int64)
    labels = np.concatenate([train_labels, test_labels])
    expected = sorted(im.astype(np.int64).tobytes() + bytes([t])
                      for im, t in zip(raw.images, raw.target))
    assert sorted(im.tobytes() + bytes([t]) for im, t in zip(back, labels)) == expected


def test_mnist5k_is_5000_real_mnist_digits():
    train, train_labels = load_images("mnist5k", "train")
    test, test_labels = load_images("mnist5k", "test")
    assert train.shape == (4000, 28, 28, 1) and test.shape == (1000, 28, 28, 1)
    assert train.dtype == np.uint8 and test_labels.dtype == np.int64
    assert set(train_labels) == set(range(10)) and set(test_labels) == set(range(10))
    assert train.min() == 0 and train.max() == 255
    # MNIST's mean intensity is 0.1307 of full scale (33 of 255); its digits are centred in
    # the 28 x 28 frame, whose outer rows and columns are (nearly) blank.
    assert 25 < train.mean() < 42
    assert train[:, [0, -1]].mean() < 1 and train[:, :, [0, -1]].mean() < 1
    assert train[:, 10:18, 10:18].mean() > 60


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_offline_split_is_a_seeded_partition(name):
    train, train_y = load_images(name, "train", seed=3)
    test, test_y = load_images(name, "test", seed=3)
    everything = np.concatenate([load_images(name, "train", test_fraction=0.5)[0],
                                 load_images(name, "test", test_fraction=0.5)[0]])
    # train + test is every example exactly once (as a multiset of images).
    assert _rows(np.concatenate([train, test])) == _rows(everything)
    again, again_y = load_images(name, "test", seed=3)
    np.testing.assert_array_equal(again, test)
    np.testing.assert_array_equal(again_y, test_y)
    assert not np.array_equal(load_images(name, "test", seed=4)[0], test)
    assert len(load_images(name, "test", seed=3, test_fraction=0.5)[0]) == len(everything) // 2


def test_max_examples_keeps_the_first_examples_of_the_split():
    test, labels = load_images("digits", "test", seed=1)
    few, few_labels = load_images("digits", "test", seed=1, max_examples=7)
    np.testing.assert_array_equal(few, test[:7])
    np.testing.assert_array_equal(few_labels, labels[:7])


@pytest.mark.parametrize("kwargs, argument", [
    (dict(name="cifar10"), "name"),          # the TFDS sets are spelt tfds:NAME
    (dict(name="tfds:imagenet"), "name"),
    (dict(name="digits", split="validation"), "split"),
    (dict(name="tfds:mnist", split="extra"), "split"),
    (dict(name="digits", test_fraction=1.0), "test_fraction"),
    (dict(name="digits", max_examples=0), "max_examples"),
])
def test_bad_load_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        load_images(**kwargs)


def test_papers_defaults_flip_only_cifar10_and_celeba():
    assert {n for n, d in IMAGE_DATASETS.items() if d.flip} == {"tfds:cifar10", "tfds:celeb_a"}
    assert IMAGE_DATASETS["tfds:celeb_a"].n_bits == 5
    assert IMAGE_DATASETS["tfds:mnist"].alpha == 1e-5 and IMAGE_DATASETS["tfds:cifar10"].alpha == 0.05


# ---------------------------------------------------------------- TFDS loaders on mock data

@pytest.mark.parametrize("name, shape, split", [
    ("tfds:mnist", (28, 28, 1), "test"),
    ("tfds:cifar10", (32, 32, 3), "train"),
    ("tfds:svhn_cropped", (32, 32, 3), "extra"),
    ("tfds:celeb_a", (64, 64, 3), "validation"),
])
def test_tfds_loaders_on_mock_data(name, shape, split):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=5):
        images, labels = load_images(name, split)
        few, _ = load_images(name, split, max_examples=3)
    assert images.shape == (5, *shape) and images.dtype == np.uint8
    assert IMAGE_DATASETS[name].shape == shape
    assert images.max() > 0   # random mock pixels, not an empty conversion
    if name == "tfds:celeb_a":
        assert labels is None
    else:
        assert labels.shape == (5,) and labels.dtype == np.int64
    assert few.shape == (3, *shape)


def test_celeba_keeps_the_central_148_square_resized_to_64():
    import tensorflow_datasets as tfds
    frame = np.zeros((218, 178, 3), np.uint8)
    frame[35:35 + 148, 15:15 + 148] = 200   # the central square; the border is black
    frame[35:35 + 148, 15:15 + 74, 0] = 100  # its left half has another red value

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensors({"image": tf.constant(frame)}).repeat(2)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        images, labels = load_images("tfds:celeb_a", "test")
    assert images.shape == (2, 64, 64, 3) and labels is None
    np.testing.assert_array_equal(images[:, :, :32, 0], 100)  # area resize: halves stay halves
    np.testing.assert_array_equal(images[:, :, 32:, 0], 200)
    np.testing.assert_array_equal(images[..., 1:], 200)        # no black border left


# ---------------------------------------------------------------- training batches

def _levels(batch, n_bits=8):
    return np.floor(batch.numpy().astype(np.float64) * 2 ** n_bits).astype(np.int64)


def test_batches_are_dequantised_pixels_in_the_unit_interval():
    images, _ = load_images("digits", "train", max_examples=50)
    for batch in image_batches(images, 16, seed=0, stop_step=4):
        y = batch.numpy()
        assert batch.dtype == tf.float32 and y.shape == (16, 8, 8, 1)
        assert y.min() >= 0.0 and y.max() < 1.0
        # floor(256 y) is the pixel: each batch row is one of the images, undisturbed.
        assert set(_rows(_levels(batch).astype(np.uint8))) <= set(_rows(images))


def test_noise_is_fresh_each_step_and_the_same_for_the_same_step():
    images = np.full((8, 4, 4, 1), 100, np.uint8)   # identical images: the order is moot
    first = [b.numpy() for b in image_batches(images, 8, seed=5, stop_step=6)]
    u = np.stack(first).astype(np.float64) * 256 - 100
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)   # U[0, 1): mean 1/2
    assert all(not np.array_equal(first[i], first[i + 1]) for i in range(5))
    resumed = [b.numpy() for b in image_batches(images, 8, seed=5, start_step=3, stop_step=6)]
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a, b)
    other = next(iter(image_batches(images, 8, seed=6, stop_step=1))).numpy()
    assert not np.array_equal(other, first[0])


def test_five_bit_dequantisation_keeps_the_top_five_bits():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    y = next(iter(image_batches(images, 1, seed=0, n_bits=5, stop_step=1)))
    np.testing.assert_array_equal(_levels(y, 5), images.astype(np.int64) >> 3)


def test_flips_only_when_asked():
    images = np.zeros((16, 4, 6, 1), np.uint8)
    images[:, :, 3:] = 255                               # right half white
    mirrored = images[:, :, ::-1]
    plain = [_levels(b) for b in image_batches(images, 16, seed=1, stop_step=3)]
    assert all(np.array_equal(p, images) for p in plain)
    flipped = [_levels(b) for b in image_batches(images, 16, seed=1, stop_step=3, flip=True)]
    is_mirrored = np.stack([(f == mirrored).all(axis=(1, 2, 3)) for f in flipped])
    is_plain = np.stack([(f == images).all(axis=(1, 2, 3)) for f in flipped])
    assert np.all(is_mirrored ^ is_plain)                # each image is one or the other
    assert 0 < is_mirrored.mean() < 1                    # some flipped, some not (48 coins)
    again = [_levels(b) for b in image_batches(images, 16, seed=1, start_step=2, stop_step=3,
                                               flip=True)]
    np.testing.assert_array_equal(again[0], flipped[2])


@pytest.mark.parametrize("kwargs, argument", [
    (dict(images=np.zeros((4, 2, 2, 1), np.float32)), "images"),
    (dict(images=np.zeros((4, 4), np.uint8)), "images"),
    (dict(n_bits=0), "n_bits"),
    (dict(n_bits=9), "n_bits"),
    (dict(flip="yes"), "flip"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_batch_arguments_name_the_argument(kwargs, argument):
    args = dict(images=np.zeros((4, 2, 2, 1), np.uint8), batch_size=2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        image_batches(**args)
