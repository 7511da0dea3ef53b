"""One traced block function shared by every residual block of the same structure.

Two functions are shared this way: the log-det evaluation (:func:`estimate`, the training and
density direction) and the fixed-point inverse (:func:`fixed_point_inverse`, sampling).

A deep flow repeats one block (``z = x + g(x)`` with its log-det estimate) N times. Traced
inline, each block adds its own copy of ``g``, the estimator's while-loop, its custom gradients
and their second-order backward graph to the train step, so tracing and graph optimisation
grow with N (``benchmarks/deep_trace.py``). Here the block's evaluation

    (g(x), log_det) = estimator(g, x, training, seed)

is one ``tf.function`` per block *structure* (the net's class and config without its name, the
shapes and dtypes of its variables, the estimator's config, ``training``), called with the
block's weights as *tensors* (``tf.convert_to_tensor(variable)``, read in the caller's graph, so
gradients flow back to the Keras variables through those reads). Inside, the net runs through
``keras.Layer.stateless_call`` on a *template* net of that structure, so the traced graph holds
no variable of any block and serves them all. The estimator is used unchanged (its while-loop,
Neumann surrogate and stateless seeds); the shared function owns a copy of it. The residual
function it hands the estimator declares its weight tensors (``g.explicit_weights``), so
backward-in-forward, whose ``tf.custom_gradient`` returns gradients only for its explicit inputs
and the variables it reads, takes them as explicit inputs
(:mod:`tfresflow.logdet.backward_in_forward`).

The function is marked ``_noinline`` by default: otherwise Grappler's function optimiser inlines
every call back into one graph and optimises it, which moves the cost from tracing to the first
run (``reference-notes/deep-trace-probe.md``). ``set_inline(True)`` restores inlining.

Used only while building a graph (inside ``tf.function``, e.g. Keras ``fit``); eager calls
evaluate inline. Not used (inline evaluation) for:

* nets that are not Keras layers, or whose config cannot be serialised;
* nets with no variables (nothing to share).

A traced function that captured a variable (a read escaping ``stateless_call``) would evaluate
every block with the template's weights; this is checked after each trace, and such a
structure falls back to inline evaluation with a warning.
"""
import json
import threading
import warnings
import weakref

import keras
import tensorflow as tf

from tfresflow.logdet.base import deserialize_estimator, resolve_seed, serialize_estimator
from tfresflow.solvers import fixed_point as solvers_fixed_point

_SETTINGS = {"enabled": True, "inline": False}
_ENTRIES = {}
_LOCK = threading.Lock()


def set_enabled(enabled):
    """Turns shared block functions on (default) or off (every block traced inline)."""
    _SETTINGS["enabled"] = bool(enabled)


def enabled():
    return _SETTINGS["enabled"]


def set_inline(inline):
    """``True`` lets Grappler inline the shared function (default ``False``: ``_noinline``)."""
    _SETTINGS["inline"] = bool(inline)
    clear()


def clear():
    """Forgets every shared function (the next graph traces them again)."""
    with _LOCK:
        _ENTRIES.clear()


def trace_count(key=None):
    """Number of traces of the shared functions (of one structure ``key``, or all)."""
    entries = [_ENTRIES[key]] if key is not None else list(_ENTRIES.values())
    return sum(e.traces for e in entries)


def _net_key(net):
    """What blocks must share to share a function: the net's class, config, weight shapes."""
    if not isinstance(net, keras.layers.Layer) or not net.built or not net.variables:
        return None
    try:
        config = dict(net.get_config())
        config.pop("name", None)
        config = json.dumps(config, sort_keys=True)
    except Exception:  # noqa: BLE001 - an unserialisable net is simply traced inline
        return None
    shapes = tuple((tuple(v.shape), str(v.dtype)) for v in net.trainable_variables)
    fixed = tuple((tuple(v.shape), str(v.dtype)) for v in net.non_trainable_variables)
    return (type(net).__module__, type(net).__qualname__, config, shapes, fixed)


def structure_key(net, estimator, training):
    """The key under which blocks share one log-det function, or ``None`` when they cannot."""
    net_key = _net_key(net)
    if net_key is None:
        return None
    try:
        est = json.dumps(serialize_estimator(estimator), sort_keys=True)
    except Exception:  # noqa: BLE001
        return None
    return ("estimate", *net_key, est, bool(training))


def inverse_key(net, options):
    """The key under which blocks share one fixed-point inverse, or ``None``."""
    net_key = _net_key(net)
    if net_key is None:
        return None
    return ("inverse", *net_key, json.dumps(options, sort_keys=True))


class _Entry:
    """The shared function of one key: a template net, the body, the ``tf.function``.

    ``body(g, *args)`` is what runs inside, ``g`` the template net evaluated on the weight
    tensors the function is called with (``g.explicit_weights``: those tensors).
    """

    def __init__(self, net, body, inline):
        self.template = weakref.ref(net)
        self.body = body
        self.traces = 0
        self.captures_variables = False
        attributes = None if inline else {"_noinline": True}
        self.function = tf.function(self._run, reduce_retracing=True, autograph=False,
                                    experimental_attributes=attributes)

    def _run(self, args, trainable, non_trainable):
        self.traces += 1
        net = self.template()

        def g(inputs):
            return net.stateless_call(trainable, non_trainable, inputs)[0]

        g.explicit_weights = list(trainable)
        return self.body(g, *args)

    def __call__(self, net, args):
        trainable = [tf.convert_to_tensor(v) for v in net.trainable_variables]
        non_trainable = [tf.convert_to_tensor(v) for v in net.non_trainable_variables]
        traces = self.traces
        concrete = self.function.get_concrete_function(args, trainable, non_trainable)
        if self.traces != traces and concrete.variables:
            self.captures_variables = True
            warnings.warn(
                f"{type(net).__name__}: the shared block function read variables outside "
                "`stateless_call`; blocks of this structure are traced inline.", stacklevel=4)
            return None
        return self.function(args, trainable, non_trainable)


def _shared(key, net, make_body, args):
    """``body(net, *args)`` through the shared function of ``key``; ``None``: not shared."""
    if key is None or not _SETTINGS["enabled"] or tf.executing_eagerly():
        return None
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is None or entry.template() is None:
            entry = _Entry(net, make_body(), _SETTINGS["inline"])
            _ENTRIES[key] = entry
    if entry.captures_variables:
        return None
    return entry(net, tuple(args))


def estimate(net, estimator, x, training=False, seed=None):
    """``(g(x), log_det) = estimator(net, x, training, seed)``, through the shared function.

    Falls back to ``estimator(net, x, ...)`` (inline) in eager mode, when disabled, or for
    blocks that cannot share a function (see the module docstring).
    """
    training = bool(training)
    key = None
    if _SETTINGS["enabled"] and not tf.executing_eagerly():
        key = structure_key(net, estimator, training)

    def make_body():
        own = deserialize_estimator(serialize_estimator(estimator))

        def body(g, x, seed):
            return own(g, x, training=training, seed=seed)

        body.estimator = own
        return body

    result = _shared(key, net, make_body, (tf.convert_to_tensor(x), resolve_seed(seed)))
    if result is not None:
        return result
    return estimator(net, x, training=training, seed=seed)


def fixed_point_inverse(net, z, **options):
    """``x`` with ``x + net(x) = z`` (:func:`tfresflow.solvers.fixed_point.fixed_point_inverse`
    with ``options``), through one shared function per net structure and options.

    Gradients are those of the inline inverse: its implicit-function gradient transforms only
    the upstream gradient, and the weights' part flows through ``z - g(x*)`` as usual.
    """
    key = None
    if _SETTINGS["enabled"] and not tf.executing_eagerly():
        key = inverse_key(net, options)

    def make_body():
        return lambda g, z: solvers_fixed_point.fixed_point_inverse(g, z, **options)

    result = _shared(key, net, make_body, (tf.convert_to_tensor(z),))
    if result is not None:
        return result
    return solvers_fixed_point.fixed_point_inverse(net, z, **options)
