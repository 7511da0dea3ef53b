"""Residual functions and conditioner networks (Keras 3 layers)."""
from tfresflow.nets.mlp import MLP  # noqa: F401
from tfresflow.nets.cnn import CNN  # noqa: F401
from tfresflow.nets.lipschitz_mlp import LipschitzMLP  # noqa: F401
from tfresflow.nets.lipschitz_cnn import LipschitzCNN  # noqa: F401
from tfresflow.nets.densenet import DenseNet  # noqa: F401
from tfresflow.nets.batched_mlp import BatchedMLP  # noqa: F401
