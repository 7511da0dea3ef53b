"""Affine coupling on images ``[H, W, C]`` with a plain convolutional conditioner (Real NVP).

The coupling baseline of Residual Flows' hybrid experiments (Chen et al., 2019, Sec. 5.3 and
Tables 4-5: "the same architecture for g(x) except we use ReLU activations and no longer
constrain the Lipschitz constant"). With a binary mask splitting the image into a
conditioning part ``a`` and a transformed part ``b``, the density direction (TFP ``inverse``,
data -> latent) is

    z_a = x_a,    z_b = x_b * exp(s(x_a)) + t(x_a),    log|det dz/dx| = sum over b of s(x_a),

and the sampling direction (TFP ``forward``) is ``x_b = (z_b - t(z_a)) * exp(-s(z_a))``; both
the log-determinant and the inverse are exact (Dinh et al., 2017, Eqs. 4-8).

Masks (``mask``):

* ``"channel"``: ``a`` is the first ``C // 2`` channels, ``b`` the rest
  (:func:`~tfresflow.bijectors.coupling.coupling_partition` over the channel axis);
  ``reverse=True`` swaps the two, so alternate ``reverse`` flags transform every channel.
  The conditioner maps ``[H, W, |a|]`` to ``[H, W, 2 |b|]``. Needs ``C >= 2``.
* ``"checkerboard"``: ``a`` is the pixels with ``(h + w)`` even (all channels), ``b`` those
  with ``(h + w)`` odd; ``reverse=True`` swaps the parities. The conditioner sees the masked
  image ``m * x`` (``[H, W, C]``) and outputs ``2 C`` channels, of which only the ``b``
  positions are used (Real NVP, Sec. 3.4). Needs ``H W >= 2``; the only possible split for
  single-channel images (MNIST, digits) before the first squeeze.
* ``"auto"`` (default): ``"channel"`` when ``C >= 2``, else ``"checkerboard"``.

Scale stabilisation: the raw log-scale passes through the soft clamp
``s = c * tanh(s_raw / c)`` (``c = log_scale_clamp``, default 2), as the vector
:class:`~tfresflow.bijectors.AffineCoupling`: one step scales a coordinate by at most
``exp(+-c)``, smooth and with slope 1 at 0. The conditioner's last convolution is
zero-initialised, so ``s = t = 0`` and a new coupling is the identity.

Inputs ``[..., H, W, C]`` (any batch shape); the dtype is the conditioner's.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (affine coupling, checkerboard and channel-wise masks, Sec. 3.3-3.4).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Sec. 5.3, Tables 4-5: the coupling baseline).
"""
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import (KerasBijector, deserialize_layer, serialize_layer,
                                      unique_name)
from tfresflow.bijectors.coupling import coupling_partition
from tfresflow.nets.cnn import CNN
from tfresflow.validation import check_choice, check_event_shape, check_number

IMAGE_MASKS = ("auto", "channel", "checkerboard")


def resolve_image_mask(mask, channels):
    """The mask ``"auto"`` stands for: ``"channel"`` when ``channels >= 2``, else
    ``"checkerboard"``; other masks unchanged (after checking the name)."""
    check_choice(mask, "mask", IMAGE_MASKS)
    if mask == "auto":
        return "channel" if channels >= 2 else "checkerboard"
    return mask


def checkerboard_mask(height, width, reverse=False):
    """``[H, W, 1]`` float array: 1 on the conditioning pixels ``(h + w)`` even (odd when
    ``reverse``), 0 on the transformed ones."""
    parity = (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2
    cond = parity == (1 if reverse else 0)
    return cond.astype(np.float64)[:, :, None]


class ConvAffineCoupling(KerasBijector):
    """Affine coupling of ``[H, W, C]`` images, conditioner a plain ReLU CNN; exact log-det.

    Args:
      event_shape: ``[H, W, C]`` of one image.
      hidden_channels, kernel_sizes: of the conditioner :class:`~tfresflow.nets.CNN`
        (default ``3x3 -> 1x1 -> 3x3`` with 512 hidden channels, the residual blocks' shape).
      mask: ``"auto"``, ``"channel"`` or ``"checkerboard"`` (module docstring).
      reverse: swap the conditioning and transformed parts.
      activation: of the conditioner (default ``"relu"``: the paper's coupling baseline).
      log_scale_clamp: ``c`` of the soft clamp ``s = c * tanh(s_raw / c)``.
      conditioner: optional pre-built Keras layer mapping the conditioning input to
        ``2 |b|`` channels (``2 C`` for the checkerboard); built from the arguments above when
        omitted (zero-initialised output: the identity at the start).
      dtype: floating dtype of the conditioner and of inputs (default float32).
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).
      name: unique step name.
    """

    def __init__(self, event_shape, hidden_channels=512, kernel_sizes=(3, 1, 3), mask="auto",
                 reverse=False, activation="relu", log_scale_clamp=2.0, conditioner=None,
                 dtype="float32", validate_args=False, name=None):
        parameters = dict(locals())
        name = unique_name(name, "conv_affine_coupling")
        shape = check_event_shape(event_shape)
        if len(shape) != 3:
            raise ValueError(f"`event_shape` must be an image shape [H, W, C], got {shape}.")
        h, w, c = shape
        self.event_shape = shape
        self.mask = resolve_image_mask(mask, c)
        self.reverse = bool(reverse)
        self.log_scale_clamp = check_number(log_scale_clamp, "log_scale_clamp", 0.0,
                                            low_open=True)
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise ValueError(f"`dtype` must be a floating dtype, got {dtype.name}.")
        if self.mask == "channel":
            if c < 2:
                raise ValueError(f"mask='channel' needs at least 2 channels, got event shape "
                                 f"{shape}; use mask='checkerboard' (or 'auto').")
            self._cond_idx, self._trans_idx = coupling_partition(c, "half", self.reverse)
            self._merge_idx = np.argsort(np.concatenate([self._cond_idx, self._trans_idx]))
            in_channels, out_channels = len(self._cond_idx), 2 * len(self._trans_idx)
        else:
            if h * w < 2:
                raise ValueError(f"mask='checkerboard' needs at least 2 pixels, got event "
                                 f"shape {shape}.")
            self._mask = checkerboard_mask(h, w, self.reverse)
            in_channels, out_channels = c, 2 * c
        self._in_channels = in_channels
        if conditioner is None:
            conditioner = CNN(out_channels, hidden_channels=hidden_channels,
                              kernel_sizes=kernel_sizes, activation=activation,
                              name=f"{name}_conditioner", dtype=dtype.name)
        else:
            conditioner = deserialize_layer(conditioner)
        self.conditioner = conditioner
        self.hidden_channels = getattr(conditioner, "hidden_channels", hidden_channels)
        self.kernel_sizes = getattr(conditioner, "kernel_sizes", kernel_sizes)
        self.activation = getattr(conditioner, "activation", activation)
        parameters.update(conditioner=conditioner, name=name)
        super().__init__(parameters=parameters, name=name, event_ndims=3,
                         validate_args=validate_args, dtype=dtype)

    # ---------------------------------------------------------------- Keras side
    def keras_layers(self):
        return [self.conditioner]

    def build(self, event_shape):
        self._check_event_shape(event_shape, self.event_shape)
        if not self.conditioner.built:
            self.conditioner.build((None, *self.event_shape[:2], self._in_channels))

    def get_config(self):
        hidden = self.hidden_channels
        return dict(event_shape=list(self.event_shape),
                    hidden_channels=list(hidden) if np.ndim(hidden) else int(hidden),
                    kernel_sizes=[int(k) for k in self.kernel_sizes], mask=self.mask,
                    reverse=self.reverse, activation=self.activation,
                    log_scale_clamp=self.log_scale_clamp,
                    conditioner=serialize_layer(self.conditioner), dtype=self.dtype.name,
                    validate_args=self.validate_args, name=self.name)

    # ---------------------------------------------------------------- TFP side
    def _flat(self, v):
        """``v`` as ``[batch, H, W, C]`` (one batch axis) and its batch shape."""
        if v.shape.rank is None or v.shape.rank < 3 \
                or v.shape[-3:].as_list() != list(self.event_shape):
            raise ValueError(f"{self.name}: expected inputs of shape [..., *{self.event_shape}]"
                             f", got shape {v.shape}.")
        batch_shape = tf.shape(v)[:v.shape.rank - 3]
        return tf.reshape(v, [-1, *self.event_shape]), batch_shape

    def _shift_and_log_scale(self, a):
        shift, raw = tf.split(self.conditioner(a), 2, axis=-1)
        c = self.log_scale_clamp
        return shift, c * tf.tanh(raw / c)

    def _couple(self, v, sign):
        """``(value, log_det)``: density direction for ``sign=+1``, sampling for ``-1``."""
        flat, batch_shape = self._flat(v)
        if self.mask == "channel":
            a = tf.gather(flat, self._cond_idx, axis=-1)
            b = tf.gather(flat, self._trans_idx, axis=-1)
            shift, log_scale = self._shift_and_log_scale(a)
            b = b * tf.exp(log_scale) + shift if sign > 0 else (b - shift) * tf.exp(-log_scale)
            out = tf.gather(tf.concat([a, b], axis=-1), self._merge_idx, axis=-1)
        else:
            m = tf.constant(self._mask, flat.dtype)
            a = flat * m
            shift, log_scale = self._shift_and_log_scale(a)
            shift, log_scale = shift * (1.0 - m), log_scale * (1.0 - m)
            b = flat * tf.exp(log_scale) + shift if sign > 0 \
                else (flat - shift) * tf.exp(-log_scale)
            out = a + (1.0 - m) * b
        log_det = tf.reduce_sum(log_scale, axis=[1, 2, 3])
        return tf.reshape(out, tf.shape(v)), tf.reshape(log_det, batch_shape)

    def _data_to_latent(self, x, training, seed):
        return self._couple(x, +1)

    def _latent_to_data(self, z, training, seed):
        return self._couple(z, -1)[0]
