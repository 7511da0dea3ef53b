import json
import os

import numpy as np
import pytest

from tfresflow import cli


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_moons_beats_fitted_gaussian_and_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["train", "--data", "moons", "--steps", "400", "--n-train", "4000",
                             "--n-test", "2000", "--seed", "0", "--out", str(out), "--quiet"],
                            capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    # "clearly below": at least 0.3 nats and 5 standard errors better than the Gaussian fit
    gap = metrics["gaussian_baseline_test_nll"] - metrics["test_nll"]
    assert gap > 0.3 and gap > 5 * metrics["test_nll_stderr"], metrics
    for name in ("density.png", "samples.png", "model.keras", "saved_model/saved_model.pb"):
        assert (out / name).exists(), name
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]

    code, stdout, _ = run(["evaluate", str(out / "model.keras"), "--data", "moons",
                           "--n", "2000", "--seed", "0"], capsys)
    assert code == 0
    reported = float(stdout.split("test NLL")[1].split()[0])
    assert abs(reported - metrics["test_nll"]) < 1e-3  # same seed -> same test set

    code, _, _ = run(["sample", str(out / "model.keras"), "--n", "50", "--out",
                      str(tmp_path / "s.npy")], capsys)
    samples = np.load(tmp_path / "s.npy")
    assert code == 0 and samples.shape == (50, 2) and np.all(np.isfinite(samples))


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "swissroll"], "Unknown toy density 'swissroll'"),
    (["train", "--model", "nosuchflow"], "Unknown --model 'nosuchflow'"),
    (["train", "--option", "n_layers=3", "--steps", "1"], "Bad option"),
    (["evaluate", "/nonexistent/model.keras"], "does not exist"),
    (["train", "--model", "coupling", "--components", "3"], "--components applies"),
])
def test_bad_arguments_exit_with_clear_error(argv, message, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "o")] if argv[0] == "train" else [])
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run(["train", "--steps", "1", "--n-train", "10", "--n-test", "10",
                        "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "Cannot create output directory" in err


def test_non_finite_data_file_is_rejected_before_any_output(tmp_path, capsys):
    arr = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    arr[17, 1] = np.nan
    np.save(tmp_path / "bad.npy", arr)
    code, _, err = run(["train", "--data", str(tmp_path / "bad.npy"), "--out",
                        str(tmp_path / "o")], capsys)
    assert code == 2 and "non-finite" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("model", ["resflow", "iresnet", "idensenet"])
def test_residual_models_train_from_the_cli(model, tmp_path, capsys):
    out = tmp_path / model
    code, stdout, err = run(["train", "--model", model, "--data", "circles", "--steps", "60",
                             "--n-steps", "2", "--n-train", "2000", "--n-test", "500",
                             "--out", str(out), "--quiet"]
                            + (["--option", "growth=8"] if model == "idensenet"
                               else ["--hidden", "16,16"]), capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stochastic_log_det"] and metrics["nll_method"].startswith("exact")
    assert metrics["test_nll"] < metrics["gaussian_baseline_test_nll"] + 0.5
    if model != "iresnet":  # the truncated series is biased; the others are unbiased
        diff = metrics["test_nll_unbiased_estimate"] - metrics["test_nll"]
        assert abs(diff) < 4 * metrics["test_nll_unbiased_estimate_stderr"] + 1e-3, metrics
    assert (out / "saved_model" / "saved_model.pb").exists() and (out / "model.keras").exists()
