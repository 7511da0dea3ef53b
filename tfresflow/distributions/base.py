"""Named base (latent) distributions of flow models."""
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def _standard_normal(event_shape):
    return tfd.Independent(tfd.Normal(tf.zeros(event_shape), tf.ones(event_shape)),
                           reinterpreted_batch_ndims=len(event_shape))


BASE_DISTRIBUTIONS = {"normal": _standard_normal}


def register_base_distribution(name, factory):
    """Registers ``factory(event_shape) -> tfd.Distribution`` under ``name``."""
    BASE_DISTRIBUTIONS[name] = factory


def make_base_distribution(name, event_shape):
    """The base distribution ``name`` over events of shape ``event_shape``.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in BASE_DISTRIBUTIONS:
        raise ValueError(f"Unknown base distribution {name!r}; choose one of "
                         f"{sorted(BASE_DISTRIBUTIONS)}.")
    return BASE_DISTRIBUTIONS[name](list(event_shape))
