"""``KerasBijector``: the TFP view of a flow step whose parameters live in Keras 3 layers.

Keras owns the parameters (a Keras 3 model never sees a ``tf.Variable`` held by a
``tf.Module``, and a ``tf.Module`` never sees Keras 3 variables), TFP provides composition,
distributions and caching. A subclass keeps its weights in Keras layers listed by
:meth:`KerasBijector.keras_layers`; ``FlowModel`` tracks those layers so ``fit``, ``.keras``
saving and SavedModel export see every weight, and :attr:`trainable_variables` lists them so a
plain ``tf.GradientTape`` loop works too.

Direction (TFP convention): ``forward`` maps latent -> data (sampling), ``inverse`` maps
data -> latent (density evaluation). A subclass implements

* ``_data_to_latent(x, training, seed) -> (z, log_det)`` with ``log_det`` the (estimate of)
  ``log |det dz/dx|`` per example (summed over the ``min_event_ndims`` event dimensions);
* ``_latent_to_data(z, training, seed) -> x``.

Value and log-det are computed in one pass and shared through TFP's cache
(``BijectorCacheWithGreedyAttrs``, the ``tfb.FFJORD`` pattern), so
``TransformedDistribution.log_prob`` evaluates each step exactly once.

``validate_args=True`` has TFP's meaning: run-time checks of the inputs, off by default for
speed. Here every step then asserts that its input (data in the density direction, latents in
the sampling direction) is finite, naming the step, so a NaN is caught where it enters.

Every method accepts the keyword arguments ``training`` (bool; selects the training-time
estimator of stochastic log-dets) and ``seed`` (a stateless seed). TFP keys its cache on them,
so a new seed gives a new draw.

References:
  Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), "FFJORD: Free-form Continuous Dynamics
    for Scalable Reversible Generative Models", ICLR, arXiv:1810.01367 (the cache pattern of
    ``tfb.FFJORD``).
"""
import copy

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow._compat import BijectorCache

tfb = tfp.bijectors


class KerasBijector(tfb.Bijector):
    """Base class of tfresflow bijectors whose parameters are Keras 3 layers."""

    _cache = BijectorCache(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse")

    #: True when ``inverse_log_det_jacobian`` is a random estimate rather than exact.
    has_stochastic_log_det = False

    def __init__(self, *, parameters, name, event_ndims=1, is_constant_jacobian=False,
                 validate_args=False, dtype=tf.float32):
        # ``parameters`` must hold the Keras layers: TFP shares cache entries between
        # bijectors with equal parameters, so two blocks wrapping different networks must
        # never compare equal. Names must be unique too: ``tfb.Chain`` routes per-step
        # keyword arguments (``seed``, ``training``) by name.
        super().__init__(
            forward_min_event_ndims=event_ndims, is_constant_jacobian=is_constant_jacobian,
            validate_args=validate_args, dtype=dtype, parameters=parameters, name=name)

    # ---------------------------------------------------------------- Keras side
    def keras_layers(self):
        """The Keras layers (and only those) that hold this bijector's weights."""
        raise NotImplementedError

    def build(self, event_shape):
        """Builds every Keras layer for inputs of the given event shape (data side)."""
        raise NotImplementedError

    def _check_event_shape(self, event_shape, expected):
        """Raises a ValueError naming this step unless ``event_shape == expected``."""
        if [int(d) for d in event_shape] != list(expected):
            raise ValueError(f"{self.name}: expected event shape {list(expected)}, got "
                             f"{list(event_shape)}.")

    @property
    def built(self):
        return all(layer.built for layer in self.keras_layers())

    @property
    def trainable_variables(self):
        return tuple(v for layer in self.keras_layers() for v in layer.trainable_variables)

    @property
    def variables(self):
        return tuple(v for layer in self.keras_layers() for v in layer.variables)

    @property
    def non_trainable_variables(self):
        return tuple(v for layer in self.keras_layers() for v in layer.non_trainable_variables)

    def get_config(self):
        """Constructor arguments; Keras layers serialised with ``keras.saving``."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def with_name(self, name):
        """A copy of this step under another ``name`` that shares its Keras layers (weights).

        Used to give repeated steps of a flow distinct names (``tfb.Chain`` routes per-step
        ``seed``/``training`` by name) without copying weights.
        """
        twin = copy.copy(self)
        twin._name = name  # TFP keeps the name here; parameters record it for get_config
        twin._parameters = {**self._parameters, "name": name}
        return twin

    # ---------------------------------------------------------------- TFP side
    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _data_to_latent(self, x, training, seed):
        raise NotImplementedError

    def _latent_to_data(self, z, training, seed):
        raise NotImplementedError

    def data_to_latent_value(self, x):
        """The density-direction map alone (no log-det), bypassing the cache.

        Used for brute-force Jacobians (``FlowModel.exact_log_prob``); subclasses whose
        log-det is expensive override it.
        """
        return self._data_to_latent(x, training=False, seed=None)[0]

    def _checked(self, value, what):
        """``value``, asserted finite when ``validate_args`` (TFP's run-time input checks)."""
        if not self.validate_args:
            return value
        return tf.debugging.assert_all_finite(
            value, f"{self.name}: the {what} contains NaN or inf (validate_args=True)")

    def _augmented_inverse(self, y, training=False, seed=None):
        y = self._checked(y, "input of the density direction (inverse)")
        z, log_det = self._data_to_latent(y, training=training, seed=seed)
        return z, {"ildj": log_det, "fldj": -log_det}

    def _augmented_forward(self, x, training=False, seed=None):
        x = self._checked(x, "input of the sampling direction (forward)")
        return self._latent_to_data(x, training=training, seed=seed), {}

    def _forward(self, x, training=False, seed=None):
        return self._augmented_forward(x, training=training, seed=seed)[0]

    def _inverse(self, y, training=False, seed=None):
        return self._augmented_inverse(y, training=training, seed=seed)[0]

    def _inverse_log_det_jacobian(self, y, training=False, seed=None):
        attrs = self._cache.inverse_attributes(y, training=training, seed=seed)
        if "ildj" not in attrs:
            attrs.update(self._augmented_inverse(y, training=training, seed=seed)[1])
        return attrs["ildj"]

    def _forward_log_det_jacobian(self, x, training=False, seed=None):
        attrs = self._cache.forward_attributes(x, training=training, seed=seed)
        if "fldj" not in attrs:
            # x was not produced by ``inverse``: evaluate the density direction at y = f(x).
            y = self.forward(x, training=training, seed=seed)
            attrs.update(self._augmented_inverse(y, training=training, seed=seed)[1])
        return attrs["fldj"]


def unique_name(name, default):
    """``name`` if given, else ``default`` made unique in this process (``default_3``)."""
    return name if name else f"{default}_{keras.backend.get_uid(default)}"


def serialize_layer(layer):
    """Serialises a Keras layer for a bijector's ``get_config``."""
    return keras.saving.serialize_keras_object(layer)


def deserialize_layer(config):
    """Inverse of :func:`serialize_layer` (accepts an already-built layer unchanged)."""
    if isinstance(config, keras.layers.Layer):
        return config
    return keras.saving.deserialize_keras_object(config)
