"""The hyperbolic secant distribution (a base distribution of relative-gradient flows).

Gresele et al. (2020, App. H, Tables 3-4) use a "hyperbolic secant" latent distribution. This is
the true one, standardised to mean 0 and variance 1 (Johnson, Kotz & Balakrishnan, 1995):

    p(x) = (1 / 2s) sech(pi t / 2),   t = (x - loc) / s,
    log p(x) = -|u| - log1p(exp(-2|u|)) - log s,   u = pi t / 2,
    CDF(x) = (2 / pi) arctan(exp(u)),   quantile(q) = loc + s (2 / pi) log(tan(pi q / 2)),

with mean ``loc``, variance ``s^2`` and entropy ``log 4 + log s`` nats (from
``int sech(u) log cosh(u) du = pi log 2``).
Its tails are exponential, ``exp(-pi |t| / 2)``, heavier than the normal's.

Note: the reference code's ``log_pdf_hypsec`` is ``-2 log cosh(x) - log 2``, i.e. the density
``(1/2) sech^2(x)``: that is a *logistic* distribution with scale 1/2 (``tfd.Logistic(0, 0.5)``),
not this one.

Registered as the base distribution ``"hypsecant"`` (i.i.d. standard coordinates).

References:
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090 (Appendix H).
  Johnson, Kotz & Balakrishnan (1995), "Continuous Univariate Distributions", Vol. 2, 2nd ed.,
    Wiley.
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow._compat import (dtype_util, parameter_properties, reparameterization, samplers,
                               tensor_util)
from tfresflow._compat import prefer_static as ps

from tfresflow.distributions.base import register_base_distribution

tfd = tfp.distributions

class HyperbolicSecant(tfd.Distribution):
    """Scalar hyperbolic secant distribution with location ``loc`` and scale ``scale``.

    ``scale`` is the standard deviation (``scale = 1`` gives unit variance).

    Args:
      loc: location (mean), float tensor.
      scale: positive scale (standard deviation), float tensor broadcastable with ``loc``.
    """

    def __init__(self, loc=0.0, scale=1.0, validate_args=False, allow_nan_stats=True,
                 name="HyperbolicSecant"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([loc, scale], dtype_hint=tf.float32)
            self._loc = tensor_util.convert_nonref_to_tensor(loc, name="loc", dtype=dtype)
            self._scale = tensor_util.convert_nonref_to_tensor(scale, name="scale", dtype=dtype)
            super().__init__(dtype=dtype,
                             reparameterization_type=reparameterization.FULLY_REPARAMETERIZED,
                             validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                             parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            loc=parameter_properties.ParameterProperties(),
            scale=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=(
                    lambda: tfp.bijectors.Softplus(low=dtype_util.eps(dtype)))))

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _event_shape(self):
        return tf.TensorShape([])

    def _u(self, x):
        return (0.5 * np.pi) * (x - self.loc) / self.scale

    def _sample_n(self, n, seed=None):
        loc = tf.convert_to_tensor(self.loc)
        scale = tf.convert_to_tensor(self.scale)
        shape = ps.concat([[n], self._batch_shape_tensor(loc=loc, scale=scale)], 0)
        tiny = np.finfo(dtype_util.as_numpy_dtype(self.dtype)).tiny
        q = samplers.uniform(shape, minval=tiny, maxval=1.0, dtype=self.dtype, seed=seed)
        return loc + scale * self._standard_quantile(q)

    @staticmethod
    def _standard_quantile(q):
        return (2.0 / np.pi) * tf.math.log(tf.tan(0.5 * np.pi * q))

    def _log_prob(self, x):
        u = tf.abs(self._u(x))
        return -u - tf.math.log1p(tf.exp(-2.0 * u)) - tf.math.log(self.scale)

    def _cdf(self, x):
        return (2.0 / np.pi) * tf.atan(tf.exp(self._u(x)))

    def _quantile(self, q):
        return self.loc + self.scale * self._standard_quantile(q)

    def _mean(self):
        loc = tf.convert_to_tensor(self.loc)
        return tf.broadcast_to(loc, self._batch_shape_tensor(loc=loc))

    def _mode(self):
        return self._mean()

    def _stddev(self):
        scale = tf.convert_to_tensor(self.scale)
        return tf.broadcast_to(scale, self._batch_shape_tensor(scale=scale))

    def _entropy(self):
        scale = tf.convert_to_tensor(self.scale)
        return tf.broadcast_to(np.log(4.0) + tf.math.log(scale),
                               self._batch_shape_tensor(scale=scale))

    def _default_event_space_bijector(self):
        return tfp.bijectors.Identity(validate_args=self.validate_args)


def _standard_hyperbolic_secant(event_shape):
    return tfd.Independent(HyperbolicSecant(tf.zeros(event_shape), tf.ones(event_shape)),
                           reinterpreted_batch_ndims=len(event_shape))


register_base_distribution("hypsecant", _standard_hyperbolic_secant)
