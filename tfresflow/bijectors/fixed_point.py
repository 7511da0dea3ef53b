"""Deprecated location: the fixed-point inverse lives in :mod:`tfresflow.solvers.fixed_point`.

Re-exported here so that existing imports keep working.
"""
from tfresflow.solvers.fixed_point import (ON_NONCONVERGENCE, FixedPointError,  # noqa: F401
                                           FixedPointResult, check_solver_options,
                                           example_scale, fixed_point_inverse,
                                           solve_fixed_point)
