"""``BatchedMLP``: C independent MLPs evaluated in one batched matmul per layer.

The conditioner of :class:`tfresflow.bijectors.BatchedAffineCoupling` (the batched components
of a gradient-boosted flow, Giaquinto & Banerjee, 2020): weights of C networks stacked along a
leading axis, so a vectorised ``log_prob`` over all components costs one pass.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896.
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803.
"""
import keras
import numpy as np
import tensorflow as tf

from tfresflow.validation import check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class BatchedMLP(keras.layers.Layer):
    """C independent MLPs ``Dense -> act -> ... -> Dense(out_units)`` held as stacked weights.

    Kernels have shape ``[C, in, out]`` and biases ``[C, out]``. ``call(a)`` takes
    ``a`` of shape ``[..., C or 1, in]`` and returns ``[..., C, out]`` (network c applied to
    slice c; a singleton component axis is broadcast) in one batched matmul per layer.
    :meth:`call_component` applies network ``c`` alone to ``[m, in]`` rows. Hidden layers use
    per-network Glorot-uniform initialisation; the output layer starts at zero (identity
    couplings), as :class:`tfresflow.nets.mlp.MLP`.
    """

    def __init__(self, num_components, out_units, hidden_units=(64, 64), activation="tanh",
                 zero_init_output=True, **kwargs):
        super().__init__(**kwargs)
        self.num_components = check_positive_int(num_components, "num_components")
        self.out_units = check_positive_int(out_units, "out_units")
        self.hidden_units = tuple(check_positive_int(h, "hidden_units") for h in hidden_units)
        self.activation = activation
        self._act = keras.activations.get(activation)
        self.zero_init_output = bool(zero_init_output)

    def build(self, input_shape):
        sizes = [int(input_shape[-1]), *self.hidden_units, self.out_units]
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
            init = ("zeros" if last and self.zero_init_output
                    else keras.initializers.RandomUniform(-limit, limit))
            self.kernels.append(self.add_weight(
                shape=(self.num_components, fan_in, fan_out), initializer=init,
                name=f"kernel_{i}"))
            self.biases.append(self.add_weight(
                shape=(self.num_components, fan_out), initializer="zeros", name=f"bias_{i}"))
        self.built = True

    def call(self, a):
        # Component axis first, so each layer is C GEMMs of M rows:
        # [..., K, in] -> [K, M, in] (K = C or 1) @ [C, in, out] -> [C, M, out].
        shape = tf.shape(a)
        h = tf.transpose(tf.reshape(a, [-1, shape[-2], shape[-1]]), [1, 0, 2])
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            h = tf.matmul(h, w) + b[:, tf.newaxis, :]
            if i < len(self.kernels) - 1:
                h = self._act(h)
        h = tf.transpose(h, [1, 0, 2])
        return tf.reshape(h, tf.concat([shape[:-2], [self.num_components, self.out_units]], 0))

    def call_component(self, a, c):
        """Network ``c`` (a Python int) applied to rows ``a`` of shape ``[m, in]``."""
        h = a
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            h = tf.matmul(h, w[c]) + b[c]
            if i < len(self.kernels) - 1:
                h = self._act(h)
        return h

    def set_from_mlps(self, mlps):
        """Copies the weights of C built ``tfresflow.nets.mlp.MLP`` layers (same sizes)."""
        if len(mlps) != self.num_components:
            raise ValueError(f"Expected {self.num_components} MLPs, got {len(mlps)}.")
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            dense = [m.hidden_layers[i] if i < len(m.hidden_layers) else m.output_layer
                     for m in mlps]
            w.assign(np.stack([keras.ops.convert_to_numpy(d.kernel) for d in dense]))
            b.assign(np.stack([keras.ops.convert_to_numpy(d.bias) for d in dense]))

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components,
                "out_units": self.out_units, "hidden_units": list(self.hidden_units),
                "activation": self.activation, "zero_init_output": self.zero_init_output}
