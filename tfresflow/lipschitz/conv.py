"""``LipschitzConv2D``: a 2-D convolution whose operator norm is at most ``coeff``.

The constrained quantity is the spectral norm of the convolution *as a linear operator* on
inputs of the build-time spatial size ``H x W`` (Gouk et al., 2018; i-ResNet, Behrmann et al.,
2019; the reference ``InducedNormConv2d``), not a norm of the reshaped kernel. Power iteration
runs on that operator: ``A v = conv2d(v, K)`` and ``A^T u`` is its exact adjoint, obtained as
the vector-Jacobian product of the convolution (TensorFlow's ``Conv2DBackpropInput``, i.e.
``conv2d_transpose``), so every padding and stride is handled exactly. A ``1 x 1`` kernel acts
as the matrix ``K[0, 0]`` on every pixel, so its operator norm is that matrix's spectral norm at
any spatial size; it takes the cheap dense path.

The operator norm depends on the spatial size (for zero padding it grows with the size towards
the circular value), so the layer records ``H, W`` at build and refuses inputs of another
statically known size: the bound would no longer hold. Paddings: ``"same"`` and ``"valid"``
(zero padding, as ``keras.layers.Conv2D``) and ``"circular"`` (periodic wrap-around; its
singular values are those of the per-frequency ``C_out x C_in`` matrices of the kernel's 2-D DFT,
Sedghi et al., 2019).

See :mod:`tfresflow.lipschitz.base` for the normalisation ``W / max(1, sigma (1+margin)/coeff)``,
its gradient, and when power iteration runs.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995.
  Gouk, Frank, Pfahringer & Cree (2018), "Regularisation of Neural Networks by Enforcing Lipschitz
    Continuity", arXiv:1804.04368.
  Sedghi, Gupta & Long (2019), "The Singular Values of Convolutional Layers", ICLR, arXiv:1805.10408
    (circular padding).
"""
import keras
import tensorflow as tf

from tfresflow.lipschitz.base import LipschitzLayer
from tfresflow.validation import check_positive_int

_PADDINGS = ("same", "valid", "circular")


def _pair(value, name):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be a positive integer or a pair of them, got {value!r}.")
    return tuple(check_positive_int(v, name) for v in value)


@keras.saving.register_keras_serializable(package="tfresflow")
class LipschitzConv2D(LipschitzLayer):
    """Conv2D (NHWC) whose operator norm on ``H x W`` inputs is at most ``coeff``.

    Args:
      filters: output channels.
      kernel_size: int or pair.
      coeff: Lipschitz coefficient in (0, 1).
      strides: int or pair.
      padding: ``"same"`` (default), ``"valid"`` or ``"circular"``.
      use_bias, kernel_initializer, bias_initializer: as ``keras.layers.Conv2D``.
      margin, atol, rtol, max_iterations, seed: see :class:`LipschitzLayer`.

    The input spatial size must be known at build time.
    """

    def __init__(self, filters, kernel_size, coeff=0.97, strides=1, padding="same",
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(coeff=coeff, **kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        padding = str(padding).lower()
        if padding not in _PADDINGS:
            raise ValueError(f"`padding` must be one of {_PADDINGS}, got {padding!r}.")
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.spatial_shape = None

    @property
    def _is_pointwise(self):
        return self.kernel_size == (1, 1)

    def _conv(self, x, kernel):
        padding = "SAME" if self.padding == "same" else "VALID"
        if self.padding == "circular":
            x = self._wrap_pad(x)
        return tf.nn.conv2d(x, kernel, strides=(1,) + self.strides + (1,), padding=padding)

    def _wrap_pad(self, x):
        for axis, k in ((1, self.kernel_size[0]), (2, self.kernel_size[1])):
            before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
            size = tf.shape(x)[axis]
            parts = []
            if before:
                parts.append(tf.gather(x, tf.range(size - before, size), axis=axis))
            parts.append(x)
            if after:
                parts.append(tf.gather(x, tf.range(after), axis=axis))
            x = tf.concat(parts, axis=axis)
        return x

    def _wrap_pad_adjoint(self, g):
        """Adjoint of :meth:`_wrap_pad`: folds the wrapped borders back onto the image."""
        for axis, k in ((1, self.kernel_size[0]), (2, self.kernel_size[1])):
            before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
            size = tf.shape(g)[axis] - before - after
            middle = tf.gather(g, tf.range(before, before + size), axis=axis)
            if before:
                head = tf.gather(g, tf.range(before), axis=axis)
                middle += tf.pad(head, [[0, 0] if a != axis else [size - before, 0]
                                        for a in range(4)])
            if after:
                tail = tf.gather(g, tf.range(before + size, before + size + after), axis=axis)
                middle += tf.pad(tail, [[0, 0] if a != axis else [0, size - after]
                                        for a in range(4)])
            g = middle
        return g

    def _conv_adjoint(self, u, kernel, in_shape):
        """``A^T u`` for flat ``u`` [K, n_out]: the exact adjoint (``conv2d_transpose``)."""
        batch = tf.shape(u)[:1]
        height, width, channels = in_shape
        if self.padding == "circular":
            padded = (height + self.kernel_size[0] - 1, width + self.kernel_size[1] - 1)
        else:
            padded = (height, width)
        out_h, out_w = self._output_spatial(height, width)
        images = tf.reshape(u, tf.concat([batch, [out_h, out_w, self.filters]], 0))
        grad = tf.nn.conv2d_transpose(
            images, kernel, tf.concat([batch, [padded[0], padded[1], channels]], 0),
            strides=(1,) + self.strides + (1,),
            padding="SAME" if self.padding == "same" else "VALID")
        return self._wrap_pad_adjoint(grad) if self.padding == "circular" else grad

    def _matrix(self, kernel):
        return tf.squeeze(kernel, axis=[-4, -3]) if self._is_pointwise else None

    def _operator(self, kernel):
        if self._is_pointwise:
            matrix = kernel[0, 0]
            return (lambda v: tf.matmul(v, matrix),
                    lambda u: tf.matmul(u, matrix, transpose_b=True))
        height, width = self.spatial_shape
        channels = int(kernel.shape[2])
        in_shape = (height, width, channels)

        def matvec(v):
            images = tf.reshape(v, (-1,) + in_shape)
            return tf.reshape(self._conv(images, kernel), (tf.shape(v)[0], -1))

        def rmatvec(u):
            return tf.reshape(self._conv_adjoint(u, kernel, in_shape), (tf.shape(u)[0], -1))

        return matvec, rmatvec

    def build(self, input_shape):
        if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                f"{type(self).__name__} needs NHWC inputs with known height, width and channels "
                f"(the operator norm depends on the spatial size), got input shape {input_shape}.")
        height, width, channels = (int(d) for d in input_shape[1:])
        if self.padding == "circular" and (height < self.kernel_size[0] - 1
                                           or width < self.kernel_size[1] - 1):
            raise ValueError(f"Circular padding needs inputs at least as large as the kernel "
                             f"minus one, got {height}x{width} for kernel {self.kernel_size}.")
        self.spatial_shape = (height, width)
        kernel_value = self._add_kernel(self.kernel_size + (channels, self.filters),
                                        self.kernel_initializer)
        self.bias = (self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                     name="bias") if self.use_bias else None)
        out_h, out_w = self._output_spatial(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"Input {height}x{width} is too small for kernel {self.kernel_size} "
                             f"with padding {self.padding!r}.")
        if self._is_pointwise:
            n_in, n_out = channels, self.filters
        else:
            n_in, n_out = height * width * channels, out_h * out_w * self.filters
        self._build_normalization(kernel_value, n_in, n_out, 1)
        self.built = True

    def _output_spatial(self, height, width):
        sizes = []
        for n, k, s in zip((height, width), self.kernel_size, self.strides):
            sizes.append(-(-(n - k + 1) // s) if self.padding == "valid" else -(-n // s))
        return tuple(sizes)

    def call(self, inputs):
        static = tuple(inputs.shape[1:3])
        if all(d is not None for d in static) and static != self.spatial_shape:
            raise ValueError(
                f"{self.name}: built for {self.spatial_shape[0]}x{self.spatial_shape[1]} inputs "
                f"but called on {static[0]}x{static[1]}; the Lipschitz bound is only valid at the "
                "build-time spatial size.")
        kernel = tf.convert_to_tensor(self.kernel)
        outputs = self._conv(inputs, kernel) / self.lipschitz_scale(kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1:3]
        out = self._output_spatial(height, width) if None not in (height, width) else (None, None)
        return (input_shape[0],) + tuple(out) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
