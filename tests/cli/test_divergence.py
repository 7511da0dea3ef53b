"""Divergence on the command line: a non-finite loss stops at once (exit 3) naming the step, a
failed run never replaces a good one, a result far worse than a fitted Gaussian is flagged,
and ``--lr`` must be positive."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfresflow import cli

TINY = ["--data", "moons", "--n-train", "1000", "--n-test", "200", "--hidden", "8",
        "--n-steps", "2", "--batch-size", "32", "--quiet"]
#: Adam at this learning rate makes a residual flow's loss NaN within a few steps.
DIVERGING = ["--model", "resflow", "--lr", "1000", "--steps", "50", "--checkpoint-every", "1"]


def _files(folder):
    """Every file under ``folder`` (but an --overwrite run's working folder) -> its bytes."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".overwrite"]
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


@pytest.mark.parametrize("command", [["train"], ["match", "--energy", "U1"]])
@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf", "fast"])
def test_learning_rate_must_be_positive(command, lr, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(command + ["--lr", lr, "--out", str(tmp_path / "o")])
    assert stop.value.code == 2
    assert "--lr: expected a positive number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, *DIVERGING, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    step = int(err.split("at step ")[1].split()[0])
    assert f"at step {step} of 50" in err and "smaller --lr than 1000" in err
    assert not (out / "metrics.json").exists()
    # With a checkpoint every step, the last one kept is that of the step before: training
    # stopped at once, and nothing was saved after the non-finite loss.
    last = tf.train.latest_checkpoint(str(out / "checkpoints"))
    if step == 1:
        assert last is None and "no checkpoint" in err
        return
    assert last.endswith(f"ckpt-{step - 1}") and f"step {step - 1}" in err
    reader = tf.train.load_checkpoint(last)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_a_diverging_run_leaves_a_previous_good_run_intact(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--steps", "20", "--out", str(out)]) == 0
    good = _files(out)
    assert "metrics.json" in good and "model.keras" in good
    assert json.loads(good["metrics.json"])["warnings"] == []  # no alarm for a sane run

    # Without --overwrite: refused before training.
    assert cli.main(["train", *TINY, *DIVERGING, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # With --overwrite: trains, diverges, and the previous run stays as it was.
    assert cli.main(["train", *TINY, *DIVERGING, "--out", str(out), "--overwrite"]) == 3
    assert "training diverged" in capsys.readouterr().err
    assert _files(out) == good
    for model in ("coupling", "boosted"):  # a huge but finite loss: also not over the good run
        assert cli.main(["train", *TINY, "--model", model, "--lr", "1000", "--steps", "5",
                         "--out", str(out)]) == 2
    assert _files(out) == good


def test_a_result_far_worse_than_the_fitted_gaussian_is_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--lr", "1000", "--steps", "20", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_nll"] > metrics["gaussian_baseline_test_nll"] + 2  # 1 nat per dim
    assert len(metrics["warnings"]) == 1 and "fitted Gaussian" in metrics["warnings"][0]
    assert f"warning: {metrics['warnings'][0]}" in stdout
