"""Deprecated home of the boosted-flow trainer: re-exports only.

The trainer, Algorithm 1 and the objectives live in :mod:`tfresflow.boosting`; the component
recipe in :mod:`tfresflow.models.boosted`.
"""
from tfresflow.boosting import (OBJECTIVES, BoostedFlowTrainer,  # noqa: F401
                                density_weight_gradient, fit_mixture_weight,
                                matching_weight_gradient)
from tfresflow.models.boosted import boosted_coupling_components  # noqa: F401

__all__ = ["BoostedFlowTrainer", "boosted_coupling_components", "fit_mixture_weight",
           "density_weight_gradient", "matching_weight_gradient", "OBJECTIVES"]
