"""Residual functions and conditioner networks (Keras 3 layers)."""
from tfresflow.nets.mlp import MLP  # noqa: F401
