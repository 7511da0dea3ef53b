"""``Squeeze``: invertible space-to-depth downsampling of images (Dinh et al., 2017, Real NVP).

Density direction (TFP ``inverse``, data -> latent): every ``r x r`` spatial patch of an
``[H, W, C]`` image becomes ``r^2 C`` channels of one pixel of an ``[H/r, W/r, r^2 C]`` image,

    z[h, w, (i r + j) C + c] = x[h r + i, w r + j, c],     0 <= i, j < r,

which is ``tf.nn.space_to_depth`` (its channel order; the PyTorch reference orders channels as
``c r^2 + i r + j``, which only matters for weight parity). The sampling direction (TFP
``forward``) is ``tf.nn.depth_to_space``. A permutation of coordinates: ``log |det| = 0``
exactly. The event shape changes, so ``forward_event_shape`` / ``inverse_event_shape`` (and
their ``_tensor`` variants) map ``[H/r, W/r, r^2 C] <-> [H, W, C]``. Residual Flows squeezes
with ``r = 2`` between scales (Chen et al., 2019, Appendix E).

No weights; any dtype; inputs ``[..., H, W, C]`` with ``H`` and ``W`` divisible by ``r``.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (the squeezing operation, Sec. 3.6).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
"""
import tensorflow as tf

from tfresflow.bijectors.base import KerasBijector, unique_name
from tfresflow.validation import check_positive_int


class Squeeze(KerasBijector):
    """Space-to-depth by ``factor`` (data ``[H, W, C]`` -> latent ``[H/r, W/r, r^2 C]``).

    Args:
      factor: the patch size ``r`` (default 2).
      validate_args: assert finite inputs at run time (TFP's meaning).
      name: unique step name.
    """

    def __init__(self, factor=2, validate_args=False, name=None):
        parameters = dict(locals())
        self.factor = check_positive_int(factor, "factor")
        name = unique_name(name, "squeeze")
        parameters.update(name=name)
        super().__init__(parameters=parameters, name=name, event_ndims=3,
                         validate_args=validate_args, dtype=None)

    def keras_layers(self):
        return []

    def build(self, event_shape):
        """Checks that ``event_shape`` is ``[H, W, C]`` with ``H, W`` divisible by ``factor``."""
        shape = [int(d) for d in event_shape]
        r = self.factor
        if len(shape) != 3 or shape[0] % r or shape[1] % r:
            raise ValueError(f"{self.name}: expected an event shape [H, W, C] with H and W "
                             f"divisible by {r}, got {shape}.")

    def get_config(self):
        return dict(factor=self.factor, validate_args=self.validate_args, name=self.name)

    # ---------------------------------------------------------------- shapes
    def _squeezed_shape(self, shape):
        r = self.factor
        return [shape[0] // r, shape[1] // r, shape[2] * r * r]

    def _unsqueezed_shape(self, shape):
        r = self.factor
        return [shape[0] * r, shape[1] * r, shape[2] // (r * r)]

    def _inverse_event_shape(self, output_shape):
        if output_shape.rank is None or not output_shape[-3:].is_fully_defined():
            return tf.TensorShape([None] * 3)
        return tf.TensorShape(self._squeezed_shape(output_shape[-3:].as_list()))

    def _forward_event_shape(self, input_shape):
        if input_shape.rank is None or not input_shape[-3:].is_fully_defined():
            return tf.TensorShape([None] * 3)
        return tf.TensorShape(self._unsqueezed_shape(input_shape[-3:].as_list()))

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.stack(self._squeezed_shape(tf.unstack(output_shape[-3:])))

    def _forward_event_shape_tensor(self, input_shape):
        return tf.stack(self._unsqueezed_shape(tf.unstack(input_shape[-3:])))

    # ---------------------------------------------------------------- maps
    def _event(self, v):
        """The static ``[H, W, C]`` of ``v`` (a ValueError naming the step if unknown)."""
        if v.shape.rank is None or v.shape.rank < 3 or not v.shape[-3:].is_fully_defined():
            raise ValueError(f"{self.name}: inputs need a static event shape [H, W, C], got "
                             f"shape {v.shape}.")
        return v.shape[-3:].as_list()

    def _apply(self, v, op, event_in, event_out):
        batch_shape = tf.shape(v)[:v.shape.rank - 3]
        out = op(tf.reshape(v, [-1, *event_in]), self.factor)
        return tf.reshape(out, tf.concat([batch_shape, event_out], 0)), batch_shape

    def _data_to_latent(self, x, training, seed):
        event = self._event(x)
        self.build(event)
        z, batch_shape = self._apply(x, tf.nn.space_to_depth, event, self._squeezed_shape(event))
        return z, tf.zeros(batch_shape, x.dtype)

    def _latent_to_data(self, z, training, seed):
        event = self._event(z)
        if event[-1] % (self.factor ** 2):
            raise ValueError(f"{self.name}: latents need a multiple of {self.factor ** 2} "
                             f"channels, got shape {z.shape}.")
        return self._apply(z, tf.nn.depth_to_space, event, self._unsqueezed_shape(event))[0]
