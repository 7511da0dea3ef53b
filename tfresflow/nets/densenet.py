"""The i-DenseNet residual function (Perugachi-Diaz, Tomczak & Bhulai, 2021, Sec. 3).

``g = W_{n+1} o h_n o ... o h_1`` with dense layers

    h_i(x) = [eta1_hat_i * x ; eta2_hat_i * phi(W_i x)],
    (eta1_hat, eta2_hat) = (eta1, eta2) / sqrt(eta1^2 + eta2^2),

where every ``W_i`` is Lipschitz-normalised (``Lip(W_i) <= coeff``), ``Lip(phi) <= 1`` and the
final map ``W_{n+1}`` (a linear layer / 1x1 convolution back to the input size) has
``Lip <= coeff``. By the concatenation bound (paper eq. (9)) each ``h_i`` is at most
``sqrt(eta1_hat^2 + eta2_hat^2 coeff^2) <= 1``-Lipschitz, so ``Lip(g) <= coeff < 1`` and
``x + g(x)`` is invertible.

Learnable weighted concatenation (paper Sec. 3.3): ``eta = softplus(eta_raw)`` initialised
at ``eta1 = eta2 = 1`` (normalised values ``1/sqrt(2)``); with ``learnable_concat=False`` the
weights stay at ``1/sqrt(2)``. With CLipSwish (which doubles the channels) ``W_i`` produces
``growth / 2`` channels so every layer still grows by ``growth`` (paper Sec. 3.4).

Projection (the fully connected end blocks of the image models, paper App. B): with
``projection=m`` a Lipschitz linear map ``P`` (a 1x1 convolution in the conv variant) from the
input to ``m`` channels comes first, ``g = W_{n+1} o h_n o ... o h_1 o P``, still with
``Lip(g) <= coeff^2 <= coeff``; the image i-DenseNet uses ``m = 64`` before its dense layers of
growth 32 on the ``d``-dimensional flattened image.

References:
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Section 3, Appendix B).
"""
import math

import keras
import tensorflow as tf

from tfresflow.lipschitz import LipschitzConv2D, LipschitzDense, activations
from tfresflow.validation import check_coeff, check_positive_int

_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_INV_ONE) == 1


@keras.saving.register_keras_serializable(package="tfresflow")
class DenseNet(keras.layers.Layer):
    """i-DenseNet residual function g with Lip(g) <= coeff.

    Args:
      event_size: channels of the input/output (vector size, or image channels for conv).
      depth: number of dense layers ``h_i``.
      growth: channels added by each dense layer.
      activation: name from :mod:`tfresflow.activations` (``"clipswish"`` halves ``W_i``'s
        output channels).
      learnable_concat: learn ``eta1, eta2`` per layer, else fixed ``1/sqrt(2)``.
      coeff: Lipschitz coefficient of every normalised linear map, in (0, 1).
      conv: use 3x3 convolutions (inputs ``[B, H, W, C]``) and a final 1x1 convolution
        instead of dense layers (inputs ``[B, D]``).
      kernel_size: kernel size of the dense-layer convolutions (conv variant).
      projection: optional width ``m`` of a Lipschitz linear map (1x1 convolution) applied
        before the dense layers (``None``: none, the dense layers see the input itself).
      lipschitz_kwargs: extra keyword arguments for every Lipschitz layer (``margin``,
        ``max_iterations``, ``block_size``, ...), as :class:`LipschitzMLP`.
    """

    def __init__(self, event_size, depth=3, growth=32, activation="clipswish",
                 learnable_concat=True, coeff=0.97, conv=False, kernel_size=3, projection=None,
                 lipschitz_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.event_size = check_positive_int(event_size, "event_size")
        self.depth = check_positive_int(depth, "depth")
        self.growth = check_positive_int(growth, "growth")
        self.activation_name = activation
        self.learnable_concat = bool(learnable_concat)
        self.coeff = check_coeff(coeff)
        self.conv = bool(conv)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.projection = None if projection is None else check_positive_int(projection,
                                                                              "projection")
        self.lipschitz_kwargs = dict(lipschitz_kwargs or {})
        dtype = self.dtype_policy
        lip = dict(coeff=coeff, dtype=dtype, **self.lipschitz_kwargs)
        self.activations = [activations.get(activation, dtype=dtype) for _ in range(self.depth)]
        multiplier = self.activations[0].output_multiplier
        if self.growth % multiplier:
            raise ValueError(f"`growth` ({growth}) must be divisible by {multiplier} for "
                             f"activation {activation!r}.")
        units = self.growth // multiplier
        if self.conv:
            self.linears = [LipschitzConv2D(units, self.kernel_size, name=f"conv_{i}", **lip)
                            for i in range(self.depth)]
            self.output_map = LipschitzConv2D(self.event_size, 1, name="conv_out", **lip)
            self.input_map = None if self.projection is None else LipschitzConv2D(
                self.projection, 1, name="conv_in", **lip)
        else:
            self.linears = [LipschitzDense(units, name=f"dense_{i}", **lip)
                            for i in range(self.depth)]
            self.output_map = LipschitzDense(self.event_size, name="dense_out", **lip)
            self.input_map = None if self.projection is None else LipschitzDense(
                self.projection, name="dense_in", **lip)

    def build(self, input_shape):
        shape = list(input_shape)
        if shape[-1] != self.event_size:
            raise ValueError(f"DenseNet built for {self.event_size} channels got input shape "
                             f"{shape}.")
        self.eta_raw = self.add_weight(
            name="eta_raw", shape=(self.depth, 2),
            initializer=keras.initializers.Constant(_SOFTPLUS_INV_ONE),
            trainable=self.learnable_concat)
        if self.input_map is not None:
            self.input_map.build(tuple(shape))
            shape[-1] = self.projection
        for linear, act in zip(self.linears, self.activations):
            linear.build(tuple(shape))
            out_shape = list(linear.compute_output_shape(tuple(shape)))
            act.build(tuple(out_shape))
            shape[-1] = shape[-1] + self.growth
        self.output_map.build(tuple(shape))
        self.built = True

    def normalized_eta(self):
        """``[depth, 2]`` tensor of ``(eta1_hat, eta2_hat)`` per layer (paper Fig. 10)."""
        eta = tf.nn.softplus(self.eta_raw)
        return eta / tf.norm(eta, axis=-1, keepdims=True)

    def call(self, x):
        eta = self.normalized_eta()
        h = x if self.input_map is None else self.input_map(x)
        for i, (linear, act) in enumerate(zip(self.linears, self.activations)):
            h = tf.concat([eta[i, 0] * h, eta[i, 1] * act(linear(h))], axis=-1)
        return self.output_map(h)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size, "depth": self.depth,
                "growth": self.growth, "activation": self.activation_name,
                "learnable_concat": self.learnable_concat, "coeff": self.coeff,
                "conv": self.conv, "kernel_size": self.kernel_size,
                "projection": self.projection,
                "lipschitz_kwargs": dict(self.lipschitz_kwargs)}
