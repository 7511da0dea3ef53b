"""A plain (unconstrained) multilayer perceptron, used as a coupling conditioner.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (coupling conditioner).
"""
import keras

from tfresflow.validation import check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class MLP(keras.layers.Layer):
    """``Dense -> act -> ... -> Dense(out_units)`` with a zero-initialised output layer.

    The zero output initialisation makes a freshly built coupling layer the identity map
    (Dinh et al., 2017, RealNVP; Kingma & Dhariwal, 2018, Glow), which stabilises the start of
    training of deep flows.
    """

    def __init__(self, out_units, hidden_units=(64, 64), activation="tanh",
                 zero_init_output=True, **kwargs):
        super().__init__(**kwargs)
        self.out_units = check_positive_int(out_units, "out_units")
        self.hidden_units = tuple(check_positive_int(h, "hidden_units") for h in hidden_units)
        self.activation = activation
        self.zero_init_output = bool(zero_init_output)
        self.hidden_layers = [keras.layers.Dense(h, activation=activation, name=f"dense_{i}")
                              for i, h in enumerate(self.hidden_units)]
        init = "zeros" if self.zero_init_output else "glorot_uniform"
        self.output_layer = keras.layers.Dense(self.out_units, kernel_initializer=init,
                                               name="dense_out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.output_layer.build(shape)
        self.built = True

    def call(self, x):
        for layer in self.hidden_layers:
            x = layer(x)
        return self.output_layer(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_units,)

    def get_config(self):
        return {**super().get_config(), "out_units": self.out_units,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "zero_init_output": self.zero_init_output}
