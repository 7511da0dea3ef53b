"""Posterior flow components of :class:`tfresflow.models.FlowVAE` (Keras 3 layers).

Every component ``c`` maps a draw of the shared base posterior ``z0 ~ q0(z0|x)`` to a latent
``z = f_c(z0; h(x))`` and back, with ``h(x)`` the encoder's context vector:

* ``forward(z0, h) -> (z, log|det dz/dz0|)``      (sampling direction),
* ``inverse(z, h) -> (z0, log|det dz0/dz|)``      (density direction),

so ``log g_c(z|x) = log q0(f_c^{-1}(z)|x) + log|det d f_c^{-1}/dz|`` (GBF section 4.2, Fig. 2:
boosting needs the density of the fixed components at the new component's samples, hence
analytically invertible components). Latents may carry leading sample dimensions
``[..., B, D]``; ``h`` is ``[B, H]`` and broadcasts over them.

* :class:`IdentityComponent`: ``z = z0`` (the plain VAE's single "component").
* :class:`ConditionalCouplingFlow` (the default, *amortised*): ``K`` RealNVP affine couplings
  over the latent vector whose shift / log-scale nets take ``[z_a, h(x)]``, as the paper's
  RealNVP posterior takes amortised parameters from the encoder. Exact inverse and log-det.
* :class:`GlobalFlowComponent` (*non-amortised*): any tfresflow vector bijector (coupling,
  residual, dense, relative-gradient, chains of them) shared by every ``x``, TFP direction
  (``forward`` = sampling). Exactness is the bijector's: a residual block's forward is a
  fixed-point iteration (converged to its solver tolerance) and its log-det an estimate.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (sections 4.2, 5.2).
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR,
    arXiv:1605.08803 (affine coupling).
"""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow.bijectors import tree
from tfresflow.bijectors.actnorm import ActNorm
from tfresflow.bijectors.base import KerasBijector
from tfresflow.bijectors.coupling import coupling_partition
from tfresflow.bijectors.serialization import deserialize_bijector, serialize_bijector
from tfresflow.nets.mlp import MLP
from tfresflow.validation import check_number, check_positive_int

tfb = tfp.bijectors

__all__ = ["IdentityComponent", "ConditionalCouplingFlow", "GlobalFlowComponent"]


def _broadcast_context(h, z):
    """``h [B, H]`` broadcast to ``[..., B, H]`` beside ``z [..., B, D]``."""
    shape = tf.concat([tf.shape(z)[:-1], tf.shape(h)[-1:]], 0)
    return tf.broadcast_to(h, shape)


@keras.saving.register_keras_serializable(package="tfresflow")
class IdentityComponent(keras.layers.Layer):
    """``z = z0``, log-det 0: the plain VAE's posterior is the base Gaussian itself."""

    def __init__(self, latent_size, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = check_positive_int(latent_size, "latent_size")

    def build(self, input_shape=None):
        self.built = True

    def forward(self, z0, h, training=False, seed=None):
        """``(z0, 0)``."""
        return z0, tf.zeros(tf.shape(z0)[:-1], z0.dtype)

    def inverse(self, z, h, training=False, seed=None):
        """``(z, 0)``."""
        return z, tf.zeros(tf.shape(z)[:-1], z.dtype)

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size}


@keras.saving.register_keras_serializable(package="tfresflow")
class ConditionalCouplingFlow(keras.layers.Layer):
    """``K`` amortised affine couplings ``z_b <- z_b * exp(s) + t``, ``(s, t) = NN([z_a, h(x)])``.

    Step ``k`` (``k = 0 .. K-1``) conditions on the first half of the latent for even ``k``
    and on the second half for odd ``k`` (:func:`tfresflow.bijectors.coupling.coupling_partition`
    ``"half"``, reversed on odd steps), so two steps transform every coordinate. Forward
    (sampling): ``z_b' = z_b * exp(s) + t``, ``log|det| = sum s``; inverse:
    ``z_b = (z_b' - t) * exp(-s)``; both exact. ``s = c tanh(s_raw / c)`` (soft clamp, as
    :class:`~tfresflow.bijectors.AffineCoupling`); the conditioners' output layers start at
    zero, so a fresh component is the identity (``g_c = q0``).

    Args:
      latent_size: ``D`` (>= 2).
      context_size: ``H``, width of the context vector ``h(x)`` (0: non-amortised couplings).
      n_steps: ``K`` couplings.
      hidden_units: widths of each conditioner's hidden layers (tanh, as the paper's RealNVP).
      log_scale_clamp: ``c`` of the soft clamp.
    """

    def __init__(self, latent_size, context_size, n_steps=4, hidden_units=(256,),
                 log_scale_clamp=2.0, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.latent_size = check_positive_int(latent_size, "latent_size")
        if self.latent_size < 2:
            raise ValueError(f"A coupling posterior needs `latent_size` >= 2, got {latent_size}.")
        self.context_size = check_positive_int(context_size, "context_size", minimum=0)
        self.n_steps = check_positive_int(n_steps, "flow_steps")
        self.hidden_units = tuple(check_positive_int(u, "flow_hidden_units")
                                  for u in hidden_units)
        self.log_scale_clamp = check_number(log_scale_clamp, "log_scale_clamp", 0.0,
                                            low_open=True)
        self.activation = activation
        self._partitions = [coupling_partition(self.latent_size, "half", reverse=k % 2 == 1)
                            for k in range(self.n_steps)]
        self._merge = [np.argsort(np.concatenate(p)) for p in self._partitions]
        self.conditioners = [MLP(2 * len(trans), self.hidden_units, activation=activation,
                                 name=f"conditioner_{k}")
                             for k, (_, trans) in enumerate(self._partitions)]

    def build(self, input_shape=None):
        for (cond, _), net in zip(self._partitions, self.conditioners):
            net.build((None, len(cond) + self.context_size))
        self.built = True

    def _shift_log_scale(self, k, a, h):
        inputs = tf.concat([a, _broadcast_context(h, a)], -1) if self.context_size else a
        flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
        params = self.conditioners[k](flat)
        params = tf.reshape(params, tf.concat([tf.shape(a)[:-1], [-1]], 0))
        shift, raw = tf.split(params, 2, axis=-1)
        c = self.log_scale_clamp
        return shift, c * tf.tanh(raw / c)

    def _split(self, k, v):
        cond, trans = self._partitions[k]
        return tf.gather(v, cond, axis=-1), tf.gather(v, trans, axis=-1)

    def _join(self, k, a, b):
        return tf.gather(tf.concat([a, b], -1), self._merge[k], axis=-1)

    def forward(self, z0, h, training=False, seed=None):
        """``(z_K, sum_k log|det dz_k/dz_{k-1}|)`` (exact), sampling direction."""
        z = z0
        log_det = tf.zeros(tf.shape(z0)[:-1], z0.dtype)
        for k in range(self.n_steps):
            a, b = self._split(k, z)
            shift, log_scale = self._shift_log_scale(k, a, h)
            z = self._join(k, a, b * tf.exp(log_scale) + shift)
            log_det += tf.reduce_sum(log_scale, -1)
        return z, log_det

    def inverse(self, z, h, training=False, seed=None):
        """``(z_0, log|det dz_0/dz_K|)`` (exact), density direction."""
        log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
        for k in reversed(range(self.n_steps)):
            a, b = self._split(k, z)
            shift, log_scale = self._shift_log_scale(k, a, h)
            z = self._join(k, a, (b - shift) * tf.exp(-log_scale))
            log_det -= tf.reduce_sum(log_scale, -1)
        return z, log_det

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "context_size": self.context_size, "n_steps": self.n_steps,
                "hidden_units": list(self.hidden_units),
                "log_scale_clamp": self.log_scale_clamp, "activation": self.activation}


@keras.saving.register_keras_serializable(package="tfresflow")
class GlobalFlowComponent(keras.layers.Layer):
    """A non-amortised posterior flow: a tfresflow vector bijector ``f`` shared by all ``x``.

    ``forward(z0, h) = (f.forward(z0), f.forward_log_det_jacobian(z0))`` and
    ``inverse(z, h) = (f.inverse(z), f.inverse_log_det_jacobian(z))`` (TFP direction,
    ``h`` ignored). The bijector's Keras layers are tracked here, so the VAE trains, saves and
    freezes them. An :class:`~tfresflow.bijectors.ActNorm` step starts at the identity (marked
    initialised at build): its data-dependent initialisation has no data batch here.

    Args:
      bijector: a tfresflow bijector or ``tfb.Chain`` of them over vectors of size
        ``latent_size`` (or its :func:`~tfresflow.bijectors.serialization.serialize_bijector`
        dict, or a ``FlowModel`` such as ``models.residual_flow(D)``, whose flow is taken).
      latent_size: ``D``.
    """

    def __init__(self, bijector, latent_size, **kwargs):
        super().__init__(**kwargs)
        if isinstance(bijector, dict):
            bijector = deserialize_bijector(bijector)
        if not isinstance(bijector, tfb.Bijector) and \
                isinstance(getattr(bijector, "bijector", None), tfb.Bijector):
            bijector = bijector.bijector   # a FlowModel (e.g. models.residual_flow(...))
        if not isinstance(bijector, tfb.Bijector):
            raise TypeError("A global posterior flow must be a tfb.Bijector, got "
                            f"{type(bijector).__name__}.")
        self.latent_size = check_positive_int(latent_size, "latent_size")
        shape = [int(d) for d in bijector.inverse_event_shape([self.latent_size])]
        if shape != [self.latent_size]:
            raise ValueError(f"A global posterior flow must keep the latent shape "
                             f"[{self.latent_size}], got {shape}.")
        bijector = tree.with_unique_names(bijector, lambda b: isinstance(b, KerasBijector),
                                          lambda b, name: b.with_name(name))
        steps = [b for b in tree.leaves(bijector) if isinstance(b, KerasBijector)]
        for b in tree.leaves(bijector):
            if not isinstance(b, KerasBijector) and b.trainable_variables:
                raise ValueError(f"Bijector {b.name!r} holds tf.Variables that Keras cannot "
                                 "train or save; use a tfresflow bijector.")
        object.__setattr__(self, "_flow", bijector)
        self._steps = steps
        layers = [layer for b in steps for layer in b.keras_layers()]
        self.flow_layers = list({id(layer): layer for layer in layers}.values())

    @property
    def bijector(self):
        """The flow (``forward`` = sampling direction)."""
        return self._flow

    @property
    def has_stochastic_log_det(self):
        """Whether the log-det is a random estimate (residual steps)."""
        return any(b.has_stochastic_log_det for b in self._steps)

    def build(self, input_shape=None):
        for b in self._steps:
            b.build([self.latent_size])
            if isinstance(b, ActNorm):
                # No data batch defines a posterior's ActNorm: start at the identity (trained
                # from there) instead of initialising on whatever latents pass first.
                b.parameters_layer.initialized.assign(1.0)
        self.built = True

    def _kwargs(self, training, seed):
        if seed is None:
            seeds = iter(lambda: None, 0)
        else:
            seeds = iter(tf.unstack(trf_random.split(seed, max(len(self._steps), 1))))
        return tree.chain_kwargs(self._flow, lambda b: {"training": bool(training),
                                                        "seed": next(seeds)}
                                 if isinstance(b, KerasBijector) else {})

    def _flat(self, fn, v, training, seed):
        flat = tf.reshape(v, [-1, self.latent_size])
        out, log_det = fn(flat, self._kwargs(training, seed))
        return tf.reshape(out, tf.shape(v)), tf.reshape(log_det, tf.shape(v)[:-1])

    def forward(self, z0, h, training=False, seed=None):
        """``(f(z0), log|det df/dz0|)``."""
        return self._flat(lambda v, kw: (self._flow.forward(v, **kw),
                                         self._flow.forward_log_det_jacobian(v, 1, **kw)),
                          tf.identity(z0), training, seed)

    def inverse(self, z, h, training=False, seed=None):
        """``(f^{-1}(z), log|det df^{-1}/dz|)``."""
        return self._flat(lambda v, kw: (self._flow.inverse(v, **kw),
                                         self._flow.inverse_log_det_jacobian(v, 1, **kw)),
                          tf.identity(z), training, seed)

    def get_config(self):
        return {**super().get_config(), "bijector": serialize_bijector(self._flow),
                "latent_size": self.latent_size}
