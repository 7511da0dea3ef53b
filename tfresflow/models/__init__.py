"""Keras 3 models built on tfresflow bijectors."""
from tfresflow.models.flow_model import FlowModel  # noqa: F401
from tfresflow.models.builders import MODEL_BUILDERS, build_model, register_model  # noqa: F401
