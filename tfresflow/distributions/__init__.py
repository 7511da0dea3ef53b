"""TFP distributions: base distributions and mixtures of flows."""
from tfresflow.distributions.base import (BASE_DISTRIBUTIONS, make_base_distribution,  # noqa: F401
                                          register_base_distribution)
