"""Backward-in-forward: the log-det gradient computed during the forward pass.

Chen et al. (2019, "Residual Flows", Section 3.2, eq. 8): since ``log det(I + J_g(x, theta))``
is a scalar per example,

    dL/dtheta = sum_i  dL/d logdet_i  *  d logdet_i / dtheta,

so ``d logdet / d(x, theta)`` (here: the gradient of the Neumann surrogate ``s``, see
:mod:`tfresflow.logdet.series`) can be computed inside the forward pass, its second-order graph
released, and only multiplied by the upstream gradient in the global backward pass.

Weighted losses. The parameter gradient precomputed in the forward pass is summed over the
batch, so it can only be scaled by one number: it is exact when every example's log-det gets
the same upstream gradient (a plain batch-mean likelihood). The reference implementation silently
uses the first example's upstream value. Here the backward pass checks (``tf.cond``) whether the
upstream gradients are uniform; if not (sample weights, importance weights, masking), it
recomputes the surrogate from the same seed and backpropagates it with the per-example weights,
which is exact at the cost of one more chain in that step. The input gradient is always exact
(per example), because ``s_i`` depends on ``x_i`` only.

The gradient of ``g(x)`` itself (the ``z = x + g(x)`` path) is computed in the backward pass by
re-evaluating ``g`` (one extra forward of ``g``), so no part of the forward graph has to be kept.
Variables are matched to the ones TensorFlow passes to the gradient function by ``ref()``, taking
them from the tapes' ``watched_variables()`` (which also works for ``MirroredVariable``\\ s under
``tf.distribute``).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 3.2, eq. 8).
"""
import tensorflow as tf

#: Upstream gradients whose spread is below this fraction of their magnitude count as uniform.
UNIFORM_RTOL = 1e-6


def _by_ref(variables, grads):
    return {v.ref(): gr for v, gr in zip(variables, grads)}


def _grads_by_ref(tape, target, x, output_gradients=None):
    """``(d target / dx, {variable.ref(): gradient})`` over the tape's watched variables."""
    variables = tape.watched_variables()
    grads = tape.gradient(target, [x, *variables], output_gradients=output_gradients)
    return grads[0], _by_ref(variables, grads[1:])


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def backward_in_forward(g, surrogate_pass, x, seed):
    """``(g(x), log_det)`` whose log-det gradient was computed in the forward pass.

    Args:
      g: the residual function (a Keras layer or callable acting per example).
      surrogate_pass: ``(x, seed, outer_tape) -> (g(x), estimate, s)`` with ``s`` the
        per-example Neumann surrogate, pausing ``outer_tape`` (the tape recording it) during
        the series; deterministic given ``seed`` (it is re-run when upstream weights differ).
      x: inputs ``[batch, *event]``.
      seed: int32 ``[2]`` stateless seed (passed positionally: graph-mode
        ``tf.custom_gradient`` does not accept keyword arguments).
    """
    expand = [-1] + [1] * (x.shape.rank - 1)

    @tf.custom_gradient
    def log_det_with_early_gradient(x, seed):
        with tf.GradientTape() as tape:
            tape.watch(x)
            gx, est, s = surrogate_pass(x, seed, outer_tape=tape)
        ds_dx, ds_dvar = _grads_by_ref(tape, s, x)
        ds_dx = tf.zeros_like(x) if ds_dx is None else ds_dx
        # The outputs wait for the early gradients. Without this, a graph executor runs the
        # next blocks (which only need g(x)) before this block's second-order pass, so every
        # block's activations stay alive at once -- the memory this mode exists to save.
        with tf.control_dependencies(
                [ds_dx] + [grad for grad in ds_dvar.values() if grad is not None]):
            gx, est = tf.identity(gx), tf.identity(est)

        def grad_fn(d_gx, d_ld, variables=None):
            variables = list(variables or [])
            unknown = [v.name for v in variables if v.ref() not in ds_dvar]
            if unknown:
                raise RuntimeError(f"backward_in_forward: variables {unknown} were read in the "
                                   "forward pass but not seen by its tape.")
            d_gx = tf.zeros_like(x) if d_gx is None else d_gx
            d_ld = tf.zeros(tf.shape(x)[:1], x.dtype) if d_ld is None else d_ld
            # Path z = x + g(x): re-evaluate g and backpropagate d_gx. The control dependency
            # keeps the graph executor from re-evaluating g early (during the forward pass),
            # which would hold g's activations for every block until the backward pass.
            with tf.control_dependencies([d_gx, d_ld]):
                x_late = tf.identity(x)
            with tf.GradientTape() as tape_g:
                tape_g.watch(x_late)
                gx_again = g(x_late)
            dx_g, dvar_g = _grads_by_ref(tape_g, gx_again, x_late, output_gradients=d_gx)
            dx = _add(dx_g, ds_dx * tf.reshape(d_ld, expand))
            # Path log_det: precomputed gradients times the (uniform) upstream, else recompute.
            connected = [v for v in variables if ds_dvar[v.ref()] is not None]
            dvar_ld = {}
            if connected:
                def uniform_upstream():
                    return [ds_dvar[v.ref()] * d_ld[0] for v in connected]

                def weighted_recompute():
                    with tf.GradientTape() as tape_s:
                        tape_s.watch(x_late)
                        _, _, s_again = surrogate_pass(x_late, seed, outer_tape=tape_s)
                    _, again = _grads_by_ref(tape_s, s_again, x_late, output_gradients=d_ld)
                    return [again[v.ref()] if again.get(v.ref()) is not None
                            else tf.zeros_like(ds_dvar[v.ref()]) for v in connected]

                spread = tf.reduce_max(d_ld) - tf.reduce_min(d_ld)
                uniform = spread <= UNIFORM_RTOL * tf.reduce_max(tf.abs(d_ld))
                parts = tf.cond(uniform, uniform_upstream, weighted_recompute)
                dvar_ld = _by_ref(connected, parts)
            dvars = [_add(dvar_g.get(v.ref()), dvar_ld.get(v.ref())) for v in variables]
            if not variables:
                return dx, None
            return (dx, None), dvars

        return (gx, est), grad_fn

    return log_det_with_early_gradient(x, seed)
