"""``BoostedFlow``: a mixture of normalising flows sharing one base distribution.

Gradient boosted flows (Giaquinto & Banerjee, 2020, "Gradient Boosted Normalizing Flows",
eq. 7) build the density

    G(x) = sum_c rho_c g_c(x),        rho on the simplex,

where every component ``g_c`` is a flow over one shared base distribution. Here

* ``log_prob(x) = logsumexp_c(log rho_c + log g_c(x))`` (exact when every ``log g_c`` is);
* ``sample`` draws a component id ``j_n ~ Categorical(rho)`` *per sample* and runs only
  component ``j``'s flow on the samples assigned to it (``tf.dynamic_partition`` ->
  one ``sample`` per component -> ``tf.dynamic_stitch``). ``tfd.Mixture`` and
  ``tfd.MixtureSameFamily`` instead sample every component for every draw (C times the work,
  TFP issue #1208; ``benchmarks/boosted.py``, part 2, times both); the reference
  implementation draws one component for the whole batch, which is not a sample of the mixture.

Two forms:

* **list form**: ``components`` is a Python list of C distributions (``tfd.Distribution`` or
  tfresflow ``FlowModel``; any flow: coupling, residual, dense, relative-gradient) with equal
  event shape and scalar batch shape;
* **batched form** (``tfd.MixtureSameFamily``-style): ``components`` is *one* distribution
  whose rightmost batch dimension indexes the C components, e.g. a
  ``tfd.TransformedDistribution`` over a chain of
  :class:`~tfresflow.bijectors.BatchedAffineCoupling` (one bijector
  holding C parameter sets, batch shape ``[C]``) built by :func:`stack_coupling_flows`. Its
  ``log_prob`` evaluates all components in one vectorised pass; sampling still runs only the
  chosen component's parameters when every step implements ``forward_component`` (other
  batched distributions fall back to sampling all components and selecting, as
  MixtureSameFamily).

Batch and event shapes follow TFP: the mixture has the components' event shape and batch
shape ``[]`` (the component axis is reduced), ``sample(sample_shape)`` has shape
``sample_shape + event_shape``.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eq. 7).
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow._compat import TransformedDistributionType, samplers
from tfresflow.bijectors.batched_coupling import BatchedAffineCoupling, forward_select
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.bijectors.tree import forward_order, leaves

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["BoostedFlow", "stack_coupling_flows", "is_flow_model"]


# --------------------------------------------------------------------------- components
def is_flow_model(component):
    """Whether ``component`` is a tfresflow ``FlowModel`` (or quacks like one).

    Duck-typed (``log_prob``, ``sample``, ``event_shape``, ``distribution``, not a
    ``tfd.Distribution``) so that this layer and the boosting layer need not import the
    higher models layer.
    """
    return (not isinstance(component, tfd.Distribution) and hasattr(component, "log_prob")
            and hasattr(component, "sample") and hasattr(component, "event_shape")
            and hasattr(component, "distribution"))


def _component_event_shape(component):
    if isinstance(component, tfd.Distribution):
        return tf.TensorShape(component.event_shape)
    return tf.TensorShape(list(component.event_shape))


def _component_log_prob(component, x, seed):
    if isinstance(component, tfd.Distribution):
        return component.log_prob(x)
    return component.log_prob(x, seed=seed)


def _check_weights(weights, num_components):
    """Converts the unnormalised mixture weights rho; checks them when statically known."""
    if not isinstance(weights, tf.Variable):
        weights = tf.convert_to_tensor(weights, tf.float32)
    if weights.shape.rank != 1 or weights.shape[0] != num_components:
        raise ValueError(f"`weights` must have shape [{num_components}] (one per component), "
                         f"got {weights.shape}.")
    w = None if isinstance(weights, tf.Variable) else tf.get_static_value(weights)
    if w is not None and (not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0):
        raise ValueError(f"`weights` must be finite, non-negative and not all zero, got {w}.")
    return weights


def _sanitize_seed(seed):
    """A stateless int32 ``[2]`` seed (fresh random one for ``None``)."""
    return samplers.sanitize_seed(None if seed is None else trf_random.as_seed(seed))


# --------------------------------------------------------------------------- distribution
class BoostedFlow(tfd.Distribution):
    """Mixture ``G(x) = sum_c rho_c g_c(x)`` of flows (Giaquinto & Banerjee 2020, eq. 7).

    Args:
      components: a list of C distributions (``tfd.Distribution`` with batch shape ``[]`` or
        tfresflow ``FlowModel``) with equal event shape; or one distribution whose rightmost
        batch dimension indexes the C components (batched form, see the module docstring).
      weights: non-negative mixture weights rho of shape ``[C]`` (normalised to the simplex by
        :attr:`weights`); a ``tf.Variable`` is read at every call. Default: uniform.
      validate_args: add runtime checks of the weights.
      allow_nan_stats: TFP flag (kept for the ``tfd.Distribution`` interface).
      name: name of the distribution.

    Raises:
      TypeError: if a component is not a distribution or flow model.
      ValueError: on empty ``components``, mismatched event shapes, a non-scalar component
        batch shape (list form) or bad ``weights``.
    """

    def __init__(self, components, weights=None, validate_args=False, allow_nan_stats=True,
                 name="BoostedFlow"):
        parameters = dict(locals())
        if isinstance(components, tfd.Distribution):
            self._batched = True
            batch = tf.TensorShape(components.batch_shape)
            if batch.rank != 1 or batch[0] is None:
                raise ValueError("A batched `components` distribution needs batch shape [C] "
                                 f"(statically known; the C components); got {batch}.")
            num = int(batch[-1])
            event = tf.TensorShape(components.event_shape)
            dtype = components.dtype
            self._components = components
        else:
            self._batched = False
            try:
                components = list(components)
            except TypeError:
                raise TypeError("`components` must be a list of distributions/flow models or one "
                                f"batched distribution, got {type(components).__name__}.") from None
            if not components:
                raise ValueError("`components` must contain at least one distribution.")
            for i, c in enumerate(components):
                if not (isinstance(c, tfd.Distribution) or is_flow_model(c)):
                    raise TypeError(f"`components[{i}]` must be a tfd.Distribution or a tfresflow "
                                    f"FlowModel, got {type(c).__name__}.")
                if isinstance(c, tfd.Distribution) and tf.TensorShape(c.batch_shape) != []:
                    raise ValueError(
                        f"`components[{i}]` has batch shape {c.batch_shape}; the list form needs "
                        "scalar-batch components (use the batched form for a component axis).")
            event = _component_event_shape(components[0])
            for i, c in enumerate(components[1:], 1):
                if _component_event_shape(c) != event:
                    raise ValueError(f"All components must share one event shape: components[0] "
                                     f"has {event}, components[{i}] has "
                                     f"{_component_event_shape(c)}.")
            for i, c in enumerate(components):
                if isinstance(c, tfd.Distribution) and c.dtype != tf.float32:
                    raise ValueError(f"Components must have dtype float32; components[{i}] has "
                                     f"{c.dtype.name}.")
            num = len(components)
            dtype = tf.float32
            self._components = components
        self._num_components = num
        self._event = event
        if weights is None:
            weights = np.full([num], 1.0 / num, np.float32)
        self._rho = _check_weights(weights, num)
        super().__init__(dtype=dtype, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                         validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                         parameters=parameters, name=name)

    # ----------------------------------------------------------------- structure
    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict()

    @property
    def components(self):
        """The component list (list form) or the batched component distribution."""
        return self._components

    @property
    def num_components(self):
        """Number C of mixture components."""
        return self._num_components

    @property
    def is_batched(self):
        """True for the batched (MixtureSameFamily-style) form."""
        return self._batched

    @property
    def weights(self):
        """Mixture weights ``rho / sum(rho)`` on the simplex, shape ``[C]``."""
        rho = tf.cast(tf.convert_to_tensor(self._rho), tf.float32)
        if self.validate_args:
            rho = tf.debugging.assert_non_negative(rho, message="`weights` must be >= 0")
        return rho / tf.reduce_sum(rho)

    @property
    def log_weights(self):
        """``log`` of :attr:`weights` (``-inf`` for a zero weight)."""
        return tf.math.log(self.weights)

    def _batch_shape(self):
        return tf.TensorShape([])

    def _batch_shape_tensor(self):
        return tf.constant([], tf.int32)

    def _event_shape(self):
        return self._event

    def _event_shape_tensor(self):
        return tf.constant(self._event.as_list(), tf.int32)

    # ----------------------------------------------------------------- density
    def component_log_probs(self, x, seed=None):
        """``log g_c(x)`` for every component, shape ``[..., C]`` (unweighted).

        Args:
          x: values of shape ``[..., *event_shape]``.
          seed: optional stateless seed routed to stochastic ``FlowModel`` components.
        """
        x = tf.convert_to_tensor(x, self.dtype)
        if self._batched:
            # Insert the component axis just before the event dims: [..., 1, *event].
            return self._components.log_prob(tf.expand_dims(x, -1 - self._event.rank))
        seeds = self._split(seed, self._num_components)
        return tf.stack([_component_log_prob(c, x, None if seeds is None else seeds[i])
                         for i, c in enumerate(self._components)], axis=-1)

    def _log_prob(self, x, seed=None):
        return self.mixture_log_prob(self.component_log_probs(x, seed))

    def mixture_log_prob(self, log_g):
        """``log G = log sum_c rho_c exp(log g_c)`` from component log-densities ``[..., C]``.

        The mixing step of :meth:`log_prob`, for component log-densities computed another way
        (e.g. each component's exact log-det).
        """
        # log sum_c w_c exp(l_c - m) + m, with m the largest log g_c among components of
        # positive weight (so the sum cannot underflow to 0). Unlike logsumexp(log w + l) this
        # keeps d/dw_c = exp(l_c - m) / sum finite when a weight is exactly 0.
        w = self.weights
        log_g = tf.convert_to_tensor(log_g, self.dtype)
        m = tf.reduce_max(tf.where(w > 0, log_g, -np.inf), axis=-1, keepdims=True)
        m = tf.stop_gradient(tf.where(tf.math.is_finite(m), m, tf.zeros_like(m)))
        scaled = tf.exp(tf.minimum(log_g - m, 60.0))
        return tf.math.log(tf.reduce_sum(w * scaled, -1)) + m[..., 0]

    def responsibilities(self, x, seed=None):
        """Posterior component probabilities ``rho_c g_c(x) / G(x)``, shape ``[..., C]``."""
        return tf.nn.softmax(self.log_weights + self.component_log_probs(x, seed), -1)

    # ----------------------------------------------------------------- sampling
    @staticmethod
    def _split(seed, n):
        if seed is None:
            return None
        return tf.unstack(samplers.split_seed(_sanitize_seed(seed), n=n))

    def sample_component_ids(self, n, seed=None):
        """``n`` i.i.d. component ids ``j ~ Categorical(weights)`` (int32 ``[n]``)."""
        seed = _sanitize_seed(seed)
        logits = tf.where(self.weights > 0, self.log_weights, tf.float32.min)
        ids = tf.random.stateless_categorical(logits[tf.newaxis], n, seed=seed)[0]
        return tf.cast(ids, tf.int32)

    def _sample_n(self, n, seed=None):
        seed_ids, seed_comp = samplers.split_seed(_sanitize_seed(seed), n=2)
        ids = self.sample_component_ids(n, seed=seed_ids)
        if self._batched:
            return self._sample_batched(n, ids, seed_comp)
        num = self._num_components
        rows = tf.dynamic_partition(tf.range(n), ids, num)
        seeds = samplers.split_seed(seed_comp, n=num)
        parts = [c.sample(tf.size(rows[i]), seed=seeds[i])
                 for i, c in enumerate(self._components)]
        return tf.dynamic_stitch(rows, parts)

    def _sample_batched(self, n, ids, seed):
        comps = self._components
        if _supports_selection(comps):
            z = comps.distribution.sample(n, seed=seed)
            return forward_select(comps.bijector, z, ids, self._num_components)
        # Generic batched distribution: sample every component, keep the chosen one (C x work).
        all_x = comps.sample(n, seed=seed)  # [n, C, *event]
        return tf.gather(all_x, ids, axis=1, batch_dims=1)

    def sample_and_log_prob(self, sample_shape=(), seed=None):
        """Samples and their mixture log-densities (``experimental_sample_and_log_prob``)."""
        return self.experimental_sample_and_log_prob(sample_shape, seed=seed)

    def _default_event_space_bijector(self):
        return tfb.Identity()


# --------------------------------------------------------------------------- batched form
def _supports_selection(dist):
    if not isinstance(dist, TransformedDistributionType):
        return False
    if tf.TensorShape(dist.distribution.batch_shape) != []:
        return False
    try:
        return all(hasattr(b, "forward_component") for b in forward_order(dist.bijector))
    except ValueError:
        return False



def _coupling_steps(model):
    steps = leaves(model.bijector)
    if not steps or not all(type(s) is AffineCoupling for s in steps):
        raise ValueError(f"stack_coupling_flows needs flows made only of AffineCoupling steps; "
                         f"{getattr(model, 'name', model)!r} has "
                         f"{[type(s).__name__ for s in steps]}.")
    return steps


def stack_coupling_flows(models, name="stacked_coupling_flow"):
    """Batched component distribution (batch shape ``[C]``) from C coupling flow models.

    Every model must be a chain of :class:`AffineCoupling` steps with identical structure
    (event size, mask type, hidden sizes, activation, clamp; the ``reverse`` flags may differ
    between models when the partitions have equal sizes) over one base distribution. The result
    is ``tfd.TransformedDistribution(base, Chain([BatchedAffineCoupling, ...]))`` whose slice
    ``c`` has the same density as ``models[c]`` (weights are copied).

    Raises:
      ValueError: for an empty list or models whose structures differ.
    """
    models = list(models)
    if not models:
        raise ValueError("`models` must contain at least one coupling flow.")
    per_model = [_coupling_steps(m) for m in models]
    ref = per_model[0]
    for j, steps in enumerate(per_model[1:], 1):
        same = len(steps) == len(ref) and all(
            (s.event_size, s.mask, s.hidden_units, s.activation, s.log_scale_clamp)
            == (r.event_size, r.mask, r.hidden_units, r.activation, r.log_scale_clamp)
            for s, r in zip(steps, ref))
        if not same or models[j].base_distribution_name != models[0].base_distribution_name:
            raise ValueError(f"models[{j}] does not share the structure of models[0]; the "
                             "batched form needs identical architectures.")
    num = len(models)
    batched = []
    for i, r in enumerate(ref):
        step = BatchedAffineCoupling(num, r.event_size, hidden_units=r.hidden_units, mask=r.mask,
                                     reverse=[steps[i].reverse for steps in per_model],
                                     activation=r.activation,
                                     log_scale_clamp=r.log_scale_clamp,
                                     name=f"{name}_step_{i}")
        step.build([r.event_size])
        step.conditioner.set_from_mlps([steps[i].conditioner for steps in per_model])
        batched.append(step)
    # ``leaves`` lists steps in Chain list order (data -> latent), so the order carries over.
    chain = tfb.Chain(batched, name=name)
    return tfd.TransformedDistribution(models[0].base(), chain)
