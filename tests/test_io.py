"""Path checks of :mod:`tfresflow.io`: files to write and files to read, before the work."""
import os
import zipfile

import pytest

from tfresflow import io


def test_output_file_checks(tmp_path):
    assert io.check_output_file(tmp_path / "s.npy", "--out") == str(tmp_path / "s.npy")
    (tmp_path / "old.npy").write_text("x")
    assert io.check_output_file(str(tmp_path / "old.npy"), "--out")   # replaced later
    with pytest.raises(ValueError, match=r"`--out`=.* is a directory"):
        io.check_output_file(tmp_path, "--out")
    with pytest.raises(ValueError, match=r"Cannot write `--out`=.*does not exist"):
        io.check_output_file(tmp_path / "missing" / "s.npy", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        io.check_output_file(tmp_path / "file" / "s.npy", "--out")
    assert sorted(os.listdir(tmp_path)) == ["file", "old.npy"]   # the probe left nothing


def test_input_file_checks(tmp_path):
    with pytest.raises(ValueError, match=r"`model_path` file .* does not exist"):
        io.check_input_file(tmp_path / "none.keras", "model_path", "keras")
    (tmp_path / "half.keras").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(ValueError, match=r"not a zip archive \(truncated"):
        io.check_input_file(tmp_path / "half.keras", "model_path", "keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("weights.h5", b"")
    with pytest.raises(ValueError, match="without the config.json"):
        io.check_input_file(tmp_path / "other.keras", "model_path", "keras")
    with zipfile.ZipFile(tmp_path / "ok.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert io.check_input_file(tmp_path / "ok.keras", "model_path", "keras")
    (tmp_path / "a.npy").write_bytes(io.NPY_MAGIC + b"rest")
    assert io.check_input_file(tmp_path / "a.npy", "data", "npy")
    assert io.check_input_file(tmp_path / "a.npy", "data")   # any file
