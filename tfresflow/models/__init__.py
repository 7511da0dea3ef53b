"""Keras 3 models built on tfresflow bijectors."""
from tfresflow.models.flow_model import (FlowModel, NonFiniteLossError,  # noqa: F401
                                         StopOnNonFiniteLoss)
from tfresflow.models.builders import MODEL_BUILDERS, build_model, register_model  # noqa: F401
from tfresflow.models.residual import densenet_flow, residual_flow  # noqa: F401
from tfresflow.models.image import (densenet_flow_image, multiscale_flow,  # noqa: F401
                                    residual_flow_image)
from tfresflow.models.image import coupling_flow_image  # noqa: F401
from tfresflow.models.parameters import count_parameters  # noqa: F401
from tfresflow.models.relgrad import (RelativeGradientFlowModel, log_det_weights,  # noqa: F401
                                     relgrad_flow)
from tfresflow.models.boosted import boosted_coupling_components, boosted_flow  # noqa: F401
from tfresflow.models.boosted_flow_model import BoostedFlowModel  # noqa: F401
from tfresflow.models.hybrid import HybridFlowModel  # noqa: F401
from tfresflow.boosting import BoostedFlowTrainer, fit_mixture_weight  # noqa: F401
