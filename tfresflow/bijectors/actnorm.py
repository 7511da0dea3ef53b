"""Activation normalisation with data-dependent initialisation (Kingma & Dhariwal, 2018, Glow).

Per channel ``c`` (the last axis), density direction (TFP ``inverse``, data -> latent):

    z = x * exp(s_c) + b_c,     log |det dz/dx| = (prod of the other event dims) * sum_c s_c,

and the sampling direction ``x = (z - b_c) * exp(-s_c)``; the log-det is exact. Residual Flows
puts an ActNorm after every residual block (Chen et al., 2019, Appendix E).

Initialisation: the first batch seen in the density direction sets
``s_c = -log(std_c)``, ``b_c = -mean_c / std_c`` (``std_c = sqrt(var_c + epsilon)``), so that batch
leaves with zero mean and unit variance per channel. Under a ``tf.distribute`` strategy the
moments are all-reduced over the replicas, so every replica initialises to the same values. In
graph mode the initialisation is branch-free (``where(initialized, current, new)`` assigned every
call) because a cross-replica synchronisation inside ``tf.cond`` is not allowed. An explicit
:meth:`ActNorm.initialize` is also available. The ``initialized`` flag is a (non-trainable) Keras
weight, so a saved and reloaded model is not re-initialised.

References:
  Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS,
    arXiv:1807.03039.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
"""
import keras
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import KerasBijector, unique_name
from tfresflow.validation import check_event_shape, check_number, check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class ActNormParameters(keras.layers.Layer):
    """The Keras weights of an :class:`ActNorm`: ``log_scale``, ``shift``, ``initialized``."""

    def __init__(self, channels, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "channels")
        self.epsilon = check_number(epsilon, "epsilon", 0.0, low_open=True)

    def build(self, input_shape=None):
        if self.built:
            return
        # aggregation="mean": every replica assigns the same all-reduced values.
        self.log_scale = self.add_weight(shape=(self.channels,), initializer="zeros",
                                         name="log_scale", aggregation="mean")
        self.shift = self.add_weight(shape=(self.channels,), initializer="zeros", name="shift",
                                     aggregation="mean")
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                           name="initialized", aggregation="mean")
        self.built = True

    def call(self, x):
        return x * tf.exp(self.log_scale) + self.shift

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon}

    def moments_init(self, x):
        """``(log_scale, shift)`` that standardise ``x`` per channel (replica-consistent)."""
        dtype = self.variable_dtype
        x = tf.stop_gradient(tf.cast(x, dtype))
        flat = tf.reshape(x, [-1, self.channels])
        stats = tf.stack([tf.reduce_sum(flat, 0), tf.reduce_sum(tf.square(flat), 0),
                          tf.fill([self.channels], tf.cast(tf.shape(flat)[0], dtype))])
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)
        total, total_sq, count = tf.unstack(stats)
        mean = total / count
        var = tf.maximum(total_sq / count - tf.square(mean), 0.0)
        log_scale = -0.5 * tf.math.log(var + self.epsilon)
        return log_scale, -mean * tf.exp(log_scale)

    def initialize(self, x):
        """Sets the weights from the batch ``x`` and marks the layer initialised."""
        log_scale, shift = self.moments_init(x)
        self.log_scale.assign(log_scale)
        self.shift.assign(shift)
        self.initialized.assign(1.0)

    def initialize_once(self, x):
        """Initialises from ``x`` unless already initialised (graph-safe, replica-safe)."""
        ctx = tf.distribute.get_replica_context()
        single = ctx is None or ctx.num_replicas_in_sync == 1
        if tf.executing_eagerly() and single:
            if float(self.initialized.numpy()) == 0.0:
                self.initialize(x)
            return
        done = self.initialized > 0.5
        log_scale, shift = self.moments_init(x)
        self.log_scale.assign(tf.where(done, self.log_scale, log_scale))
        self.shift.assign(tf.where(done, self.shift, shift))
        self.initialized.assign(tf.ones_like(self.initialized))


class ActNorm(KerasBijector):
    """Per-channel affine normalisation with data-dependent initialisation; exact log-det.

    Args:
      event_shape: shape of one example (channels on the last axis), e.g. ``[2]`` or
        ``[32, 32, 3]``.
      epsilon: added to the variance at initialisation.
      dtype: floating dtype of the parameters and inputs (default float32).
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).
      name: unique step name.
    """

    def __init__(self, event_shape, epsilon=1e-6, dtype="float32", validate_args=False,
                 name=None):
        parameters = dict(locals())
        name = unique_name(name, "actnorm")
        shape = check_event_shape(event_shape)
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise ValueError(f"`dtype` must be a floating dtype, got {dtype.name}.")
        self.event_shape = shape
        self.epsilon = float(epsilon)
        self.parameters_layer = ActNormParameters(shape[-1], epsilon=epsilon, dtype=dtype.name,
                                                  name=f"{name}_params")
        parameters.update(name=name, parameters_layer=self.parameters_layer)
        super().__init__(parameters=parameters, name=name, event_ndims=len(shape),
                         validate_args=validate_args, dtype=dtype)

    def keras_layers(self):
        return [self.parameters_layer]

    def build(self, event_shape):
        self._check_event_shape(event_shape, self.event_shape)
        self.parameters_layer.build((None, *self.event_shape))

    def get_config(self):
        return dict(event_shape=list(self.event_shape), epsilon=self.epsilon,
                    dtype=self.dtype.name, validate_args=self.validate_args, name=self.name)

    def initialize(self, x):
        """Data-dependent initialisation from the batch ``x`` (overwrites current weights)."""
        self.parameters_layer.build()
        self.parameters_layer.initialize(tf.convert_to_tensor(x, self.dtype))

    def _spatial_size(self):
        return float(np.prod(self.event_shape[:-1])) if len(self.event_shape) > 1 else 1.0

    def _log_det(self, x):
        params = self.parameters_layer
        ld = self._spatial_size() * tf.reduce_sum(params.log_scale)
        batch_shape = tf.shape(x)[:tf.rank(x) - len(self.event_shape)]
        return tf.fill(batch_shape, ld)

    def _data_to_latent(self, x, training, seed):
        params = self.parameters_layer
        params.initialize_once(x)
        return params(x), self._log_det(x)

    def _latent_to_data(self, z, training, seed):
        params = self.parameters_layer
        return (z - params.shift) * tf.exp(-params.log_scale)
