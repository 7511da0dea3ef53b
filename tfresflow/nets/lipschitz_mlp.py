"""``LipschitzMLP``: a residual function ``g: R^D -> R^D`` with ``Lip(g) <= coeff``.

Pre-activation ordering as Residual Flows (Chen et al., 2019, App. E and the reference toy
model): ``act -> Lin_1 -> act -> Lin_2 -> ... -> act -> Lin_L``, the last layer mapping back to
``event_size``. Each linear layer is a :class:`tfresflow.lipschitz.LipschitzDense` normalised to
``coeff`` and every activation is 1-Lipschitz (:mod:`tfresflow.activations`), so by
sub-multiplicativity (eq. (10)/(11)) ``Lip(g) <= coeff^L <= coeff`` - in the l2 norm by default,
or in the induced norm ``||.||_{p_0}`` with mixed orders chained as eq. (11) requires
(``domains``/``codomains``, or ``learn_orders=True`` for learnable :class:`NormOrder` s).

With ``CLipSwish`` (twice the channels) each linear layer after an activation takes twice the
width as input; ``hidden_units`` are the linear layers' output sizes.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (eqs. 10-11, Appendix E).
"""
import math

import keras

from tfresflow.lipschitz import activations as lip_activations
from tfresflow.lipschitz import LipschitzDense, NormOrder, chain_orders, check_chained
from tfresflow.lipschitz.base import validate_coeff
from tfresflow.lipschitz.induced_norms import order_to_config, validate_order
from tfresflow.nets.initializers import Scaled
from tfresflow.validation import check_number, check_positive_int


class LipschitzStack(keras.layers.Layer):
    """Shared body of the Lipschitz nets: ``[act] -> lin -> act -> lin -> ... -> lin``.

    Subclasses set ``self.linears`` (a list of Lipschitz layers) before calling
    :meth:`_make_activations`, and implement :meth:`_check_input_shape`.
    """

    @staticmethod
    def _kernel_initializers(kernel_initializer, n_layers, output_init_scale):
        """One initializer per linear layer: the last one scaled by ``output_init_scale``."""
        base = keras.initializers.get(kernel_initializer)
        last = base if output_init_scale == 1.0 else Scaled(base, output_init_scale)
        return [base] * (n_layers - 1) + [last]

    def _make_activations(self, activation, preactivation):
        self.activation = lip_activations.serialize(activation)
        self.preactivation = bool(preactivation)
        n = len(self.linears) - (0 if self.preactivation else 1)
        self.activation_layers = [lip_activations.get(activation, dtype=self.dtype_policy)
                                  for _ in range(n)]
        self.output_multiplier = (self.activation_layers[0].output_multiplier
                                  if self.activation_layers else 1)

    def _pairs(self):
        acts = list(self.activation_layers)
        if not self.preactivation:
            acts = [None] + acts
        return list(zip(acts, self.linears))

    def _check_input_shape(self, input_shape):
        raise NotImplementedError

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        shape = tuple(input_shape)
        for act, linear in self._pairs():
            if act is not None:
                act.build(shape)
                shape = act.compute_output_shape(shape)
            linear.build(shape)
            shape = linear.compute_output_shape(shape)
        self.built = True

    def call(self, inputs):
        x = inputs
        for act, linear in self._pairs():
            if act is not None:
                x = act(x)
            x = linear(x)
        return x


@keras.saving.register_keras_serializable(package="tfresflow")
class LipschitzMLP(LipschitzStack):
    """Residual function ``g: [B, event_size] -> [B, event_size]`` with ``Lip(g) <= coeff``.

    Args:
      event_size: input and output dimension ``D``.
      hidden_units: output sizes of the hidden linear layers.
      activation: a name for :func:`tfresflow.activations.get` (``"lipswish"``, ...), a config
        dict or an activation instance (each position gets its own copy).
      coeff: Lipschitz coefficient of every linear layer, in (0, 1).
      domains, codomains: optional norm orders per linear layer (``L = len(hidden_units) + 1``).
        Given only ``domains`` (the orders of the spaces ``p_0 .. p_{L-1}``), the codomains are
        chained as eq. (11) (``codomain_i = domain_{i+1}``, last codomain = first domain); given
        both, they must chain. Non-l2 orders need an elementwise activation (not CLipSwish).
      learn_orders: make the space orders learnable :class:`NormOrder` s (initialised at
        ``domains`` or 2), shared between consecutive layers.
      preactivation: start with an activation (the paper's ordering); False drops the first one
        (the reference's ``--first-resblock`` variant).
      kernel_initializer: for every linear layer.
      output_init_scale: factor in (0, 1] on the last layer's initial kernel; ``1e-3`` is the
        reference implementation's near-zero start (``g(x) ~ 0``, see
        :class:`tfresflow.nets.initializers.Scaled`).
      lipschitz_kwargs: extra keyword arguments for every :class:`LipschitzDense` (``margin``,
        ``atol``, ``rtol``, ``max_iterations``, ``block_size``, ...).
    """

    def __init__(self, event_size, hidden_units=(128, 128), activation="lipswish", coeff=0.97,
                 domains=None, codomains=None, learn_orders=False, preactivation=True,
                 kernel_initializer="glorot_uniform", lipschitz_kwargs=None,
                 output_init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.event_size = check_positive_int(event_size, "event_size")
        self.hidden_units = tuple(check_positive_int(h, "hidden_units") for h in hidden_units)
        self.coeff = validate_coeff(coeff)
        self.learn_orders = bool(learn_orders)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.lipschitz_kwargs = dict(lipschitz_kwargs or {})
        n_layers = len(self.hidden_units) + 1
        self.output_init_scale = check_number(output_init_scale, "output_init_scale", 0.0, 1.0,
                                              low_open=True)
        initializers = self._kernel_initializers(self.kernel_initializer, n_layers,
                                                 self.output_init_scale)
        self.domains_config, self.codomains_config = domains, codomains
        layer_domains, layer_codomains = self._resolve_orders(domains, codomains, n_layers)
        widths = self.hidden_units + (self.event_size,)
        self.linears = [
            LipschitzDense(units, coeff=self.coeff, domain=dom, codomain=cod,
                           kernel_initializer=init, name=f"lipschitz_dense_{i}",
                           dtype=self.dtype_policy, **self.lipschitz_kwargs)
            for i, (units, dom, cod, init) in enumerate(zip(widths, layer_domains,
                                                            layer_codomains, initializers))]
        self._make_activations(activation, preactivation)
        spectral = all(isinstance(o, float) and o == 2.0
                       for o in list(layer_domains) + list(layer_codomains))
        if not spectral and not all(a.elementwise for a in self.activation_layers):
            raise ValueError(
                f"`activation` {self.activation!r} is only 1-Lipschitz in the l2 norm; induced "
                "mixed norms need an elementwise activation (e.g. 'lipswish').")

    def _resolve_orders(self, domains, codomains, n_layers):
        if domains is None and codomains is not None:
            raise ValueError("`codomains` needs `domains` too (the orders of the input spaces).")
        if domains is None:
            domains = [2.0] * n_layers
        domains = [validate_order(d, "domains") for d in domains]
        if len(domains) != n_layers:
            raise ValueError(f"`domains` needs one order per linear layer ({n_layers}), "
                             f"got {len(domains)}.")
        if codomains is not None:
            codomains = [validate_order(c, "codomains") for c in codomains]
            check_chained(domains, codomains)
        if self.learn_orders:
            if any(math.isinf(d) or not 1.0 < d < 5.0 for d in domains):
                raise ValueError("With `learn_orders=True`, `domains` are initial orders and must "
                                 f"lie in (1, 5), got {domains!r}.")
            self.norm_orders = [NormOrder(d, name=f"norm_order_{i}")
                                for i, d in enumerate(domains)]
            return chain_orders(self.norm_orders)
        if codomains is None:
            return chain_orders(domains)
        return domains, codomains

    def _check_input_shape(self, input_shape):
        if input_shape[-1] is not None and int(input_shape[-1]) != self.event_size:
            raise ValueError(f"{type(self).__name__}(event_size={self.event_size}) got inputs "
                             f"with last dimension {input_shape[-1]} (shape {input_shape}).")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.event_size,)

    def get_config(self):
        def orders(values):
            return None if values is None else [order_to_config(validate_order(v, "order"))
                                                 for v in values]
        return {**super().get_config(), "event_size": self.event_size,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "coeff": self.coeff, "domains": orders(self.domains_config),
                "codomains": orders(self.codomains_config), "learn_orders": self.learn_orders,
                "preactivation": self.preactivation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "lipschitz_kwargs": dict(self.lipschitz_kwargs),
                "output_init_scale": self.output_init_scale}
