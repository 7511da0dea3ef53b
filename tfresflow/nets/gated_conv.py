"""Gated convolutions and the gated-convolution VAE encoder/decoder (Keras 3 layers).

A gated convolution (Dauphin et al., 2017; van den Oord et al., 2016; used by the Sylvester
flows VAE, van den Berg et al., 2018, and the Gradient Boosted Flows VAE, Giaquinto & Banerjee,
2020, appendix B) is

    h_l = (W_l * h_{l-1} + b_l)  (.)  sigmoid(V_l * h_{l-1} + c_l),

with ``*`` a (transposed) convolution and ``(.)`` the element-wise product. Here ``W`` and
``V`` are computed by ONE convolution with ``2 F`` output channels split in two halves (the
same function as two convolutions with ``F`` channels each, one kernel launch instead of two).

Architecture (:class:`GatedConvEncoder`, :class:`GatedConvDecoder`): the Sylvester-flows
layout with ``depth`` gated layers per network (6 by default: the paper's "6 layers", its
appendix listing the three characteristic ones). For an ``H x W x C`` image and depth ``L``:

* encoder: layers ``0 .. L-2`` are ``k x k`` (default 5) "same"-padded gated convolutions, the
  odd ones (1, 3, ...) with stride 2 (``floor((L - 1) / 2)`` halvings, at most
  ``max_downsamplings``); the last is a "valid" gated convolution whose kernel covers the
  remaining spatial map (``7 x 7`` for 28 x 28 inputs, as the paper's ``k = 7, p = 0`` layer),
  giving a feature vector of ``channels[-1]`` (256) units;
* decoder (mirror): the latent ``z`` as a ``1 x 1`` map, a "valid" gated transposed
  convolution to the smallest map, then ``L - 1`` gated transposed convolutions, the even
  ones (2, 4, ...) with stride 2 (cropped to the encoder's map sizes, so odd sizes work), then
  a plain ``1 x 1`` convolution to the image's channels: the Bernoulli logits.

Default widths for depth 6: encoder ``(32, 32, 64, 64, 64, 256)``, decoder
``(64, 64, 32, 32, 32, 32)`` (Sylvester flows' encoder/decoder). Works for 28 x 28 x 1 (MNIST)
and 8 x 8 x 1 (digits) images and any other size.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (appendix B).
  van den Berg, Hasenclever, Tomczak & Welling (2018), "Sylvester Normalizing Flows for
    Variational Inference", UAI, arXiv:1803.05649 (the gated-convolution encoder/decoder).
  Dauphin, Fan, Auli & Grangier (2017), "Language Modeling with Gated Convolutional Networks",
    ICML, arXiv:1612.08083 (gated linear units).
"""
import keras
import tensorflow as tf

from tfresflow.validation import check_event_shape, check_positive_int

__all__ = ["GatedConv2D", "GatedConv2DTranspose", "GatedConvEncoder", "GatedConvDecoder",
           "default_encoder_channels", "default_decoder_channels", "spatial_plan"]


def default_encoder_channels(depth):
    """Sylvester-flows encoder widths: ``(32, 32, 64, 64, 64, 256)`` for depth 6.

    General depth: the first third (at least one layer) 32, the rest 64, the last layer 256.
    """
    depth = check_positive_int(depth, "depth")
    return tuple(256 if i == depth - 1 else (32 if i < max(1, depth // 3) else 64)
                 for i in range(depth))


def default_decoder_channels(depth):
    """Sylvester-flows decoder widths: ``(64, 64, 32, 32, 32, 32)`` for depth 6 (general
    depth: the first third, at least one layer, 64; the rest 32)."""
    depth = check_positive_int(depth, "depth")
    return tuple(64 if i < max(1, depth // 3) else 32 for i in range(depth))


def spatial_plan(image_shape, depth, max_downsamplings=2):
    """Stride-2 layer count and the spatial map sizes of the encoder.

    Returns ``(n_down, sizes)``: ``sizes[j]`` is the ``(height, width)`` after ``j`` halvings
    ("same" padding: ``ceil(s / 2)``), ``j = 0 .. n_down``, with
    ``n_down = min(max_downsamplings, floor((depth - 1) / 2))``.
    """
    image_shape = check_event_shape(image_shape, "image_shape")
    if len(image_shape) != 3:
        raise ValueError(f"`image_shape` must be (height, width, channels), got {image_shape}.")
    depth = check_positive_int(depth, "depth")
    max_downsamplings = check_positive_int(max_downsamplings, "max_downsamplings", minimum=0)
    n_down = min(max_downsamplings, (depth - 1) // 2)
    h, w = image_shape[:2]
    sizes = [(h, w)]
    for _ in range(n_down):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return n_down, sizes


def _check_channels(channels, depth, name):
    channels = tuple(check_positive_int(c, name) for c in channels)
    if len(channels) != depth:
        raise ValueError(f"`{name}` must list one width per layer (depth {depth}), got "
                         f"{len(channels)}: {channels}.")
    return channels


@keras.saving.register_keras_serializable(package="tfresflow")
class GatedConv2D(keras.layers.Layer):
    """``h = conv_a(x) * sigmoid(conv_g(x))`` (gated convolution, GBF appendix B).

    Args:
      filters: output channels ``F``.
      kernel_size: square kernel size.
      strides: stride of both convolutions.
      padding: ``"same"`` or ``"valid"`` (Keras' meaning).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.strides = check_positive_int(strides, "strides")
        if padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid', got {padding!r}.")
        self.padding = padding
        self.conv = self._make_conv()

    def _make_conv(self):
        return keras.layers.Conv2D(2 * self.filters, self.kernel_size, strides=self.strides,
                                   padding=self.padding, name="conv")

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))
        self.built = True

    def call(self, x):
        a, g = tf.split(self.conv(x), 2, axis=-1)
        return a * tf.sigmoid(g)

    def compute_output_shape(self, input_shape):
        return tuple(self.conv.compute_output_shape(tuple(input_shape))[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding}


@keras.saving.register_keras_serializable(package="tfresflow")
class GatedConv2DTranspose(GatedConv2D):
    """``h = convT_a(x) * sigmoid(convT_g(x))`` (gated transposed convolution).

    Output size (Keras): ``s * stride`` for ``"same"``, ``(s - 1) * stride + k`` for
    ``"valid"`` (``k >= stride``).
    """

    def _make_conv(self):
        return keras.layers.Conv2DTranspose(2 * self.filters, self.kernel_size,
                                            strides=self.strides, padding=self.padding,
                                            name="conv_transpose")


@keras.saving.register_keras_serializable(package="tfresflow")
class GatedConvEncoder(keras.layers.Layer):
    """Gated-convolution encoder ``x [B, H, W, C] -> features [B, channels[-1]]``.

    Layout in the module docstring (Sylvester flows / GBF appendix B).

    Args:
      image_shape: ``(H, W, C)``.
      depth: number of gated convolutions (6 as in the paper).
      channels: widths per layer (default :func:`default_encoder_channels`).
      kernel_size: kernel of the "same" layers (5 as in the paper).
      max_downsamplings: at most this many stride-2 layers (2: 28 -> 14 -> 7).
    """

    def __init__(self, image_shape, depth=6, channels=None, kernel_size=5, max_downsamplings=2,
                 **kwargs):
        super().__init__(**kwargs)
        self.depth = check_positive_int(depth, "depth")
        self.n_down, self.sizes = spatial_plan(image_shape, self.depth, max_downsamplings)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.max_downsamplings = int(max_downsamplings)
        self.channels = _check_channels(default_encoder_channels(self.depth) if channels is None
                                        else channels, self.depth, "channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.gated_layers = []
        for i in range(self.depth - 1):
            stride = 2 if (i % 2 == 1 and i // 2 < self.n_down) else 1
            self.gated_layers.append(GatedConv2D(self.channels[i], self.kernel_size, stride,
                                                 "same", name=f"gated_conv_{i}"))
        last = self.sizes[-1]
        if last[0] != last[1]:
            raise ValueError(f"`image_shape` {self.image_shape} reaches a non-square map {last}; "
                             "use square images.")
        self.gated_layers.append(GatedConv2D(self.channels[-1], last[0], 1, "valid",
                                             name=f"gated_conv_{self.depth - 1}"))
        self.output_size = self.channels[-1]

    def build(self, input_shape=None):
        shape = (None, *self.image_shape)
        for layer in self.gated_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, x):
        for layer in self.gated_layers:
            x = layer(x)
        return tf.reshape(x, [-1, self.output_size])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "depth": self.depth, "channels": list(self.channels),
                "kernel_size": self.kernel_size, "max_downsamplings": self.max_downsamplings}


@keras.saving.register_keras_serializable(package="tfresflow")
class GatedConvDecoder(keras.layers.Layer):
    """Gated-convolution decoder ``z [B, latent_size] -> logits [B, H, W, C]``.

    Mirror of :class:`GatedConvEncoder` (module docstring), ending in a plain ``1 x 1``
    convolution to the image channels (no gate): the logits of a Bernoulli decoder.

    Args:
      image_shape: ``(H, W, C)`` of the output.
      latent_size: dimension of ``z``.
      depth: number of gated transposed convolutions (6 as in the paper).
      channels: widths per layer (default :func:`default_decoder_channels`).
      kernel_size: kernel of the inner layers (5).
      max_downsamplings: as for the encoder (the two must match to mirror it).
    """

    def __init__(self, image_shape, latent_size, depth=6, channels=None, kernel_size=5,
                 max_downsamplings=2, **kwargs):
        super().__init__(**kwargs)
        self.depth = check_positive_int(depth, "depth")
        self.latent_size = check_positive_int(latent_size, "latent_size")
        self.n_down, self.sizes = spatial_plan(image_shape, self.depth, max_downsamplings)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.max_downsamplings = int(max_downsamplings)
        self.channels = _check_channels(default_decoder_channels(self.depth) if channels is None
                                        else channels, self.depth, "channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        first = self.sizes[-1]
        if first[0] != first[1]:
            raise ValueError(f"`image_shape` {self.image_shape} reaches a non-square map {first}; "
                             "use square images.")
        self.gated_layers = [GatedConv2DTranspose(self.channels[0], first[0], 1, "valid",
                                                  name="gated_conv_transpose_0")]
        # Target map size after each layer (the crop after a stride-2 layer).
        self._targets = [first]
        level = self.n_down
        for i in range(1, self.depth):
            stride = 2 if (i % 2 == 0 and level > 0) else 1
            if stride == 2:
                level -= 1
            self._targets.append(self.sizes[level])
            self.gated_layers.append(GatedConv2DTranspose(self.channels[i], self.kernel_size,
                                                          stride, "same",
                                                          name=f"gated_conv_transpose_{i}"))
        self.output_conv = keras.layers.Conv2D(self.image_shape[-1], 1, name="output_conv")

    def build(self, input_shape=None):
        shape = (None, 1, 1, self.latent_size)
        for layer, target in zip(self.gated_layers, self._targets):
            layer.build(shape)
            shape = (None, *target, layer.filters)
        self.output_conv.build(shape)
        self.built = True

    def call(self, z):
        x = tf.reshape(z, [-1, 1, 1, self.latent_size])
        for layer, (h, w) in zip(self.gated_layers, self._targets):
            x = layer(x)[:, :h, :w, :]
        return self.output_conv(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.image_shape)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "latent_size": self.latent_size, "depth": self.depth,
                "channels": list(self.channels), "kernel_size": self.kernel_size,
                "max_downsamplings": self.max_downsamplings}
