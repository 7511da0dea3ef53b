"""``LipschitzLayer``: the shared machinery of Lipschitz-constrained linear layers.

A layer with weight operator ``W`` (a matrix or a convolution) and coefficient ``c in (0, 1)``
uses the *effective* operator (i-ResNet, Behrmann et al., 2019, eq. (5); Residual Flows,
Chen et al., 2019; the "soft" normalisation of the reference code, which only ever shrinks)

    W_eff = W / max(1, sigma (1 + margin) / c),

where ``sigma`` is a power-iteration estimate of ``||W||_{p->q}`` (spectral norm by default).

Gradient convention (as the reference ``compute_weight(update=False)``): ``call`` recomputes
``sigma = <u, W v>`` from the stored vectors ``u``, ``v`` with the *live* weights, so gradients
flow through ``W`` both directly and through ``sigma`` (``d sigma / dW = u v^T``, the gradient of
the spectral norm at the top singular pair, Miyato et al., 2018), while ``u``, ``v`` are
constants (``stop_gradient``). Right after :meth:`LipschitzLayer.update_normalization` the
recomputed value equals the stored ``sigma`` exactly. Closed-form norms (``1 -> q``,
``p -> inf``) are computed exactly from ``W`` in ``call`` and need no state.

Power iteration does **not** run in ``call``. It runs

* at build, to convergence (``max_iterations``, several restarts for non-spectral mixed norms),
  so a freshly built layer already holds a converged estimate;
* in :meth:`update_normalization`, warm-started from the stored ``(u, v)`` with the adaptive
  rule of :mod:`.power_iteration` - call it after every optimizer step and before evaluation
  (:func:`tfresflow.lipschitz.update_lipschitz_layers`, the
  :class:`tfresflow.lipschitz.LipschitzUpdate` callback).

For the spectral norm ``v`` is a block of ``block_size`` (default 2) right vectors and the
update is block power (subspace) iteration with Rayleigh-Ritz (:func:`subspace_iteration`): a
warm-started single vector sits at a saddle point when an optimizer step lets the second
singular value overtake the first, and then stops at once with the wrong value; a block of two
follows such swaps. Layers acting as a matrix (dense, 1x1 convolutions) share one compiled
function, and same-shape layers are updated in one batched loop
(:func:`update_layers_batched`), so a flow with hundreds of layers traces and updates quickly.

Guarantee and its limits: power iteration approaches ``||W||`` from below, so the bound
``||W_eff|| <= c`` holds up to the relative under-estimate of ``sigma``. ``margin`` (default
1e-3) absorbs it: after large optimizer steps the warm-started estimate stays inside the
margin, and so does the build-time estimate from a random start (its tolerance is tighter);
``tests/test_lipschitz.py`` checks both against the SVD. No power method can certify an upper
bound: after a step that moves the top singular vector far outside the stored block the
estimate can still stop short by more than the margin, even with a block of two. A larger
``block_size`` makes this rarer; ``coeff < 1`` remains the final safety margin, as in the
reference implementation. For non-spectral mixed norms without closed form the
estimate is only a local maximum (the problem is NP-hard in general) and the margin is no
guarantee. The state variables use ``aggregation="only_first_replica"``: every replica computes
the same update from identical (mirrored) weights, and the first replica's value is kept.

References:
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995 (eq. 5).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
  Miyato, Kataoka, Koyama & Yoshida (2018), "Spectral Normalization for Generative Adversarial
    Networks", ICLR, arXiv:1802.05957.
"""
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfresflow.lipschitz.power_iteration import (best_restart, matrix_subspace_iteration,
                                                 power_iteration, power_iteration_step,
                                                 subspace_iteration)
from tfresflow.validation import check_coeff, check_number, check_positive_int

_AGGREGATION = "only_first_replica"


validate_coeff = check_coeff  # former name, kept for one release


def _validate_nonnegative(value, name):
    return check_number(value, name, low=0.0)


# Eager calls of ``update_normalization`` go through one compiled function per layer (held
# weakly, so neither the layer nor its SavedModel export carries it).
_COMPILED_UPDATES = weakref.WeakKeyDictionary()


class LipschitzLayer(keras.layers.Layer):
    """Base class of :class:`LipschitzDense` and :class:`LipschitzConv2D` (see module docstring).

    Subclasses create their weights in ``build`` and then call
    :meth:`_build_normalization`; they implement :meth:`_operator` (the flat, batched action of
    ``W`` and ``W^T``), and may override :meth:`_norm_orders` and :meth:`_exact_norm`.
    """

    def __init__(self, coeff=0.97, margin=1e-3, atol=1e-6, rtol=1e-5, max_iterations=200,
                 block_size=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.coeff = validate_coeff(coeff)
        self.block_size = check_positive_int(block_size, "block_size")
        self.margin = _validate_nonnegative(margin, "margin")
        self.atol = _validate_nonnegative(atol, "atol")
        self.rtol = _validate_nonnegative(rtol, "rtol")
        self.max_iterations = check_positive_int(max_iterations, "max_iterations")
        self.seed = None if seed is None else int(seed)
        self.u = self.v = self.sigma = None

    # ------------------------------------------------------------------ subclass hooks
    def _operator(self, kernel):
        """``(matvec, rmatvec)``: flat batched ``[K, n_in] -> [K, n_out]`` and its adjoint."""
        raise NotImplementedError

    def _norm_orders(self):
        """``(domain, codomain)``: Python floats, or scalar tensors for learnable orders."""
        return 2.0, 2.0

    def _exact_norm(self, kernel):
        """The exact operator norm as a tensor when a closed form exists, else ``None``."""
        return None

    def _matrix(self, kernel):
        """The matrix ``M`` with ``W x = x @ M`` if ``W`` acts as one (leading axes of
        ``kernel`` kept), else ``None``. Enables the compiled, batched spectral path."""
        return None

    def _learnable_orders(self):
        return not all(isinstance(o, (int, float)) for o in self._norm_orders())

    def _is_spectral(self):
        orders = self._norm_orders()
        return all(isinstance(o, (int, float)) and o == 2 for o in orders)

    # ------------------------------------------------------------------ state
    def _add_kernel(self, shape, initializer):
        """Creates ``self.kernel`` from an initial value drawn eagerly, and returns that value.

        Drawing the value first (under ``tf.init_scope``) lets :meth:`_build_normalization` run
        power iteration on it even when the layer is built while a ``tf.function`` is traced,
        where the new variable's value is not readable yet.
        """
        with tf.init_scope():
            value = tf.convert_to_tensor(initializer(shape, dtype=self.variable_dtype))
        self.kernel = self.add_weight(shape=shape, initializer=_constant(value), name="kernel")
        return value

    def _build_orders(self):
        """Orders as Python floats for the build-time estimate (learnable ones at their initial
        value: a variable created while tracing a ``tf.function`` cannot be read yet)."""
        return 2.0, 2.0

    def _build_normalization(self, kernel_value, n_in, n_out, n_restarts=1):
        """Creates ``sigma`` (and ``u``, ``v``) holding a converged estimate for ``kernel_value``.

        ``v`` holds a block of ``k`` right vectors (row 0: the top one) for the spectral norm
        (see :func:`subspace_iteration`), a single vector ``[1, n_in]`` for mixed norms.
        """
        with tf.init_scope():            # runs eagerly even if build is reached while tracing
            if self._exact_norm(kernel_value) is not None:
                u = v = None
                sigma = self._exact_norm(kernel_value)
            else:
                spectral = self._is_spectral()
                rows = min(self.block_size, n_in, n_out) if spectral else n_restarts
                seed = np.array([0 if self.seed is None else self.seed, 7919], np.int32)
                v0 = tf.random.stateless_normal((rows, n_in), seed=seed, dtype=kernel_value.dtype)
                # From a random start convergence is slow when the top singular values are
                # close: a 10x tighter tolerance keeps the one-off estimate inside ``margin``.
                u, v, sigma, _ = self._estimate(kernel_value, v0, self._build_orders(), None,
                                                0.1 * self.atol, 0.1 * self.rtol,
                                                self.max_iterations)
        self.sigma = self.add_weight(shape=(), initializer=_constant(sigma), trainable=False,
                                     aggregation=_AGGREGATION, name="sigma")
        if u is not None:
            self.u = self.add_weight(shape=u.shape, initializer=_constant(u), trainable=False,
                                     aggregation=_AGGREGATION, name="u")
            self.v = self.add_weight(shape=v.shape, initializer=_constant(v), trainable=False,
                                     aggregation=_AGGREGATION, name="v")

    def _estimate(self, kernel, v0, orders, n_iterations, atol, rtol, max_iterations):
        """``(u, v, sigma, iterations)`` for ``kernel`` from ``v0`` (``u = v = None`` if exact)."""
        exact = self._exact_norm(kernel)
        if exact is not None:
            return None, None, exact, tf.constant(0, tf.int32)
        matrix = self._matrix(kernel)
        if self._is_spectral() and matrix is not None:
            return matrix_subspace_iteration(matrix, v0, n_iterations=n_iterations,
                                             max_iterations=max_iterations, atol=atol, rtol=rtol)
        matvec, rmatvec = self._operator(kernel)
        if self._is_spectral():
            return subspace_iteration(matvec, rmatvec, v0, n_iterations=n_iterations,
                                      max_iterations=max_iterations, atol=atol, rtol=rtol)
        domain, codomain = orders
        result = power_iteration(matvec, rmatvec, v0, domain=domain, codomain=codomain,
                                 n_iterations=n_iterations, max_iterations=max_iterations,
                                 atol=atol, rtol=rtol)
        u, v, sigma = best_restart(result)
        return u, v[None], sigma, result.iterations

    def update_normalization(self, n_iterations=None, atol=None, rtol=None, max_iterations=None):
        """Refreshes ``sigma`` (and ``u``, ``v``) by power iteration warm-started from ``v``.

        Args:
          n_iterations: run exactly this many iterations; ``None`` (default): adaptive, the
            stopping rule of :mod:`tfresflow.lipschitz.power_iteration` (the estimated
            remaining increase of ``sigma`` is at most ``atol + rtol * sigma``), at most
            ``max_iterations``.
          atol, rtol, max_iterations: override the layer's defaults for this call.

        Returns:
          The number of iterations run (int32 scalar tensor; 0 for closed-form norms).

        Raises:
          ValueError: if the layer is not built, or ``n_iterations`` is not positive.
        """
        if not self.built:
            raise ValueError(f"Layer {self.name!r} must be built before "
                             "`update_normalization` (call it on data or call `build`).")
        n_iterations, atol, rtol, max_iterations = self._update_settings(
            n_iterations, atol, rtol, max_iterations)
        args = (tf.constant(0 if n_iterations is None else n_iterations, tf.int32),
                tf.constant(atol, tf.float32), tf.constant(rtol, tf.float32),
                tf.constant(max_iterations, tf.int32))
        if tf.executing_eagerly():
            return _compiled_update(self)(*args, fixed=n_iterations is not None)
        return self._update_graph(*args, fixed=n_iterations is not None)

    def _update_settings(self, n_iterations, atol, rtol, max_iterations):
        """Validated ``(n_iterations, atol, rtol, max_iterations)`` with the layer's defaults."""
        return (None if n_iterations is None
                else check_positive_int(n_iterations, "n_iterations"),
                self.atol if atol is None else _validate_nonnegative(atol, "atol"),
                self.rtol if rtol is None else _validate_nonnegative(rtol, "rtol"),
                self.max_iterations if max_iterations is None
                else check_positive_int(max_iterations, "max_iterations"))

    def _batch_key(self, settings):
        """Layers with equal keys can share one batched update (spectral matrix layers)."""
        if self.v is None or not self._is_spectral() or self._matrix(self.kernel) is None:
            return None
        return (tuple(self.kernel.shape), tuple(self.v.shape), self.kernel.dtype, settings)

    def _update_graph(self, n_iterations, atol, rtol, max_iterations, fixed):
        kernel = tf.stop_gradient(tf.convert_to_tensor(self.kernel))
        orders = tuple(o if isinstance(o, (int, float)) else tf.stop_gradient(o)
                       for o in self._norm_orders())
        v0 = None if self.v is None else tf.convert_to_tensor(self.v)
        u, v, sigma, iterations = self._estimate(kernel, v0, orders,
                                                 n_iterations if fixed else None,
                                                 atol, rtol, max_iterations)
        if u is not None:
            self.u.assign(u)
            self.v.assign(v)
        self.sigma.assign(sigma)
        return iterations

    # ------------------------------------------------------------------ call-time scale
    def operator_norm(self, kernel=None):
        """``sigma`` as used in ``call`` (differentiable in the weights; see module docstring)."""
        kernel = tf.convert_to_tensor(self.kernel if kernel is None else kernel)
        exact = self._exact_norm(kernel)
        if exact is not None:
            return exact
        u = tf.stop_gradient(tf.convert_to_tensor(self.u))[None]
        v = tf.stop_gradient(tf.convert_to_tensor(self.v))[:1]
        matvec, _ = self._operator(kernel)
        if self._learnable_orders():
            # One power step with the live orders (kernel held constant) so that the orders
            # receive gradients; <u', W v'> is still a lower bound of ||W||_{p->q}.
            frozen_matvec, frozen_rmatvec = self._operator(tf.stop_gradient(kernel))
            domain, codomain = self._norm_orders()
            u, v = power_iteration_step(frozen_matvec, frozen_rmatvec, v, domain, codomain)
        return tf.reduce_sum(u * matvec(v))

    def lipschitz_scale(self, kernel=None):
        """The divisor ``max(1, sigma (1 + margin) / coeff)`` applied to the weights."""
        sigma = self.operator_norm(kernel)
        return tf.maximum(tf.constant(1.0, sigma.dtype), sigma * (1.0 + self.margin) / self.coeff)

    def effective_kernel(self):
        """``W / max(1, sigma (1 + margin) / coeff)``: the kernel ``call`` actually uses."""
        kernel = tf.convert_to_tensor(self.kernel)
        return kernel / self.lipschitz_scale(kernel)

    def get_config(self):
        return {**super().get_config(), "coeff": self.coeff, "margin": self.margin,
                "atol": self.atol, "rtol": self.rtol, "max_iterations": self.max_iterations,
                "block_size": self.block_size, "seed": self.seed}


def update_layers_batched(layers, n_iterations=None, atol=None, rtol=None,
                          max_iterations=None):
    """Graph-mode update of many layers: same-shape spectral matrix layers in one batched loop.

    Equivalent to calling :meth:`LipschitzLayer.update_normalization` on each layer (the
    batched loop stops when every member satisfies its stopping rule), but the graph holds
    one loop per group instead of one per layer, which keeps tracing fast for deep flows.
    """
    groups = {}
    for layer in layers:
        settings = layer._update_settings(n_iterations, atol, rtol, max_iterations)
        key = layer._batch_key(settings)
        groups.setdefault(key if key is not None else ("single", id(layer)), []).append(
            (layer, settings))
    for key, members in groups.items():
        if key[0] == "single" or len(members) == 1:
            for layer, (n_it, a, r, m) in members:
                layer._update_graph(tf.constant(0 if n_it is None else n_it, tf.int32),
                                    tf.constant(a, tf.float32), tf.constant(r, tf.float32),
                                    tf.constant(m, tf.int32), fixed=n_it is not None)
            continue
        group = [layer for layer, _ in members]
        n_it, a, r, m = members[0][1]
        matrices = tf.stack([tf.stop_gradient(layer._matrix(tf.convert_to_tensor(layer.kernel)))
                             for layer in group])
        blocks = tf.stack([tf.convert_to_tensor(layer.v) for layer in group])
        u, v, sigma, _ = matrix_subspace_iteration(matrices, blocks, n_iterations=n_it,
                                                   max_iterations=m, atol=a, rtol=r)
        for i, layer in enumerate(group):
            layer.u.assign(u[i])
            layer.v.assign(v[i])
            layer.sigma.assign(sigma[i])


def _constant(value):
    """An initializer returning ``value`` (a tensor computed eagerly at build)."""
    def initializer(shape, dtype=None):
        return tf.cast(value, dtype) if dtype is not None else value
    return initializer


def _compiled_update(layer):
    fn = _COMPILED_UPDATES.get(layer)
    if fn is None:
        ref = weakref.ref(layer)

        @tf.function(autograph=False)
        def fn(n_iterations, atol, rtol, max_iterations, fixed):
            return ref()._update_graph(n_iterations, atol, rtol, max_iterations, fixed)

        _COMPILED_UPDATES[layer] = fn
    return fn
