"""Serialising trees of bijectors (``tfb.Chain`` / ``tfb.Invert`` of tfresflow and TFP steps).

TFP bijectors are not Keras objects, so ``FlowModel.get_config`` stores the flow as a nested
dict:

* ``{"class_name": "Chain", "name": ..., "bijectors": [...]}`` and
  ``{"class_name": "Invert", "name": ..., "bijector": ...}`` for the inner nodes;
* ``{"class_name": <registered tfresflow bijector>, "config": {...}}`` for tfresflow steps
  (weights are not part of the config: Keras restores them through the layers the model
  tracks);
* ``{"class_name": "tfp.<Name>", "parameters": {...}}`` for TFP's own stateless bijectors
  (``tfb.Permute``, ``tfb.Shift``, ``tfb.Scale``, ``tfb.Exp``, ...: any ``tfb`` class without
  variables whose constructor parameters are numbers, strings, dtypes or arrays).
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow.bijectors import tree
from tfresflow.bijectors.base import KerasBijector
from tfresflow.registry import Registry

tfb = tfp.bijectors

__all__ = ["BIJECTORS", "register", "serialize_bijector", "deserialize_bijector", "leaves"]

#: tfresflow bijector classes by class name (for deserialisation and the conformance tests).
BIJECTORS = Registry("bijector class")

leaves = tree.leaves  # re-exported: its home is :mod:`tfresflow.bijectors.tree`

_TFP_PREFIX = "tfp."


def register(cls):
    """Class decorator registering a :class:`KerasBijector` subclass for deserialisation."""
    return BIJECTORS.register(cls)


def _encode(value, where):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tf.DType):
        return {"dtype": value.name}
    if tf.is_tensor(value) or isinstance(value, (np.ndarray, np.generic, list, tuple)):
        array = np.asarray(value)
        if array.dtype != object:
            if isinstance(value, (list, tuple)):
                return array.tolist()  # as the user wrote it: TFP infers the dtype again
            return {"array": array.tolist(), "dtype": array.dtype.name}
    raise ValueError(f"Cannot serialise parameter {where} of type {type(value).__name__}.")


def _decode(value):
    if isinstance(value, dict) and "array" in value:
        return np.asarray(value["array"], dtype=value["dtype"])
    if isinstance(value, dict) and "dtype" in value:
        return tf.as_dtype(value["dtype"])
    return value


def _serialize_tfp(bijector):
    cls_name = type(bijector).__name__.lstrip("_")
    cls = getattr(tfb, cls_name, None)
    if cls is None or not isinstance(bijector, cls) or bijector.variables:
        raise ValueError(
            f"Cannot serialise bijector {bijector.name!r} of type {type(bijector).__name__}: only "
            "tfb.Chain, tfb.Invert, registered tfresflow bijectors and TFP's stateless "
            "bijectors (no variables) are supported.")
    params = {k: _encode(v, f"`{k}` of {cls_name} {bijector.name!r}")
              for k, v in bijector.parameters.items()}
    return {"class_name": _TFP_PREFIX + cls_name, "parameters": params}


def _serialize_leaf(bijector):
    if isinstance(bijector, KerasBijector):
        name = type(bijector).__name__
        if BIJECTORS.get(name) is not type(bijector):
            raise ValueError(f"Bijector class {name} is not registered with "
                             "tfresflow.bijectors.serialization.register.")
        return {"class_name": name, "config": bijector.get_config()}
    return _serialize_tfp(bijector)


def serialize_bijector(bijector):
    """Nested-dict description of a bijector tree; raises for unsupported bijectors."""
    return tree.fold(
        bijector, _serialize_leaf,
        lambda node, parts: {"class_name": "Chain", "name": node.name, "bijectors": parts},
        lambda node, part: {"class_name": "Invert", "name": node.name, "bijector": part})


def deserialize_bijector(config):
    """Inverse of :func:`serialize_bijector`."""
    kind = config["class_name"]
    if kind == "Chain":
        return tfb.Chain([deserialize_bijector(c) for c in config["bijectors"]],
                         name=config.get("name", "chain"))
    if kind == "Invert":
        inner = deserialize_bijector(config["bijector"])
        return tfb.Invert(inner, name=config["name"]) if config.get("name") else tfb.Invert(inner)
    if kind.startswith(_TFP_PREFIX):
        cls = getattr(tfb, kind[len(_TFP_PREFIX):], None)
        if cls is None:
            raise ValueError(f"Unknown TFP bijector class {kind!r} in a serialised flow.")
        return cls(**{k: _decode(v) for k, v in config["parameters"].items()})
    return BIJECTORS.lookup(kind).from_config(config["config"])
