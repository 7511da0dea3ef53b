"""Elementwise invertible activations of relative-gradient flows (Gresele et al., 2020, App. H).

Two strictly increasing, smooth maps of R onto R (paper eqs. 34 and 35):

    smooth leaky ReLU  s_L(x) = a x + (1 - a) softplus(x),  s_L'(x) = a + (1 - a) sigmoid(x)
    tanh-linear        s_T(x) = tanh(alpha x) + beta x,     s_T'(x) = alpha sech^2(alpha x) + beta

As flow steps they act in the density direction (TFP ``inverse``, data -> latent) as ``z = s(x)``
with the exact log-determinant ``sum_i log s'(x_i)`` (the L_J^1 term of the paper); the sampling
direction (TFP ``forward``) solves ``s(x) = z`` per element with the safeguarded, vectorised
Newton iteration of :func:`tfresflow.solvers.newton.newton_inverse`: each element keeps a bracket
``[lo, hi]`` known to contain its root, a Newton step that leaves the bracket is replaced by
bisection, and the loop stops per element at tolerance or at ``max_iterations``, when
non-convergence is reported by the shared policy ``on_nonconvergence`` of
:mod:`tfresflow.solvers.policy` (eager ``"raise"``: ``NonConvergenceError`` with the largest
residual; graph: ``InvalidArgumentError``; XLA: NaN for the non-converged elements). The
reference code instead runs 100 unguarded Newton steps from 0.

These steps have no weights: ``keras_layers()`` is empty and ``build`` only checks the shape.

References:
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090 (Appendix H).
"""
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import KerasBijector, unique_name
from tfresflow.solvers.newton import newton_inverse, with_inverse_gradient
from tfresflow.solvers.policy import check_on_nonconvergence
from tfresflow.validation import check_number, check_positive_int, renamed_argument


class _ElementwiseActivation(KerasBijector):
    """Base of weightless elementwise activations: ``z = s(x)``, log-det ``sum log s'(x)``.

    Subclasses define ``_s``, ``_log_ds`` (``log s'``), ``_bracket(z) -> (lo, hi, x0)`` and
    ``_config``.
    """

    def __init__(self, xtol, max_iterations, on_nonconvergence, name, parameters,
                 dtype=tf.float32, max_iter=None, validate_args=False):
        self.xtol = check_number(xtol, "xtol", 0.0, 1.0, low_open=True, high_open=True)
        self.max_iterations = check_positive_int(
            renamed_argument("max_iterations", max_iterations, "max_iter", max_iter, 100),
            "max_iterations")
        self.on_nonconvergence = check_on_nonconvergence(on_nonconvergence)
        parameters.pop("max_iter", None)
        parameters.update(max_iterations=self.max_iterations)
        super().__init__(parameters=parameters, name=name, dtype=tf.as_dtype(dtype),
                         validate_args=validate_args)

    @classmethod
    def from_config(cls, config):
        """Also reads configs written before ``max_iter`` became ``max_iterations``."""
        config = dict(config)
        if "max_iter" in config:
            config.setdefault("max_iterations", config.pop("max_iter"))
        return cls(**config)

    def keras_layers(self):
        return []

    def build(self, event_shape):
        if len(list(event_shape)) != 1:
            raise ValueError(f"{self.name}: expected a vector event shape [D], "
                             f"got {list(event_shape)}.")

    def get_config(self):
        return dict(self._config(), xtol=self.xtol, max_iterations=self.max_iterations,
                    on_nonconvergence=self.on_nonconvergence, dtype=self.dtype.name,
                    validate_args=self.validate_args, name=self.name)

    def _ds(self, x):
        return tf.exp(self._log_ds(x))

    def activation(self, x):
        """``s(x)`` (the density direction)."""
        return self._s(tf.convert_to_tensor(x))

    def inverse_activation(self, z):
        """``s^{-1}(z)`` by the safeguarded Newton iteration (the sampling direction)."""
        z = tf.convert_to_tensor(z)

        def solve(z):
            lo, hi, x0 = self._bracket(z)
            return newton_inverse(self._s, self._ds, z, lo, hi, x0, self.xtol,
                                  self.max_iterations, self.on_nonconvergence, name=self.name)
        return with_inverse_gradient(solve, self._ds)(z)

    def _data_to_latent(self, x, training, seed):
        return self._s(x), tf.reduce_sum(self._log_ds(x), axis=-1)

    def _latent_to_data(self, z, training, seed):
        return self.inverse_activation(z)


class SmoothLeakyReLU(_ElementwiseActivation):
    """Smooth leaky ReLU ``s(x) = alpha x + (1 - alpha) softplus(x)`` (paper eq. 34).

    Convex, with slope in ``(alpha, 1)``; exact log-det ``sum log(alpha + (1 - alpha)
    sigmoid(x))``. The inverse starts Newton at ``g^{-1}(z)``, where the piecewise-linear
    ``g(x) = alpha x + (1 - alpha) relu(x)`` satisfies ``g <= s <= g + (1 - alpha) log 2``, so the
    root lies in ``[g^{-1}(z - (1 - alpha) log 2), g^{-1}(z)]`` (on the right of the root Newton
    on a convex increasing map converges monotonically).

    Args:
      alpha: leak ``a`` in ``(0, 1]`` (the paper uses 0.3 for toys and UCI, 0.01 for MNIST).
      xtol: relative Newton tolerance of the inverse.
      max_iterations: Newton iteration cap of the inverse (default 100).
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).
      on_nonconvergence: ``"raise"`` (default), ``"warn"`` or ``"ignore"`` when the inverse
        does not converge (see :mod:`tfresflow.solvers.policy`).
      max_iter: deprecated name of ``max_iterations``.
    """

    def __init__(self, alpha=0.3, xtol=1e-6, max_iterations=None, on_nonconvergence="raise",
                 dtype=tf.float32, validate_args=False, name=None, max_iter=None):
        parameters = dict(locals())
        self.alpha = check_number(alpha, "alpha", 0.0, 1.0, low_open=True)  # onto R
        name = unique_name(name, "smooth_leaky_relu")
        parameters.update(name=name)
        super().__init__(xtol, max_iterations, on_nonconvergence, name, parameters,
                         dtype=dtype, max_iter=max_iter, validate_args=validate_args)

    def _config(self):
        return dict(alpha=self.alpha)

    def _s(self, x):
        return self.alpha * x + (1.0 - self.alpha) * tf.nn.softplus(x)

    def _log_ds(self, x):
        return tf.math.log(self.alpha + (1.0 - self.alpha) * tf.sigmoid(x))

    def _g_inverse(self, u):
        return tf.where(u >= 0, u, u / self.alpha)

    def _bracket(self, z):
        hi = self._g_inverse(z)
        lo = self._g_inverse(z - (1.0 - self.alpha) * np.log(2.0))
        return lo, hi, hi


class TanhLinear(_ElementwiseActivation):
    """``s(x) = tanh(alpha x) + beta x`` (paper eq. 35; the paper fixes alpha = 1, beta = 0.1).

    Slope ``alpha sech^2(alpha x) + beta`` in ``[beta, alpha + beta]``; exact log-det. Since
    ``|tanh| < 1`` the root of ``s(x) = z`` lies in ``[(z - 1) / beta, (z + 1) / beta]``; Newton
    starts at ``z / (alpha + beta)`` and falls back to bisection inside that bracket (plain
    Newton can cycle on this non-convex map).

    Args:
      alpha: steepness, ``>= 0``.
      beta: linear slope, ``> 0`` (makes the map onto R).
      xtol, max_iterations, on_nonconvergence, validate_args, max_iter: as
        :class:`SmoothLeakyReLU`.
    """

    def __init__(self, alpha=1.0, beta=0.1, xtol=1e-6, max_iterations=None,
                 on_nonconvergence="raise", dtype=tf.float32, validate_args=False, name=None,
                 max_iter=None):
        parameters = dict(locals())
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.beta = check_number(beta, "beta", low=0.0, low_open=True)   # onto R
        name = unique_name(name, "tanh_linear")
        parameters.update(name=name)
        super().__init__(xtol, max_iterations, on_nonconvergence, name, parameters,
                         dtype=dtype, max_iter=max_iter, validate_args=validate_args)

    def _config(self):
        return dict(alpha=self.alpha, beta=self.beta)

    def _s(self, x):
        return tf.tanh(self.alpha * x) + self.beta * x

    def _log_ds(self, x):
        t = tf.tanh(self.alpha * x)
        return tf.math.log(self.alpha * (1.0 - t) * (1.0 + t) + self.beta)

    def _bracket(self, z):
        return (z - 1.0) / self.beta, (z + 1.0) / self.beta, z / (self.alpha + self.beta)
