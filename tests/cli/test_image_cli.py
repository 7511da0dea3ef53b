"""``tfresflow train | evaluate | sample`` on image models (``tfresflow.cli.image``).

Tiny image flows (2 scales x 1 block of 8 channels, no FC block) on the offline 8 x 8 digits,
a few steps: the run writes bits/dim with its standard error, ``samples.png``, the saved models;
``evaluate`` reproduces the recorded bits/dim exactly (same seed, same test images); a run
interrupted mid-training resumes to the uninterrupted run's results; ``--hybrid`` adds test
accuracy; bad combinations of model, data and hybrid options are refused with exit code 2
before anything is written.
"""
import json

import keras
import numpy as np
import pytest

from tfresflow import cli

TINY = ["--model", "resflow-image", "--data", "digits", "--batch-size", "16", "--n-test", "48",
        "--option", "scales=2", "--option", "blocks_per_scale=1", "--option",
        "hidden_channels=8", "--option", "fc_blocks=0", "--quiet"]


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A finished 4-step tiny image run (trained once for the tests of this module)."""
    out = tmp_path_factory.mktemp("image") / "run"
    assert cli.main(["train", *TINY, "--steps", "4", "--seed", "3", "--ema-decay", "0.5",
                     "--out", str(out)]) == 0
    return out


def test_train_writes_bits_per_dim_with_stderr_samples_and_models(image_run):
    m = _metrics(image_run)
    for name in ("samples.png", "model.keras", "saved_model/saved_model.pb", "run.json"):
        assert (image_run / name).exists(), name
    assert (image_run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert m["image_shape"] == [8, 8, 1] and m["n_test"] == 48 and m["steps"] == 4
    assert m["batch_size"] == 16 and m["weight_decay"] == 5e-4 and m["ema_decay"] == 0.5
    # bits/dim is affine in the NLL: bpd = (nll + D log 256) / (D log 2), se likewise
    d = 64
    assert m["test_bits_per_dim"] == pytest.approx((m["test_nll"] + d * np.log(256.0))
                                                   / (d * np.log(2.0)), rel=1e-9)
    assert m["test_bits_per_dim_stderr"] == pytest.approx(m["test_nll_stderr"]
                                                          / (d * np.log(2.0)), rel=1e-9)
    assert 0 < m["test_bits_per_dim_stderr"] < 0.5
    # better than the uniform density on [0, 1)^D, which scores exactly 8 bits/dim
    assert m["test_bits_per_dim"] < 8.0
    # the fixed-point inverse was solved: the round trip z -> u -> f^-1(u) (up to the logit
    # transform) is at the solver's tolerance and float32 rounding
    assert m["samples_inverse_nonfinite"] == 0
    assert m["samples_inverse_residual_rms"] < 1e-4
    assert m["samples_inverse_residual_max_abs"] < 1e-3
    assert m["samples_latent_max_abs"] > 1.0


def test_the_saved_weights_are_the_moving_average(image_run):
    """Evaluation uses the EMA weights: the saved model's weights are not the raw ones of the
    last checkpointed step but their average (the EMA variables in the checkpoint)."""
    import tensorflow as tf

    model = keras.saving.load_model(image_run / "model.keras")
    reader = tf.train.load_checkpoint(str(image_run / "checkpoints"))
    names = reader.get_variable_to_shape_map()
    saved = {n: reader.get_tensor(n) for n in names if n.startswith("model/")}
    optimizer_vars = {n: reader.get_tensor(n) for n in names if n.startswith("optimizer/")}
    weights = [w.numpy() for w in model.trainable_weights]
    # each trainable weight equals one of the optimiser's stored arrays (its average)
    flat = [v for v in optimizer_vars.values() if hasattr(v, "shape")]
    for w in weights:
        assert any(v.shape == w.shape and np.array_equal(v, w) for v in flat)
    assert saved  # the model's own variables are in the checkpoint too


def test_evaluate_reproduces_the_recorded_bits_per_dim(image_run, capsys):
    m = _metrics(image_run)
    code, out, err = _run(["evaluate", image_run], capsys)
    assert code == 0, err
    reported = float(out.split("test ")[1].split()[0])
    assert reported == pytest.approx(m["test_bits_per_dim"], abs=1e-4)   # printed to 4 places
    result = cli.image.run_evaluate(cli.build_parser().parse_args(["evaluate", str(image_run)]),
                                    cli.loading.load_model(str(image_run)))
    assert result["test_bits_per_dim"] == pytest.approx(m["test_bits_per_dim"], rel=1e-6)
    assert result["test_bits_per_dim_stderr"] == pytest.approx(m["test_bits_per_dim_stderr"],
                                                               rel=1e-4)


def test_sample_writes_a_png_grid_and_an_array(image_run, tmp_path, capsys):
    code, out, err = _run(["sample", image_run, "--n", "9", "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "inverse round-trip residual" in out
    code, _, err = _run(["sample", image_run, "--n", "5", "--out", tmp_path / "s.npy"], capsys)
    samples = np.load(tmp_path / "s.npy")
    assert code == 0 and samples.shape == (5, 8, 8, 1)
    # the logit transform maps onto (0, 1): samples lie in [0, 1] up to its alpha
    assert np.all(np.isfinite(samples)) and samples.min() > -1e-3 and samples.max() < 1 + 1e-3


def test_image_grid_tiles_row_by_row():
    from tfresflow.plotting import image_grid

    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 1), np.uint8)
    grid = image_grid(images, columns=2)
    assert grid.shape == (3 * 2, 2 * 3, 1)
    for i in range(5):
        r, c = divmod(i, 2)
        assert np.all(grid[2 * r:2 * r + 2, 3 * c:3 * c + 3] == i)
    assert np.all(grid[4:, 3:] == 0)   # the empty last cell


class _Interrupt(RuntimeError):
    pass


@pytest.mark.slow
def test_an_interrupted_image_run_resumes_to_the_uninterrupted_results(tmp_path, monkeypatch,
                                                                       capsys):
    argv = ["train", *TINY, "--steps", "6", "--checkpoint-every", "3", "--seed", "1"]
    assert cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = _metrics(tmp_path / "whole")

    class StopAtStep5(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 5:
                raise _Interrupt("stopped")

    from tfresflow.cli import progress
    monkeypatch.setattr(progress, "callbacks", lambda quiet=False, window=None: [StopAtStep5()])
    cut = tmp_path / "cut"
    with pytest.raises(_Interrupt):
        cli.main([*argv, "--out", str(cut)])
    assert not (cut / "metrics.json").exists()
    monkeypatch.undo()
    code, out, err = _run(["train", "--resume", cut], capsys)
    assert code == 0, err
    assert "resuming from step 3" in out
    resumed = _metrics(cut)
    assert resumed["resumed_from_step"] == 3
    for key in ("test_bits_per_dim", "test_bits_per_dim_stderr", "test_nll"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key
    # a difference of nearly equal numbers: equal to float32 rounding of the same weights
    assert resumed["samples_inverse_residual_max_abs"] == pytest.approx(
        whole["samples_inverse_residual_max_abs"], rel=1e-3)


@pytest.mark.slow
def test_hybrid_train_writes_accuracy_and_bits_per_dim_and_evaluate_reports_both(tmp_path,
                                                                                 capsys):
    out = tmp_path / "hybrid"
    code, stdout, err = _run(["train", *TINY, "--hybrid", "--lam", "1/D", "--steps", "4",
                              "--option", "branch_channels=8", "--out", out], capsys)
    assert code == 0, err
    m = _metrics(out)
    assert m["hybrid"] is True and m["lam"] == "1/D" and m["num_classes"] == 10
    assert m["lam_value"] == pytest.approx(1.0 / 64)
    a, n = m["test_accuracy"], m["n_test"]
    assert 0.0 <= a <= 1.0 and a * n == pytest.approx(round(a * n))   # a count of 48
    assert m["test_accuracy_stderr"] == pytest.approx(np.sqrt(a * (1 - a) / (n - 1)), rel=1e-9)
    assert m["test_cross_entropy"] > 0 and m["test_cross_entropy_stderr"] > 0
    assert m["test_bits_per_dim"] < 8.0 and m["test_bits_per_dim_stderr"] > 0
    code, stdout, err = _run(["evaluate", out / "saved_model"], capsys)
    assert code == 0, err
    assert f"test accuracy {a:.4f}" in stdout
    assert f"test {m['test_bits_per_dim']:.4f}" in stdout


def _assert_refused(code, err, *fragments):
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("tfresflow train: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("extra, fragments", [
    (["--model", "resflow-image", "--data", "moons"], ["image model", "not an image dataset"]),
    (["--model", "coupling", "--data", "digits"], ["is an image dataset", "vector model"]),
    (["--model", "resflow-image", "--data", "tfds:no_such_set"], ["Unknown image dataset"]),
    (["--model", "coupling", "--data", "moons", "--hybrid"], ["--hybrid", "image models only"]),
    (["--model", "coupling", "--data", "moons", "--ema-decay", "0.9"], ["--ema-decay"]),
    (["--model", "resflow-image", "--data", "digits", "--lam", "0"], ["add --hybrid"]),
    (["--model", "resflow-image", "--data", "digits", "--hidden", "8"], ["--hidden",
                                                                         "--option"]),
    (["--model", "resflow-image", "--data", "digits", "--option", "no_such_key=1"],
     ["Bad option for --model resflow-image"]),
    (["--model", "resflow-image", "--data", "digits", "--option", "branch_channels=4"],
     ["add --hybrid"]),
    (["--model", "resflow-image", "--data", "digits", "--hybrid", "--classes", "5"],
     ["--classes 5", "up to 9"]),
    (["--model", "resflow-image", "--data", "tfds:celeb_a", "--hybrid"],
     ["--hybrid needs class labels", "celeb_a has none"]),
])
def test_bad_model_data_and_hybrid_combinations_are_refused(extra, fragments, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(["train", *extra, "--steps", "1", "--out", out, "--quiet"], capsys)
    _assert_refused(code, err, *fragments)
    assert not out.exists()


@pytest.mark.parametrize("lam", ["-1", "abc", "1/E", "inf"])
def test_a_bad_lam_is_an_argument_error(lam, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--model", "resflow-image", "--data", "digits", "--hybrid",
                  "--lam", lam])
    assert stop.value.code == 2
    assert "--lam" in capsys.readouterr().err


def test_the_default_ema_decay_keeps_a_tenth_of_the_run():
    from tfresflow.cli.image import default_ema_decay

    assert default_ema_decay(300) == pytest.approx(1 - 10 / 300)
    # the first weights' share m^T of the (not bias-corrected) average stays below e^-10
    assert default_ema_decay(300) ** 300 < np.exp(-10)
    assert default_ema_decay(10_000) == default_ema_decay(10 ** 6) == 0.999
    assert default_ema_decay(5) == 0.0   # too short to average


def test_lam_values():
    from tfresflow.cli.arguments import hybrid_lambda

    assert hybrid_lambda("1/D") == "1/D" and hybrid_lambda("1/d") == "1/D"
    assert hybrid_lambda("0") == 0.0 and hybrid_lambda("1") == 1.0
    assert hybrid_lambda("0.25") == 0.25


def test_the_number_of_classes():
    import argparse

    from tfresflow.cli.image import _num_classes
    from tfresflow.data.images import IMAGE_DATASETS

    args = argparse.Namespace(data="digits", classes=None)
    digits = IMAGE_DATASETS.lookup("digits")
    with pytest.raises(ValueError, match="needs class labels"):
        _num_classes(args, digits, None, None)
    assert _num_classes(args, digits, np.array([0, 3]), np.array([1])) == 10
    args.classes = 4
    assert _num_classes(args, digits, np.array([0, 3]), np.array([1])) == 4


@pytest.mark.slow
@pytest.mark.parametrize("model", ["idensenet-image", "coupling-image"])
def test_the_other_image_models_train_through_the_cli(model, tmp_path, capsys):
    out = tmp_path / model
    code, _, err = _run(["train", "--model", model, "--data", "digits", "--steps", "2",
                         "--batch-size", "16", "--n-test", "32", "--option", "scales=2",
                         "--option", "blocks_per_scale=1", "--option", "fc_blocks=0",
                         "--out", out, "--quiet"], capsys)
    assert code == 0, err
    m = _metrics(out)
    assert m["model"] == model and m["test_bits_per_dim"] < 8.0
    assert m["test_bits_per_dim_stderr"] > 0 and (out / "samples.png").exists()
