"""tfresflow: invertible residual flows and their relatives for TensorFlow Probability / Keras 3.

Families (papers in the project's ``shared/papers``):

* Residual Flows and i-ResNets (``bijectors.ResidualBlock``, ``logdet``, ``lipschitz``, ``nets``)
* i-DenseNets (``bijectors.DenseBlock``, ``nets.DenseNet``)
* relative-gradient linear flows (``bijectors.RelativeGradientLinear``)
* gradient boosted flows (``distributions.BoostedFlow``, ``boosting.BoostedFlowTrainer``)

Direction convention (as every TFP flow): a bijector's ``forward`` maps latent -> data
(sampling) and its ``inverse`` maps data -> latent (density evaluation).

Lazy loading (PEP 562). ``import tfresflow`` imports neither TensorFlow nor Keras unless one of
them is already imported, so the command line (``python -m tfresflow.cli --help``) parses its
arguments in a fraction of a second. The subpackages load on first use: the first access of
one of :data:`SUBPACKAGES` (``tfresflow.bijectors``, ``trf.models.FlowModel``, ...) imports all
of them at once, as ``import tfresflow`` did before, so every Keras class of the package is
registered for ``keras.saving.load_model`` from then on. When TensorFlow or Keras is already
imported (``import keras`` / ``import tensorflow`` before ``import tfresflow``, the usual
import order), ``import tfresflow`` loads everything at once. ``from tfresflow.models import
FlowModel`` and every other direct import work as always.

Raises:
  ImportError: when Keras is (or is to be) configured with a backend other than TensorFlow
    (checked at import, and again when the TensorFlow-dependent subpackages load).
"""
import importlib as _importlib
import importlib.util as _importlib_util
import os as _os
import sys as _sys

__version__ = "0.1.0"

#: The subpackages (and the former-home alias ``activations``) that ``import tfresflow``
#: imported eagerly before it became lazy; the first access of any of them loads them all.
SUBPACKAGES = ("random", "logdet", "lipschitz", "activations", "solvers", "bijectors",
               "optimizers", "data", "boosting", "models", "export", "evaluation")
#: Modules without TensorFlow: accessing them loads them alone (the command line uses them).
_LIGHT = ("validation", "io", "registry", "cli")

_backend = _os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        f"tfresflow needs the TensorFlow Keras backend, but KERAS_BACKEND={_backend!r}; "
        "unset it or set KERAS_BACKEND=tensorflow before importing keras.")


def _check_keras_backend():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "tfresflow needs the TensorFlow Keras backend, but keras was already imported with "
            f"backend {keras.backend.backend()!r}.")


_loaded = False


def _load_all():
    """Imports every subpackage of :data:`SUBPACKAGES` (once), after the backend check."""
    global _loaded
    if _loaded:
        return
    _check_keras_backend()   # raises again on every access while the backend is wrong
    _loaded = True
    for name in SUBPACKAGES:
        __getattr__(name)


def __getattr__(name):
    if name == "activations":  # the former home tfresflow.activations: now the lipschitz one
        _load_all()
        module = _importlib.import_module(f"{__name__}.lipschitz.activations")
        globals()[name] = module
        return module
    if name in SUBPACKAGES or name in _LIGHT or (
            not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}")):
        if name not in _LIGHT:
            _load_all()
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBPACKAGES) | set(_LIGHT))


if "keras" in _sys.modules or "tensorflow" in _sys.modules:
    _load_all()
