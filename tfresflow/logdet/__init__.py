"""Log-determinant estimators for residual maps ``x -> x + g(x)`` (``Lip(g) < 1``).

Each estimator is called as ``gx, log_det = estimator(g, x, training=..., seed=...)``; see
:mod:`tfresflow.logdet.base` for the contract.

* :class:`Exact`: brute-force Jacobian + ``slogdet`` (closed form for ``d = 2``); small ``d``.
* :class:`Truncated`: i-ResNet's biased ``n``-term series with Hutchinson probes.
* :class:`Unbiased`: Residual Flows' Russian-roulette series (unbiased), with the
  Neumann-series gradient and optional backward-in-forward.
* :mod:`~tfresflow.logdet.bounds`: i-ResNet bias and log-det bounds.
"""
from tfresflow.logdet import bounds  # noqa: F401
from tfresflow.logdet.base import (LogDetEstimator, deserialize_estimator,  # noqa: F401
                                   register_estimator, serialize_estimator)
from tfresflow.logdet.bounds import (log_det_bounds, terms_for_tolerance,  # noqa: F401
                                     truncation_error_bound)
from tfresflow.logdet.exact import Exact  # noqa: F401
from tfresflow.logdet.roulette import DISTRIBUTIONS  # noqa: F401
from tfresflow.logdet.series import PowerSeriesEstimator  # noqa: F401
from tfresflow.logdet.truncated import Truncated  # noqa: F401
from tfresflow.logdet.unbiased import Unbiased  # noqa: F401
