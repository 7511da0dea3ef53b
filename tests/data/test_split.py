"""Train/test data of a fit (``tfresflow.data.split``): seeded, disjoint, 80/20, clear errors."""
import numpy as np
import pytest

from tfresflow.data import split


def _rows(a):
    return {tuple(r) for r in a}


def test_random_split_is_seeded_disjoint_and_80_20():
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    train, test = split.random_split(x, seed=3)
    assert train.shape == (80, 2) and test.shape == (20, 2)
    assert not _rows(train) & _rows(test) and _rows(train) | _rows(test) == _rows(x)
    again = split.random_split(x, seed=3)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    assert not np.array_equal(test, split.random_split(x, seed=4)[1])


@pytest.mark.parametrize("n, n_test", [(2, 1), (4, 1), (5, 1), (9, 1), (10, 2), (101, 20)])
def test_random_split_holds_out_a_fifth_and_at_least_one(n, n_test):
    train, test = split.random_split(np.zeros((n, 3)), seed=0)
    assert len(test) == n_test and len(train) == n - n_test


def test_random_split_needs_two_examples():
    with pytest.raises(ValueError, match=r"`--data` needs at least 2 examples .* got 1"):
        split.random_split(np.zeros((1, 2)), name="--data")
    with pytest.raises(ValueError, match="test_fraction"):
        split.random_split(np.zeros((10, 2)), test_fraction=1.0)


def test_npy_file_is_loaded_and_split_like_an_array(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    train, test = split.train_test_data(str(tmp_path / "x.npy"), 1, 1, seed=7)
    expected = split.random_split(x, seed=7)
    np.testing.assert_array_equal(train, expected[0])
    np.testing.assert_array_equal(test, expected[1])
    assert train.dtype == np.float32 and test.shape == (10, 3)


@pytest.mark.parametrize("arr, message", [
    (np.zeros(10), r"shape \[n, d\].*got shape \[10\]"),
    (np.zeros((4, 2, 2)), r"shape \[n, d\].*got shape \[4, 2, 2\]"),
    (np.zeros((1, 2)), "at least 2 examples"),
    (np.zeros((0, 2)), "is empty"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), "non-finite"),
])
def test_bad_npy_files_raise_naming_the_argument(tmp_path, arr, message):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(ValueError, match=message) as info:
        split.train_test_data(str(tmp_path / "bad.npy"), 1, 1, name="--data")
    assert "`--data`" in str(info.value)


def test_missing_file_and_unknown_toy_name(tmp_path):
    with pytest.raises(ValueError, match=r"`--data` file .* does not exist"):
        split.train_test_data(str(tmp_path / "none.npy"), 1, 1, name="--data")
    with pytest.raises(ValueError, match="Unknown toy density 'swissroll'"):
        split.train_test_data("swissroll", 10, 10)


def test_toy_density_draws_train_with_seed_and_test_with_seed_plus_one():
    from tfresflow.data import sample
    train, test = split.train_test_data("moons", 30, 20, seed=5)
    np.testing.assert_array_equal(train, sample("moons", 30, seed=5))
    np.testing.assert_array_equal(test, sample("moons", 20, seed=6))
