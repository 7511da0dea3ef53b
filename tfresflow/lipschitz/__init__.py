"""Lipschitz-constrained linear layers, power iteration and induced mixed norms.

* :class:`LipschitzDense`, :class:`LipschitzConv2D`: ``W_eff = W / max(1, sigma/coeff)`` with a
  power-iteration estimate ``sigma`` of the operator norm (i-ResNet; Residual Flows).
* :func:`update_lipschitz_layers`, :class:`LipschitzUpdate`: refresh ``sigma`` after each
  optimizer step and before evaluation.
* :func:`chain_orders`, :class:`NormOrder`: induced mixed norms (Residual Flows eq. (11)).
* :func:`power_iteration` (generalised, mixed norms), :func:`subspace_iteration` (spectral,
  block power method): the estimators themselves.
"""
from tfresflow.lipschitz import activations  # noqa: F401
from tfresflow.lipschitz.base import LipschitzLayer, validate_coeff  # noqa: F401
from tfresflow.lipschitz.callbacks import (LipschitzUpdate, find_lipschitz_layers,  # noqa: F401
                                           update_lipschitz_layers, with_lipschitz_update)
from tfresflow.lipschitz.conv import LipschitzConv2D  # noqa: F401
from tfresflow.lipschitz.dense import LipschitzDense  # noqa: F401
from tfresflow.lipschitz.induced_norms import (NormOrder, chain_orders,  # noqa: F401
                                               check_chained, kernel_induced_norm)
from tfresflow.lipschitz.power_iteration import (PowerIterationResult, dual_order,  # noqa: F401
                                                 lp_norm, power_iteration, subspace_iteration)
