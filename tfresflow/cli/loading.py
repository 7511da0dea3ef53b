"""What ``tfresflow evaluate`` and ``tfresflow sample`` were pointed at, and what it was trained on.

A ``model_path`` is one of

* a **run folder** (what ``tfresflow train`` / ``match`` wrote): its ``model.keras`` is loaded,
  or its ``saved_model/`` when there is no ``model.keras``;
* a **``.keras`` file** (loaded with Keras; tfresflow's classes are registered on import);
* a **SavedModel directory** (written by :func:`tfresflow.export.export_saved_model`; scored
  and sampled through its exported signatures, :class:`tfresflow.export.SavedModelFlow`).

Anything else (a missing path, a boosted run's weights-only stage checkpoint, an unreadable or
truncated file) is a ``ValueError`` naming the argument, which the command line reports with
exit code 2.

The **run's metrics** (``metrics.json``) lie in the run folder: the folder given, the folder of
a ``.keras`` file, or the parent of a SavedModel directory. ``evaluate`` takes from them the
data set, split seed and test-set size of the training run (:func:`evaluation_split`), so the
test set it scores is the one ``train`` held out.

TensorFlow is imported when a model is loaded, not when this module is imported.
"""
import json
import os

__all__ = ["MODEL_FILE", "SAVED_MODEL_DIR", "METRICS_FILE", "resolve_model_path", "load_model",
           "run_metrics", "evaluation_split"]

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METRICS_FILE = "metrics.json"
#: Test-set size ``train`` draws by default (used for runs whose metrics do not record it).
DEFAULT_N_TEST = 5000
#: Marker file of a boosted-flow training checkpoint (``tfresflow.boosting.checkpoint``).
_CHECKPOINT_STATE = "state.json"


def _is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def resolve_model_path(path, name="model_path"):
    """``(kind, model path, run folder)`` for a run folder, ``.keras`` file or SavedModel.

    ``kind`` is ``"keras"`` or ``"saved_model"``; the run folder is where the run's
    ``metrics.json`` would lie (see the module docstring).

    Raises:
      ValueError: naming ``name`` when ``path`` is none of the three.
    """
    expected = ("expected a run folder written by `tfresflow train`, a .keras file or a "
                "SavedModel directory")
    if not os.path.exists(path):
        raise ValueError(f"`{name}` {path!r} does not exist; {expected}.")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"`{name}` {path!r} is a file but not a .keras model; {expected}.")
        return "keras", path, os.path.dirname(os.path.abspath(path))
    if _is_saved_model(path):
        return "saved_model", path, os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(path, MODEL_FILE)):
        return "keras", os.path.join(path, MODEL_FILE), path
    if _is_saved_model(os.path.join(path, SAVED_MODEL_DIR)):
        return "saved_model", os.path.join(path, SAVED_MODEL_DIR), path
    if os.path.isfile(os.path.join(path, _CHECKPOINT_STATE)):
        raise ValueError(f"`{name}` {path!r} is a training checkpoint of a boosted run "
                         f"(component weights only); pass the run folder (its {MODEL_FILE}) "
                         "instead.")
    raise ValueError(f"`{name}` {path!r} is a folder without {MODEL_FILE} or "
                     f"{SAVED_MODEL_DIR}/ (has the run finished?); {expected}.")


def load_model(path, name="model_path"):
    """The model at ``path`` (see :func:`resolve_model_path`), ready for ``log_prob`` /
    ``exact_log_prob`` / ``sample`` and :mod:`tfresflow.evaluation`.

    Raises:
      ValueError: naming ``name`` when ``path`` is no model or cannot be read.
    """
    kind, model_path, _ = resolve_model_path(path, name)
    if kind == "saved_model":
        from tfresflow.export import load_saved_model

        try:
            return load_saved_model(model_path)
        except (OSError, ValueError) as err:
            raise ValueError(f"`{name}`: cannot read the SavedModel {model_path!r}: {err}") \
                from None
    import keras

    import tfresflow.models  # noqa: F401  (registers tfresflow's Keras classes)
    from tfresflow import io

    io.check_input_file(model_path, name, "keras")  # a truncated/foreign file: say what it is
    try:
        return keras.saving.load_model(model_path)
    except Exception as err:  # Keras reports a corrupt file with many exception types
        raise ValueError(f"`{name}`: cannot read the Keras model {model_path!r} (a truncated "
                         f"or foreign file?): {type(err).__name__}: {err}") from None


def run_metrics(path, name="model_path"):
    """The ``metrics.json`` dict of the run ``path`` belongs to, or ``None`` when it has none.

    Raises:
      ValueError: naming ``name`` when ``path`` is no model, or the metrics file is unreadable.
    """
    _, _, run_dir = resolve_model_path(path, name)
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(metrics_path):
        return None
    try:
        with open(metrics_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read the run's metrics {metrics_path!r}: {err}") from None


def evaluation_split(path, data=None, n=None, seed=None, name="model_path"):
    """``(data, n_test, seed, note)``: the test split ``evaluate`` scores.

    Each of ``data``, ``n`` and ``seed`` given explicitly wins; missing ones come from the
    run's ``metrics.json`` (``data``, ``n_test``, ``seed`` of the training run); then ``n``
    defaults to :data:`DEFAULT_N_TEST` and ``seed`` to 0. ``note`` says in words which settings
    came from which metrics file (``""`` if none did).

    Raises:
      ValueError: when no ``data`` is given and the run records none (no ``metrics.json``, or
        a ``match`` run, which fits an energy, not data).
    """
    metrics = run_metrics(path, name) or {}
    _, _, run_dir = resolve_model_path(path, name)
    source = os.path.join(run_dir, METRICS_FILE) if metrics else None
    recorded = [what for what, given, key in (("data", data, "data"), ("n", n, "n_test"),
                                               ("seed", seed, "seed"))
                if given is None and key in metrics]
    if data is None:
        data = metrics.get("data")
        if data is None:
            why = (f"its run ({source}) fitted the energy {metrics['energy']}, not data"
                   if "energy" in metrics else
                   f"there is no {METRICS_FILE} of its training run beside it"
                   if source is None else f"{source} records no data set")
            raise ValueError(f"Pass --data: `{name}` {path!r} does not say what to evaluate "
                             f"on ({why}).")
    if n is None:
        n = int(metrics.get("n_test", DEFAULT_N_TEST))
    if seed is None:
        seed = int(metrics.get("seed", 0))
    note = f"{', '.join(recorded)} from {source}" if recorded else ""
    return data, n, seed, note
