"""TFP distributions: base distributions and mixtures of flows."""
from tfresflow.distributions.base import (BASE_DISTRIBUTIONS, make_base_distribution,  # noqa: F401
                                          register_base_distribution)
from tfresflow.distributions.boosted import BoostedFlow, stack_coupling_flows  # noqa: F401
from tfresflow.distributions.hyperbolic_secant import HyperbolicSecant  # noqa: F401,E402
