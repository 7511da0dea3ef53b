"""Invertible residual block ``x -> x + g(x)`` (i-ResNet / Residual Flows).

Behrmann et al. (2019, "Invertible Residual Networks") and Chen et al. (2019, "Residual
Flows"): with ``Lip(g) < 1`` the map ``F(x) = x + g(x)`` is invertible and

    log p(x) = log p_Z(F(x)) + log det(I + J_g(x)).

TFP direction (as every TFP flow): ``inverse`` (data -> latent, density) is the cheap
``z = x + g(x)`` with ``inverse_log_det_jacobian(x) = log det(I + J_g(x))`` from a
:mod:`tfresflow.logdet` estimator; ``forward`` (latent -> data, sampling) solves ``x + g(x) = z``
by the fixed-point iteration of :mod:`tfresflow.solvers.fixed_point`. Each log-density
evaluates ``g`` once: the estimator returns ``g(x)`` together with the log-det.

Reuse: an i-DenseNet block (Perugachi-Diaz et al., 2021) is this block with a dense
Lipschitz network as ``net``; a subclass only changes ``default_name`` (and ``get_config`` if it
builds its net from hyper-parameters). The fixed-point solver lives in
:mod:`tfresflow.solvers.fixed_point`.

``g`` (``net``) may be any Keras layer or callable mapping ``[batch, *event]`` to the same shape,
acting on each example separately, with ``Lip(g) < 1`` (e.g. the spectrally normalised nets of
:mod:`tfresflow.nets`). The block does not check the Lipschitz constant; a net that is not a
contraction makes the inverse fail to converge (reported, see ``on_nonconvergence``) and the
series estimators diverge.

Depth: inside a graph (``tf.function``, Keras ``fit``) blocks of the same structure share one
traced evaluation of ``estimator(g, x)``, called with each block's weights as tensors
(:mod:`tfresflow.bijectors.shared_call`), so tracing a flow of N identical blocks traces the
block once.

Randomness: ``seed`` (stateless, from ``FlowModel`` or ``bijector_kwargs``) drives the
stochastic log-det; with ``seed=None`` a seed is drawn from TensorFlow's global generator.
``training=True`` selects the estimator's training mode (e.g. fewer exact terms, and the
backward-in-forward gradient).

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
"""
import keras
import tensorflow as tf

from tfresflow.bijectors import shared_call
from tfresflow.bijectors.base import KerasBijector, serialize_layer, unique_name
from tfresflow.solvers.fixed_point import check_solver_options
from tfresflow.logdet import (LogDetEstimator, Unbiased, deserialize_estimator,
                              serialize_estimator)
from tfresflow.validation import check_positive_int


class ResidualBlock(KerasBijector):
    """Residual flow step ``z = x + net(x)`` with an estimated log-determinant.

    Args:
      net: the residual branch ``g`` (Keras layer, serialised layer config, or callable
        without weights) with ``Lip(g) < 1``.
      logdet: a :class:`tfresflow.logdet.LogDetEstimator` (default ``logdet.Unbiased()``),
        or its serialised dict.
      event_ndims: number of event dimensions (1 for vectors, 3 for ``[H, W, C]`` images).
      inverse_atol, inverse_rtol: tolerance ``atol + rtol * max|z|`` (max over each example) on
        the estimated error of each element of the fixed-point inverse.
      max_iterations: cap on the fixed-point iterations.
      on_nonconvergence: ``"raise"`` (default), ``"warn"`` or ``"ignore"`` when the inverse does
        not reach the tolerance (eager: :class:`~tfresflow.solvers.fixed_point.FixedPointError`
        with the residual reached; graph: a ``tf.debugging.Assert``; under XLA, where asserts
        are dropped, ``"raise"`` gives NaN samples for the non-converged examples), see
        :mod:`tfresflow.solvers.policy`. A NaN/inf ``z`` is reported as "non-finite input".
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).
      name: unique step name (``tfb.Chain`` routes ``seed``/``training`` by name).
    """

    #: Prefix of automatic step names (a subclass such as an i-DenseNet block overrides it).
    default_name = "residual_block"

    def __init__(self, net, logdet=None, event_ndims=1, inverse_atol=1e-6, inverse_rtol=1e-5,
                 max_iterations=1000, on_nonconvergence="raise", validate_args=False, name=None):
        parameters = dict(locals())
        name = unique_name(name, self.default_name)
        if isinstance(net, dict):
            net = keras.saving.deserialize_keras_object(net)
        if not callable(net):
            raise TypeError(f"`net` must be a Keras layer or a callable, got {type(net).__name__}.")
        if logdet is not None and not isinstance(logdet, (LogDetEstimator, dict)):
            raise TypeError("`logdet` must be a tfresflow.logdet estimator (or its serialised "
                            f"dict), got {type(logdet).__name__}.")
        logdet = Unbiased() if logdet is None else deserialize_estimator(logdet)
        event_ndims = check_positive_int(event_ndims, "event_ndims", integral_floats=False)
        (self.inverse_atol, self.inverse_rtol, self.max_iterations,
         self.on_nonconvergence) = check_solver_options(inverse_atol, inverse_rtol,
                                                        max_iterations, on_nonconvergence)
        self.net = net
        self.logdet = logdet
        self.event_ndims = event_ndims
        parameters.update(net=net, logdet=logdet, name=name)
        # A Keras net fixes the dtype of inputs (its weights' dtype, e.g. float64 nets).
        dtype = tf.as_dtype(net.dtype) if isinstance(net, keras.layers.Layer) else tf.float32
        super().__init__(parameters=parameters, name=name, event_ndims=event_ndims,
                         validate_args=validate_args, dtype=dtype)

    @property
    def has_stochastic_log_det(self):
        return self.logdet.has_stochastic_log_det

    # ---------------------------------------------------------------- Keras side
    def keras_layers(self):
        return [self.net] if isinstance(self.net, keras.layers.Layer) else []

    def build(self, event_shape):
        event_shape = [int(d) for d in event_shape]
        if len(event_shape) != self.event_ndims:
            raise ValueError(f"{self.name}: expected an event shape of rank {self.event_ndims} "
                             f"(`event_ndims`), got {event_shape}.")
        if isinstance(self.net, keras.layers.Layer) and not self.net.built:
            self.net.build((None, *event_shape))
        out = self.net(tf.zeros([1, *event_shape], self.dtype))
        if out.shape.as_list() != [1, *event_shape]:
            raise ValueError(f"{self.name}: `net` must map event shape {event_shape} to itself, "
                             f"got output shape {out.shape.as_list()[1:]}.")

    def get_config(self):
        try:
            net = serialize_layer(self.net)
        except Exception as err:  # noqa: BLE001 - re-raised with the reason
            raise ValueError(f"{self.name}: `net` ({type(self.net).__name__}) cannot be "
                             f"serialised by keras.saving: {err}") from err
        return dict(net=net, logdet=serialize_estimator(self.logdet),
                    event_ndims=self.event_ndims, inverse_atol=self.inverse_atol,
                    inverse_rtol=self.inverse_rtol, max_iterations=self.max_iterations,
                    on_nonconvergence=self.on_nonconvergence, validate_args=self.validate_args,
                    name=self.name)

    # ---------------------------------------------------------------- TFP side
    def _flat(self, x):
        """``x`` reshaped to ``[batch, *event]`` (one batch axis) and the batch shape."""
        event = x.shape[-self.event_ndims:]
        if x.shape.rank is None or x.shape.rank < self.event_ndims \
                or not event.is_fully_defined():
            raise ValueError(f"{self.name}: inputs need a static event shape of rank "
                             f"{self.event_ndims}, got shape {x.shape}.")
        batch_shape = tf.shape(x)[:x.shape.rank - self.event_ndims]
        return tf.reshape(x, [-1, *event.as_list()]), batch_shape

    def _data_to_latent(self, x, training, seed):
        flat, batch_shape = self._flat(x)
        gx, log_det = shared_call.estimate(self.net, self.logdet, flat, training=training,
                                           seed=seed)
        return tf.reshape(flat + gx, tf.shape(x)), tf.reshape(log_det, batch_shape)

    def data_to_latent_value(self, x):
        """``x + g(x)`` without a log-det estimate (for brute-force Jacobians)."""
        flat, _ = self._flat(x)
        return tf.reshape(flat + self.net(flat), tf.shape(x))

    def _latent_to_data(self, z, training, seed):
        flat, _ = self._flat(z)
        x = shared_call.fixed_point_inverse(
            self.net, flat, atol=self.inverse_atol, rtol=self.inverse_rtol,
            max_iterations=self.max_iterations, on_nonconvergence=self.on_nonconvergence)
        return tf.reshape(x, tf.shape(z))
