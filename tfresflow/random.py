"""Seeds for stateless, reproducible randomness.

Every stochastic method in tfresflow takes an optional ``seed``. A seed is anything
``tf.random.stateless_*`` accepts: a shape-[2] integer tensor, list or tuple, or a Python
int (expanded to ``[0, seed]``). The same seed always gives the same draw.

Under a ``tf.distribute`` strategy each replica must draw different noise (otherwise the
variance reduction of data parallelism is lost and Russian-roulette truncations are
correlated across replicas), so :func:`fold_in_replica` mixes the replica id into a seed.

Independent streams derived from one seed are named, not numbered: :func:`fold_in_tag` folds a
string tag (``"train"``, ``"weight_pool/new"``) into a seed, so two uses of one seed cannot
collide by an accident of magic offsets.
"""
import zlib

import numpy as np
import tensorflow as tf


def as_seed(seed, name="seed"):
    """Converts ``seed`` to a shape-[2] int32 tensor.

    Args:
      seed: a Python int, a length-2 sequence, or an integer tensor of shape [2].
      name: argument name used in error messages.

    Raises:
      ValueError: if ``seed`` cannot be interpreted as a stateless seed.
    """
    if seed is None:
        raise ValueError(f"`{name}` must not be None here.")
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed) % (2 ** 31 - 1)], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"`{name}` must be an integer seed, got dtype {seed.dtype.name}.")
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ValueError(f"`{name}` must have shape [2] (a stateless seed), got {seed.shape}.")
    return tf.cast(seed, tf.int32)


def split(seed, n=2):
    """Splits a stateless seed into ``n`` independent seeds (a [n, 2] int32 tensor)."""
    return tf.random.experimental.stateless_split(as_seed(seed), num=n)


def tag_hash(tag):
    """A stable non-negative 31-bit integer for the string ``tag`` (CRC-32, same in every run).

    Python's ``hash`` of a string changes between processes; this does not, so it can seed
    numpy generators too (``np.random.default_rng([seed, tag_hash(tag), i])``).
    """
    if not isinstance(tag, str):
        raise TypeError(f"A seed tag must be a string, got {type(tag).__name__}.")
    return zlib.crc32(tag.encode("utf-8")) & 0x7fffffff


def fold_in_tag(seed, tag):
    """The seed of the stream named ``tag`` derived from ``seed`` (a shape-[2] int32 tensor).

    ``stateless_fold_in(seed, tag_hash(tag))``: different tags give independent streams, the
    same seed and tag always the same one.
    """
    return tf.random.experimental.stateless_fold_in(as_seed(seed), tag_hash(tag))


def stream_seed(seed, tag, *ints):
    """The seed of the stream ``tag`` of ``seed`` with the integers ``ints`` folded in after it
    (``stateless_fold_in`` one by one): e.g. ``stream_seed(seed, "train", stage)``, one
    independent stream per stage."""
    out = fold_in_tag(seed, tag)
    for i in ints:
        out = tf.random.experimental.stateless_fold_in(out, int(i))
    return out


def fold_in_replica(seed):
    """Makes ``seed`` replica-specific inside a ``tf.distribute`` replica context.

    Outside a replica context (plain eager/graph code, or cross-replica context) the seed is
    returned unchanged.
    """
    seed = as_seed(seed)
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return seed
    replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    return tf.random.experimental.stateless_fold_in(seed, replica)


def from_generator(generator):
    """Draws a fresh shape-[2] int32 seed from a ``keras.random.SeedGenerator``."""
    return tf.cast(generator.next(), tf.int32)
