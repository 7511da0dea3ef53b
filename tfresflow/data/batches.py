"""Training batches as a pure function of the step: resuming needs no iterator state.

The batch of optimiser step ``s`` (0-based) holds the rows at positions ``s*b, ..., s*b + b - 1``
of the endless sequence ``perm_0, perm_1, ...``, where ``perm_e`` is a uniform random
permutation of the ``n`` examples drawn afresh for epoch ``e`` (``b = min(batch_size, n)``).
Position ``p`` is example ``perm_{p // n}[p mod n]``, computed without materialising the
permutation by ``tf.random.experimental.index_shuffle`` (a stateless bijection of
``{0, ..., n-1}`` per seed) with the seed of epoch ``e`` = ``stateless_fold_in(seed, e)``.

So every epoch is a full reshuffle (not a finite shuffle buffer), the same ``(x, batch_size,
seed)`` always gives the same batches, and :func:`step_batches` started at step ``s`` yields
exactly what an uninterrupted pipeline yields from step ``s`` on: a resumed run sees the data
an uninterrupted one would, at no cost (no skipping through the first ``s`` batches).

Per-step randomness beyond the order (dequantisation noise, random flips:
:func:`tfresflow.data.images.image_batches`) goes through ``transform(batch, step)``, which sees
the step and so can draw stateless noise from a seed folded with it: the same step, the same
noise, also after a resume.
"""
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.validation import check_positive_int

__all__ = ["step_batches"]


def _batch_fn(x, batch_size, seed):
    """``step -> x[rows of step]``: the batch of one (int64) step."""
    n = int((x[0] if isinstance(x, tuple) else x).shape[0])
    b = min(batch_size, n)
    seed = trf_random.fold_in_tag(seed, "data/batches")

    def epoch_seed(epoch):
        return tf.random.experimental.stateless_fold_in(seed, epoch)

    def batch(step):
        positions = step * b + tf.range(b, dtype=tf.int64)
        epochs = positions // n
        first = positions[0] // n  # b <= n: a batch spans at most two epochs
        index = positions % n
        rows = tf.where(epochs == first,
                        tf.random.experimental.index_shuffle(index, epoch_seed(first), n - 1),
                        tf.random.experimental.index_shuffle(index, epoch_seed(first + 1),
                                                             n - 1))
        if isinstance(x, tuple):
            return tuple(tf.gather(a, rows) for a in x)
        return tf.gather(x, rows)

    return batch


def step_batches(x, batch_size, seed, start_step=0, stop_step=None, transform=None):
    """A ``tf.data.Dataset`` of the batches of steps ``start_step, ..., stop_step - 1``.

    Args:
      x: training examples, array ``[n, *event_shape]`` (kept as one constant), or a tuple of
        arrays with the same ``n`` (e.g. ``(images, labels)``): every batch is then the tuple
        of the same rows of each, so labels stay aligned with their examples.
      batch_size: examples per batch (``min(batch_size, n)`` when ``n`` is smaller).
      seed: integer seed of the shuffling (see the module docstring).
      start_step: the first step (0-based), e.g. the step a resumed run restarts at.
      stop_step: one past the last step; ``None``: endless.
      transform: optional ``fn(batch, step) -> batch`` applied to each batch inside the
        pipeline (``step``: int64 scalar tensor); it must be a pure function of its arguments
        (stateless random ops seeded from ``step``) for the batches to stay reproducible.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    start_step = check_positive_int(start_step, "start_step", minimum=0)
    x = tuple(tf.constant(a) for a in x) if isinstance(x, tuple) else tf.constant(x)
    arrays = x if isinstance(x, tuple) else (x,)
    if not arrays or any(a.shape.rank is None or a.shape.rank == 0 for a in arrays) \
            or arrays[0].shape[0] == 0:
        raise ValueError("`x` must hold at least one example.")
    if any(a.shape[0] != arrays[0].shape[0] for a in arrays):
        raise ValueError("The arrays of `x` must hold the same number of examples, got "
                         f"{[int(a.shape[0]) for a in arrays]}.")
    stop = tf.int64.max if stop_step is None else check_positive_int(stop_step, "stop_step",
                                                                      minimum=0)
    batch = _batch_fn(x, batch_size, seed)
    if transform is not None:
        rows = batch

        def batch(step):
            return transform(rows(step), step)

    return (tf.data.Dataset.range(start_step, stop)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
