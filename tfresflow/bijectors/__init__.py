"""TFP bijectors whose parameters live in Keras 3 layers (TFP direction: inverse = density)."""
from tfresflow.bijectors.actnorm import ActNorm
from tfresflow.bijectors import tree  # noqa: F401
from tfresflow.bijectors.base import KerasBijector  # noqa: F401
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.bijectors.conv_coupling import ConvAffineCoupling
from tfresflow.bijectors.batched_coupling import BatchedAffineCoupling  # noqa: F401
from tfresflow.bijectors.elementwise import SmoothLeakyReLU, TanhLinear
from tfresflow.bijectors.logit import LogitTransform
from tfresflow.bijectors.squeeze import Squeeze
from tfresflow.bijectors.relative_gradient import RelativeGradientLinear
from tfresflow.bijectors.residual import ResidualBlock
from tfresflow.bijectors.dense_block import DenseBlock
from tfresflow.bijectors.serialization import (BIJECTORS, deserialize_bijector,  # noqa: F401
                                               register, serialize_bijector)

register(AffineCoupling)
register(ConvAffineCoupling)
register(ActNorm)
register(ResidualBlock)
register(DenseBlock)
register(RelativeGradientLinear)
register(SmoothLeakyReLU)
register(TanhLinear)
register(LogitTransform)
register(Squeeze)
