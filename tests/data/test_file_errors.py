"""``.npy`` files that are not what they claim, and data of the wrong event shape: a ValueError
naming the argument (``load_array`` / ``train_test_data``)."""
import numpy as np
import pytest

from tfresflow.data import split


def _npy_bytes(arr, tmp_path):
    np.save(tmp_path / "whole.npy", arr)
    return (tmp_path / "whole.npy").read_bytes()


@pytest.mark.parametrize("kind, message", [
    ("text", r"must be a NumPy \.npy array file, but .* is not a NumPy \.npy file"),
    ("objects", r"holds Python objects \(dtype object\)"),
    ("truncated", "damaged or truncated"),
    ("strings", r"must hold numbers, got dtype <U"),
])
def test_malformed_npy_files_name_the_argument(kind, message, tmp_path):
    path = tmp_path / "bad.npy"
    if kind == "text":
        path.write_text("1.0,2.0\n3.0,4.0\n")
    elif kind == "objects":
        np.save(path, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        data = _npy_bytes(np.zeros((50, 2)), tmp_path)
        path.write_bytes(data[:len(data) - 100])
    else:
        np.save(path, np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match=message) as info:
        split.load_array(str(path), name="--data")
    assert "`--data`" in str(info.value)


def test_a_folder_is_not_a_data_file(tmp_path):
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(ValueError, match=r"`--data`=.* is not a file"):
        split.load_array(str(tmp_path / "d.npy"), name="--data")


def test_data_is_checked_against_the_models_event_shape(tmp_path):
    np.save(tmp_path / "five.npy", np.zeros((10, 5), np.float32))
    with pytest.raises(ValueError, match=r"`--data` must have shape \[n, 2\].*got \[10, 5\]"
                                         r".*trained on examples of shape \[2\]"):
        split.train_test_data(str(tmp_path / "five.npy"), 1, 1, name="--data",
                              event_shape=[2])
    with pytest.raises(ValueError, match=r"shape \[n, 3\].*got \[20, 2\]"):
        split.train_test_data("moons", 20, 20, name="--data", event_shape=[3])
    train, test = split.train_test_data("moons", 20, 10, name="--data", event_shape=[2])
    assert train.shape == (20, 2) and test.shape == (10, 2)
