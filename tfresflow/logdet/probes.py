"""Hutchinson (Skilling-Hutchinson) trace-estimator probes.

For a random vector ``v`` with ``E[v] = 0`` and ``E[v v^T] = I``, ``tr(A) = E[v^T A v]``
(Hutchinson, 1989; Skilling, 1989). Residual Flows uses ``v ~ N(0, I)`` (Chen et al., 2019,
Theorem 1); Rademacher probes (entries +-1) have a smaller variance,
``Var[v^T A v] = 2 sum_{i != j} A_ij^2`` instead of ``2 ||A||_F^2`` for symmetric ``A``.

References:
  Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics - Simulation and Computation.
  Skilling (1989), "The eigenvalues of mega-dimensional matrices", Maximum Entropy and Bayesian
    Methods.
"""
import tensorflow as tf

PROBES = ("gaussian", "rademacher")


def hutchinson_probes(shape, seed, kind="gaussian", dtype=tf.float32):
    """``n`` probes stacked on axis 0: a tensor of ``shape`` (``[n_probes, batch, *event]``).

    Args:
      shape: shape of the probe tensor (may be a tensor).
      seed: stateless seed (shape [2] int32).
      kind: ``"gaussian"`` (standard normal entries) or ``"rademacher"`` (entries +-1).
    """
    if kind == "gaussian":
        return tf.random.stateless_normal(shape, seed, dtype=dtype)
    if kind == "rademacher":
        bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=2, dtype=tf.int32)
        return tf.cast(2 * bits - 1, dtype)
    raise ValueError(f"`probe` must be one of {list(PROBES)}, got {kind!r}.")
