"""``Scaled``: a Keras initializer multiplied by a constant (near-identity residual branches).

Residual Flows' reference code initialises the last linear layer of every residual branch with
its usual weights divided by 1000 (``zero_init``), so each block starts as ``x + g(x)`` with
``g ~ 0``: a deep stack then begins close to the identity map, with log-det close to 0, and
training starts from the base distribution instead of from a random 100-fold composition.
``Scaled(initializer, 1e-3)`` is that initialisation for any Keras initializer.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative
    Modeling", NeurIPS, arXiv:1906.02735 (the reference implementation's ``zero_init``).
"""
import keras

from tfresflow.validation import check_number


@keras.saving.register_keras_serializable(package="tfresflow")
class Scaled(keras.initializers.Initializer):
    """``scale * initializer(shape)``.

    Args:
      initializer: any Keras initializer identifier (``"glorot_uniform"``, a config, ...).
      scale: the positive factor, e.g. ``1e-3`` for the reference's near-zero last layer.
    """

    def __init__(self, initializer="glorot_uniform", scale=1e-3):
        self.initializer = keras.initializers.get(initializer)
        self.scale = check_number(scale, "scale", 0.0, low_open=True)

    def __call__(self, shape, dtype=None):
        return self.scale * self.initializer(shape, dtype=dtype)

    def get_config(self):
        return {"initializer": keras.initializers.serialize(self.initializer),
                "scale": self.scale}
