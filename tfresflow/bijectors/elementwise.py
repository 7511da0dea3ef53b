"""Elementwise invertible activations of relative-gradient flows (Gresele et al., 2020, App. H).

Two strictly increasing, smooth maps of R onto R (paper eqs. 34 and 35):

    smooth leaky ReLU  s_L(x) = a x + (1 - a) softplus(x),  s_L'(x) = a + (1 - a) sigmoid(x)
    tanh-linear        s_T(x) = tanh(alpha x) + beta x,     s_T'(x) = alpha sech^2(alpha x) + beta

As flow steps they act in the density direction (TFP ``inverse``, data -> latent) as ``z = s(x)``
with the exact log-determinant ``sum_i log s'(x_i)`` (the L_J^1 term of the paper); the sampling
direction (TFP ``forward``) solves ``s(x) = z`` per element with a safeguarded, vectorised Newton
iteration (:func:`newton_inverse`): each element keeps a bracket ``[lo, hi]`` known to contain
its root, a Newton step that leaves the bracket is replaced by bisection, and the loop stops per
element at tolerance (or at ``max_iter``, in which case an ``InvalidArgumentError`` reports the
largest residual). The reference code instead runs 100 unguarded Newton steps from 0.

These steps have no weights: ``keras_layers()`` is empty and ``build`` only checks the shape.
"""
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import KerasBijector, unique_name


def newton_inverse(fn, dfn, z, lo, hi, x0, xtol, max_iter, name="newton_inverse"):
    """Solves ``fn(x) = z`` elementwise for a strictly increasing ``fn``.

    Safeguarded Newton: the bracket ``[lo, hi]`` (which must contain the root) shrinks with
    the sign of ``fn(x) - z`` at every iterate, and a Newton step landing outside the open
    bracket is replaced by the bracket midpoint, so the iteration converges for any increasing
    ``fn`` (quadratically near the root). An element stops when its Newton step is at most
    ``xtol * (1 + |x|)``, its bracket is narrower than that, or its residual is at the
    floating-point noise floor ``2 eps (1 + |z|)``.

    Args:
      fn, dfn: the elementwise map and its (positive) derivative.
      z: targets (any shape).
      lo, hi: elementwise bounds with ``fn(lo) <= z <= fn(hi)``.
      x0: starting points inside ``[lo, hi]``.
      xtol: relative step tolerance.
      max_iter: iteration cap.

    Returns:
      ``x`` with ``fn(x) ~= z``.

    Raises:
      tf.errors.InvalidArgumentError: if some element has not converged after ``max_iter``
        iterations (the message reports the largest residual ``|fn(x) - z|``).
    """
    dtype = z.dtype
    eps = np.finfo(dtype.as_numpy_dtype).eps
    noise = 2.0 * eps * (1.0 + tf.abs(z))

    def body(i, x, lo, hi, done):
        f = fn(x) - z
        lo = tf.where(f < 0, x, lo)
        hi = tf.where(f > 0, x, hi)
        step = f / dfn(x)
        x_newton = x - step
        scale = xtol * (1.0 + tf.abs(x))
        now_done = (tf.abs(step) <= scale) | (hi - lo <= scale) | (tf.abs(f) <= noise)
        # Far from the root a Newton step leaving the open bracket is replaced by bisection;
        # a converging element keeps its last (tiny) Newton update and freezes.
        outside = (x_newton <= lo) | (x_newton >= hi)
        x_next = tf.where(now_done, tf.clip_by_value(x_newton, lo, hi),
                          tf.where(outside, 0.5 * (lo + hi), x_newton))
        x = tf.where(done, x, x_next)
        return i + 1, x, lo, hi, done | now_done

    def cond(i, x, lo, hi, done):
        return (i < max_iter) & ~tf.reduce_all(done)

    x0 = tf.clip_by_value(x0, lo, hi)
    done0 = tf.zeros_like(z, dtype=tf.bool)
    _, x, _, _, done = tf.while_loop(cond, body, (tf.constant(0), x0, lo, hi, done0))
    residual = tf.reduce_max(tf.abs(fn(x) - z))
    check = tf.debugging.Assert(
        tf.reduce_all(done),
        [f"{name}: Newton inverse did not converge in {max_iter} iterations; largest "
         "residual |s(x) - z| =", residual])
    with tf.control_dependencies([check]):
        return tf.identity(x)


def _with_inverse_gradient(solve, dfn):
    """Wraps ``z -> x = s^{-1}(z)`` (a solver loop) with the implicit gradient ``1 / s'(x)``."""
    @tf.custom_gradient
    def inverse(z):
        x = solve(tf.stop_gradient(z))

        def grad(dx):
            return dx / dfn(x)
        return x, grad
    return inverse


class _ElementwiseActivation(KerasBijector):
    """Base of weightless elementwise activations: ``z = s(x)``, log-det ``sum log s'(x)``.

    Subclasses define ``_s``, ``_log_ds`` (``log s'``), ``_bracket(z) -> (lo, hi, x0)`` and
    ``_config``.
    """

    def __init__(self, xtol, max_iter, name, parameters, dtype=tf.float32):
        if not 0 < xtol < 1:
            raise ValueError(f"`xtol` must be in (0, 1), got {xtol!r}.")
        if int(max_iter) < 1:
            raise ValueError(f"`max_iter` must be a positive integer, got {max_iter!r}.")
        self.xtol = float(xtol)
        self.max_iter = int(max_iter)
        super().__init__(parameters=parameters, name=name, dtype=tf.as_dtype(dtype))

    def keras_layers(self):
        return []

    def build(self, event_shape):
        if len(list(event_shape)) != 1:
            raise ValueError(f"{self.name}: expected a vector event shape [D], "
                             f"got {list(event_shape)}.")

    def get_config(self):
        return dict(self._config(), xtol=self.xtol, max_iter=self.max_iter,
                    dtype=self.dtype.name, name=self.name)

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
            return newton_inverse(self._s, self._ds, z, lo, hi, x0, self.xtol, self.max_iter,
                                  name=self.name)
        return _with_inverse_gradient(solve, self._ds)(z)

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
      max_iter: Newton iteration cap of the inverse.
    """

    def __init__(self, alpha=0.3, xtol=1e-6, max_iter=100, dtype=tf.float32, name=None):
        parameters = dict(locals())
        if not 0 < alpha <= 1:
            raise ValueError(f"`alpha` must be in (0, 1] (the map must be onto R), "
                             f"got {alpha!r}.")
        self.alpha = float(alpha)
        name = unique_name(name, "smooth_leaky_relu")
        parameters.update(name=name)
        super().__init__(xtol, max_iter, name, parameters, dtype=dtype)

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
      xtol, max_iter: Newton tolerance and iteration cap of the inverse.
    """

    def __init__(self, alpha=1.0, beta=0.1, xtol=1e-6, max_iter=100, dtype=tf.float32,
                 name=None):
        parameters = dict(locals())
        if not alpha >= 0:
            raise ValueError(f"`alpha` must be >= 0, got {alpha!r}.")
        if not beta > 0:
            raise ValueError(f"`beta` must be > 0 (the map must be onto R), got {beta!r}.")
        self.alpha = float(alpha)
        self.beta = float(beta)
        name = unique_name(name, "tanh_linear")
        parameters.update(name=name)
        super().__init__(xtol, max_iter, name, parameters, dtype=dtype)

    def _config(self):
        return dict(alpha=self.alpha, beta=self.beta)

    def _s(self, x):
        return tf.tanh(self.alpha * x) + self.beta * x

    def _log_ds(self, x):
        t = tf.tanh(self.alpha * x)
        return tf.math.log(self.alpha * (1.0 - t) * (1.0 + t) + self.beta)

    def _bracket(self, z):
        return (z - 1.0) / self.beta, (z + 1.0) / self.beta, z / (self.alpha + self.beta)
