"""``LogitTransform``: the "unsquashing" first step of image flows (Dinh et al., 2017, Real NVP).

Elementwise, density direction (TFP ``inverse``, data -> latent), for data ``x`` in ``[0, 1]``:

    s = alpha + (1 - 2 alpha) x,      z = logit(s) = log s - log(1 - s),
    log |dz/dx| = log(1 - 2 alpha) - log s - log(1 - s)         (exact, per element),

and the sampling direction (TFP ``forward``) ``x = (sigmoid(z) - alpha) / (1 - 2 alpha)``.
``alpha`` keeps ``s`` away from 0 and 1 so that dequantised pixels at 0 or 1 map to finite
latents: Residual Flows uses ``alpha = 1e-5`` on MNIST and ``0.05`` on CIFAR-10, SVHN,
ImageNet and CelebA (Chen et al., 2019, Appendix E); ``alpha = 0`` is the plain logit, defined
only on the open interval ``(0, 1)``.

The step has no weights and no fixed event shape (TFP's elementwise convention:
``forward_min_event_ndims = 0``), so the same step serves vectors and ``[H, W, C]`` images; any
floating dtype is accepted. With ``validate_args=True`` the density direction also asserts
``0 < s < 1`` (the domain of the logit).

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (the logit transform of Sec. 4.1).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
"""
import math

import tensorflow as tf

from tfresflow.bijectors.base import KerasBijector, unique_name
from tfresflow.validation import check_number


class LogitTransform(KerasBijector):
    """``z = logit(alpha + (1 - 2 alpha) x)`` elementwise, with its exact log-det.

    Args:
      alpha: in ``[0, 0.5)``; the squeeze towards ``1/2`` before the logit.
      validate_args: assert finite inputs (and, for data, ``0 < s < 1``) at run time.
      name: unique step name.
    """

    def __init__(self, alpha=0.05, validate_args=False, name=None):
        parameters = dict(locals())
        self.alpha = check_number(alpha, "alpha", 0.0, 0.5, high_open=True)
        name = unique_name(name, "logit_transform")
        parameters.update(name=name)
        super().__init__(parameters=parameters, name=name, event_ndims=0,
                         validate_args=validate_args, dtype=None)

    def keras_layers(self):
        return []

    def build(self, event_shape):
        """Nothing to build (elementwise, any event shape)."""

    def get_config(self):
        return dict(alpha=self.alpha, validate_args=self.validate_args, name=self.name)

    def _squeezed(self, x):
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x
        if self.validate_args:
            s = tf.debugging.assert_all_finite(s, f"{self.name}: non-finite data")
            with tf.control_dependencies([
                    tf.debugging.assert_positive(s, message=f"{self.name}: data below the "
                                                 "domain (alpha + (1 - 2 alpha) x <= 0)"),
                    tf.debugging.assert_less(s, tf.ones_like(s), message=f"{self.name}: data "
                                             "above the domain (alpha + (1 - 2 alpha) x >= 1)")]):
                s = tf.identity(s)
        return s

    def _data_to_latent(self, x, training, seed):
        s = self._squeezed(x)
        log_s, log_1ms = tf.math.log(s), tf.math.log1p(-s)
        log_det = math.log1p(-2.0 * self.alpha) - log_s - log_1ms
        return log_s - log_1ms, log_det

    def _latent_to_data(self, z, training, seed):
        return (tf.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)
