"""``LipschitzDense``: a dense layer with ``||W_eff||_{p->q} <= coeff``.

``y = x W_eff + b`` with ``W_eff = W / max(1, sigma (1 + margin) / coeff)`` (see
:mod:`tfresflow.lipschitz.base` for the normalisation, its gradient and when power iteration
runs). The norm is the spectral norm by default (``domain = codomain = 2``, Behrmann et al.,
2019); other orders give the induced mixed norms of Residual Flows (Chen et al., 2019, §3.4,
eq. (11)): exact for ``domain = 1`` or ``codomain = inf`` (which include ``1 -> 1``, the maximum
absolute column sum, and ``inf -> inf``, the maximum absolute row sum), generalised power
iteration otherwise. Orders may be :class:`NormOrder` instances (learnable, shared with the
neighbouring layer; build chains with :func:`tfresflow.lipschitz.chain_orders`).

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 3.4, eq. 11).
  Miyato, Kataoka, Koyama & Yoshida (2018), "Spectral Normalization for Generative Adversarial
    Networks", ICLR, arXiv:1802.05957.
"""
import keras
import tensorflow as tf

from tfresflow.lipschitz.base import LipschitzLayer
from tfresflow.lipschitz.induced_norms import (has_closed_form, kernel_induced_norm,
                                               order_to_config, order_value, validate_order)
from tfresflow.validation import check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class LipschitzDense(LipschitzLayer):
    """Dense layer whose operator norm (``domain -> codomain``) is at most ``coeff``.

    Args:
      units: output size.
      coeff: Lipschitz coefficient in (0, 1).
      use_bias, kernel_initializer, bias_initializer: as ``keras.layers.Dense``.
      domain, codomain: norm orders in [1, inf] (``"inf"`` accepted) or :class:`NormOrder`.
      n_restarts: power-iteration restarts at build (default 1 for the spectral norm, 32 for
        mixed norms without closed form, where the iteration may stop at a local maximum:
        a few restarts can miss the maximum by several percent, more restarts make a miss
        rarer and smaller; ``tests/test_lipschitz.py`` checks the default against brute force).
        Later updates warm-start from the best one.
      margin, atol, rtol, max_iterations, seed: see :class:`LipschitzLayer`.
    """

    def __init__(self, units, coeff=0.97, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", domain=2.0, codomain=2.0, n_restarts=None, **kwargs):
        super().__init__(coeff=coeff, **kwargs)
        self.units = check_positive_int(units, "units")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.domain = validate_order(domain, "domain")
        self.codomain = validate_order(codomain, "codomain")
        self.n_restarts = (None if n_restarts is None
                           else check_positive_int(n_restarts, "n_restarts"))

    def _norm_orders(self):
        return order_value(self.domain), order_value(self.codomain)

    def _build_orders(self):
        return tuple(getattr(o, "initial_order", o) for o in (self.domain, self.codomain))

    def _exact_norm(self, kernel):
        if has_closed_form(self.domain, self.codomain):
            return kernel_induced_norm(kernel, self.domain, self.codomain)
        return None

    def _matrix(self, kernel):
        return kernel

    def _operator(self, kernel):
        return (lambda v: tf.matmul(v, kernel),
                lambda u: tf.matmul(u, kernel, transpose_b=True))

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{type(self).__name__} needs a known last input dimension, "
                             f"got input shape {input_shape}.")
        in_dim = int(in_dim)
        kernel_value = self._add_kernel((in_dim, self.units), self.kernel_initializer)
        self.bias = (self.add_weight(shape=(self.units,), initializer=self.bias_initializer,
                                     name="bias") if self.use_bias else None)
        restarts = self.n_restarts
        if restarts is None:
            spectral = all(isinstance(o, float) and o == 2.0 for o in (self.domain, self.codomain))
            restarts = 1 if spectral else 32
        self._build_normalization(kernel_value, in_dim, self.units, restarts)
        self.built = True

    def call(self, inputs):
        kernel = tf.convert_to_tensor(self.kernel)
        outputs = keras.ops.matmul(inputs, kernel) / self.lipschitz_scale(kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "domain": order_to_config(self.domain),
                "codomain": order_to_config(self.codomain), "n_restarts": self.n_restarts}
