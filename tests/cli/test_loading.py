"""``evaluate`` / ``sample`` on a run folder, a ``.keras`` file or a SavedModel; the run's split."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cli.test_entry import _env
from tfresflow import cli
from tfresflow.cli import loading


def _touch(path, text="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def reported_nll(stdout):
    return float(stdout.split("test NLL")[1].split()[0])


def train(out, argv, capsys):
    """Runs ``tfresflow train ARGV --quiet --out OUT`` in-process; returns its metrics."""
    code, _, err = run(["train"] + argv + ["--quiet", "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


def evaluate(target, capsys, *argv):
    """``tfresflow evaluate TARGET ARGV`` in-process: ``(stdout, reported test NLL)``."""
    code, stdout, err = run(["evaluate", str(target), *argv], capsys)
    assert code == 0, err
    return stdout, reported_nll(stdout)


# --------------------------------------------------------------------------- paths
def test_resolve_model_path_prefers_model_keras_then_saved_model(tmp_path):
    run_dir = tmp_path / "run"
    _touch(run_dir / "saved_model" / "saved_model.pb")
    assert loading.resolve_model_path(str(run_dir)) == (
        "saved_model", str(run_dir / "saved_model"), str(run_dir))
    _touch(run_dir / "model.keras")
    assert loading.resolve_model_path(str(run_dir)) == (
        "keras", str(run_dir / "model.keras"), str(run_dir))
    assert loading.resolve_model_path(str(run_dir / "model.keras")) == (
        "keras", str(run_dir / "model.keras"), str(run_dir))
    assert loading.resolve_model_path(str(run_dir / "saved_model")) == (
        "saved_model", str(run_dir / "saved_model"), str(run_dir))


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing"), "does not exist"),
    (lambda d: _touch(d / "x.npy"), "is a file but not a .keras model"),
    (lambda d: str(d), "is a folder without model.keras or saved_model/"),
    (lambda d: os.path.dirname(_touch(d / "stage_00" / "state.json")),
     "is a training checkpoint of a boosted run"),
])
def test_anything_else_is_a_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        loading.resolve_model_path(path)
    assert "`model_path`" in str(err.value)


def test_evaluation_split_takes_what_the_run_recorded_unless_given(tmp_path):
    run_dir = tmp_path / "run"
    model = _touch(run_dir / "model.keras")
    _touch(run_dir / "metrics.json", json.dumps({"data": "moons", "n_test": 123, "seed": 7}))
    data, n, seed, note = loading.evaluation_split(str(run_dir))
    assert (data, n, seed) == ("moons", 123, 7)
    assert note == f"data, n, seed from {run_dir / 'metrics.json'}"
    assert loading.evaluation_split(model, data="rings", n=10, seed=1)[:3] == ("rings", 10, 1)
    assert loading.evaluation_split(model, data="rings")[:3] == ("rings", 123, 7)
    # a model without a run beside it: --data is needed, n and seed take the defaults
    lone = _touch(tmp_path / "elsewhere" / "m.keras")
    with pytest.raises(ValueError, match="Pass --data: .*no metrics.json"):
        loading.evaluation_split(lone)
    assert loading.evaluation_split(lone, data="moons") == (
        "moons", loading.DEFAULT_N_TEST, 0, "")
    match_dir = tmp_path / "match"
    _touch(match_dir / "model.keras")
    _touch(match_dir / "metrics.json", json.dumps({"energy": "U1", "seed": 0}))
    with pytest.raises(ValueError, match="fitted the energy U1, not data"):
        loading.evaluation_split(str(match_dir))


def test_a_truncated_keras_file_is_a_clear_error(tmp_path, capsys):
    path = _touch(tmp_path / "model.keras", "PK\x03\x04 truncated")
    for argv in (["evaluate", path, "--data", "moons"],
                 ["sample", path, "--out", str(tmp_path / "s.npy")]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "`model_path`" in err and "not a zip archive" in err, err
    assert not (tmp_path / "s.npy").exists()


# --------------------------------------------------------------------------- flows
def test_evaluate_run_folder_scores_the_test_set_train_held_out(tmp_path, capsys):
    """No --data: the run's data, n_test and seed; same NLL as train wrote (exact log-det)."""
    out = tmp_path / "run"
    metrics = train(out, ["--data", "moons", "--model", "coupling", "--steps", "5",
                          "--n-train", "300", "--n-test", "150", "--seed", "3", "--n-steps", "1",
                          "--hidden", "8"], capsys)
    assert (metrics["data"], metrics["n_test"], metrics["seed"]) == ("moons", 150, 3)
    for target in (out, out / "model.keras", out / "saved_model"):
        stdout, nll = evaluate(target, capsys)
        assert "on 150 examples of moons (seed 3;" in stdout
        assert nll == pytest.approx(metrics["test_nll"], abs=1e-4)
    # an explicit --data wins over the recorded one
    assert "examples of checkerboard" in evaluate(out, capsys, "--data", "checkerboard")[0]
    code, _, _ = run(["sample", str(out / "saved_model"), "--n", "7", "--out",
                      str(tmp_path / "s.npy")], capsys)
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (7, 2)


def test_evaluate_reproduces_the_random_split_of_a_npy_file(tmp_path, capsys):
    arr = np.random.default_rng(0).normal(size=(250, 2)).astype(np.float32) * [1.0, 3.0]
    np.save(tmp_path / "d.npy", arr)
    out = tmp_path / "run"
    metrics = train(out, ["--data", str(tmp_path / "d.npy"), "--steps", "3", "--seed", "5",
                          "--n-steps", "1", "--hidden", "4"], capsys)
    stdout, nll = evaluate(out, capsys)
    assert "on 50 examples of" in stdout  # 20% of 250 held out
    assert nll == pytest.approx(metrics["test_nll"], abs=1e-4)


def test_evaluate_and_sample_a_boosted_run_folder_through_the_cli(tmp_path, capsys):
    """The issue's "done when": ``evaluate``/``sample`` work on a boosted run folder."""
    out = tmp_path / "boosted"
    metrics = train(out, ["--model", "boosted", "--components", "2", "--n-steps", "1",
                          "--hidden", "8", "--steps", "5", "--data", "moons", "--n-train", "300",
                          "--n-test", "120"], capsys)
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    done = subprocess.run([sys.executable, "-m", "tfresflow.cli", "evaluate", str(out)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "on 120 examples of moons" in done.stdout
    assert reported_nll(done.stdout) == pytest.approx(metrics["test_nll"], abs=1e-4)
    samples = tmp_path / "s.npy"
    done = subprocess.run([sys.executable, "-m", "tfresflow.cli", "sample", str(out), "--n", "30",
                           "--out", str(samples)], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    x = np.load(samples)
    assert x.shape == (30, 2) and np.all(np.isfinite(x))
    code, _, err = run(["evaluate", str(out / "checkpoints" / "stage_01")], capsys)
    assert code == 2 and "training checkpoint of a boosted run" in err
