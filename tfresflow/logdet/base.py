"""The interface of log-determinant estimators for residual maps ``x -> x + g(x)``.

A residual block ``F(x) = x + g(x)`` with ``Lip(g) < 1`` is invertible and

    log |det J_F(x)| = log det(I + J_g(x)) = sum_{k>=1} (-1)^{k+1} tr(J_g(x)^k) / k

(Behrmann et al., 2019, "Invertible Residual Networks", eq. 3; Chen et al., 2019, "Residual
Flows", eq. 3). An estimator is called as

    gx, log_det = estimator(g, x, training=False, seed=None)

with ``x`` of shape ``[batch, *event_shape]`` (one batch axis) and returns ``gx = g(x)`` (so a
block evaluates ``g`` once per log-density) and ``log_det`` of shape ``[batch]``. Contract:

* gradients of ``gx`` flow as for a plain call of ``g``;
* the *value* of ``log_det`` is always the estimate of the log-determinant itself (exact,
  unbiased or biased, see :attr:`LogDetEstimator.is_exact` / :attr:`is_unbiased`), never a
  gradient surrogate; its gradient is the estimator's documented gradient;
* ``seed`` is a stateless seed (same seed, same value); ``None`` draws a fresh seed from
  TensorFlow's global (stateful) generator, so ``tf.random.set_seed`` makes unseeded runs
  repeatable;
* ``g`` must act on each example separately (no coupling across the batch, e.g. no batch
  normalisation in training mode): per-example log-dets and their gradients rely on it.

Estimators are small immutable configuration objects with ``get_config``/``from_config`` and a
registry (:func:`serialize_estimator`, :func:`deserialize_estimator`) so bijectors holding them
can be saved.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (eq. 3).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (eq. 3).
"""
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.registry import Registry

#: Log-det estimator classes by class name (for deserialisation).
ESTIMATORS = Registry("log-det estimator")


def register_estimator(cls):
    """Class decorator registering a :class:`LogDetEstimator` subclass for deserialisation."""
    return ESTIMATORS.register(cls)


def serialize_estimator(estimator):
    """``{"class_name": ..., "config": ...}`` description of a registered estimator."""
    name = type(estimator).__name__
    if ESTIMATORS.get(name) is not type(estimator):
        raise ValueError(f"Log-det estimator class {name} is not registered with "
                         "tfresflow.logdet.register_estimator.")
    return {"class_name": name, "config": estimator.get_config()}


def deserialize_estimator(config):
    """Inverse of :func:`serialize_estimator` (an estimator instance is returned unchanged)."""
    if isinstance(config, LogDetEstimator):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise TypeError(f"Expected a LogDetEstimator or its serialised dict, got {config!r}.")
    return ESTIMATORS.lookup(config["class_name"]).from_config(config.get("config", {}))


class LogDetEstimator:
    """Base class: estimates ``log det(I + J_g(x))`` per example (see the module docstring)."""

    #: The value is the exact log-determinant (up to floating point).
    is_exact = False
    #: The value is an unbiased estimate (exact estimators are unbiased too).
    is_unbiased = False

    @property
    def has_stochastic_log_det(self):
        """True when the value is random (depends on the seed)."""
        return not self.is_exact

    def __call__(self, g, x, training=False, seed=None):
        """Returns ``(g(x), log_det)``; ``x`` has shape ``[batch, *event_shape]``."""
        x = tf.convert_to_tensor(x)
        if x.shape.rank is not None and x.shape.rank < 2:
            raise ValueError("`x` must have shape [batch, *event_shape] (rank >= 2), "
                             f"got shape {x.shape}.")
        if not x.dtype.is_floating:
            raise ValueError(f"`x` must be a floating tensor, got dtype {x.dtype.name}.")
        return self._estimate(g, x, bool(training), resolve_seed(seed))

    def _estimate(self, g, x, training, seed):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self.get_config())))


def resolve_seed(seed):
    """A shape-[2] int32 seed; ``None`` draws one from TF's global stateful generator."""
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2 ** 31 - 1, dtype=tf.int32)
    return trf_random.as_seed(seed)


def event_axes(x):
    """The event axes (all but the first) of a ``[batch, *event_shape]`` tensor."""
    return list(range(1, x.shape.rank))


def event_size(x):
    """Static number of event dimensions ``D`` of a ``[batch, *event_shape]`` tensor."""
    dims = x.shape[1:]
    if not dims.is_fully_defined():
        raise ValueError(f"The event shape must be static, got {x.shape}.")
    return int(np.prod(dims.as_list()))

