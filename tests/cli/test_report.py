"""``report_fit``: the one writer of every trainer's results (metrics, figures, models)."""
import json
import os

import numpy as np
import pytest

from tfresflow import cli
from tfresflow.cli import report


def _gaussian_figures(reference, **kwargs):
    return report.Figures(log_prob=lambda p: -0.5 * np.sum(p ** 2, 1) - np.log(2 * np.pi),
                          sample=lambda n: np.random.default_rng(0).normal(size=(n, 2)),
                          reference=reference, title="standard normal", **kwargs)


def test_report_fit_writes_metrics_and_figures_atomically(tmp_path):
    ref = np.random.default_rng(1).normal(size=(300, 2)).astype(np.float32)
    written = report.report_fit(str(tmp_path), {"test_nll": 1.5},
                                figures=_gaussian_figures(ref, resolution=20))
    assert written == ["metrics.json", "density.png", "samples.png"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test_nll": 1.5}
    assert sorted(os.listdir(tmp_path)) == ["density.png", "metrics.json", "samples.png"]


def test_report_fit_without_figures_writes_only_metrics(tmp_path):
    assert report.report_fit(str(tmp_path), {"a": 1}) == ["metrics.json"]
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failing_figure_leaves_no_metrics_and_no_debris(tmp_path):
    def broken(n):
        raise FloatingPointError("sampler diverged")

    figures = report.Figures(log_prob=lambda p: np.zeros(len(p)), sample=broken,
                             reference=np.zeros((10, 2)), title="t", limits=[(-1, 1), (-1, 1)],
                             resolution=10)
    with pytest.raises(FloatingPointError):
        report.report_fit(str(tmp_path), {"a": 1}, figures=figures)
    assert os.listdir(tmp_path) == ["density.png"]  # metrics.json (completion) not written


@pytest.fixture
def report_calls(monkeypatch):
    """Records every ``report_fit`` call of the command line (and still writes the files)."""
    calls = []
    original = report.report_fit

    def spy(out_dir, metrics, figures=None, model=None):
        written = original(out_dir, metrics, figures=figures, model=model)
        calls.append({"out": out_dir, "metrics": metrics, "figures": figures, "model": model,
                      "written": written})
        return written

    monkeypatch.setattr(report, "report_fit", spy)
    return calls


def test_train_writes_through_report_fit(tmp_path, report_calls):
    out = tmp_path / "t"
    assert cli.main(["train", "--data", "moons", "--steps", "2", "--n-train", "200",
                     "--n-test", "100", "--n-steps", "1", "--hidden", "8", "--quiet",
                     "--out", str(out)]) == 0
    [call] = report_calls
    assert call["out"] == str(out) and call["model"] is not None
    assert call["written"] == ["metrics.json", "model.keras", "saved_model/", "density.png",
                               "samples.png"]
    assert json.loads((out / "metrics.json").read_text())["test_nll"] == \
        call["metrics"]["test_nll"]
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_boosted_and_match_write_through_report_fit(tmp_path, report_calls):
    small = ["--components", "1", "--n-steps", "1", "--hidden", "8", "--steps", "2", "--quiet"]
    assert cli.main(["train", "--model", "boosted", "--data", "moons", "--n-train", "200",
                     "--n-test", "100", "--out", str(tmp_path / "b")] + small) == 0
    assert cli.main(["match", "--energy", "U1", "--batch-size", "32",
                     "--out", str(tmp_path / "m")] + small) == 0
    boosted, match = report_calls
    for call in (boosted, match):
        assert type(call["model"]).__name__ == "BoostedFlowModel"
        assert call["written"] == ["metrics.json", "model.keras", "saved_model/", "density.png",
                                   "samples.png"]
        assert {"metrics.json", "model.keras", "saved_model", "density.png", "samples.png",
                "stage_00_density.png"} <= set(os.listdir(call["out"]))
    assert boosted["metrics"]["model"] == "boosted" and boosted["metrics"]["n_steps"] == 1
    assert match["metrics"]["energy"] == "U1" and len(match["figures"].reference) == 20000
    assert "target.png" in os.listdir(tmp_path / "m")
