"""A quiet, fast command line: parsing without TensorFlow, no log noise, the recent loss shown.

* ``--help``, ``--version`` and every argument error answer before TensorFlow or Keras is
  imported (checked in a fresh process: the libraries are not in ``sys.modules``);
* a command run prints none of TensorFlow's start-up banner or C++ log lines unless
  ``--verbose``;
* the progress bar's ``loss`` is the exponential moving average of the per-step losses
  (:mod:`tfresflow.cli.progress`), and ``metrics.json`` reports the train NLL measured on the
  training data, not a running mean of the loss.
"""
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.cli.cli_process import imports_after, run_cli
from tfresflow import cli
from tfresflow.cli.progress import RecentLossProgress, default_window
from tfresflow.models import build_model

#: A line of TensorFlow's C++ (absl) logging: severity letter, date, time, thread, file:line.
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M)


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["sample", "--help"], 0),
    (["--version"], 0),
    (["train", "--steps", "0"], 2),
    (["train", "--no-such-option"], 2),
    (["nosuchcommand"], 2),
    (["sample", "m.keras", "--out", "/no/such/folder/s.npy"], 2),
])
def test_parsing_help_and_argument_errors_import_no_tensorflow(argv, code, tmp_path):
    assert imports_after(argv, cwd=tmp_path) == (code, [])


def test_version():
    import tfresflow

    done = run_cli(["--version"])
    assert done.returncode == 0 and done.stdout.strip() == f"tfresflow {tfresflow.__version__}"


def _assert_quiet(done):
    assert done.returncode == 0, done.stderr
    noise = ("absl::InitializeLog", "oneDNN", "cuInit", "cuda", "WARNING:tensorflow",
             "retracing")
    assert not ABSL_LINE.search(done.stderr) and not any(n in done.stderr for n in noise), \
        done.stderr


def test_a_command_shows_no_tensorflow_noise_unless_verbose(tmp_path):
    """``evaluate`` (TensorFlow imported, a model loaded and run) prints only its own line;
    ``--verbose`` lets TensorFlow's logging through."""
    _tiny_model().save(tmp_path / "m.keras")
    argv = ["evaluate", tmp_path / "m.keras", "--data", "moons", "--n", "16"]
    done = run_cli(argv, cwd=tmp_path)
    _assert_quiet(done)
    assert done.stdout.startswith("test NLL") and len(done.stdout.splitlines()) == 1
    verbose = run_cli(argv + ["--verbose"], cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    if not ABSL_LINE.search(verbose.stderr):
        pytest.skip("this TensorFlow build logs nothing when it starts")


@pytest.mark.slow
def test_a_training_run_shows_no_tensorflow_noise(tmp_path):
    """A whole ``train`` (fit, evaluation, figures, SavedModel export) prints only its own
    lines."""
    done = run_cli(["train", "--data", "moons", "--steps", "3", "--n-train", "64", "--n-test",
                    "32", "--n-steps", "1", "--hidden", "4", "--batch-size", "32", "--quiet",
                    "--out", tmp_path / "run"], cwd=tmp_path)
    _assert_quiet(done)
    assert done.stdout.startswith("training coupling on moons")


def _tiny_model():
    model = build_model("coupling", 2, n_steps=1, hidden_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(0.0))   # no learning: fixed per-batch losses
    return model


def test_progress_shows_the_moving_average_of_the_per_step_losses(capsys):
    """``recent_loss`` is the bias-corrected EMA ``(1-b) sum_k b^(t-k) l_k / (1 - b^t)`` of the
    batch losses ``l_k = -mean log p(batch k)``, which a frozen model makes computable."""
    x = (np.random.default_rng(0).normal(size=(96, 2)) * [1.0, 3.0]).astype(np.float32)
    batches = np.split(x, 6)
    model = _tiny_model()
    expected = [-float(np.mean(model.log_prob(tf.constant(b)).numpy())) for b in batches]
    seen = []
    logger = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(logs["loss"])))
    progress = RecentLossProgress(window=4)
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0,
              shuffle=False, callbacks=[progress, logger])
    # fit's logged loss is each step's own batch loss (the metric is reset before each step)
    np.testing.assert_allclose(seen, expected, rtol=1e-5)
    b = 1 - 1 / 4
    t = len(expected)
    ema = (1 - b) * sum(b ** (t - 1 - k) * loss for k, loss in enumerate(expected)) / (1 - b ** t)
    np.testing.assert_allclose(progress.recent_loss, ema, rtol=1e-5)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "6/6" in out and f"loss: {ema:.4f}" in out
    # the whole-run mean (what Keras' own bar showed) is a different number here
    assert abs(np.mean(expected) - ema) > 1e-3


def test_first_eta_leaves_out_the_first_step(capsys):
    """A slow first step (tracing; here a 1 s pause before the bar sees the step) does not
    enter the time per step: the first display's ETA is not about (steps - 1) seconds."""
    import time

    x = np.zeros((400, 2), np.float32)
    pause = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: time.sleep(1.0) if batch == 0 else None)
    _tiny_model().fit(tf.data.Dataset.from_tensor_slices(x).batch(2), epochs=1, verbose=0,
                      shuffle=False, callbacks=[pause, RecentLossProgress()])
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)   # no terminal colours
    first = out.replace("\r", "\n").strip().splitlines()[0]
    assert first.lstrip().startswith("1/200"), first
    assert not re.search(r"\d+:\d\d", first) and "ETA" not in first, first  # no minutes shown


def test_default_window_follows_the_run_length():
    assert default_window(100) == 10 and default_window(2000) == 100 and default_window(1000) \
        == 50


def test_metrics_report_the_train_nll_measured_on_training_data(tmp_path, capsys):
    """``train_nll`` is ``-mean log p`` of the saved model on the first ``n_test`` training
    examples (regenerated from the seed); no running-mean training loss is reported."""
    from tfresflow.data import sample

    out = tmp_path / "run"
    assert cli.main(["train", "--data", "moons", "--steps", "30", "--n-train", "300",
                     "--n-test", "100", "--n-steps", "1", "--hidden", "8", "--quiet",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not [k for k in metrics if "final_training_loss" in k]
    model = keras.saving.load_model(out / "model.keras")
    x_train = sample("moons", 300, seed=0)[:100]
    nll = -float(np.mean(model.exact_log_prob(tf.constant(x_train)).numpy()))
    assert abs(metrics["train_nll"] - nll) < 1e-4


def _python(code, **env):
    import subprocess
    import sys

    from tests.cli.cli_process import cli_env

    return subprocess.run([sys.executable, "-c", code], env=cli_env(**env), capture_output=True,
                          text=True, timeout=300)


def test_package_root_loads_its_subpackages_on_first_use(tmp_path):
    """``import tfresflow`` alone imports no TensorFlow; the first use of a subpackage loads
    them all, registering every Keras class, so a saved ``.keras`` file loads. (With TensorFlow
    imported first, as in this test process, ``import tfresflow`` loads everything at once.)"""
    path = tmp_path / "m.keras"
    _tiny_model().save(path)
    done = _python(f"""
import sys
import tfresflow as trf
heavy = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras"}})
assert heavy() == [], heavy()
assert trf.__version__ and "bijectors" in dir(trf) and trf.validation.check_samples
block = trf.bijectors.ResidualBlock          # the first use loads every subpackage
assert heavy() == ["keras", "tensorflow"], heavy()
assert trf.activations is sys.modules["tfresflow.lipschitz.activations"]
import keras
model = keras.saving.load_model({str(path)!r})
print(model.sample(3, seed=[1, 2]).shape)
""")
    assert done.returncode == 0 and done.stdout.strip() == "(3, 2)", done.stderr


def test_another_keras_backend_is_refused():
    done = _python("import tfresflow", KERAS_BACKEND="jax")
    assert done.returncode != 0 and "needs the TensorFlow Keras backend" in done.stderr


def test_progress_counts_steps_over_epochs_and_a_resumed_fit(capsys):
    x = np.zeros((8, 2), np.float32)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).repeat()
    model = _tiny_model()
    progress = RecentLossProgress(window=2)
    model.fit(ds, epochs=3, steps_per_epoch=4, verbose=0, shuffle=False, callbacks=[progress])
    assert progress.step == 12 and progress.bar.target == 12
    model.fit(ds, initial_epoch=1, epochs=3, steps_per_epoch=4, verbose=0, shuffle=False,
              callbacks=[progress])
    assert progress.step == 8 and progress.bar.target == 8
    assert "resuming at step 5 of 12" in capsys.readouterr().out
