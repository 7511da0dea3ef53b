"""``tfresflow train --model vae``: a tiny boosted run end to end, and bad combinations."""
import json
import os

import numpy as np
import pytest

TINY = ["--data", "digits", "--n-train", "64", "--n-test", "16", "--hidden", "8", "--n-steps",
        "2", "--batch-size", "32", "--option", "latent_size=4", "--option", "encoder_depth=2",
        "--option", "decoder_depth=2", "--option", "nll_samples=8", "--quiet"]


@pytest.mark.slow   # about 40 s on 2 shared cores: tracing two stages, evaluation, export
def test_cli_train_vae_boosted_writes_its_outputs(tmp_path):
    import tensorflow as tf

    from tfresflow import cli
    out = tmp_path / "vae"
    assert cli.main(["train", "--model", "vae", "--posterior", "boosted", "--components", "2",
                     "--steps", "3", *TINY, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["component"] for r in metrics["history"]] == [0, 1]
    for record in metrics["history"]:
        assert np.isfinite(record["negative_elbo"]) and record["nll_stderr"] > 0
    assert metrics["importance_samples"] == 8 and metrics["n_test"] == 16
    assert np.isclose(sum(metrics["weights"]), 1.0)
    assert len(metrics["steps"]["loss"]) == 6
    assert {"stage_losses.png", "reconstructions.png", "samples.png", "model.keras",
            "saved_model"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "checkpoints")) == ["stage_00", "stage_01"]
    loaded = tf.saved_model.load(str(out / "saved_model"))
    x = np.zeros((2, 8, 8, 1), np.float32)
    assert loaded.elbo(x, tf.constant([0, 1], tf.int32)).shape == (2,)


@pytest.mark.parametrize("argv, message", [
    (["--posterior", "boosted", "--components", "1"], "--components >= 2"),
    (["--posterior", "coupling", "--components", "3"], "--posterior boosted"),
    (["--posterior", "none", "--hidden", "8"], "--posterior none"),
    (["--posterior", "coupling", "--option", "finetune_passes=1"], "boosted only"),
    (["--posterior", "boosted", "--option", "shock_fix=maybe"], "true or false"),
    (["--posterior", "boosted", "--option", "nope=1"], "Unknown --option"),
    (["--data", "moons"], "binarised images"),
])
def test_cli_vae_bad_combinations_fail_before_any_work(tmp_path, capsys, argv, message):
    from tfresflow import cli
    out = tmp_path / "bad"
    data = [] if "--data" in argv else ["--data", "digits"]
    assert cli.main(["train", "--model", "vae", *data, *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_posterior_needs_model_vae(tmp_path, capsys):
    from tfresflow import cli
    assert cli.main(["train", "--model", "coupling", "--posterior", "boosted",
                     "--out", str(tmp_path / "x")]) == 2
    assert "--model vae" in capsys.readouterr().err


@pytest.mark.slow   # two tiny runs
def test_cli_vae_resume_continues_after_the_last_stage(tmp_path):
    import shutil

    from tfresflow import cli
    out = tmp_path / "vae"
    argv = ["train", "--model", "vae", "--posterior", "boosted", "--components", "2",
            "--steps", "3", *TINY]
    assert cli.main([*argv, "--out", str(out)]) == 0
    done = json.loads((out / "metrics.json").read_text())
    # As if killed during stage 1: only stage 0's checkpoint and the run's settings remain.
    for name in ("metrics.json", "model.keras"):
        (out / name).unlink()
    shutil.rmtree(out / "saved_model")
    shutil.rmtree(out / "checkpoints" / "stage_01")
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["history"][0] == done["history"][0]
    np.testing.assert_allclose(again["steps"]["loss"], done["steps"]["loss"], rtol=1e-5)
    assert again["history"][1]["rho"] == pytest.approx(done["history"][1]["rho"], rel=1e-5)
