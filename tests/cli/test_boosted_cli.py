"""CLI commands of boosted flows: ``train --model boosted`` and ``match``."""
import os

import numpy as np


def test_cli_train_boosted_and_match_write_their_outputs(tmp_path):
    import json

    from tfresflow import cli
    out = tmp_path / "train"
    assert cli.main(["train", "--model", "boosted", "--components", "2", "--flow-steps", "1",
                     "--hidden", "8", "--steps", "20", "--data", "moons", "--n-train", "500",
                     "--n-test", "200", "--quiet", "--option", "density_objective=mixture",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and np.isfinite(metrics["test_nll"])
    assert {"stage_00_density.png", "stage_01_density.png", "density.png",
            "samples.png"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "checkpoints")) == ["stage_00", "stage_01"]
    assert cli.main(["train", "--model", "boosted", "--option", "nope=1",
                     "--out", str(tmp_path / "bad")]) == 2
    out = tmp_path / "match"
    assert cli.main(["match", "--energy", "u2", "--components", "2", "--flow-steps", "1",
                     "--hidden", "8", "--steps", "20", "--batch-size", "64", "--quiet",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["reverse_kl"]) and len(metrics["history"]) == 2
    assert {"target.png", "stage_00_density.png", "stage_01_density.png", "density.png",
            "samples.png"} <= set(os.listdir(out))
    assert cli.main(["match", "--energy", "U9", "--out", str(tmp_path / "m9")]) == 2
