"""Every bad input of the command line: ``tfresflow CMD: error: ...``, exit code 2, no traceback,
before the work and without output.

Output paths are checked while parsing (before TensorFlow is even imported); data files and
model files when the command starts, before any training or sampling.
"""
import os
import zipfile

import numpy as np
import pytest

from tests.cli.cli_process import run_cli, run_cli_many


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small trained-shape ``model.keras`` (2-D coupling flow)."""
    from tfresflow.models import build_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model("coupling", 2, n_steps=1, hidden_units=(4,)).save(path)
    return path


def _assert_clear_error(code, stderr, command, *fragments):
    assert code == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"tfresflow {command}: error:"), stderr
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def _unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root: permission bits do not bind; /proc still refuses
        if not os.path.isdir("/proc"):
            pytest.skip("no unwritable folder available")
        return "/proc"
    return str(folder)


@pytest.mark.parametrize("where, fragment", [
    ("missing", "does not exist"),
    ("directory", "is a directory"),
    ("unwritable", "is not writable"),
])
def test_sample_out_is_checked_before_sampling(where, fragment, model_file, tmp_path):
    out = {"missing": tmp_path / "no" / "such" / "s.npy",
           "directory": tmp_path,
           "unwritable": os.path.join(_unwritable_folder(tmp_path), "s.npy")}[where]
    before = sorted(os.listdir(tmp_path))
    done = run_cli(["sample", model_file, "--n", "10", "--out", out])
    _assert_clear_error(done.returncode, done.stderr, "sample", "--out", fragment)
    assert sorted(os.listdir(tmp_path)) == before   # nothing written


def _data_files(folder):
    rng = np.random.default_rng(0)
    np.save(folder / "flat.npy", rng.normal(size=100))
    np.save(folder / "cube.npy", rng.normal(size=(100, 2, 2)))
    np.save(folder / "five.npy", rng.normal(size=(100, 5)))
    (folder / "text.npy").write_text("x,y\n0.1,0.2\n")
    np.save(folder / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(folder / "whole.npy", rng.normal(size=(100, 2)))
    data = (folder / "whole.npy").read_bytes()
    (folder / "cut.npy").write_bytes(data[:len(data) // 2])


def test_bad_data_and_model_files_are_clear_errors(model_file, tmp_path):
    _data_files(tmp_path)
    keras_bytes = model_file.read_bytes()
    (tmp_path / "cut.keras").write_bytes(keras_bytes[:len(keras_bytes) // 2])
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    train = ["train", "--steps", "2", "--n-train", "50", "--n-test", "20", "--quiet"]
    cases = [
        (train + ["--data", "flat.npy", "--out", "o1"], "train", "shape [n, d]", "got shape [100]"),
        (train + ["--data", "cube.npy", "--out", "o2"], "train", "got shape [100, 2, 2]"),
        (train + ["--data", "text.npy", "--out", "o3"], "train", "not a NumPy .npy file"),
        (train + ["--data", "objects.npy", "--out", "o4"], "train", "holds Python objects"),
        (train + ["--data", "cut.npy", "--out", "o5"], "train", "damaged or truncated"),
        (["evaluate", "cut.keras", "--data", "moons"], "evaluate", "`model_path`",
         "not a zip archive"),
        (["sample", "cut.keras", "--out", "s.npy"], "sample", "not a zip archive"),
        (["evaluate", "other.keras"], "evaluate", "without the config.json"),
        (["evaluate", model_file, "--data", "five.npy"], "evaluate", "`--data`",
         "[n, 2]", "got [100, 5]"),
        (["evaluate", model_file, "--data", "flat.npy"], "evaluate", "got shape [100]"),
    ]
    results = run_cli_many([argv for argv, *_ in cases], cwd=tmp_path)
    for (argv, command, *fragments), result in zip(cases, results):
        _assert_clear_error(result["code"], result["stderr"], command, *fragments)
    leftovers = {"o1", "o2", "o3", "o4", "o5", "s.npy"} & set(os.listdir(tmp_path))
    assert not leftovers   # no output folder or file was made
