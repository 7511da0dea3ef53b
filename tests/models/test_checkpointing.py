"""Checkpointed training (``tfresflow.models.checkpointing``): exact resume, divergence stop.

A run interrupted at step k and resumed must take the very steps of an uninterrupted run: the
same weights after every step (bitwise) and the same per-step losses. A residual flow is used:
it has every kind of state a run carries (Lipschitz power-iteration vectors, ActNorm's
data-dependent initialisation, the seed generator of its stochastic log-det, Adam's moments).
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.data import sample
from tfresflow.models import build_model
from tfresflow.models.checkpointing import TrainingCheckpoint, TrainingDiverged, fit_resumable

X = sample("moons", 400, seed=0).astype(np.float32)
STEPS, BATCH, SEED, EVERY = 24, 64, 3, 5


def _model(kind="resflow"):
    keras.utils.set_random_seed(0)
    model = build_model(kind, 2, n_steps=2, hidden_units=(8,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


class StepLog(keras.callbacks.Callback):
    """Per-step losses (from Keras' running mean of one ``fit``) and weights after each step."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.means, self.weights, self.stop_after = [], [], stop_after

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))
        self.weights.append([v.numpy().copy() for v in self.model.variables])
        if self.stop_after is not None and batch + 1 == self.stop_after:
            self.model.stop_training = True

    def losses(self):
        total = np.arange(1, len(self.means) + 1) * np.asarray(self.means, np.float64)
        return np.diff(total, prepend=0.0)


def test_resumed_run_takes_the_same_steps_as_an_uninterrupted_one(tmp_path):
    full = StepLog()
    fit_resumable(_model(), X, STEPS, BATCH, SEED, str(tmp_path / "full"), EVERY,
                  callbacks=[full], verbose=0)

    first = StepLog(stop_after=12)   # interrupted after step 12: the end checkpoint is at 12
    fit_resumable(_model(), X, STEPS, BATCH, SEED, str(tmp_path / "cut"), EVERY,
                  callbacks=[first], verbose=0)
    rest = StepLog()
    model = _model()                  # a fresh model, as a new process would build it
    _, start = fit_resumable(model, X, STEPS, BATCH, SEED, str(tmp_path / "cut"), EVERY,
                             callbacks=[rest], verbose=0)
    assert start == 12 and len(rest.weights) == STEPS - 12
    assert int(model.optimizer.iterations.numpy()) == STEPS
    for step, (a, b) in enumerate(zip(full.weights[12:], rest.weights), start=13):
        for va, vb in zip(a, b):
            np.testing.assert_array_equal(va, vb, err_msg=f"step {step}")
    np.testing.assert_allclose(rest.losses(), full.losses()[12:], rtol=1e-5)


def test_checkpoints_every_k_steps_and_at_the_end_keeping_two(tmp_path):
    directory = str(tmp_path / "ck")
    fit_resumable(_model("coupling"), X, 12, BATCH, SEED, directory, EVERY, verbose=0)
    names = sorted(os.listdir(directory))
    assert "checkpoint" in names
    assert sorted({n.split(".")[0] for n in names if n.startswith("ckpt-")}) == \
        ["ckpt-10", "ckpt-12"]
    assert TrainingCheckpoint(_model("coupling"), directory).latest_step == 12
    # A finished run resumed to the same step trains no further.
    history, start = fit_resumable(_model("coupling"), X, 12, BATCH, SEED, directory, EVERY,
                                   verbose=0)
    assert history is None and start == 12


def test_a_checkpoint_half_written_when_killed_is_ignored(tmp_path):
    """The index file names a checkpoint only once it is complete: debris of a save that was
    killed midway (data and index files, no index update) leaves the previous one in force."""
    directory = tmp_path / "ck"
    fit_resumable(_model("coupling"), X, 10, BATCH, SEED, str(directory), EVERY, verbose=0)
    (directory / "ckpt-15.index").write_bytes(b"\x00garbage")
    (directory / "ckpt-15.data-00000-of-00001").write_bytes(b"")
    model = _model("coupling")
    assert TrainingCheckpoint(model, str(directory)).restore() == 10
    assert int(model.optimizer.iterations.numpy()) == 10


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    directory = str(tmp_path / "ck")
    fit_resumable(_model("coupling"), X, 5, BATCH, SEED, directory, EVERY, verbose=0)
    with pytest.raises(ValueError, match="does not match this model"):
        TrainingCheckpoint(_model("resflow"), directory).restore()


class PoisonAfter(keras.callbacks.Callback):
    """Sets one weight to NaN after ``step`` steps: the loss of step ``step + 1`` is NaN."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.step:
            v = self.model.trainable_variables[0]
            v.assign(tf.fill(v.shape, np.float32("nan")))


def test_a_non_finite_loss_stops_at_once_keeping_the_last_good_checkpoint(tmp_path):
    directory = str(tmp_path / "ck")
    model = _model("coupling")
    with pytest.raises(TrainingDiverged) as caught:
        fit_resumable(model, X, 40, BATCH, SEED, directory, EVERY,
                      callbacks=[PoisonAfter(12)], verbose=0)
    err = caught.value
    assert err.step == 13 and not np.isfinite(err.loss) and err.last_checkpoint_step == 10
    assert "step 13 of 40" in str(err) and "smaller learning rate" in str(err)
    assert int(model.optimizer.iterations.numpy()) == 13  # stopped at once
    restored = _model("coupling")
    assert TrainingCheckpoint(restored, directory).restore() == 10
    assert all(np.all(np.isfinite(v.numpy())) for v in restored.variables)


def _ema_model(momentum):
    keras.utils.set_random_seed(0)
    model = build_model("resflow", 2, n_steps=2, hidden_units=(8,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=momentum))
    return model


def test_with_an_ema_optimiser_the_fitted_weights_are_the_moving_average(tmp_path):
    """theta_ema_1 = theta_1, theta_ema_t = m theta_ema_(t-1) + (1 - m) theta_t (Polyak
    averaging of the weights after each step, Keras' ``use_ema``): after ``fit_resumable``
    the model holds theta_ema_T, also when a later call finds the run already finished."""
    m, steps = 0.6, 10
    log = StepLog()
    model = _ema_model(m)
    fit_resumable(model, X, steps, BATCH, SEED, str(tmp_path / "run"), 4, callbacks=[log],
                  verbose=0)
    trainable = [i for i, v in enumerate(model.variables) if v.trainable]
    ema = [log.weights[0][i].astype(np.float64) for i in trainable]
    for weights in log.weights[1:]:
        ema = [m * e + (1 - m) * weights[i] for e, i in zip(ema, trainable)]
    fitted = [v.numpy() for v in model.trainable_variables]
    for e, w in zip(ema, fitted):
        np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(w, log.weights[-1][i]) for w, i in zip(fitted, trainable))

    again = _ema_model(m)             # a new process finding the finished checkpoint
    _, start = fit_resumable(again, X, steps, BATCH, SEED, str(tmp_path / "run"), 4, verbose=0)
    assert start == steps
    for a, b in zip(again.trainable_variables, fitted):
        np.testing.assert_array_equal(a.numpy(), b)
