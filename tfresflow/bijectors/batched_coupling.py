"""C affine couplings with their own conditioner weights as one batched bijector.

Used for the batched (``tfd.MixtureSameFamily``-style) form of
:class:`tfresflow.distributions.BoostedFlow`: ``log_prob`` runs all C components in one
vectorised pass, and :func:`forward_select` runs, per sample, only the forward map of the
component that sample was drawn from.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803.
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896.
"""
import numpy as np
import tensorflow as tf

from tfresflow.bijectors.base import deserialize_layer, unique_name
from tfresflow.bijectors.coupling import AffineCoupling, coupling_partition
from tfresflow.bijectors.serialization import register
from tfresflow.bijectors.tree import forward_order
from tfresflow.nets.batched_mlp import BatchedMLP

__all__ = ["BatchedAffineCoupling", "forward_select", "forward_order"]


def forward_select(bijector, z, component_ids, num_components):
    """Applies, row by row, the forward map of component ``component_ids[n]`` to ``z[n]``.

    ``bijector`` is a batched step with ``forward_component(z, c)`` or a ``tfb.Chain`` of them.
    Rows are partitioned by component once; each group runs through its own parameter sets
    only, and the results are stitched back in the original row order.
    """
    steps = forward_order(bijector)
    rows = tf.dynamic_partition(tf.range(tf.shape(z)[0]), component_ids, num_components)
    parts = []
    for c in range(num_components):
        x = tf.gather(z, rows[c])
        for step in steps:
            x = step.forward_component(x, c)
        parts.append(x)
    return tf.dynamic_stitch(rows, parts)


@register
class BatchedAffineCoupling(AffineCoupling):
    """C affine couplings (same mask sizes, own conditioner weights) as one bijector.

    Batch shape ``[C]`` (TFP convention): ``inverse`` maps data ``[..., C or 1, D]`` to latents
    ``[..., C, D]``, applying coupling ``c`` to slice ``c``, with exact log-det ``[..., C]``
    (equations of :class:`tfresflow.bijectors.AffineCoupling`). A
    ``tfd.TransformedDistribution`` over a chain of these has batch shape ``[C]`` and serves as
    the components of a batched :class:`BoostedFlow`. :meth:`forward_select` applies, per row,
    only the selected coupling.

    ``reverse`` may be one flag or one flag per component (e.g. the alternating mask offsets of
    boosted components); the partitions must then have equal sizes (even ``D`` for ``half``),
    and split/merge gather per-component coordinates from the flattened ``[..., C * D]`` input.
    """

    def __init__(self, num_components, event_size, hidden_units=(64, 64), mask="half",
                 reverse=False, activation="tanh", log_scale_clamp=2.0, conditioner=None,
                 validate_args=False, name=None):
        name = unique_name(name, "batched_affine_coupling")
        self.num_components = int(num_components)
        flags = [bool(reverse)] * self.num_components if isinstance(reverse, (bool, int)) \
            else [bool(r) for r in reverse]
        if len(flags) != self.num_components:
            raise ValueError(f"`reverse` must be one flag or {self.num_components} flags, got "
                             f"{reverse!r}.")
        parts = [coupling_partition(int(event_size), mask, r) for r in flags]
        if len({(len(cond), len(trans)) for cond, trans in parts}) != 1:
            raise ValueError(f"{name}: per-component `reverse` flags need partitions of equal "
                             f"sizes; event_size={event_size} with mask={mask!r} has "
                             f"{sorted({(len(c), len(t)) for c, t in parts})}.")
        self.reverse_flags = tuple(flags)
        self._parts = parts
        if conditioner is None:
            conditioner = BatchedMLP(self.num_components, 2 * len(parts[0][1]), hidden_units,
                                     activation=activation, name=f"{name}_conditioner")
        else:
            conditioner = deserialize_layer(conditioner)
        super().__init__(event_size, hidden_units=hidden_units, mask=mask, reverse=flags[0],
                         activation=activation, log_scale_clamp=log_scale_clamp,
                         conditioner=conditioner, validate_args=validate_args, name=name)
        if conditioner.out_units != 2 * len(self._trans_idx):
            raise ValueError(f"{name}: conditioner must output {2 * len(self._trans_idx)} units, "
                             f"got {conditioner.out_units}.")
        self._mixed = len(set(flags)) > 1
        if self._mixed:
            d = int(event_size)
            offsets = d * np.arange(self.num_components)[:, None]
            # Flat positions in [..., C * D] of each component's (a, b) coordinates, and of the
            # merged output in concat([a_c, b_c]) order (C * D, component-major).
            self._flat_a = (offsets + np.stack([c for c, _ in parts])).ravel()
            self._flat_b = (offsets + np.stack([t for _, t in parts])).ravel()
            self._flat_merge = (offsets + np.stack(
                [np.argsort(np.concatenate(p)) for p in parts])).ravel()

    def get_config(self):
        flags = self.reverse_flags
        return {**super().get_config(), "num_components": self.num_components,
                "reverse": flags[0] if len(set(flags)) == 1 else list(flags)}

    def _batch_shape(self, x_event_ndims):
        return tf.TensorShape([self.num_components])

    def _batch_shape_tensor(self, x_event_ndims):
        return tf.constant([self.num_components], tf.int32)

    def _conditioner_params(self, a):
        return self.conditioner(a)  # BatchedMLP maps [..., C, |a|] itself

    def _split(self, v):
        if not self._mixed:
            return super()._split(v)
        shape = tf.shape(v)
        lead = shape[:-2]
        v = tf.broadcast_to(v, tf.concat([lead, [self.num_components, shape[-1]]], 0))
        flat = tf.reshape(v, tf.concat([lead, [-1]], 0))
        n_a, n_b = len(self._parts[0][0]), len(self._parts[0][1])
        return (tf.reshape(tf.gather(flat, self._flat_a, axis=-1),
                           tf.concat([lead, [self.num_components, n_a]], 0)),
                tf.reshape(tf.gather(flat, self._flat_b, axis=-1),
                           tf.concat([lead, [self.num_components, n_b]], 0)))

    def _merge(self, a, b):
        # ``a`` may carry a singleton component axis while ``b`` has C: broadcast first.
        a = tf.broadcast_to(a, tf.concat([tf.shape(b)[:-1], tf.shape(a)[-1:]], 0))
        if not self._mixed:
            return super()._merge(a, b)
        both = tf.concat([a, b], -1)  # [..., C, D] in per-component (a, b) order
        shape = tf.shape(both)
        flat = tf.reshape(both, tf.concat([shape[:-2], [-1]], 0))
        return tf.reshape(tf.gather(flat, self._flat_merge, axis=-1), shape)

    def forward_component(self, z, c):
        """Sampling direction of coupling ``c`` (a Python int) alone on latents ``[m, D]``."""
        cond, trans = self._parts[c]
        a, b = tf.gather(z, cond, axis=-1), tf.gather(z, trans, axis=-1)
        shift, raw = tf.split(self.conditioner.call_component(a, c), 2, axis=-1)
        c_clamp = self.log_scale_clamp
        log_scale = c_clamp * tf.tanh(raw / c_clamp)
        merged = tf.concat([a, (b - shift) * tf.exp(-log_scale)], -1)
        return tf.gather(merged, np.argsort(np.concatenate([cond, trans])), axis=-1)
