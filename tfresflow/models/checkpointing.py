"""Checkpointed training that resumes exactly and stops on divergence: :func:`fit_resumable`.

A training run's state is: every variable of the model (``model.variables``: the weights, and
the non-trainable state - power-iteration vectors ``u``, ``v`` and ``sigma`` of Lipschitz
layers, ActNorm's initialisation flag, the state of each ``keras.random.SeedGenerator``, from
which the stochastic log-dets draw their seeds), every variable of the optimiser
(``optimizer.variables``: the step counter ``iterations``, the moments, and the EMA copies when
``use_ema`` is set) and the position in the data. The data pipeline is a pure function of the
step (:func:`tfresflow.data.batches.step_batches`), so the optimiser's ``iterations`` is the
position: no iterator state needs saving.

:class:`TrainingCheckpoint` saves that state with ``tf.train.CheckpointManager``: each save
writes ``ckpt-STEP.index`` / ``ckpt-STEP.data-*`` first and only then rewrites the
``checkpoint`` index file (atomically, by rename), keeping the last ``max_to_keep`` >= 2; so a
process killed mid-save (SIGKILL, power loss) leaves the index naming the previous, complete
checkpoint. Keras' ``BackupAndRestore`` is not used: it rewrites one file in place (a kill
mid-write loses it), restores only the epoch counter, not the step within an epoch, and deletes
its backup when ``fit`` ends.

:func:`fit_resumable` restores the latest checkpoint of a directory (if any), runs Keras
``fit`` over the remaining steps with :class:`CheckpointEvery` (a save every ``every`` steps
and at the end) and :class:`RecordNonFiniteLoss` (Keras' ``TerminateOnNaN``, recording the
step; it stops without raising, unlike ``FlowModel.fit``'s ``StopOnNonFiniteLoss``, so the
checkpoint callbacks stay consistent), and raises :class:`TrainingDiverged` naming the step when the loss became non-finite;
the checkpoints saved before it are kept, none is written after it. A run resumed at step ``s``
takes exactly the optimiser steps an uninterrupted run takes from ``s`` on (same batches, same
seeds, same power-iteration warm starts), so its losses and weights are the same.
"""
import keras
import numpy as np
import tensorflow as tf

from tfresflow.data.batches import step_batches
from tfresflow.lipschitz import LipschitzUpdate, find_lipschitz_layers, update_lipschitz_layers
from tfresflow.validation import check_positive_int

__all__ = ["TrainingCheckpoint", "CheckpointEvery", "RecordNonFiniteLoss", "TrainingDiverged",
           "fit_resumable", "latest_step"]

#: Checkpoints kept by :class:`TrainingCheckpoint` (>= 2: one survives a kill mid-save).
MAX_TO_KEEP = 2


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss at optimiser step ``step`` (1-based, whole run).

    Attributes:
      step, steps: the step whose loss was non-finite, and the run's total steps.
      loss: that loss value.
      last_checkpoint_step: the step of the last (good) checkpoint kept in ``directory``;
        ``None`` when none had been written.
      hint: the advice closing the message.
    """

    def __init__(self, step, steps, loss, last_checkpoint_step, directory,
                 hint="Try a smaller learning rate."):
        kept = (f"the last good checkpoint (step {last_checkpoint_step}) is kept in "
                f"{directory}" if last_checkpoint_step else "no checkpoint had been written yet")
        super().__init__(f"training diverged: the loss was {loss} at step {step} of {steps}; "
                         f"{kept}. {hint}")
        self.step, self.steps, self.loss = step, steps, loss
        self.last_checkpoint_step, self.directory, self.hint = \
            last_checkpoint_step, directory, hint

    def with_hint(self, hint):
        """The same error with another closing advice (e.g. naming a command-line option)."""
        return TrainingDiverged(self.step, self.steps, self.loss, self.last_checkpoint_step,
                                self.directory, hint)


def latest_step(directory):
    """The step of the latest complete checkpoint in ``directory``; ``None`` if there is none."""
    path = tf.train.latest_checkpoint(directory)
    return None if path is None else int(path.rsplit("-", 1)[1])


class TrainingCheckpoint:
    """The training state of a compiled Keras ``model`` in ``directory``, saved atomically.

    Args:
      model: a compiled Keras model (its optimiser is built here if it is not yet).
      directory: the checkpoint directory (created on the first save).
      max_to_keep: checkpoints kept (at least 2).
    """

    def __init__(self, model, directory, max_to_keep=MAX_TO_KEEP):
        if model.optimizer is None:
            raise ValueError("`model` must be compiled (with an optimizer) to be checkpointed.")
        max_to_keep = check_positive_int(max_to_keep, "max_to_keep", minimum=2)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self.model = model
        self.directory = directory
        # By position, not by path: Keras' automatic names (``adam_2``, ``lip_swish_8``) depend
        # on how many layers a process built before, the order of the variables does not.
        self.checkpoint = tf.train.Checkpoint(model=list(model.variables),
                                              optimizer=list(model.optimizer.variables))
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                                  max_to_keep=max_to_keep)

    @property
    def step(self):
        """The model's current optimiser step (``optimizer.iterations``)."""
        return int(self.model.optimizer.iterations.numpy())

    @property
    def latest_step(self):
        """The step of the latest complete checkpoint, ``None`` when there is none."""
        return latest_step(self.directory)

    def restore(self):
        """Restores the latest checkpoint (if any); returns the step reached (0 without one).

        Raises:
          ValueError: when the checkpoint does not hold exactly this model's and optimiser's
            variables (another model, or other options).
        """
        path = self.manager.latest_checkpoint
        if path is None:
            return 0
        status = None
        try:
            status = self.checkpoint.restore(path)
            status.assert_consumed()
        except (AssertionError, ValueError) as err:
            if status is not None:
                status.expect_partial()  # no second report of the same mismatch at exit
            raise ValueError(f"Checkpoint {path!r} does not match this model and optimiser "
                             f"(was it written with other settings?): {err}") from None
        return self.step

    def save(self):
        """Saves the current state as ``ckpt-STEP``; returns its path."""
        return self.manager.save(checkpoint_number=self.step)


class RecordNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Keras' ``TerminateOnNaN`` that records the step and loss that stopped training.

    Stops ``fit`` after the first batch whose ``loss`` is NaN or infinite, as
    ``TerminateOnNaN`` does, without its "Batch N: Invalid loss" line (``N`` counts the batches
    of one ``fit`` call from 0, which misnames the step of a resumed run): :attr:`step` counts
    the whole run from 1, starting from ``start_step`` (a resumed run's).
    """

    def __init__(self, start_step=0):
        super().__init__()
        self.start_step = int(start_step)
        self.step = None
        self.loss = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.step is None and loss is not None and not np.isfinite(loss):
            self.step = self.start_step + int(batch) + 1
            self.loss = float(loss)
            self.model.stop_training = True

    @property
    def diverged(self):
        return self.step is not None


class CheckpointEvery(keras.callbacks.Callback):
    """Saves a :class:`TrainingCheckpoint` every ``every`` optimiser steps and when ``fit`` ends.

    Nothing is saved once ``guard`` (a :class:`RecordNonFiniteLoss`) has seen a non-finite
    loss, so the last checkpoint is the last good state.
    """

    def __init__(self, checkpoint, every, guard=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.every = check_positive_int(every, "every")
        self.guard = guard

    def _save(self):
        if self.guard is not None and self.guard.diverged:
            return
        if self.checkpoint.latest_step != self.checkpoint.step:
            self.checkpoint.save()

    def on_train_batch_end(self, batch, logs=None):
        if self.checkpoint.step % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        self._save()


def fit_resumable(model, x, steps, batch_size, seed, directory, every, callbacks=(),
                  verbose=1, batches=None):
    """Trains ``model`` on ``x`` to ``steps`` optimiser steps, resuming from ``directory``.

    With an optimiser that keeps an exponential moving average of the weights (Keras'
    ``use_ema=True``: ``theta_ema <- m theta_ema + (1 - m) theta`` after every step, Polyak &
    Juditsky, 1992), Keras' ``fit`` overwrites the weights with their average when it ends;
    here the same happens also when the checkpoint had already reached ``steps`` (a finished
    training whose run was stopped later), and the power-iteration state of every Lipschitz
    layer is then refreshed for the averaged weights (as the Residual Flows code does after
    swapping in its EMA weights, Chen et al., 2019, App. E), so evaluation and sampling use the
    averaged weights with their own spectral normalisation.

    Args:
      model: a compiled Keras model (e.g. a ``FlowModel``) trained by ``fit(x)``.
      x: training examples ``[n, *event_shape]``; batches from
        :func:`~tfresflow.data.batches.step_batches` with ``batch_size`` and ``seed``
        (unused when ``batches`` is given).
      steps: total optimiser steps of the run.
      directory: checkpoint directory; its latest checkpoint (if any) is restored first.
      every: steps between checkpoints (one is also written at the end).
      callbacks: further Keras callbacks for ``fit``.
      verbose: ``fit``'s verbosity.
      batches: optional ``fn(start_step, stop_step) -> tf.data.Dataset`` of the batches of
        those steps, a pure function of the step (e.g. ``functools.partial(
        tfresflow.data.images.image_batches, images, batch_size, seed)``: dequantised images
        with fresh noise per step), in place of ``step_batches(x, batch_size, seed, ...)``.

    Returns:
      ``(history, start_step)``: the Keras ``History`` of the steps run here (``None`` when
      the checkpoint had reached ``steps`` already) and the step training resumed from.

    Raises:
      TrainingDiverged: the loss became non-finite (the checkpoints before it are kept).
      ValueError: the checkpoint in ``directory`` belongs to another model, or is past
        ``steps``.
    """
    steps = check_positive_int(steps, "steps")
    state = TrainingCheckpoint(model, directory)
    start = state.restore()
    if start > steps:
        raise ValueError(f"The checkpoint in {directory!r} is at step {start}, past `steps`="
                         f"{steps}.")
    if start == steps:
        _use_averaged_weights(model)
        return None, start
    guard = RecordNonFiniteLoss(start)
    callbacks = [guard, CheckpointEvery(state, every, guard), *callbacks]
    if start and find_lipschitz_layers(getattr(model, "flow_layers", model)):
        # The restored power-iteration state is already the one after step ``start``'s
        # update; another update at train begin would make the resumed run differ.
        callbacks.append(LipschitzUpdate(on_train_begin_update=False))
    if batches is None:
        def batches(first, stop):
            return step_batches(x, batch_size, seed, first, stop)
    history = model.fit(batches(start, steps), epochs=1,
                        steps_per_epoch=steps - start, shuffle=False, verbose=verbose,
                        callbacks=callbacks)
    if guard.diverged:
        raise TrainingDiverged(guard.step, steps, guard.loss, state.latest_step, directory)
    _use_averaged_weights(model)
    return history, start


def _use_averaged_weights(model):
    """With an EMA optimiser: the averaged weights in the model (Keras'
    ``finalize_variable_values``, idempotent) and the Lipschitz normalisation refreshed."""
    optimizer = model.optimizer
    if not getattr(optimizer, "use_ema", False):
        return
    optimizer.finalize_variable_values(model.trainable_variables)
    update_lipschitz_layers(getattr(model, "flow_layers", model))
