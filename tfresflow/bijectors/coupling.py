"""RealNVP affine coupling (Dinh, Sohl-Dickstein & Bengio, 2017).

With a binary partition of the coordinates into a conditioning part ``a`` and a transformed
part ``b``, the density direction (TFP ``inverse``, data -> latent) is

    z_a = x_a,    z_b = x_b * exp(s(x_a)) + t(x_a),    log|det dz/dx| = sum(s(x_a)),

and the sampling direction (TFP ``forward``) is ``x_b = (z_b - t(z_a)) * exp(-s(z_a))``. The
log-determinant is exact. ``s`` is stabilised by a soft clamp ``s = c * tanh(s_raw / c)`` so a
single step can never scale a coordinate by more than ``exp(c)``.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803.
"""
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import (KerasBijector, deserialize_layer, serialize_layer,
                                      unique_name)
from tfresflow.nets.mlp import MLP
from tfresflow.validation import check_choice, check_number, check_positive_int

MASKS = ("half", "alternating", "checkerboard")


def coupling_partition(event_size, mask="half", reverse=False):
    """Indices ``(conditioning, transformed)`` of a coupling mask over a vector.

    ``half`` conditions on the first ``event_size // 2`` coordinates; ``alternating`` (and
    ``checkerboard``, which for a vector is the same pattern) on the even coordinates.
    ``reverse=True`` swaps the roles, so alternating ``reverse`` flags cover every coordinate.
    """
    if event_size < 2:
        raise ValueError(f"A coupling layer needs `event_size` >= 2, got {event_size}.")
    check_choice(mask, "mask", MASKS)
    idx = np.arange(event_size)
    if mask == "half":
        cond, trans = idx[:event_size // 2], idx[event_size // 2:]
    else:
        cond, trans = idx[0::2], idx[1::2]
    if reverse:
        cond, trans = trans, cond
    return cond, trans


class AffineCoupling(KerasBijector):
    """Affine coupling bijector with a Keras 3 MLP conditioner; exact log-det.

    Args:
      event_size: dimension D of the (vector) event.
      hidden_units: widths of the conditioner's hidden layers.
      mask: ``"half"``, ``"alternating"`` or ``"checkerboard"`` (see :func:`coupling_partition`).
      reverse: swap the conditioning and transformed coordinates.
      activation: conditioner activation (default ``tanh``).
      log_scale_clamp: ``c`` of the soft clamp ``s = c * tanh(s_raw / c)``.
      conditioner: optional pre-built Keras layer mapping ``[..., |a|]`` to ``[..., 2 |b|]``
        (shift and raw log-scale); built from the arguments above when omitted.
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).
    """

    def __init__(self, event_size, hidden_units=(64, 64), mask="half", reverse=False,
                 activation="tanh", log_scale_clamp=2.0, conditioner=None,
                 validate_args=False, name=None):
        parameters = dict(locals())
        name = unique_name(name, "affine_coupling")
        self.event_size = check_positive_int(event_size, "event_size")
        self.mask = mask
        self.reverse = bool(reverse)
        self.hidden_units = tuple(int(h) for h in hidden_units)
        self.activation = activation
        self.log_scale_clamp = check_number(log_scale_clamp, "log_scale_clamp", 0.0,
                                            low_open=True)
        cond, trans = coupling_partition(self.event_size, mask, self.reverse)
        self._cond_idx, self._trans_idx = cond, trans
        # Position of each coordinate in concat([z_a, z_b]), to restore the original order.
        self._merge_idx = np.argsort(np.concatenate([cond, trans]))
        if conditioner is None:
            conditioner = MLP(2 * len(trans), self.hidden_units, activation=activation,
                              name=f"{name}_conditioner")
        else:
            conditioner = deserialize_layer(conditioner)
        self.conditioner = conditioner
        parameters.update(conditioner=conditioner, name=name)
        super().__init__(parameters=parameters, name=name, validate_args=validate_args)

    def keras_layers(self):
        return [self.conditioner]

    def build(self, event_shape):
        self._check_event_shape(event_shape, [self.event_size])
        if not self.conditioner.built:
            self.conditioner.build((None, len(self._cond_idx)))

    def get_config(self):
        return dict(event_size=self.event_size, hidden_units=list(self.hidden_units),
                    mask=self.mask, reverse=self.reverse, activation=self.activation,
                    log_scale_clamp=self.log_scale_clamp,
                    conditioner=serialize_layer(self.conditioner),
                    validate_args=self.validate_args, name=self.name)

    def _conditioner_params(self, a):
        """The conditioner on ``a`` of any batch shape ``[..., |a|]`` (Keras layers want rank 2)."""
        flat = self.conditioner(tf.reshape(a, [-1, len(self._cond_idx)]))
        return tf.reshape(flat, tf.concat([tf.shape(a)[:-1], tf.shape(flat)[-1:]], 0))

    def _shift_and_log_scale(self, a):
        params = self._conditioner_params(a)
        shift, raw = tf.split(params, 2, axis=-1)
        c = self.log_scale_clamp
        return shift, c * tf.tanh(raw / c)

    def _split(self, v):
        return tf.gather(v, self._cond_idx, axis=-1), tf.gather(v, self._trans_idx, axis=-1)

    def _merge(self, a, b):
        return tf.gather(tf.concat([a, b], axis=-1), self._merge_idx, axis=-1)

    def _data_to_latent(self, x, training, seed):
        a, b = self._split(x)
        shift, log_scale = self._shift_and_log_scale(a)
        return self._merge(a, b * tf.exp(log_scale) + shift), tf.reduce_sum(log_scale, -1)

    def _latent_to_data(self, z, training, seed):
        a, b = self._split(z)
        shift, log_scale = self._shift_and_log_scale(a)
        return self._merge(a, (b - shift) * tf.exp(-log_scale))
