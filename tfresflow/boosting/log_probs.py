"""Cached log-densities of frozen components at a fixed data set.

During a boosting stage only the new component changes, so the log-densities ``log g_j(x_n)``
of the frozen components at the training (and validation) data are computed once, by one
compiled function per component, and reused by every later stage: for ``log G`` in the
density objectives, for the pool of Algorithm 1 and for the mixture NLL of each stage.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (Algorithm 1).
"""
import numpy as np
import tensorflow as tf

__all__ = ["compiled_log_prob", "LogProbTable"]


def compiled_log_prob(component, event_shape):
    """``tf.function`` ``(x [n, *event], seed [2]) -> log g(x) [n]`` of one component."""
    spec = tf.TensorSpec([None, *event_shape], tf.float32)
    return tf.function(lambda x, seed: component.log_prob(x, seed=seed),
                       input_signature=[spec, tf.TensorSpec([2], tf.int32)],
                       reduce_retracing=True)


class LogProbTable:
    """Lazily computed ``log g_j(x_n)`` columns for a fixed data set ``x``.

    Args:
      log_prob: ``(j, x) -> log g_j(x)`` (float64 numpy ``[n]``).
      x: the data (float32 numpy ``[n, *event]``).

    A column is computed on first use and kept until :meth:`invalidate` (after component ``j``
    trains).
    """

    def __init__(self, log_prob, x):
        self.log_prob = log_prob
        self.x = np.asarray(x, np.float32)
        self.n = len(self.x)
        self._cols = {}

    def invalidate(self, j):
        self._cols.pop(j, None)

    def columns(self, idx, rows=None):
        """``[n, len(idx)]`` (or ``[len(rows), len(idx)]``) log-densities of components ``idx``."""
        for j in idx:
            if j not in self._cols:
                self._cols[j] = self.log_prob(j, self.x)
        cols = np.stack([self._cols[j] for j in idx], axis=1)
        return cols if rows is None else cols[rows]
