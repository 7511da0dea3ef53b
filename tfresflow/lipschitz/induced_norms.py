"""Induced mixed norms ``||W||_{p->q}`` for Lipschitz layers (Chen et al., 2019, §3.4).

By sub-multiplicativity, a network ``g = W_L o phi o ... o phi o W_1`` with activations that are
1-Lipschitz coordinate-wise (``|phi'| <= 1``) satisfies, for any orders ``p_0, ..., p_{L-1}`` in
[1, inf] (Residual Flows, eq. (11)),

    ||J_g||_{p_0} <= ||W_1||_{p_0 -> p_1} ||W_2||_{p_1 -> p_2} ... ||W_L||_{p_{L-1} -> p_0},

so the residual block ``x + g(x)`` is a contraction in the fixed norm ``||.||_{p_0}`` (Banach's
fixed point theorem needs the same norm on both sides). :func:`chain_orders` builds such
domain/codomain lists.

Exact closed forms (Tropp, 2004), for an operator ``x -> A x`` with columns ``a_j`` and rows
``r_i``:

* ``||A||_{1 -> q} = max_j ||a_j||_q`` (the unit l1 ball is the convex hull of the ``+-e_j``);
  ``1 -> 1`` is the maximum absolute column sum;
* ``||A||_{p -> inf} = max_i ||r_i||_{p*}`` (Hoelder, ``1/p + 1/p* = 1``);
  ``inf -> inf`` is the maximum absolute row sum;
* ``||A||_{2 -> 2}`` is the spectral norm (power iteration, the default and fast path).

Every other pair uses the generalised power iteration of :mod:`.power_iteration` (a lower bound
that may stop at a local maximum; layers therefore use several restarts at build).

Learnable orders (:class:`NormOrder`) are squashed into (1, 5) as ``p = 1 + 4 sigmoid(s - log 3)``
(``p = 2`` at ``s = 0``; the reference uses a similar asymmetric squash onto (1, 5)).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 3.4, eq. 11).
  Tropp (2004), "Topics in Sparse Approximation", PhD thesis, The University of Texas at Austin.
"""
import math

import keras
import tensorflow as tf

from tfresflow.lipschitz.power_iteration import dual_order, is_python_order, lp_norm

_ORDER_LOW, _ORDER_HIGH = 1.0, 5.0
_OFFSET = math.log(3.0)      # makes p(0) = 2


def validate_order(order, name):
    """Returns ``order`` as a float in [1, inf] (``"inf"`` accepted) or a :class:`NormOrder`.

    Raises:
      ValueError: naming ``name`` if the order is not a number in [1, inf] or a NormOrder.
    """
    if isinstance(order, NormOrder):
        return order
    if isinstance(order, dict):
        return keras.saving.deserialize_keras_object(order)
    if isinstance(order, str) and order.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = float(order)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(order, bool) or not value >= 1.0:
        raise ValueError(
            f"`{name}` must be a norm order in [1, inf] (a number, 'inf') or a NormOrder, "
            f"got {order!r}.")
    return value


def order_to_config(order):
    """JSON-safe form of an order: a float, the string ``"inf"``, or a serialised NormOrder."""
    if isinstance(order, NormOrder):
        return keras.saving.serialize_keras_object(order)
    return "inf" if math.isinf(order) else float(order)


def order_value(order):
    """The order as a Python float (fixed) or a scalar tensor (learnable)."""
    return order.order() if isinstance(order, NormOrder) else order


def has_closed_form(domain, codomain):
    """True if ``||.||_{domain -> codomain}`` is computed exactly by :func:`kernel_induced_norm`."""
    return (is_python_order(domain) and is_python_order(codomain)
            and (domain == 1 or math.isinf(codomain)))


def kernel_induced_norm(kernel, domain, codomain):
    """Exact ``||x -> x K||_{domain -> codomain}`` for a Keras kernel ``K`` of shape [n_in, n_out].

    The operator is ``A = K^T``: its columns are the rows of ``K``. Only the closed-form pairs of
    :func:`has_closed_form` are accepted; the result is differentiable in ``K``.

    Raises:
      ValueError: for a pair without closed form.
    """
    if not has_closed_form(domain, codomain):
        raise ValueError(f"No closed form for the induced norm {domain} -> {codomain}; "
                         "use power iteration.")
    if domain == 1:                                     # max_j ||A[:, j]||_q = max_j ||K[j]||_q
        return tf.reduce_max(lp_norm(kernel, codomain))
    return tf.reduce_max(lp_norm(tf.transpose(kernel), dual_order(domain)))   # max_i ||A[i]||_{p*}


def chain_orders(orders):
    """Domains and codomains that chain the normed spaces ``orders = [p_0, ..., p_{L-1}]``.

    Layer ``i`` maps ``p_i -> p_{i+1}`` and the last layer maps ``p_{L-1} -> p_0``, as eq. (11)
    requires (codomain of layer i = domain of layer i+1, last codomain = first domain).

    Returns:
      ``(domains, codomains)``, two lists of length ``L``.
    """
    orders = list(orders)
    if not orders:
        raise ValueError("`orders` must contain at least one norm order.")
    return orders, orders[1:] + orders[:1]


def check_chained(domains, codomains):
    """Raises ValueError unless the orders satisfy the chaining constraints of eq. (11)."""
    if len(domains) != len(codomains) or not domains:
        raise ValueError(f"`domains` and `codomains` must be non-empty lists of equal length, "
                         f"got {len(domains)} and {len(codomains)}.")
    for i in range(len(domains)):
        nxt = domains[(i + 1) % len(domains)]
        if codomains[i] is not nxt and codomains[i] != nxt:
            where = ("the first layer's domain" if i == len(domains) - 1
                     else f"the domain of layer {i + 1}")
            raise ValueError(
                f"Induced norms must chain (Residual Flows eq. (11)): the codomain of layer {i} "
                f"({codomains[i]!r}) must equal {where} ({nxt!r}); use "
                "`tfresflow.lipschitz.chain_orders`.")


@keras.saving.register_keras_serializable(package="tfresflow")
class NormOrder(keras.layers.Layer):
    """A (learnable) norm order ``p = 1 + 4 sigmoid(s - log 3)`` in (1, 5), shared by layers.

    Pass the same instance as the codomain of one :class:`LipschitzDense` and the domain of the
    next. Gradients reach ``s`` through the one differentiable power step that a layer with
    learnable orders takes in ``call`` (the paper "backpropagates through the modified power
    method"), so the training loss itself pushes the orders towards smaller operator norms.
    """

    def __init__(self, initial_order=2.0, trainable=True, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        initial_order = float(initial_order)
        if not _ORDER_LOW < initial_order < _ORDER_HIGH:
            raise ValueError(f"`initial_order` must lie in ({_ORDER_LOW}, {_ORDER_HIGH}), "
                             f"got {initial_order!r}.")
        self.initial_order = initial_order
        frac = (initial_order - _ORDER_LOW) / (_ORDER_HIGH - _ORDER_LOW)
        raw = math.log(frac / (1.0 - frac)) + _OFFSET
        self.raw_order = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(raw), trainable=trainable,
            name="raw_order")
        self.built = True

    def order(self):
        """The current order, a scalar tensor in (1, 5)."""
        return _ORDER_LOW + (_ORDER_HIGH - _ORDER_LOW) * tf.sigmoid(
            tf.convert_to_tensor(self.raw_order) - _OFFSET)

    def call(self, inputs=None):
        return self.order()

    def get_config(self):
        return {**super().get_config(), "initial_order": self.initial_order}
