"""TFP bijectors whose parameters live in Keras 3 layers (TFP direction: inverse = density)."""
from tfresflow.bijectors.base import KerasBijector  # noqa: F401
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.bijectors.serialization import (deserialize_bijector, register,  # noqa: F401
                                               serialize_bijector)

register(AffineCoupling)
