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
``tf.distribute``). A residual function may instead take its weights as *tensors*: ``g`` then
declares them as ``g.explicit_weights`` (the shared block function of
:mod:`tfresflow.bijectors.shared_call` does), and they become explicit inputs of the custom
gradient, which returns their gradients as input gradients (a custom gradient returns nothing
for tensors it merely closes over).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 3.2, eq. 8).
"""
import tensorflow as tf

#: Upstream gradients whose spread is below this fraction of their magnitude count as uniform.
UNIFORM_RTOL = 1e-6


def _by_ref(variables, grads):
    return {v.ref(): gr for v, gr in zip(variables, grads)}


def _grads_by_ref(tape, target, x, weights=(), output_gradients=None):
    """``(d target / dx, {variable.ref(): gradient}, [d target / dw for w in weights])`` over
    the tape's watched variables and the explicit weight tensors."""
    variables = [v for v in tape.watched_variables()]
    n = len(weights)
    grads = tape.gradient(target, [x, *weights, *variables], output_gradients=output_gradients)
    return grads[0], _by_ref(variables, grads[1 + n:]), list(grads[1:1 + n])


def _watch(tape, x, weights):
    tape.watch(x)
    for w in weights:
        tape.watch(w)


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

    ``g.explicit_weights`` (optional): the weight tensors ``g`` closes over; see the module
    docstring.
    """
    expand = [-1] + [1] * (x.shape.rank - 1)
    weights = list(getattr(g, "explicit_weights", ()))

    def zeros_if_none(grads, like):
        return [tf.zeros_like(w) if d is None else d for d, w in zip(grads, like)]

    @tf.custom_gradient
    def log_det_with_early_gradient(x, seed, *weights):
        with tf.GradientTape() as tape:
            _watch(tape, x, weights)
            gx, est, s = surrogate_pass(x, seed, outer_tape=tape)
        ds_dx, ds_dvar, ds_dw = _grads_by_ref(tape, s, x, weights)
        ds_dx = tf.zeros_like(x) if ds_dx is None else ds_dx
        ds_dw = zeros_if_none(ds_dw, weights)
        # The outputs wait for the early gradients. Without this, a graph executor runs the
        # next blocks (which only need g(x)) before this block's second-order pass, so every
        # block's activations stay alive at once -- the memory this mode exists to save.
        with tf.control_dependencies(
                [ds_dx, *ds_dw] + [grad for grad in ds_dvar.values() if grad is not None]):
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
                _watch(tape_g, x_late, weights)
                gx_again = g(x_late)
            dx_g, dvar_g, dw_g = _grads_by_ref(tape_g, gx_again, x_late, weights,
                                               output_gradients=d_gx)
            dx = _add(dx_g, ds_dx * tf.reshape(d_ld, expand))
            dw = []
            if weights:
                # The explicit weights' log-det part, as for variables below: uniform upstream
                # times the early gradient, else the recomputed weighted surrogate.
                def uniform_w():
                    return [d * d_ld[0] for d in ds_dw]

                def weighted_w():
                    with tf.GradientTape() as tape_s:
                        _watch(tape_s, x_late, weights)
                        _, _, s_again = surrogate_pass(x_late, seed, outer_tape=tape_s)
                    return zeros_if_none(
                        _grads_by_ref(tape_s, s_again, x_late, weights,
                                      output_gradients=d_ld)[2], weights)

                dw_ld = tf.cond(_uniform(d_ld), uniform_w, weighted_w)
                dw = [_add(a, b) for a, b in zip(dw_g, dw_ld)]
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
                    _, again, _ = _grads_by_ref(tape_s, s_again, x_late,
                                                output_gradients=d_ld)
                    return [again[v.ref()] if again.get(v.ref()) is not None
                            else tf.zeros_like(ds_dvar[v.ref()]) for v in connected]

                parts = tf.cond(_uniform(d_ld), uniform_upstream, weighted_recompute)
                dvar_ld = _by_ref(connected, parts)
            dvars = [_add(dvar_g.get(v.ref()), dvar_ld.get(v.ref())) for v in variables]
            inputs = (dx, None, *dw)
            if not variables:
                return inputs
            return inputs, dvars

        return (gx, est), grad_fn

    return log_det_with_early_gradient(x, seed, *weights)


def _uniform(d_ld):
    """Whether every example's upstream log-det gradient is the same (up to UNIFORM_RTOL)."""
    spread = tf.reduce_max(d_ld) - tf.reduce_min(d_ld)
    return spread <= UNIFORM_RTOL * tf.reduce_max(tf.abs(d_ld))
