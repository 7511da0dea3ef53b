"""Named base (latent) distributions of flow models."""
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow.registry import Registry

tfd = tfp.distributions

#: Factories ``event_shape -> tfd.Distribution`` by name.
BASE_DISTRIBUTIONS = Registry("base distribution")


@BASE_DISTRIBUTIONS.register("normal")
def _standard_normal(event_shape):
    return tfd.Independent(tfd.Normal(tf.zeros(event_shape), tf.ones(event_shape)),
                           reinterpreted_batch_ndims=len(event_shape))


def register_base_distribution(name, factory):
    """Registers ``factory(event_shape) -> tfd.Distribution`` under ``name``."""
    BASE_DISTRIBUTIONS.register(name, factory)


def make_base_distribution(name, event_shape):
    """The base distribution ``name`` over events of shape ``event_shape``.

    Raises:
      ValueError: for an unknown name.
    """
    return BASE_DISTRIBUTIONS.lookup(name, "base_distribution")(list(event_shape))
