"""Exact log-determinant of a residual map by brute-force Jacobian (small dimensions only).

    log |det(I + J_g(x))|,   J_g(x) = dg/dx  built with ``GradientTape.batch_jacobian``

For ``D = 2`` the determinant is the closed form ``(1 + J_00)(1 + J_11) - J_01 J_10`` (as the
Residual Flows reference evaluates its 2-D toys, Chen et al., 2019, Appendix E), otherwise
``tf.linalg.slogdet``. Cost: ``D`` backward passes and ``O(D^3)``; the gradient is the exact
gradient (second-order autodiff through the Jacobian).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E: exact log-dets of the 2-D toys).
"""
import warnings

import tensorflow as tf

from tfresflow.logdet.base import LogDetEstimator, event_size, register_estimator
from tfresflow.validation import check_positive_int


def log_abs_det_identity_plus(jac):
    """``log |det(I + J)|`` for a batch of square matrices ``J`` of shape ``[B, D, D]``."""
    d = jac.shape[-1]
    if d == 2:
        det = (1.0 + jac[:, 0, 0]) * (1.0 + jac[:, 1, 1]) - jac[:, 0, 1] * jac[:, 1, 0]
        return tf.math.log(tf.abs(det))
    eye = tf.eye(d, dtype=jac.dtype)
    return tf.linalg.slogdet(eye + jac)[1]


@register_estimator
class Exact(LogDetEstimator):
    """Exact ``log det(I + J_g(x))`` from the full Jacobian.

    Args:
      warn_dim: warn when the event size ``D`` exceeds this (the cost grows as ``D`` backward
        passes plus an ``O(D^3)`` determinant).
      max_dim: raise a ValueError when ``D`` exceeds this.
    """

    is_exact = True
    is_unbiased = True

    def __init__(self, warn_dim=64, max_dim=1024):
        self.warn_dim = check_positive_int(warn_dim, "warn_dim")
        self.max_dim = check_positive_int(max_dim, "max_dim")

    def get_config(self):
        return dict(warn_dim=self.warn_dim, max_dim=self.max_dim)

    def _estimate(self, g, x, training, seed):
        d = event_size(x)
        if d > self.max_dim:
            raise ValueError(f"Exact log-det needs the full {d}x{d} Jacobian, above "
                             f"`max_dim`={self.max_dim}; use logdet.Unbiased() for large events.")
        if d > self.warn_dim:
            warnings.warn(f"Exact log-det with event size {d} costs {d} backward passes per "
                          "call; consider logdet.Unbiased().", stacklevel=3)
        with tf.GradientTape() as tape:
            tape.watch(x)
            gx = g(x)
            flat = tf.reshape(gx, [-1, d])
        jac = tape.batch_jacobian(flat, x)
        jac = tf.reshape(jac, [-1, d, d])
        return gx, log_abs_det_identity_plus(jac)
