"""tfresflow: invertible residual flows and their relatives for TensorFlow Probability / Keras 3.

Families (papers in the project's ``shared/papers``):

* Residual Flows and i-ResNets (``bijectors.ResidualBlock``, ``logdet``, ``lipschitz``, ``nets``)
* i-DenseNets (``bijectors.DenseBlock``, ``nets.DenseNet``)
* relative-gradient linear flows (``bijectors.RelativeGradientLinear``)
* gradient boosted flows (``distributions.BoostedFlow``, ``boosting.BoostedFlowTrainer``)

Direction convention (as every TFP flow): a bijector's ``forward`` maps latent -> data
(sampling) and its ``inverse`` maps data -> latent (density evaluation).
"""
import os as _os

_backend = _os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        f"tfresflow needs the TensorFlow Keras backend, but KERAS_BACKEND={_backend!r}; "
        "unset it or set KERAS_BACKEND=tensorflow before importing keras.")

import keras as _keras  # noqa: E402

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "tfresflow needs the TensorFlow Keras backend, but keras was already imported with "
        f"backend {_keras.backend.backend()!r}.")

from tfresflow import random  # noqa: E402,F401
from tfresflow import logdet  # noqa: E402,F401
from tfresflow import lipschitz  # noqa: E402,F401
from tfresflow.lipschitz import activations  # noqa: E402,F401  (former home tfresflow.activations)
from tfresflow import solvers  # noqa: E402,F401
from tfresflow import bijectors  # noqa: E402,F401
from tfresflow import optimizers  # noqa: E402,F401
from tfresflow import data  # noqa: E402,F401
from tfresflow import boosting  # noqa: E402,F401
from tfresflow import models  # noqa: E402,F401
from tfresflow import export  # noqa: E402,F401
from tfresflow import evaluation  # noqa: E402,F401

__version__ = "0.1.0"
