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

Stopping rule (the adaptive scheme of Residual Flows, App. E, made stricter): with
``delta_k = sigma_k - sigma_{k-1}`` and ``r = delta_k / delta_{k-1}`` (capped at 0.99), the
power method converges geometrically, so the distance still to go is about
``delta_k r / (1 - r)`` (Aitken; ``r = 0.99`` when the previous step is unknown or was not an
increase). Stop when ``max(delta_k, delta_k r / (1 - r)) <= atol +
rtol * sigma``, or after ``max_iterations``. Stopping on the relative change ``delta_k`` alone
(the rule the paper describes) under-estimates badly when the top singular values are close
(slow convergence, small steps): from random starts its relative error can be far larger than
``rtol`` and than the extrapolated rule's at the same ``rtol``.
A round-off decrease (``delta_k <= 0``) stops. With several restarts or a stack of operators,
each member is frozen once it meets the rule and the loop ends when all have.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 3.4, eq. 11; Appendix E).
  Miyato, Kataoka, Koyama & Yoshida (2018), "Spectral Normalization for Generative Adversarial
    Networks", ICLR, arXiv:1802.05957.
  Gouk, Frank, Pfahringer & Cree (2018), "Regularisation of Neural Networks by Enforcing Lipschitz
    Continuity", arXiv:1804.04368.
  Johnston (2016), "QETLAB: A MATLAB toolbox for quantum entanglement", version 0.9,
    http://qetlab.com.
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


def _converged(delta, prev_delta, sigma, atol, rtol):
    """The stopping rule of the module docstring, elementwise."""
    known = tf.logical_and(tf.math.is_finite(prev_delta), prev_delta > 0)
    # Unknown ratio (first step, or a round-off step before): assume slow convergence.
    ratio = tf.where(known, tf.clip_by_value(delta / tf.where(known, prev_delta, 1.0),
                                             0.0, 0.99), 0.99)
    remaining = tf.where(tf.math.is_finite(delta),
                         tf.maximum(delta, delta * ratio / (1.0 - ratio)), delta)
    return remaining <= atol + rtol * sigma


def _iterate(step, state, sigma, n_iterations, max_iterations, atol, rtol):
    """Runs ``state, sigma = step(state)`` under the stopping rule of the module docstring.

    ``sigma`` may have leading batch axes (restarts, or a stack of operators) that ``state``
    tensors share: each member is frozen once it satisfies the rule (so round-off cannot
    wake it up again) and the loop ends when all are. Returns ``(iterations, state, sigma)``.
    """
    dtype = sigma.dtype
    fixed = n_iterations is not None
    limit = tf.cast(n_iterations if fixed else max_iterations, tf.int32)
    atol = tf.cast(atol, dtype)
    rtol = tf.cast(rtol, dtype)
    def freeze(done, old, new):
        extra = tf.ones(tf.reshape(tf.rank(new) - tf.rank(done), [1]), tf.int32)
        return tf.where(tf.reshape(done, tf.concat([tf.shape(done), extra], 0)), old, new)

    def cond(k, state, sigma, delta, prev_delta, done):
        if fixed:
            return k < limit
        return tf.logical_and(k < limit, tf.logical_not(tf.reduce_all(done)))

    def body(k, state, sigma, delta, prev_delta, done):
        new_state, new_sigma = step(state)
        state = tf.nest.map_structure(lambda o, n: freeze(done, o, n), state, new_state)
        new_delta = new_sigma - sigma
        prev_delta = tf.where(done, prev_delta, delta)
        delta = tf.where(done, delta, new_delta)
        sigma = tf.where(done, sigma, new_sigma)
        if not fixed:
            done = tf.logical_or(done, _converged(delta, prev_delta, sigma, atol, rtol))
        return k + 1, state, sigma, delta, prev_delta, done

    k0 = tf.constant(0, tf.int32)
    inf = tf.fill(tf.shape(sigma), tf.constant(float("inf"), dtype))
    done0 = tf.zeros(tf.shape(sigma), tf.bool)
    k, state, sigma, _, _, _ = tf.while_loop(cond, body, (k0, state, sigma, inf, inf, done0))
    return k, state, sigma


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
      max_iterations, atol, rtol: the adaptive stopping rule of the module docstring.

    Returns:
      A :class:`PowerIterationResult`; ``sigma[k] = <u[k], A v[k]>`` is a lower bound of the
      induced norm for every restart ``k``.
    """
    v = v0 / tf.maximum(lp_norm(v0, domain), 1e-30)[:, None]      # ||v||_p = 1
    y = matvec(v)

    def step(state):
        _, y = state
        v_new = dual_vector(rmatvec(dual_vector(y, codomain)), dual_order(domain))
        y_new = matvec(v_new)
        return (v_new, y_new), lp_norm(y_new, codomain)

    k, (v, y), _ = _iterate(step, (v, y), lp_norm(y, codomain), n_iterations,
                            max_iterations, atol, rtol)
    u = dual_vector(y, codomain)
    sigma = tf.reduce_sum(u * y, axis=-1)      # = ||A v||_q, now exactly <u, A v>
    return PowerIterationResult(u=u, v=v, sigma=sigma, iterations=k)


def _orthonormal_rows(x):
    """Rows spanning the same space as the rows of ``x`` [..., k, n], orthonormal (thin QR)."""
    q, _ = tf.linalg.qr(tf.linalg.matrix_transpose(x))
    return tf.linalg.matrix_transpose(q)


def _ritz_state(block, matvec):
    """``(V, Y, U, sigma)`` for the row space of ``block``: ``V`` orthonormal rows,
    ``Y = A V``, ``U`` = orthonormal rows of ``Y`` and ``sigma`` the largest singular value of
    the Rayleigh-Ritz matrix ``B = U A V^T = U Y^T`` (k x k), a lower bound of ``||A||_2``."""
    v = _orthonormal_rows(block)
    y = matvec(v)
    u = _orthonormal_rows(y)
    sigma = tf.linalg.svd(tf.matmul(u, y, transpose_b=True), compute_uv=False)[..., 0]
    return (v, y, u), sigma


def subspace_iteration(matvec, rmatvec, v_block, n_iterations=None, max_iterations=200,
                       atol=1e-6, rtol=1e-5):
    """Top singular triple of ``A`` by block power (subspace) iteration with Rayleigh-Ritz.

    Iterates ``V <- orth(A^T orth(A V))`` on a block of ``k`` vectors (Golub & Van Loan,
    "orthogonal iteration"). The top Ritz value converges like ``(sigma_{k+1}/sigma_1)^2`` per
    iteration instead of ``(sigma_2/sigma_1)^2``, and, more importantly for warm starts during
    training, an optimizer step that swaps the top two singular values cannot trap the
    estimate at the old top vector (a single warm-started vector sits at a saddle point of
    the power method and stops at once with the *second* singular value). ``k = 1`` is the
    classical power method. Two operator applications per iteration, as the power method.

    Args:
      matvec, rmatvec: as :func:`power_iteration`, on ``[..., k, n]`` blocks (leading axes: a
        batch of independent operators, see :func:`matrix_subspace_iteration`).
      v_block: [..., k, n_in] starting block (warm start: the previous block).
      n_iterations, max_iterations, atol, rtol: as :func:`power_iteration` (a batch stops when
        every member satisfies the rule).

    Returns:
      ``(u [..., n_out], v_block [..., k, n_in], sigma [...], iterations)``: ``v_block``
      rotated onto the Ritz vectors (row 0 = top right singular vector estimate ``v``), ``u``
      the matching left vector, and ``sigma = <u, A v>`` (a lower bound of the spectral norm).
    """
    def step(state):
        _, _, u = state
        return _ritz_state(rmatvec(u), matvec)

    state, sigma0 = _ritz_state(v_block, matvec)
    k, (v, y, u), _ = _iterate(step, state, sigma0, n_iterations, max_iterations, atol, rtol)
    s, p, q = tf.linalg.svd(tf.matmul(u, y, transpose_b=True))     # B = p diag(s) q^T
    u_top = tf.linalg.matvec(u, p[..., :, 0], transpose_a=True)
    rotated = tf.matmul(q, v, transpose_a=True)      # rows: right Ritz vectors, best first
    return u_top, rotated, s[..., 0], k


@tf.function(reduce_retracing=True, autograph=False)
def _compiled_matrix_subspace_iteration(matrix, v_block, n_iterations, max_iterations, atol,
                                        rtol, fixed):
    return subspace_iteration(
        lambda v: tf.matmul(v, matrix), lambda u: tf.matmul(u, matrix, transpose_b=True),
        v_block, n_iterations=n_iterations if fixed else None, max_iterations=max_iterations,
        atol=atol, rtol=rtol)


def matrix_subspace_iteration(matrix, v_block, n_iterations=None, max_iterations=200,
                              atol=1e-6, rtol=1e-5):
    """:func:`subspace_iteration` for ``x -> x @ matrix`` (``matrix``: [..., n_in, n_out]).

    Compiled once and shared by every dense layer (shapes are relaxed after the first
    retrace), and batched over leading axes, so many layers of one shape are updated by a
    single loop of batched matrix products.
    """
    dtype = matrix.dtype
    u, v, sigma, k = _compiled_matrix_subspace_iteration(
        matrix, v_block, tf.cast(0 if n_iterations is None else n_iterations, tf.int32),
        tf.cast(max_iterations, tf.int32), tf.cast(atol, dtype), tf.cast(rtol, dtype),
        n_iterations is not None)
    batch = matrix.shape[:-2]                # the relaxed trace forgets static shapes
    return (tf.ensure_shape(u, batch + matrix.shape[-1:]), tf.ensure_shape(v, v_block.shape),
            tf.ensure_shape(sigma, batch), k)


def best_restart(result):
    """Keeps the restart with the largest estimate: ``(u [n_out], v [n_in], sigma [])``."""
    best = tf.argmax(result.sigma)
    return result.u[best], result.v[best], result.sigma[best]
