"""Generalised power iteration for induced (mixed) operator norms ``||A||_{p->q}``.

For a linear operator ``A`` (a dense matrix or a convolution, given by its action ``matvec``
and adjoint ``rmatvec``), the induced norm is ``||A||_{p->q} = sup_{x != 0} ||A x||_q / ||x||_p``
(Chen et al., 2019, Residual Flows, §3.4, eq. (11)). For ``p = q = 2`` it is the spectral norm
and the iteration below is the classical power method on ``A^T A`` (Miyato et al., 2018;
Gouk et al., 2018 for convolutions); for other orders it is Boyd's / Higham's generalised power
method as used by Johnston (2016, QETLAB ``InducedMatrixNorm``), the algorithm the Residual Flows
paper cites.

One iteration, from ``v`` with ``||v||_p = 1``::

    y  = A v                     sigma_k  = ||y||_q
    u  = dual(y, q)              ||u||_{q*} = 1 and <u, y> = ||y||_q     (Hoelder equality)
    z  = A^T u                   ||z||_{p*} = <u, A v'>  for the v' below
    v' = dual(z, p*)             ||v'||_p = 1 and <v', z> = ||z||_{p*}

with dual orders ``1/r + 1/r* = 1``. Every quantity is a *lower bound* of the induced norm and
the sequence is non-decreasing: ``||A v||_q <= ||A^T u||_{p*} <= ||A v'||_q``. For ``p = q = 2``
it converges to the top singular value from almost every start; for other orders it converges
to a local maximum only (computing ``||A||_{p->q}`` is NP-hard in general, e.g. ``inf -> 1``),
which is why callers may run several restarts. On return the state satisfies
``sigma = <u, A v>`` exactly, so a layer can recompute ``sigma`` from the stored ``(u, v)`` with
the live weights (the reference's ``compute_weight(update=False)``).

Stopping rule (the adaptive scheme of Residual Flows, App. E): stop when the estimate grows by at
most ``atol + rtol * sigma`` in one iteration, or after ``max_iterations``. Because the estimate
only grows, a stop never hides a decrease; float round-off (a negative change) also stops.
"""
import collections
import math

import tensorflow as tf

PowerIterationResult = collections.namedtuple(
    "PowerIterationResult", ["u", "v", "sigma", "iterations"])
PowerIterationResult.__doc__ = """Result of :func:`power_iteration`.

Fields: ``u`` ([K, n_out], ``||u||_{q*} = 1``), ``v`` ([K, n_in], ``||v||_p = 1``),
``sigma`` ([K], ``= <u, A v>``, a lower bound of ``||A||_{p->q}`` per restart) and
``iterations`` (int32 scalar, iterations run)."""


def is_python_order(order):
    """True if ``order`` is a Python number (possibly ``inf``), False for a tensor."""
    return isinstance(order, (int, float)) and not isinstance(order, bool)


def dual_order(order):
    """``r*`` with ``1/r + 1/r* = 1`` (``1* = inf``, ``inf* = 1``); tensors must lie in (1, inf)."""
    if is_python_order(order):
        if order == 1:
            return math.inf
        if math.isinf(order):
            return 1.0
        return order / (order - 1.0)
    return order / (order - 1.0)


def lp_norm(x, order):
    """``||x||_order`` over the last axis (``order`` a Python number in [1, inf] or a tensor > 1).

    General orders are computed as ``m * (sum (|x|/m)^r)^(1/r)`` with ``m = max|x|`` so that large
    orders neither overflow nor underflow.
    """
    ax = tf.abs(x)
    if is_python_order(order):
        if math.isinf(order):
            return tf.reduce_max(ax, axis=-1)
        if order == 1:
            return tf.reduce_sum(ax, axis=-1)
        if order == 2:
            return tf.norm(x, axis=-1)
    m = tf.reduce_max(ax, axis=-1, keepdims=True)
    safe_m = tf.where(m > 0, m, tf.ones_like(m))
    r = tf.cast(order, x.dtype)
    scaled = tf.reduce_sum(tf.pow(ax / safe_m, r), axis=-1) ** (1.0 / r)
    return tf.squeeze(m, -1) * scaled


def dual_vector(y, order):
    """The vector ``d`` with ``||d||_{order*} = 1`` and ``<d, y> = ||y||_order`` (last axis).

    Closed forms: ``order = 2``: ``y/||y||_2``; ``order = 1``: ``sign(y)``; ``order = inf``: a
    signed one-hot at ``argmax |y|``; otherwise ``sign(y) a^(r-1) / (sum a^r)^((r-1)/r)`` with
    ``a = |y| / max|y|`` (Hoelder's equality case). A zero ``y`` maps to zero.
    """
    tiny = tf.constant(1e-30, y.dtype)
    if is_python_order(order):
        if order == 2:
            return y / tf.maximum(tf.norm(y, axis=-1, keepdims=True), tiny)
        if order == 1:
            return tf.sign(y)
        if math.isinf(order):
            idx = tf.argmax(tf.abs(y), axis=-1)
            onehot = tf.one_hot(idx, tf.shape(y)[-1], dtype=y.dtype)
            return onehot * tf.sign(y)
    ay = tf.abs(y)
    m = tf.reduce_max(ay, axis=-1, keepdims=True)
    a = ay / tf.maximum(m, tiny)
    r = tf.cast(order, y.dtype)
    powered = tf.pow(tf.maximum(a, tiny), r - 1.0) * tf.cast(a > 0, y.dtype)
    total = tf.reduce_sum(powered * a, axis=-1, keepdims=True)        # sum a^r
    return tf.sign(y) * powered / tf.maximum(total, tiny) ** ((r - 1.0) / r)


def power_iteration_step(matvec, rmatvec, v, domain=2.0, codomain=2.0):
    """One generalised power step from ``v``: returns ``(u, v')`` (see module docstring)."""
    u = dual_vector(matvec(v), codomain)
    v_new = dual_vector(rmatvec(u), dual_order(domain))
    return u, v_new


def power_iteration(matvec, rmatvec, v0, domain=2.0, codomain=2.0, n_iterations=None,
                    max_iterations=200, atol=1e-6, rtol=1e-5):
    """Estimates ``||A||_{domain -> codomain}`` from the starting vectors ``v0``.

    Args:
      matvec: ``v [K, n_in] -> A v [K, n_out]`` (batched over ``K`` restarts).
      rmatvec: ``u [K, n_out] -> A^T u [K, n_in]`` (the exact adjoint).
      v0: [K, n_in] starting vectors (normalised here in the ``domain`` norm; warm starts are
        the previous ``v``).
      domain, codomain: orders ``p``, ``q``: Python numbers in [1, inf] or scalar tensors in
        (1, inf) (learnable orders).
      n_iterations: if given (int or int tensor > 0), run exactly that many iterations;
        otherwise stop adaptively (``atol``, ``rtol``) after at most ``max_iterations``.
      max_iterations, atol, rtol: adaptive stopping rule, see the module docstring.

    Returns:
      A :class:`PowerIterationResult`; ``sigma[k] = <u[k], A v[k]>`` is a lower bound of the
      induced norm for every restart ``k``.
    """
    v = v0 / tf.maximum(lp_norm(v0, domain), 1e-30)[:, None]      # ||v||_p = 1
    y = matvec(v)
    sigma = lp_norm(y, codomain)
    dtype = sigma.dtype
    if n_iterations is not None:
        fixed = True
        limit = tf.cast(n_iterations, tf.int32)
    else:
        fixed = False
        limit = tf.cast(max_iterations, tf.int32)
    atol = tf.cast(atol, dtype)
    rtol = tf.cast(rtol, dtype)

    def cond(k, v, y, sigma, delta):
        keep_going = tf.logical_or(
            tf.constant(fixed), tf.reduce_any(delta > atol + rtol * sigma))
        return tf.logical_and(k < limit, keep_going)

    def body(k, v, y, sigma, delta):
        u = dual_vector(y, codomain)
        v_new = dual_vector(rmatvec(u), dual_order(domain))
        y_new = matvec(v_new)
        sigma_new = lp_norm(y_new, codomain)
        return k + 1, v_new, y_new, sigma_new, sigma_new - sigma

    k0 = tf.constant(0, tf.int32)
    delta0 = tf.fill(tf.shape(sigma), tf.constant(float("inf"), dtype))
    k, v, y, sigma, _ = tf.while_loop(
        cond, body, (k0, v, y, sigma, delta0),
        shape_invariants=(k0.shape, v.shape, y.shape, sigma.shape, delta0.shape))
    u = dual_vector(y, codomain)
    sigma = tf.reduce_sum(u * y, axis=-1)      # = ||A v||_q, now exactly <u, A v>
    return PowerIterationResult(u=u, v=v, sigma=sigma, iterations=k)


def best_restart(result):
    """Keeps the restart with the largest estimate: ``(u [n_out], v [n_in], sigma [])``."""
    best = tf.argmax(result.sigma)
    return result.u[best], result.v[best], result.sigma[best]
