"""Gradient boosted flows: mixture weights (Algorithm 1), stage objectives, trainer, checkpoints.

Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", arXiv:2002.11896. The
mixture itself is the distribution :class:`tfresflow.distributions.BoostedFlow`; the recipe of
coupling-flow components is the model builder ``"boosted"``
(:func:`tfresflow.models.boosted_coupling_components`).

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896.
"""
from tfresflow.boosting.checkpoint import (load_checkpoint, save_checkpoint,  # noqa: F401
                                           trainer_state)
from tfresflow.boosting.objectives import (DENSITY_OBJECTIVES, OBJECTIVES,  # noqa: F401
                                           DensityBoosting, GreedyMixture, ReverseKLMatching,
                                           make_objective)
from tfresflow.boosting.trainer import BoostedFlowTrainer  # noqa: F401
from tfresflow.boosting.weights import (density_weight_gradient, fit_mixture_weight,  # noqa: F401
                                        log_mixture, matching_weight_gradient,
                                        mixture_weights_with, weighted_log_mixture)
