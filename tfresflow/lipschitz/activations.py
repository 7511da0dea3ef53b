"""1-Lipschitz activations for invertible residual networks (Keras 3 layers).

A residual block ``x + g(x)`` is invertible when ``Lip(g) < 1``; with normalised linear layers
this needs activations with ``sup |phi'| <= 1`` (for ``CLipSwish``, which is not elementwise:
``sup ||J_phi||_2 <= 1``).

* :class:`LipSwish` (Chen et al., 2019, Residual Flows, eq. (9)):
  ``x sigmoid(beta x) / 1.1`` with ``beta = softplus(b) > 0``. With ``t = beta x`` the derivative
  is ``s(t) (1 + t s(-t)) / 1.1`` (``s`` = sigmoid), independent of ``beta`` up to the shift of
  ``t``; its maximum 1.0998.../1.1 < 1 holds for every ``beta``. Non-monotone and smooth, so its
  second derivative does not vanish where ``|phi'|`` is near 1 (no gradient saturation;
  ``benchmarks/signal_preservation.py`` measures the signal preservation of both activations).
  As in the reference code the raw parameter ``b`` starts at 0.5 (``beta = softplus(0.5) = 0.974``).
* :class:`CLipSwish` (Perugachi-Diaz et al., 2021, i-DenseNets, eq. (11), App. A.3):
  ``Phi(x) = [LipSwish(x), LipSwish(-x)] / L`` concatenated on the last (channel) axis, so the
  output has twice the channels. Its Jacobian is ``2d x d`` with one non-zero per row, so
  ``||J_Phi(x)||_2 = max_j sqrt(phi'(x_j)^2 + phi'(-x_j)^2)`` (eq. (39)) and
  ``L = sup_t sqrt(phi'(t)^2 + phi'(-t)^2) ~= 1.00397`` (the paper's "1.004"), again the same
  for every ``beta`` (the substitution ``t = beta x`` only rescales the abscissa).
  :func:`clipswish_lipschitz_constant` computes ``L`` numerically; it is not hard-coded.
  Only l2-Lipschitz: in the l1 norm its constant exceeds 1, so it is rejected for mixed norms.
* :class:`LeakyLSwish` (i-DenseNets, eq. (14)): ``a x + (1 - a) LipSwish(x)`` with
  ``a = sigmoid(alpha)``, ``alpha`` initialised at -3; a convex combination of 1-Lipschitz maps.
* :class:`ELU`, :class:`Softplus`, :class:`Identity`: ``sup |phi'| = 1``.

Every class has ``output_multiplier`` (2 for CLipSwish, 1 otherwise) and ``elementwise``
(False only for CLipSwish), so networks can size their layers. :func:`get` builds one by name.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (LipSwish, eq. 9).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (CLipSwish, LeakyLSwish; eqs. 11, 14, App. A.3).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from tfresflow.registry import Registry

LIPSWISH_DIVISOR = 1.1   # Residual Flows eq. (9): max_t d/dt[t sigmoid(t)] = 1.0998...


def _swish_slope(t):
    """``d/dt [t sigmoid(t)] = s(t) (1 + t s(-t))`` in float64 numpy."""
    s = 1.0 / (1.0 + np.exp(-t))
    return s * (1.0 + t * (1.0 - s))


def _golden_max(fn, low, high, iterations=200):
    """Maximiser of a unimodal ``fn`` on ``[low, high]`` by golden-section search."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    for _ in range(iterations):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if fn(c) > fn(d):
            b = d
        else:
            a = c
    return 0.5 * (a + b)


_CLIPSWISH_CONSTANT = None


def clipswish_lipschitz_constant():
    """``Lip(Phi) = sup_t sqrt(phi'(t)^2 + phi'(-t)^2)``, ``phi = LipSwish`` (i-DenseNets (39)).

    Independent of ``beta`` (``phi'(x) = g(beta x)/1.1`` for a fixed function ``g``), so it is
    computed once with ``beta = 1``: a dense grid locates the maximum (the function is even in
    ``t``), golden-section search refines it to float64 precision.
    """
    global _CLIPSWISH_CONSTANT
    if _CLIPSWISH_CONSTANT is None:
        def norm(t):
            return np.sqrt(_swish_slope(t) ** 2 + _swish_slope(-t) ** 2) / LIPSWISH_DIVISOR

        grid = np.linspace(0.0, 40.0, 400001)
        i = int(np.argmax(norm(grid)))
        step = grid[1] - grid[0]
        t_star = _golden_max(norm, grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)] + step)
        _CLIPSWISH_CONSTANT = float(max(norm(t_star), norm(grid[i])))
    return _CLIPSWISH_CONSTANT


class LipschitzActivation(keras.layers.Layer):
    """Base class: an activation with Lipschitz constant at most 1 (l2; see ``elementwise``)."""

    #: How many output channels per input channel.
    output_multiplier = 1
    #: True if the map acts coordinate-wise with ``|phi'| <= 1`` (1-Lipschitz in every l_p norm).
    elementwise = True

    def compute_output_shape(self, input_shape):
        last = input_shape[-1]
        return tuple(input_shape[:-1]) + (None if last is None else last * self.output_multiplier,)


def _softplus_inverse(y):
    return math.log(math.expm1(y))


class _BetaMixin:
    """The learnable ``beta = softplus(b)`` of LipSwish-type activations."""

    def _init_beta(self, beta_raw_init, per_channel, trainable_beta):
        self.beta_raw_init = float(beta_raw_init)
        self.per_channel = bool(per_channel)
        self.trainable_beta = bool(trainable_beta)

    def _build_beta(self, input_shape):
        shape = ()
        if self.per_channel:
            if input_shape[-1] is None:
                raise ValueError(f"{type(self).__name__}(per_channel=True) needs a known last "
                                 f"input dimension, got input shape {input_shape}.")
            shape = (int(input_shape[-1]),)
        self.beta_raw = self.add_weight(
            shape=shape, initializer=keras.initializers.Constant(self.beta_raw_init),
            trainable=self.trainable_beta, name="beta_raw")

    @property
    def beta(self):
        """``softplus(beta_raw) > 0``."""
        return tf.nn.softplus(tf.convert_to_tensor(self.beta_raw))

    def _lipswish(self, x):
        beta = tf.cast(self.beta, x.dtype)
        return x * tf.sigmoid(beta * x) / LIPSWISH_DIVISOR

    def _beta_config(self):
        return {"beta_raw_init": self.beta_raw_init, "per_channel": self.per_channel,
                "trainable_beta": self.trainable_beta}


@keras.saving.register_keras_serializable(package="tfresflow")
class LipSwish(_BetaMixin, LipschitzActivation):
    """``LipSwish(x) = x sigmoid(beta x) / 1.1``, ``beta = softplus(beta_raw)`` (scalar/per channel).

    Args:
      beta_raw_init: initial raw parameter (0.5 as in the reference: ``beta = 0.974``).
      per_channel: one ``beta`` per channel (last axis) instead of a scalar.
      trainable_beta: learn ``beta``.
    """

    def __init__(self, beta_raw_init=0.5, per_channel=False, trainable_beta=True, **kwargs):
        super().__init__(**kwargs)
        self._init_beta(beta_raw_init, per_channel, trainable_beta)

    def build(self, input_shape):
        self._build_beta(input_shape)
        self.built = True

    def call(self, inputs):
        return self._lipswish(inputs)

    def get_config(self):
        return {**super().get_config(), **self._beta_config()}


@keras.saving.register_keras_serializable(package="tfresflow")
class CLipSwish(_BetaMixin, LipschitzActivation):
    """``CLipSwish(x) = [LipSwish(x), LipSwish(-x)] / L`` on the last axis (2x channels).

    ``L`` = :func:`clipswish_lipschitz_constant` (~1.00397); one ``beta`` shared by both halves.
    Arguments as :class:`LipSwish`.
    """

    output_multiplier = 2
    elementwise = False

    def __init__(self, beta_raw_init=0.5, per_channel=False, trainable_beta=True, **kwargs):
        super().__init__(**kwargs)
        self._init_beta(beta_raw_init, per_channel, trainable_beta)
        self.lipschitz_constant = clipswish_lipschitz_constant()

    def build(self, input_shape):
        self._build_beta(input_shape)
        self.built = True

    def call(self, inputs):
        both = tf.concat([self._lipswish(inputs), self._lipswish(-inputs)], axis=-1)
        return both / self.lipschitz_constant

    def get_config(self):
        return {**super().get_config(), **self._beta_config()}


@keras.saving.register_keras_serializable(package="tfresflow")
class LeakyLSwish(_BetaMixin, LipschitzActivation):
    """``a x + (1 - a) LipSwish(x)`` with ``a = sigmoid(alpha_raw)`` (i-DenseNets eq. (14)).

    Args:
      alpha_raw_init: initial ``alpha_raw`` (-3: ``a = sigmoid(-3) = 0.047``, close to LipSwish).
      beta_raw_init, per_channel, trainable_beta: as :class:`LipSwish` (``alpha`` follows
        ``per_channel`` too).
    """

    def __init__(self, alpha_raw_init=-3.0, beta_raw_init=0.5, per_channel=False,
                 trainable_beta=True, **kwargs):
        super().__init__(**kwargs)
        self._init_beta(beta_raw_init, per_channel, trainable_beta)
        self.alpha_raw_init = float(alpha_raw_init)

    def build(self, input_shape):
        self._build_beta(input_shape)
        self.alpha_raw = self.add_weight(
            shape=self.beta_raw.shape, trainable=True, name="alpha_raw",
            initializer=keras.initializers.Constant(self.alpha_raw_init))
        self.built = True

    @property
    def alpha(self):
        """``sigmoid(alpha_raw)`` in (0, 1)."""
        return tf.sigmoid(tf.convert_to_tensor(self.alpha_raw))

    def call(self, inputs):
        alpha = tf.cast(self.alpha, inputs.dtype)
        return alpha * inputs + (1.0 - alpha) * self._lipswish(inputs)

    def get_config(self):
        return {**super().get_config(), **self._beta_config(),
                "alpha_raw_init": self.alpha_raw_init}


@keras.saving.register_keras_serializable(package="tfresflow")
class ELU(LipschitzActivation):
    """``ELU(x) = x`` for ``x > 0``, ``exp(x) - 1`` otherwise; ``0 < ELU' <= 1``."""

    def call(self, inputs):
        return tf.nn.elu(inputs)


@keras.saving.register_keras_serializable(package="tfresflow")
class Softplus(LipschitzActivation):
    """``log(1 + exp(x))``; ``0 < softplus' = sigmoid < 1``."""

    def call(self, inputs):
        return tf.nn.softplus(inputs)


@keras.saving.register_keras_serializable(package="tfresflow")
class Identity(LipschitzActivation):
    """``x`` (Lipschitz constant exactly 1)."""

    def call(self, inputs):
        return tf.identity(inputs)


#: Lipschitz activation classes by (case-insensitive) name.
ACTIVATIONS = Registry("Lipschitz activation", case_sensitive=False)
for _name, _cls in (("lipswish", LipSwish), ("clipswish", CLipSwish),
                    ("leakylswish", LeakyLSwish), ("elu", ELU), ("softplus", Softplus),
                    ("identity", Identity)):
    ACTIVATIONS.register(_name, _cls)


def get(identifier, **kwargs):
    """A new activation layer from a name, a serialised config, or an existing activation.

    Args:
      identifier: one of ``"lipswish"``, ``"clipswish"``, ``"leakylswish"``, ``"elu"``,
        ``"softplus"``, ``"identity"`` (case-insensitive); a dict from
        ``keras.saving.serialize_keras_object``; or a :class:`LipschitzActivation` (a fresh copy
        with its own weights is returned, so one activation per position never shares ``beta``).
      **kwargs: constructor arguments (names only).

    Raises:
      ValueError: for an unknown name or an object that is not a Lipschitz activation.
    """
    if isinstance(identifier, LipschitzActivation):
        return type(identifier).from_config({**identifier.get_config(), "name": None, **kwargs})
    if isinstance(identifier, dict):
        layer = keras.saving.deserialize_keras_object(identifier)
        if not isinstance(layer, LipschitzActivation):
            raise ValueError(f"`activation` config does not describe a Lipschitz activation: "
                             f"{identifier!r}.")
        return layer
    if isinstance(identifier, str):
        return ACTIVATIONS.lookup(identifier)(**kwargs)
    raise ValueError(f"Unknown Lipschitz activation {identifier!r}; expected one of "
                     f"{sorted(ACTIVATIONS)} (or a LipschitzActivation instance/config).")


def serialize(activation):
    """A JSON-safe identifier for :func:`get`: the name string, or a Keras config dict."""
    if isinstance(activation, str):
        return activation
    return keras.saving.serialize_keras_object(activation)
