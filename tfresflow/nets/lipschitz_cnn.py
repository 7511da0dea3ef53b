"""``LipschitzCNN``: a convolutional residual function ``g: [H, W, C] -> [H, W, C]``.

``Lip(g) <= coeff`` in the l2 norm of the whole image.

The Residual Flows image block (Chen et al., 2019, App. E):
``LipSwish -> 3x3 Conv -> LipSwish -> 1x1 Conv -> LipSwish -> 3x3 Conv`` with 512 hidden
channels, every convolution a :class:`tfresflow.lipschitz.LipschitzConv2D` whose operator norm
on the build-time spatial size is at most ``coeff`` (so ``Lip(g) <= coeff^L <= coeff`` in l2).
Stride 1 with ``"same"`` (or ``"circular"``) padding keeps the spatial size. With ``CLipSwish``
every convolution after an activation sees twice the channels; ``hidden_channels`` are the
convolutions' output channels.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
"""
import keras

from tfresflow.lipschitz import LipschitzConv2D
from tfresflow.lipschitz.base import validate_coeff
from tfresflow.nets.cnn import check_conv_stack
from tfresflow.nets.lipschitz_mlp import LipschitzStack
from tfresflow.validation import check_number, check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class LipschitzCNN(LipschitzStack):
    """Residual function on NHWC images with ``channels`` channels and ``Lip(g) <= coeff``.

    Args:
      channels: input and output channels ``C``.
      hidden_channels: output channels of the hidden convolutions: an int (all of them) or a
        sequence with ``len(kernel_sizes) - 1`` entries.
      kernel_sizes: one (odd) kernel size per convolution; default ``(3, 1, 3)``.
      activation: as :class:`LipschitzMLP` (``"lipswish"``, ``"clipswish"``, ...).
      coeff: Lipschitz coefficient of every convolution, in (0, 1).
      padding: ``"same"`` (zero padding, default) or ``"circular"``.
      preactivation: start with an activation (the paper's ordering).
      kernel_initializer: for every convolution.
      output_init_scale: factor in (0, 1] on the last convolution's initial kernel (``1e-3``:
        the reference's near-zero start), as :class:`LipschitzMLP`.
      lipschitz_kwargs: extra keyword arguments for every :class:`LipschitzConv2D`.

    The input height and width must be known when the net is built.
    """

    def __init__(self, channels, hidden_channels=512, kernel_sizes=(3, 1, 3),
                 activation="lipswish", coeff=0.97, padding="same", preactivation=True,
                 kernel_initializer="glorot_uniform", lipschitz_kwargs=None,
                 output_init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "channels")
        self.kernel_sizes, self.hidden_channels = check_conv_stack(kernel_sizes,
                                                                   hidden_channels)
        self.coeff = validate_coeff(coeff)
        if padding not in ("same", "circular"):
            raise ValueError(f"`padding` must be 'same' or 'circular' (the residual function "
                             f"must keep the spatial size), got {padding!r}.")
        self.padding = padding
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.lipschitz_kwargs = dict(lipschitz_kwargs or {})
        widths = self.hidden_channels + (self.channels,)
        self.output_init_scale = check_number(output_init_scale, "output_init_scale", 0.0, 1.0,
                                              low_open=True)
        initializers = self._kernel_initializers(self.kernel_initializer, len(widths),
                                                 self.output_init_scale)
        self.linears = [
            LipschitzConv2D(filters, k, coeff=self.coeff, padding=padding,
                            kernel_initializer=init, name=f"lipschitz_conv_{i}",
                            dtype=self.dtype_policy, **self.lipschitz_kwargs)
            for i, (filters, k, init) in enumerate(zip(widths, self.kernel_sizes, initializers))]
        self._make_activations(activation, preactivation)

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4 or any(d is None for d in input_shape[1:3]):
            raise ValueError(f"{type(self).__name__} needs NHWC inputs with known height and "
                             f"width, got input shape {input_shape}.")
        if input_shape[-1] is not None and int(input_shape[-1]) != self.channels:
            raise ValueError(f"{type(self).__name__}(channels={self.channels}) got inputs with "
                             f"{input_shape[-1]} channels (shape {input_shape}).")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "hidden_channels": list(self.hidden_channels),
                "kernel_sizes": list(self.kernel_sizes), "activation": self.activation,
                "coeff": self.coeff, "padding": self.padding,
                "preactivation": self.preactivation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "lipschitz_kwargs": dict(self.lipschitz_kwargs),
                "output_init_scale": self.output_init_scale}
