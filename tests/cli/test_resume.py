"""``tfresflow train --resume``: a run killed with SIGKILL resumes and ends as if never stopped.

Also: the resumed run's settings come from its ``run.json`` (contradicting options are
refused), and a new run never writes over a previous one unless ``--overwrite`` is given.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from tfresflow import cli
from tests.cli.test_entry import _env

TINY = ["--data", "moons", "--n-train", "1000", "--n-test", "200", "--hidden", "8",
        "--n-steps", "2", "--batch-size", "32", "--quiet"]


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def _kill_when_written(proc, index):
    """SIGKILLs the training subprocess ``proc`` as soon as the checkpoint ``index`` exists."""
    deadline = time.monotonic() + 600  # a guard against a hang, not a speed requirement
    try:
        while not index.exists():
            assert proc.poll() is None, f"training ended before {index.name} was written"
            assert time.monotonic() < deadline, f"{index} never appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def _train(*argv):
    return cli.main(["train", *TINY, *argv])


def test_sigkill_then_resume_gives_the_results_of_an_uninterrupted_run(tmp_path, capsys):
    argv = ["--steps", "600", "--checkpoint-every", "20", "--seed", "1"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tfresflow.cli", "train", *TINY, *argv,
                             "--out", str(out)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _kill_when_written(proc, out / "checkpoints" / "checkpoint")
    assert not (out / "metrics.json").exists()  # killed mid-training

    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    resumed = _metrics(out)
    assert 0 < resumed["resumed_from_step"] < 600
    assert f"resuming from step {resumed['resumed_from_step']}" in capsys.readouterr().out

    assert _train(*argv, "--out", str(tmp_path / "whole")) == 0
    whole = _metrics(tmp_path / "whole")
    assert whole["resumed_from_step"] == 0
    for key in ("train_nll", "test_nll", "test_nll_stderr"):
        assert resumed[key] == whole[key], key


def test_resume_takes_the_recorded_settings_and_refuses_contradicting_ones(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train("--steps", "30", "--lr", "0.01", "--checkpoint-every", "10",
                  "--out", str(out)) == 0
    complete = _metrics(out)
    assert cli.main(["train", "--resume", str(out)]) == 2
    assert "complete" in capsys.readouterr().err
    os.remove(out / "metrics.json")   # as if killed after the last checkpoint, before results

    for option in (["--lr", "0.02"], ["--lr", "0.001"], ["--n-steps", "3"], ["--data", "rings"],
                   ["--out", str(tmp_path / "elsewhere")]):
        assert cli.main(["train", "--resume", str(out), *option]) == 2, option
        err = capsys.readouterr().err
        assert option[0] in err and "contradict" in err, err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err

    # Agreeing options and the free ones (output, checkpoint frequency) are accepted.
    assert cli.main(["train", "--resume", str(out), "--lr", "0.01", "--checkpoint-every", "7",
                     "--quiet"]) == 0
    again = _metrics(out)
    assert again["learning_rate"] == 0.01 and again["data"] == "moons"
    assert again["resumed_from_step"] == 30
    assert again["test_nll"] == complete["test_nll"]


def test_a_new_run_never_overwrites_a_previous_one_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train("--steps", "5", "--out", str(out)) == 0
    before = {p: (out / p).read_bytes() for p in ("metrics.json", "model.keras", "run.json")}
    capsys.readouterr()
    assert _train("--steps", "6", "--out", str(out)) == 2
    captured = capsys.readouterr()
    assert "--overwrite" in captured.err and "training" not in captured.out  # before training
    assert {p: (out / p).read_bytes() for p in before} == before

    (out / "notes.txt").write_text("mine")   # not a run's file: left alone
    assert _train("--steps", "6", "--out", str(out), "--overwrite") == 0
    assert _metrics(out)["steps"] == 6
    assert json.loads((out / "run.json").read_text())["settings"]["steps"] == 6
    assert not (out / ".overwrite").exists() and (out / "notes.txt").read_text() == "mine"


def test_boosted_resumes_after_its_last_stage(tmp_path):
    argv = ["--model", "boosted", "--components", "2", "--steps", "15", "--seed", "2"]
    whole = tmp_path / "whole"
    assert _train(*argv, "--out", str(whole)) == 0
    cut = tmp_path / "cut"    # as if killed during stage 1: only stage 0's checkpoint is there
    shutil.copytree(whole, cut)
    for name in os.listdir(cut):       # results (files, and the saved_model/ directory)
        if name not in ("run.json", "checkpoints"):
            (shutil.rmtree if (cut / name).is_dir() else os.remove)(cut / name)
    shutil.rmtree(cut / "checkpoints" / "stage_01")
    assert cli.main(["train", "--resume", str(cut)]) == 0
    a, b = _metrics(whole), _metrics(cut)
    assert b["weights"] == a["weights"] and b["test_nll"] == a["test_nll"]
    assert [r["final_loss"] for r in b["history"]] == [r["final_loss"] for r in a["history"]]


def test_resume_finishes_an_unfinished_overwrite_and_only_then_replaces_the_old_run(tmp_path):
    out = tmp_path / "run"
    assert _train("--steps", "5", "--out", str(out)) == 0
    old_metrics = (out / "metrics.json").read_bytes()
    # An --overwrite run killed after its last checkpoint: its working folder holds run.json
    # and checkpoints/ only, and the previous run is untouched.
    other = tmp_path / "other"
    assert _train("--steps", "8", "--out", str(other)) == 0
    for name in os.listdir(other):
        if name not in ("run.json", "checkpoints"):
            shutil.rmtree(other / name) if (other / name).is_dir() else os.remove(other / name)
    shutil.move(str(other), str(out / ".overwrite"))
    assert (out / "metrics.json").read_bytes() == old_metrics

    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert _metrics(out)["steps"] == 8 and not (out / ".overwrite").exists()
    assert json.loads((out / "run.json").read_text())["settings"]["steps"] == 8


def test_boosted_run_killed_inside_a_stage_resumes_from_its_step_checkpoint(tmp_path, capsys):
    """SIGKILL during stage 0 (after a within-stage checkpoint, before any stage checkpoint):
    the resumed run continues that stage and ends where an uninterrupted run ends."""
    argv = ["--model", "boosted", "--components", "2", "--steps", "400",
            "--checkpoint-every", "20", "--seed", "4"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tfresflow.cli", "train", *TINY, *argv,
                             "--out", str(out)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _kill_when_written(proc, out / "checkpoints" / "stage_00.partial" / "checkpoint")
    assert not (out / "checkpoints" / "stage_00").exists()   # killed inside stage 0
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert not (out / "checkpoints" / "stage_00.partial").exists()  # removed once complete
    assert _train(*argv, "--out", str(tmp_path / "whole")) == 0
    a, b = _metrics(tmp_path / "whole"), _metrics(out)
    assert b["weights"] == a["weights"] and b["test_nll"] == a["test_nll"]
