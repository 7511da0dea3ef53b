"""Checkpoints of a ``BoostedFlowTrainer``: component weights and the trainer's state.

A checkpoint is a directory written atomically (a reader never sees a partial one):

    component_J.weights.h5   the Keras weights of component J (every component, trained or not)
    state.json               mixture weights, trained flags, stage history and settings

so a long boosting run resumes exactly after its last completed stage
(``BoostedFlowTrainer.fit`` skips the stages already in the restored history);
:func:`latest_checkpoint` finds the newest ``stage_XX`` checkpoint that ``fit`` wrote.

Within a stage, :class:`StageProgress` checkpoints the training component every K optimiser
steps in ``stage_XX.partial/`` (``tf.train.CheckpointManager``: the component's variables, its
optimiser's, the step and the stage's losses so far; two kept, so a kill mid-save leaves the
previous one), and a resumed stage continues from there: its batches and noise are functions
of the step, so it takes exactly the steps an uninterrupted stage takes.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896.
"""
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from tfresflow.io import atomic_path, ensure_writable_dir, write_json

__all__ = ["trainer_state", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "StageProgress", "partial_dir", "write_checkpoint_dir", "read_checkpoint_state",
           "run_stages"]

STATE_FILE = "state.json"


def _weights_file(j):
    return f"component_{j}.weights.h5"


def trainer_state(trainer):
    """JSON-serialisable state of ``trainer`` (weights, trained flags, history, settings)."""
    return {"objective": trainer.objective, "num_components": trainer.num_components,
            "event_shape": trainer.event_shape, "regularization": trainer.regularization,
            "weights": [float(w) for w in trainer.weights],
            "trained": [bool(t) for t in trainer.trained], "history": trainer.history,
            "density_objective": trainer.density_objective, "seed": trainer.seed}


def write_checkpoint_dir(path, weights, state):
    """Writes the checkpoint directory ``path`` atomically; returns ``path``.

    ``weights`` maps file names (``*.weights.h5``) to the Keras objects whose weights they hold;
    ``state`` is the JSON-serialisable dict written to ``state.json``.
    """
    ensure_writable_dir(os.path.dirname(os.path.abspath(path)), "checkpoint_dir")
    with atomic_path(path) as tmp:
        os.makedirs(tmp)
        for name, obj in weights.items():
            obj.save_weights(os.path.join(tmp, name))
        write_json(os.path.join(tmp, STATE_FILE), state)
    return path


def read_checkpoint_state(path, what="boosted-flow"):
    """The ``state.json`` dict of the checkpoint directory ``path``.

    Raises:
      ValueError: if ``path`` is not a checkpoint (no ``state.json``).
    """
    state_file = os.path.join(path, STATE_FILE)
    if not os.path.isfile(state_file):
        raise ValueError(f"`path`={path!r} is not a {what} checkpoint (no {STATE_FILE}).")
    with open(state_file, encoding="utf-8") as f:
        return json.load(f)


def save_checkpoint(trainer, path):
    """Writes the checkpoint directory ``path`` of ``trainer`` atomically; returns ``path``."""
    return write_checkpoint_dir(
        path, {_weights_file(j): c for j, c in enumerate(trainer.components)},
        trainer_state(trainer))


def load_checkpoint(trainer, path):
    """Restores component weights and state written by :func:`save_checkpoint` into ``trainer``.

    Raises:
      ValueError: if ``path`` is not a checkpoint, or was written for another number of
        components, event shape or objective.
    """
    state = read_checkpoint_state(path)
    if state["num_components"] != trainer.num_components or \
            state["event_shape"] != trainer.event_shape or \
            state["objective"] != trainer.objective:
        raise ValueError(f"Checkpoint {path!r} was written for {state['num_components']} "
                         f"components, event shape {state['event_shape']}, objective "
                         f"{state['objective']!r}; this trainer has {trainer.num_components}, "
                         f"{trainer.event_shape}, {trainer.objective!r}.")
    for j, component in enumerate(trainer.components):
        component.load_weights(os.path.join(path, _weights_file(j)))
    trainer.weights = np.asarray(state["weights"], np.float64)
    trainer.trained = np.asarray(state["trained"], bool)
    trainer.history = list(state["history"])
    return trainer


def latest_checkpoint(directory):
    """The newest complete ``stage_XX`` checkpoint in ``directory`` (``None`` if there is none).

    Stage checkpoints are written atomically, so every ``stage_XX`` with a ``state.json`` is
    complete; the one with the highest stage number is the latest.
    """
    if not os.path.isdir(directory):
        return None
    stages = [name for name in os.listdir(directory)
              if name.startswith("stage_") and name[6:].isdigit()
              and os.path.isfile(os.path.join(directory, name, STATE_FILE))]
    if not stages:
        return None
    return os.path.join(directory, max(stages, key=lambda name: int(name[6:])))


def partial_dir(directory, stage):
    """Where the within-stage checkpoints of ``stage`` live (next to ``stage_XX``)."""
    return os.path.join(directory, f"stage_{stage:02d}.partial")


class StageProgress:
    """The training state of one boosting stage in ``directory``, saved every few steps.

    Args:
      directory: the stage's ``stage_XX.partial`` directory (:func:`partial_dir`).
      model: the component being trained (its ``variables`` are saved, by position).
      optimizer: its built optimiser.
      steps: the stage's optimiser steps.
    """

    def __init__(self, directory, model, optimizer, steps):
        self.steps = int(steps)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._losses = tf.Variable(tf.zeros([max(self.steps, 1)], tf.float64), trainable=False)
        self._checkpoint = tf.train.Checkpoint(model=list(model.variables),
                                               optimizer=list(optimizer.variables),
                                               step=self._step, losses=self._losses)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=2)

    def restore(self):
        """``(step, losses)`` of the latest checkpoint (``(0, [])`` without one)."""
        path = self._manager.latest_checkpoint
        if path is None:
            return 0, []
        self._checkpoint.restore(path).assert_consumed()
        step = int(self._step.numpy())
        return step, [float(v) for v in self._losses.numpy()[:step]]

    def save(self, losses):
        """Saves the state after ``len(losses)`` steps (the stage's losses so far)."""
        self._step.assign(len(losses))
        self._losses.assign(np.pad(np.asarray(losses, np.float64),
                                   (0, self._losses.shape[0] - len(losses))))
        self._manager.save(checkpoint_number=len(losses))


def run_stages(trainer, schedule, run_stage, checkpoint_dir=None, every=None, on_stage_end=None):
    """Runs the stages of ``schedule`` not yet in ``trainer.history``, checkpointing each.

    ``run_stage(stage, phase, c, progress_dir) -> record`` trains one stage (``progress_dir``:
    its ``stage_XX.partial`` directory when ``checkpoint_dir`` and ``every`` are given, else
    None); each record is appended to ``trainer.history``, then ``trainer.save_checkpoint``
    writes ``checkpoint_dir/stage_XX`` (the partial directory is removed) and
    ``on_stage_end(trainer, record)`` is called. Stages already in the history (restored from
    a checkpoint) are skipped, so a resumed run continues after its last completed stage.
    Returns ``trainer.history``.
    """
    for stage, (phase, c) in enumerate(schedule):
        if stage < len(trainer.history):
            continue  # completed before a checkpoint restore
        progress_dir = None if every is None else partial_dir(checkpoint_dir, stage)
        record = run_stage(stage, phase, c, progress_dir)
        trainer.history.append(record)
        if checkpoint_dir is not None:
            trainer.save_checkpoint(os.path.join(checkpoint_dir, f"stage_{stage:02d}"))
            if progress_dir is not None:
                shutil.rmtree(progress_dir, ignore_errors=True)
        if on_stage_end is not None:
            on_stage_end(trainer, record)
    return trainer.history
