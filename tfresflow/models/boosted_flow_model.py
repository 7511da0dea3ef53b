"""``BoostedFlowModel``: a trained gradient boosted flow as one saveable Keras model.

A boosted (or density-matched) flow is the mixture

    G(x) = sum_c rho_c g_c(x),        rho on the simplex           (Giaquinto & Banerjee, eq. 7)

of C flows ``g_c`` (tfresflow :class:`FlowModel`s). :class:`BoostedFlowModel` holds the C
components as Keras sub-models and ``rho`` as a non-trainable Keras weight, so the whole
mixture saves to and loads from one ``.keras`` file (after ``import tfresflow``, which registers
the classes) and exports as a SavedModel (:func:`tfresflow.export.export_saved_model`) with the
same interface as a ``FlowModel``: ``log_prob(x, seed)``, ``exact_log_prob(x)``,
``sample(n, seed)``, ``event_shape``, ``has_stochastic_log_det``. Densities and samples are
those of :class:`tfresflow.distributions.BoostedFlow` (:meth:`distribution`): ``log G`` by a
stable log-sum-exp, and each sample runs only the flow of its drawn component.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eq. 7).
"""
import keras
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.distributions.boosted import BoostedFlow
from tfresflow.models.flow_model import FlowModel, sample_count

__all__ = ["BoostedFlowModel"]


@keras.saving.register_keras_serializable(package="tfresflow")
class BoostedFlowModel(keras.Model):
    """Mixture ``G = sum_c rho_c g_c`` of flow models, saveable as ``.keras`` (see module doc).

    Args:
      components: a non-empty list of C :class:`FlowModel`s with one event shape.
      mixture_weights: non-negative weights ``rho`` of shape ``[C]`` (normalised to the simplex
        when used; stored as given). Default: uniform.
      seed: integer seed of the model's seed generator (fresh noise for calls without seed).

    Raises:
      TypeError: if a component is not a ``FlowModel``.
      ValueError: on an empty list, mismatched event shapes or bad weights (the checks of
        :class:`BoostedFlow`).
    """

    def __init__(self, components, mixture_weights=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        components = list(components)
        for i, c in enumerate(components):
            if not isinstance(c, FlowModel):
                raise TypeError(f"`components[{i}]` must be a tfresflow FlowModel, got "
                                f"{type(c).__name__}.")
        if mixture_weights is None and components:
            mixture_weights = np.full([len(components)], 1.0 / len(components))
        # The distribution's constructor checks the components and the weights.
        BoostedFlow(components, weights=np.asarray(mixture_weights, np.float32))
        self.components = components
        self.event_shape = list(components[0].event_shape)
        self.rho = self.add_weight(
            shape=[len(components)], name="mixture_weights", trainable=False,
            initializer=keras.initializers.Constant(np.asarray(mixture_weights, np.float32)))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    @classmethod
    def from_distribution(cls, mixture, **kwargs):
        """The model of a list-form :class:`BoostedFlow` of ``FlowModel``s (e.g.
        ``BoostedFlowTrainer.mixture()``), with its normalised weights."""
        if not isinstance(mixture, BoostedFlow) or mixture.is_batched:
            raise TypeError("`mixture` must be a list-form BoostedFlow of FlowModels, got "
                            f"{type(mixture).__name__}.")
        return cls(mixture.components, mixture_weights=mixture.weights.numpy(), **kwargs)

    # ----------------------------------------------------------------- structure
    @property
    def num_components(self):
        """Number C of mixture components."""
        return len(self.components)

    @property
    def mixture_weights(self):
        """Mixture weights ``rho / sum(rho)`` on the simplex, shape ``[C]``."""
        return self.distribution().weights

    @property
    def has_stochastic_log_det(self):
        """True when some component's ``log_prob`` is a random estimate."""
        return any(c.has_stochastic_log_det for c in self.components)

    def distribution(self):
        """The mixture as a :class:`BoostedFlow` (reads the current weights)."""
        return BoostedFlow(self.components, weights=tf.convert_to_tensor(self.rho))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {**super().get_config(),
                "components": [keras.saving.serialize_keras_object(c) for c in self.components],
                "mixture_weights": [float(w) for w in keras.ops.convert_to_numpy(self.rho)],
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["components"] = [keras.saving.deserialize_keras_object(c)
                                for c in config["components"]]
        return cls(**config)

    # ----------------------------------------------------------------- density and samples
    def log_prob(self, x, seed=None):
        """Per-example ``log G(x)`` (an estimate when a component's log-det is stochastic).

        ``seed``: optional stateless seed, split between the components.
        """
        return self.distribution().log_prob(tf.convert_to_tensor(x, tf.float32), seed=seed)

    def exact_log_prob(self, x, max_event_size=64):
        """``log G(x)`` from every component's :meth:`FlowModel.exact_log_prob` (brute-force
        Jacobians: deterministic, for small event sizes)."""
        log_g = tf.stack([c.exact_log_prob(x, max_event_size=max_event_size)
                          for c in self.components], axis=-1)
        return self.distribution().mixture_log_prob(log_g)

    def call(self, x, training=None):
        return self.log_prob(tf.identity(x))

    def sample(self, n, seed=None):
        """Draws ``n`` samples of the mixture (reproducible with ``seed``)."""
        seed = trf_random.from_generator(self.seed_generator) if seed is None \
            else trf_random.as_seed(seed)
        return self.distribution().sample(sample_count(n), seed=seed)
