"""Numerical inverses with one non-convergence policy (:mod:`tfresflow.solvers.policy`).

* :mod:`~tfresflow.solvers.fixed_point`: ``x + g(x) = z`` for a contraction ``g`` (residual
  blocks; Behrmann et al. 2019, arXiv:1811.00995), differentiable by the implicit function
  theorem.
* :mod:`~tfresflow.solvers.newton`: ``s(x) = z`` elementwise for a strictly increasing ``s``
  (invertible activations; Gresele et al. 2020, arXiv:2006.15090), safeguarded Newton.

This package sits below :mod:`tfresflow.bijectors` and must not import it.
"""
from tfresflow.solvers.fixed_point import (FixedPointError, FixedPointResult,  # noqa: F401
                                           check_solver_options, example_scale,
                                           fixed_point_inverse, solve_fixed_point)
from tfresflow.solvers.newton import newton_inverse, with_inverse_gradient  # noqa: F401
from tfresflow.solvers.policy import (ON_NONCONVERGENCE, NonConvergenceError,  # noqa: F401
                                      NonFiniteInputError,
                                      as_nonconvergence_error, check_on_nonconvergence,
                                      finite_input, report_nonconvergence)
