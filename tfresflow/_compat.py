"""The only module that imports private TensorFlow / TFP / Keras API.

Every name below is internal to its library and may move between releases; each import says
the version it was checked on (TensorFlow 2.21.0, TensorFlow Probability 0.25.0, Keras 3.15.1)
and what tfresflow uses it for, so an upgrade has one file to re-check.
"""
import tensorflow as tf
# TF 2.21.0: whether a graph is being built inside an XLA (``jit_compile``) context, the test
# ``while_v2`` itself uses. No public equivalent exists.
from tensorflow.python.ops import control_flow_util
# TFP 0.25.0: the FFJORD-style cache that shares one pass's value and log-det (``tfb.FFJORD``).
from tensorflow_probability.python.internal import cache_util
# TFP 0.25.0: ``tfb.Chain`` / ``tfb.Invert`` / ``tfd.TransformedDistribution`` of
# non-CompositeTensor parts (tfresflow's Keras-backed bijectors) are instances of these base
# classes only; the public names are their CompositeTensor subclasses.
from tensorflow_probability.python.bijectors.chain import _Chain as ChainType
from tensorflow_probability.python.bijectors.invert import _Invert as InvertType
from tensorflow_probability.python.distributions.transformed_distribution import \
    _TransformedDistribution as TransformedDistributionType
# TFP 0.25.0: helpers of the ``tfd.Distribution`` contract (stateless seeds, dtype inference,
# parameter properties) used by tfresflow's own distributions, as TFP's own distributions use them.
from tensorflow_probability.python.internal import dtype_util  # noqa: F401
from tensorflow_probability.python.internal import parameter_properties  # noqa: F401
from tensorflow_probability.python.internal import prefer_static  # noqa: F401
from tensorflow_probability.python.internal import reparameterization  # noqa: F401
from tensorflow_probability.python.internal import samplers  # noqa: F401
from tensorflow_probability.python.internal import tensor_util  # noqa: F401

__all__ = ["BijectorCache", "ChainType", "InvertType", "TransformedDistributionType",
           "in_xla_context", "dtype_util", "parameter_properties", "prefer_static",
           "reparameterization", "samplers", "tensor_util"]

BijectorCache = cache_util.BijectorCacheWithGreedyAttrs


def in_xla_context():
    """Whether the graph being built will be compiled by XLA (``jit_compile=True``)."""
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
