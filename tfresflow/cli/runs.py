"""Run folders: what a run records, when a new run may write into ``--out``, ``--resume``.

A run folder (``--out``) holds::

    run.json       the run's settings (its command-line arguments), written when training starts
    checkpoints/   training checkpoints (every ``--checkpoint-every`` steps and at the end; one
                   per stage for ``--model boosted``)
    model.keras, saved_model/, *.png     results
    metrics.json   written last: its presence means the run completed

Policy:

* A new run refuses an ``--out`` that holds a previous run (any of :data:`RUN_ENTRIES`),
  before any training, unless ``--overwrite`` is given. With ``--overwrite`` the new run works
  in ``OUT/.overwrite/`` and replaces the previous run's files only once it has completed, so a
  run that fails (diverges, is killed, raises) never replaces a good one.
* ``tfresflow train --resume RUN_DIR`` takes every setting from ``RUN_DIR/run.json`` and
  continues from the latest checkpoint (an unfinished ``--overwrite`` run in
  ``RUN_DIR/.overwrite/`` first). Options given beside ``--resume`` must agree with the recorded
  ones (an error names those that do not), except :data:`FREE_ON_RESUME` (output verbosity and
  checkpoint frequency, which do not change the results).

Parsing records which options were given on the command line (:func:`record_given_options`),
so that ``--lr 0.001`` typed out is a contradiction of a recorded ``--lr 0.01`` even though it
is the default. This module imports neither TensorFlow nor Keras.
"""
import dataclasses
import fnmatch
import json
import os
import shutil

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
STAGING = ".overwrite"
#: Names a run writes into its folder (what counts as "a previous run", and what
#: ``--overwrite`` replaces; other files in ``--out`` are left alone).
RUN_ENTRIES = (RUN_FILE, METRICS_FILE, CHECKPOINTS, "model.keras", "saved_model",
               "density.png", "samples.png", "target.png", "stage_*_density.png",
               "stage_losses.png", "reconstructions.png")
#: Options that may differ from the recorded run on ``--resume``.
FREE_ON_RESUME = frozenset({"quiet", "verbose", "checkpoint_every"})
#: Namespace entries that are not settings of the run.
_GIVEN = "given_options"
_PARSER = "settings_parser"
_NOT_SETTINGS = frozenset({"run", "command", "resume", "overwrite", "out", _GIVEN, _PARSER})


# --------------------------------------------------------------------------- parsing
def _recording(action_class):
    class Recording(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            given = set(getattr(namespace, _GIVEN, ()))
            setattr(namespace, _GIVEN, given | {self.dest})

    Recording.__name__ = f"Recording{action_class.__name__}"
    return Recording


def record_given_options(parser):
    """Makes ``parser`` record the options given on its command line (see :func:`given`).

    Call before adding the arguments: the plain ``store``, ``store_true`` and ``append``
    actions added afterwards record themselves. An option with another action counts as given
    when its value differs from its default.
    """
    for name in (None, "store", "store_true", "append"):
        parser.register("action", name, _recording(parser._registry_get("action", name)))
    parser.set_defaults(**{_PARSER: parser})


def given(args):
    """The ``dest`` names of the options given on the command line of ``args``."""
    names = set(getattr(args, _GIVEN, ()))
    parser = getattr(args, _PARSER, None)
    if parser is not None:
        names |= {k for k in settings(args) if getattr(args, k) != parser.get_default(k)}
    return names


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def settings(args):
    """The run's settings in ``args`` (JSON-ready): every option but the bookkeeping ones."""
    return {k: _jsonable(v) for k, v in sorted(vars(args).items())
            if k not in _NOT_SETTINGS | FREE_ON_RESUME}


def _restore(value, current):
    """A recorded JSON value back in the type argparse gives (tuples; ``append`` lists)."""
    if isinstance(current, list) and isinstance(value, list):
        return [_tuples(v) for v in value]
    return _tuples(value)


# --------------------------------------------------------------------------- run folders
@dataclasses.dataclass
class Run:
    """Where a run writes: ``work`` (its files as they are made) and ``out`` (where they end).

    ``work`` is ``out`` itself, or ``out/.overwrite`` for an ``--overwrite`` of a previous run
    (moved into ``out`` by :func:`finish`). ``resumed``: continues a recorded run.
    """
    out: str
    work: str
    resumed: bool = False

    @property
    def checkpoints(self):
        """The run's checkpoint directory."""
        return os.path.join(self.work, CHECKPOINTS)


def _entries(folder):
    if not os.path.isdir(folder):
        return []
    names = sorted(os.listdir(folder))
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in RUN_ENTRIES)]


def _read_settings(folder):
    with open(os.path.join(folder, RUN_FILE), encoding="utf-8") as f:
        return json.load(f)


def _work_folder(folder):
    """The folder holding the ``run.json`` of the run in ``folder``: its staging folder while
    an ``--overwrite`` run there is unfinished, else ``folder`` itself; None if neither has one."""
    for work in (os.path.join(folder, STAGING), folder):
        if os.path.isfile(os.path.join(work, RUN_FILE)):
            return work
    return None


def recorded_settings(folder):
    """The settings recorded in the ``run.json`` of the run in ``folder`` (None: no run)."""
    work = _work_folder(folder)
    return None if work is None else _read_settings(work).get("settings", {})


def prepare(args, default_out):
    """Decides where the run of ``args`` writes (no file is written); returns a :class:`Run`.

    For ``--resume`` the recorded settings are put into ``args`` (and ``args.out``).

    Raises:
      ValueError: ``--out`` holds a previous run and neither ``--overwrite`` nor ``--resume``
        is given; ``--resume`` names no unfinished run, or options contradict its settings.
    """
    if getattr(args, "resume", None):
        return _prepare_resume(args)
    out = args.out or default_out
    found = _entries(out)
    if found and not getattr(args, "overwrite", False):
        listed = ", ".join(found[:3] + (["..."] if len(found) > 3 else []))
        if METRICS_FILE in found:
            what, resume = "the results of a previous run", ""
        else:
            what, resume = "an unfinished previous run", f", --resume {out} to continue it"
        raise ValueError(f"--out {out!r} holds {what} ({listed}); pass --overwrite to replace "
                         f"it (once the new run completes){resume}, or choose another --out.")
    return Run(out, os.path.join(out, STAGING) if found else out)


def _prepare_resume(args):
    folder = args.resume
    if getattr(args, "overwrite", False):
        raise ValueError("--resume continues a run; it cannot be combined with --overwrite.")
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(folder):
        raise ValueError(f"--resume {folder!r} writes into that folder; --out {args.out!r} "
                         "contradicts it (leave --out out).")
    work = _work_folder(folder)
    if work is None:
        raise ValueError(f"--resume {folder!r} is not a run folder (no {RUN_FILE}).")
    if work == folder and os.path.isfile(os.path.join(folder, METRICS_FILE)):
        raise ValueError(f"--resume {folder!r}: the run there is complete ({METRICS_FILE}); "
                         "nothing to resume.")
    recorded = _read_settings(work)
    if recorded.get("command", args.command) != args.command:
        raise ValueError(f"--resume {folder!r} holds a `{recorded['command']}` run, not a "
                         f"`{args.command}` one.")
    recorded = recorded.get("settings", {})
    current = settings(args)
    clashes = [f"--{k.replace('_', '-')} {current[k]!r} (the run has {recorded[k]!r})"
               for k in sorted(given(args) & set(recorded)) if current.get(k) != recorded[k]]
    if clashes:
        raise ValueError(f"--resume {folder!r} continues the recorded run; these options "
                         f"contradict it: {'; '.join(clashes)}. Leave them out, or start a "
                         "new run.")
    for key, value in recorded.items():
        setattr(args, key, _restore(value, getattr(args, key, None)))
    args.out = folder
    return Run(folder, work, resumed=True)


def begin(run, args):
    """Creates the run's working folder and records its settings (``run.json``).

    Call once the run's inputs are checked, just before training: a bad input leaves nothing.
    """
    from tfresflow import io

    if run.resumed:
        return run
    staging = os.path.join(run.out, STAGING)
    if os.path.isdir(staging):
        shutil.rmtree(staging)  # a failed --overwrite attempt: never a good run
    io.ensure_writable_dir(run.work, "--out")
    io.write_json(os.path.join(run.work, RUN_FILE),
                  {"command": args.command, "settings": settings(args)})
    return run


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def finish(run):
    """Moves a completed ``--overwrite`` run from ``out/.overwrite`` into ``out``.

    The previous run's ``metrics.json`` goes first and the new one comes last, so at every
    moment a ``metrics.json`` in ``out`` belongs to the files beside it.
    """
    if run.work == run.out:
        return run
    old_metrics = os.path.join(run.out, METRICS_FILE)
    if os.path.exists(old_metrics):
        os.remove(old_metrics)
    for name in _entries(run.out):
        _remove(os.path.join(run.out, name))
    for name in sorted(os.listdir(run.work), key=lambda n: (n == METRICS_FILE, n)):
        os.replace(os.path.join(run.work, name), os.path.join(run.out, name))
    os.rmdir(run.work)
    run.work = run.out
    return run


def diverged_hint(lr):
    """The advice closing a ``TrainingDiverged`` message of a ``train`` run at ``--lr lr``."""
    return (f"Try a smaller --lr than {lr:g} (e.g. --lr {lr / 10:g}) in a new run (--overwrite "
            "replaces this one).")


def report_warnings(metrics, event_size):
    """Adds ``warnings`` to ``metrics`` (a result far worse than the Gaussian baseline) and
    prints each as ``warning: ...``."""
    from tfresflow import evaluation

    metrics["warnings"] = evaluation.baseline_warnings(
        metrics["test_nll"], metrics["gaussian_baseline_test_nll"], event_size)
    for text in metrics["warnings"]:
        print(f"warning: {text}")
    return metrics
