"""Serialising trees of bijectors (``tfb.Chain`` / ``tfb.Invert`` of tfresflow bijectors).

TFP bijectors are not Keras objects, so ``FlowModel.get_config`` stores the flow as a nested
dict: ``{"class_name": "Chain", "bijectors": [...]}``, ``{"class_name": "Invert", "bijector":
...}`` or ``{"class_name": <registered tfresflow bijector>, "config": {...}}``. Weights are not
part of the config; Keras restores them through the layers the model tracks.
"""
import tensorflow_probability as tfp
# tfb.Chain / tfb.Invert of non-CompositeTensor bijectors (ours) are these base classes.
from tensorflow_probability.python.bijectors.chain import _Chain as ChainType
from tensorflow_probability.python.bijectors.invert import _Invert as InvertType

from tfresflow.bijectors.base import KerasBijector

tfb = tfp.bijectors

_REGISTRY = {}


def register(cls):
    """Class decorator registering a :class:`KerasBijector` subclass for deserialisation."""
    _REGISTRY[cls.__name__] = cls
    return cls


def serialize_bijector(bijector):
    """Nested-dict description of a bijector tree; raises for unsupported bijectors."""
    if isinstance(bijector, ChainType):
        return {"class_name": "Chain", "name": bijector.name,
                "bijectors": [serialize_bijector(b) for b in bijector.bijectors]}
    if isinstance(bijector, InvertType):
        return {"class_name": "Invert", "bijector": serialize_bijector(bijector.bijector)}
    if isinstance(bijector, KerasBijector):
        name = type(bijector).__name__
        if _REGISTRY.get(name) is not type(bijector):
            raise ValueError(f"Bijector class {name} is not registered with "
                             "tfresflow.bijectors.serialization.register.")
        return {"class_name": name, "config": bijector.get_config()}
    raise ValueError(
        f"Cannot serialise bijector {bijector.name!r} of type {type(bijector).__name__}: only "
        "tfb.Chain, tfb.Invert and registered tfresflow bijectors are supported.")


def deserialize_bijector(config):
    """Inverse of :func:`serialize_bijector`."""
    kind = config["class_name"]
    if kind == "Chain":
        return tfb.Chain([deserialize_bijector(c) for c in config["bijectors"]],
                         name=config.get("name", "chain"))
    if kind == "Invert":
        return tfb.Invert(deserialize_bijector(config["bijector"]))
    if kind not in _REGISTRY:
        raise ValueError(f"Unknown bijector class {kind!r}; registered: {sorted(_REGISTRY)}.")
    return _REGISTRY[kind].from_config(config["config"])


def leaves(bijector):
    """The non-composite bijectors of a tree, in data -> latent (TFP ``inverse``) order."""
    if isinstance(bijector, ChainType):
        return [leaf for b in bijector.bijectors for leaf in leaves(b)]
    if isinstance(bijector, InvertType):
        return list(reversed(leaves(bijector.bijector)))
    return [bijector]
