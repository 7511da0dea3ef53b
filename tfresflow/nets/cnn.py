"""A plain (unconstrained) convolutional network, used as the conditioner of image couplings.

The coupling baseline of Residual Flows (Chen et al., 2019, Sec. 5.3 / 6 and Table 5) keeps
"the same architecture for g(x) except we use ReLU activations and no longer constrain the
Lipschitz constant": ``3x3 conv -> ReLU -> 1x1 conv -> ReLU -> 3x3 conv`` with
``hidden_channels`` hidden channels, the shape of :class:`~tfresflow.nets.LipschitzCNN`
without spectral normalisation and without the pre-activation (the conditioner's input is
the data itself, not a residual).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Sec. 5.3, Appendix E).
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (convolutional coupling conditioners, zero-initialised output).
"""
import keras

from tfresflow.validation import check_positive_int


def check_conv_stack(kernel_sizes, hidden_channels):
    """``(kernel_sizes, hidden_channels)`` of a stack of stride-1 "same" convolutions, checked.

    ``kernel_sizes``: one odd positive size per convolution; ``hidden_channels``: a positive
    int (every hidden convolution) or one per hidden convolution (``len(kernel_sizes) - 1``).
    Raises a ValueError naming the argument otherwise.
    """
    sizes = tuple(int(k) for k in kernel_sizes)
    if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError("`kernel_sizes` must be a non-empty sequence of odd positive "
                         f"integers (so that 'same' keeps the size), got {kernel_sizes!r}.")
    n_hidden = len(sizes) - 1
    if isinstance(hidden_channels, int) and not isinstance(hidden_channels, bool):
        hidden = (hidden_channels,) * n_hidden
    else:
        hidden = tuple(hidden_channels)
    if len(hidden) != n_hidden:
        raise ValueError(f"`hidden_channels` must be a positive integer or {n_hidden} of "
                         f"them (one per hidden convolution), got {hidden_channels!r}.")
    return sizes, tuple(check_positive_int(h, "hidden_channels") for h in hidden)


@keras.saving.register_keras_serializable(package="tfresflow")
class CNN(keras.layers.Layer):
    """``Conv(k_1) -> act -> ... -> Conv(k_L, out_channels)`` on NHWC images, "same" padding.

    Args:
      out_channels: channels of the output.
      hidden_channels: output channels of the hidden convolutions: an int (all of them) or one
        per hidden convolution (``len(kernel_sizes) - 1``).
      kernel_sizes: one odd kernel size per convolution (default ``(3, 1, 3)``).
      activation: between the convolutions (default ``"relu"``).
      zero_init_output: zero kernel and bias of the last convolution, so the network outputs
        0 at initialisation (a coupling built on it starts as the identity; RealNVP, Glow).
    """

    def __init__(self, out_channels, hidden_channels=512, kernel_sizes=(3, 1, 3),
                 activation="relu", zero_init_output=True, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_sizes, self.hidden_channels = check_conv_stack(kernel_sizes,
                                                                   hidden_channels)
        self.activation = activation
        self.zero_init_output = bool(zero_init_output)
        widths = self.hidden_channels + (self.out_channels,)
        last = len(widths) - 1
        self.convs = [
            keras.layers.Conv2D(
                filters, k, padding="same", activation=None if i == last else activation,
                kernel_initializer="zeros" if (i == last and self.zero_init_output)
                else "glorot_uniform",
                name=f"conv_{i}", dtype=self.dtype_policy)
            for i, (filters, k) in enumerate(zip(widths, self.kernel_sizes))]

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(f"CNN needs NHWC inputs, got input shape {shape}.")
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.built = True

    def call(self, x):
        for conv in self.convs:
            x = conv(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_channels,)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels,
                "hidden_channels": list(self.hidden_channels),
                "kernel_sizes": list(self.kernel_sizes), "activation": self.activation,
                "zero_init_output": self.zero_init_output}
