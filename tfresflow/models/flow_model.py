"""``FlowModel``: a Keras 3 model of the density ``p(x) = p_Z(f^{-1}(x)) |det J_{f^{-1}}(x)|``.

The model wraps a base distribution ``p_Z`` and a (chain of) tfresflow bijector(s) ``f``
(TFP direction: ``f.forward`` samples, ``f.inverse`` evaluates). ``call(x)`` returns the
per-example log-density, so ``compile()`` + ``fit(x)`` (no labels) trains by maximum likelihood
and ``evaluate`` reports the negative log-likelihood in nats. For TFP composition,
:meth:`distribution` returns a ``tfd.TransformedDistribution``.

Keras owns every weight: the model tracks the Keras layers of every tfresflow bijector in the
flow, so ``fit``, ``.keras`` saving and SavedModel export see all of them.

Lipschitz-constrained steps (residual flows) need their power-iteration estimates refreshed
after every optimiser step: ``fit`` and ``evaluate`` add a
:class:`tfresflow.lipschitz.LipschitzUpdate` callback automatically when the flow has any.

Compiled evaluation: called eagerly, :meth:`FlowModel.log_prob`, :meth:`FlowModel.sample` and
:meth:`FlowModel.sample_and_log_prob` run through ``tf.function``s traced once per model (and
per ``training`` flag / input rank), so a deep flow's fixed-point inverse and log-det run as one
graph instead of op by op. The seed is resolved eagerly first (a fresh one from the seed
generator when none is given), so compiled calls draw exactly what eager ones would. A solver's
non-convergence surfaces as the same :class:`tfresflow.solvers.NonConvergenceError` as eagerly.
``compile(run_eagerly=True)`` (or ``tf.config.run_functions_eagerly(True)``) runs them eagerly,
for debugging.

Divergence: ``fit`` stops at the first step whose training loss is NaN or infinite (a batch
holding NaN/inf, e.g. from a ``tf.data.Dataset``, which ``fit`` cannot check beforehand as it
does numpy input, or a diverging optimisation) and raises :class:`NonFiniteLossError` naming the
step: Keras' ``TerminateOnNaN(raise_error=True)`` with this package's error
(:class:`StopOnNonFiniteLoss`). The weights are then those after the failed step.

Randomness: stochastic log-dets and sampling draw stateless noise from a seed. Passing
``seed=`` makes a call reproducible; without it a per-model ``keras.random.SeedGenerator``
supplies a fresh seed. Inside a ``tf.distribute`` strategy the replica id is folded into the
seed so each replica draws its own noise.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (maximum likelihood by the change of variables).
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (power iteration refreshed after every optimiser step).
"""
import itertools

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow.bijectors.base import KerasBijector
from tfresflow.bijectors import tree
from tfresflow.bijectors.serialization import deserialize_bijector, serialize_bijector
from tfresflow.distributions.base import make_base_distribution
from tfresflow.lipschitz import with_lipschitz_update
from tfresflow.solvers import as_nonconvergence_error
from tfresflow.validation import check_event_shape, check_positive_int, check_samples

tfb = tfp.bijectors
tfd = tfp.distributions


def sample_count(n):
    """``n`` as an int32 tensor, checked to be an integer >= 0 when its value is known now."""
    value = tf.get_static_value(n) if tf.is_tensor(n) else n
    if value is None:   # a symbolic tensor: TensorFlow checks it when the graph runs
        return tf.convert_to_tensor(n, tf.int32)
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    return tf.constant(check_positive_int(value, "n", minimum=0), tf.int32)


def batch_mean_loss(model, per_example, sample_weight=None):
    """The training loss of a ``compute_loss`` override from per-example losses ``[b]``:
    ``mean(w * loss)`` (Keras' sample weighting), plus ``model.losses`` (regularisers), divided
    by the number of replicas in sync under a ``tf.distribute`` strategy (Keras scales its
    compiled losses by ``1 / num_replicas`` itself; an override must do it)."""
    if sample_weight is not None:
        per_example = per_example * tf.cast(tf.reshape(sample_weight, tf.shape(per_example)),
                                            per_example.dtype)
    loss = tf.reduce_mean(per_example)
    if model.losses:
        loss = loss + tf.add_n(model.losses)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss


class NonFiniteLossError(FloatingPointError):
    """``fit`` stopped: the training loss of step ``step`` (1-based, counted over all epochs
    when the epoch length is known) was ``loss`` (NaN or infinite)."""

    def __init__(self, message, step, epoch, batch, loss):
        super().__init__(message)
        self.step, self.epoch, self.batch, self.loss = step, epoch, batch, loss


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """``keras.callbacks.TerminateOnNaN(raise_error=True)``, raising :class:`NonFiniteLossError`
    with the step, the epoch and the likely causes; ``FlowModel.fit`` adds one unless the
    callbacks already hold a ``TerminateOnNaN``.

    Raising (rather than ``stop_training``) skips the other callbacks' ``on_train_end``, as
    Keras' ``raise_error=True`` does, so a backup or checkpoint of the last good state is kept.
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        steps = self.params.get("steps") if self.params else None
        step = self._epoch * steps + batch + 1 if steps else batch + 1
        where = f"step {step}" + (f" (epoch {self._epoch + 1}, batch {batch + 1} of {steps})"
                                  if steps and self._epoch else "")
        raise NonFiniteLossError(
            f"Training stopped at {where}: the training loss is {float(loss)}. Either the batch "
            "holds NaN or inf values (check the training data, e.g. with "
            "tfresflow.validation.check_samples) or the optimisation diverged (lower the "
            "learning rate).", step=step, epoch=self._epoch + 1, batch=batch + 1,
            loss=float(loss))


def _step_kwargs(bijector, seeds, training):
    """Per-step keyword arguments for a bijector tree (``tfb.Chain`` routes them by name)."""
    return tree.chain_kwargs(bijector, lambda b: {"training": training, "seed": next(seeds)}
                             if isinstance(b, KerasBijector) else {})


@keras.saving.register_keras_serializable(package="tfresflow")
class FlowModel(keras.Model):
    """Normalising-flow density model trained with Keras ``fit``.

    Args:
      bijector: a tfresflow bijector or a ``tfb.Chain`` / ``tfb.Invert`` tree of tfresflow
        bijectors and TFP's stateless ones (``tfb.Permute``, ...), ``forward`` = latent -> data.
        tfresflow steps that share a name with another step are given unique names
        automatically (copies sharing their weights; ``tfb.Chain`` routes per-step ``seed`` and
        ``training`` by name); steps without per-step arguments may share names.
      event_shape: shape of one data point, e.g. ``[2]`` or ``[28, 28, 1]``; the base
        distribution is over the flow's latent shape (attribute ``latent_shape``,
        ``bijector.inverse_event_shape(event_shape)``), which differs for shape-changing flows.
      base_distribution: name of the base distribution (``"normal"`` by default, see
        :func:`tfresflow.distributions.base.make_base_distribution`).
      seed: integer seed of the model's seed generator (fresh noise for calls without seed).
    """

    def __init__(self, bijector, event_shape, base_distribution="normal", seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(bijector, dict):
            bijector = deserialize_bijector(bijector)
        if not isinstance(bijector, tfb.Bijector):
            raise TypeError(f"`bijector` must be a tfb.Bijector, got {type(bijector).__name__}.")
        self.event_shape = check_event_shape(event_shape)
        bijector = tree.with_unique_names(bijector, lambda b: isinstance(b, KerasBijector),
                                          lambda b, name: b.with_name(name))
        steps = tree.leaves(bijector)
        for b in steps:
            if not isinstance(b, KerasBijector) and b.trainable_variables:
                raise ValueError(
                    f"Bijector {b.name!r} holds tf.Variables that Keras cannot train or save; "
                    "use a tfresflow bijector whose parameters live in Keras layers.")
        # The base distribution lives on the latent side, whose shape differs from the data's
        # when the flow changes shapes (a Squeeze, a tfb.Reshape flattening an image).
        self.latent_shape = [int(d) for d in bijector.inverse_event_shape(self.event_shape)]
        self.base_distribution_name = base_distribution
        make_base_distribution(base_distribution, self.latent_shape)  # validates the name
        self.seed = seed
        # The bijector tree is a tf.Module; keep it out of Keras/checkpoint tracking: Keras
        # tracks the weights through ``flow_layers`` below.
        object.__setattr__(self, "_flow", bijector)
        object.__setattr__(self, "_compiled", {})   # tf.functions of the eager entry points
        self._keras_steps = [b for b in steps if isinstance(b, KerasBijector)]
        # A step repeated in the tree (shared weights) lists its layers once.
        layers = [layer for b in self._keras_steps for layer in b.keras_layers()]
        self.flow_layers = list({id(layer): layer for layer in layers}.values())
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.build((None, *self.event_shape))

    # ----------------------------------------------------------------- structure
    @property
    def bijector(self):
        """The flow (latent -> data in TFP's ``forward`` direction)."""
        return self._flow

    @property
    def steps(self):
        """The tfresflow (Keras-backed) bijectors of the flow, in data -> latent order."""
        return list(self._keras_steps)

    @property
    def has_stochastic_log_det(self):
        """True when ``log_prob`` is a random (unbiased or biased) estimate."""
        return any(b.has_stochastic_log_det for b in self._keras_steps)

    def build(self, input_shape):
        shape = list(input_shape[1:])
        if shape != self.event_shape:
            raise ValueError(f"FlowModel expects inputs with event shape {self.event_shape}, "
                             f"got {shape}.")
        for step in tree.leaves(self._flow):   # data -> latent, shape-changing TFP steps too
            if isinstance(step, KerasBijector):
                step.build(shape)
            shape = [int(d) for d in step.inverse_event_shape(shape)]
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        if not isinstance(self.base_distribution_name, str):
            raise ValueError("Only named base distributions can be serialised.")
        return {**super().get_config(), "bijector": serialize_bijector(self._flow),
                "event_shape": list(self.event_shape),
                "base_distribution": self.base_distribution_name, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ----------------------------------------------------------------- TFP views
    def base(self):
        """The base (latent) distribution ``p_Z`` over events of shape ``latent_shape``."""
        return make_base_distribution(self.base_distribution_name, self.latent_shape)

    def distribution(self):
        """``tfd.TransformedDistribution(base, bijector)``: the model as a TFP distribution.

        Stochastic steps called through it use their evaluation-time estimator with
        unseeded noise; pass ``bijector_kwargs`` (per step name) to control them.
        """
        return tfd.TransformedDistribution(self.base(), self._flow)

    # ----------------------------------------------------------------- randomness
    def _resolve_seed(self, seed):
        if seed is None:
            seed = trf_random.from_generator(self.seed_generator)
        return trf_random.fold_in_replica(seed)

    def step_kwargs(self, seed=None, training=False):
        """Keyword arguments routing ``seed`` (split per step) and ``training`` to each step.

        A flow without stochastic log-dets needs no seeds: no seed is drawn or split for it.
        """
        if not self.has_stochastic_log_det:
            return _step_kwargs(self._flow, itertools.repeat(None), bool(training))
        n = max(len(self._keras_steps), 1)
        seeds = iter(tf.unstack(trf_random.split(self._resolve_seed(seed), n)))
        return _step_kwargs(self._flow, seeds, bool(training))

    # ----------------------------------------------------------------- density
    def _as_batch(self, x, name="x"):
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        rank = len(self.event_shape)
        if x.shape.rank is not None and (x.shape.rank < rank
                                         or x.shape[-rank:].as_list() != self.event_shape):
            raise ValueError(f"`{name}` must end in the event shape {self.event_shape}, "
                             f"got shape {x.shape.as_list()}.")
        return x

    def _compiles_eager_calls(self):
        return (tf.executing_eagerly() and not self.run_eagerly
                and not tf.config.functions_run_eagerly())

    def _call_compiled(self, name, fn, *args):
        """``fn(*args)``, through one ``tf.function`` per ``name`` when called eagerly."""
        if not self._compiles_eager_calls():
            return fn(*args)
        if name not in self._compiled:
            self._compiled[name] = tf.function(fn, reduce_retracing=True)
        with as_nonconvergence_error():
            return self._compiled[name](*args)

    def _seed_now(self, seed, needed=True):
        """The call's seed, drawn before any tracing: the given one, or a fresh one from the
        seed generator (``None`` when ``needed`` is false: flows without randomness draw none).
        The replica fold-in happens later, once, in :meth:`_resolve_seed`."""
        if not needed:
            return None
        return trf_random.from_generator(self.seed_generator) if seed is None \
            else trf_random.as_seed(seed)

    def log_prob(self, x, seed=None, training=False):
        """Per-example log-density (exact, or an estimate for stochastic log-dets).

        Args:
          x: data, shape ``[..., *event_shape]``.
          seed: optional stateless seed for stochastic steps.
          training: use the training-time estimator of stochastic steps.
        """
        training = bool(training)
        return self._call_compiled(f"log_prob_{training}",
                                   lambda v, s: self._log_prob(v, s, training),
                                   self._as_batch(x),
                                   self._seed_now(seed, self.has_stochastic_log_det))

    def _log_prob(self, x, seed, training):
        kwargs = self.step_kwargs(seed, training)
        return self.distribution().log_prob(x, bijector_kwargs=kwargs)

    def exact_log_prob(self, x, max_event_size=64):
        """Exact per-example log-density from the brute-force Jacobian of the whole flow.

        ``log p(x) = log p_Z(f^{-1}(x)) + log|det J_{f^{-1}}(x)|`` with the Jacobian from
        ``GradientTape.batch_jacobian`` and ``slogdet``: deterministic even for stochastic
        log-det estimators, at O(D) backward passes per example, so only for small event sizes
        (plots and evaluation of low-dimensional models).

        Raises:
          ValueError: when the event size exceeds ``max_event_size``.
        """
        x = self._as_batch(x)
        size = int(np.prod(self.event_shape))
        if size > max_event_size:
            raise ValueError(f"exact_log_prob needs event size <= {max_event_size} (brute-force "
                             f"Jacobian), got {size}; use log_prob for an estimate.")
        flat = tf.reshape(x, [-1, size])
        with tf.GradientTape() as tape:
            tape.watch(flat)
            z = tree.data_to_latent_value(self._flow,
                                          tf.reshape(flat, [-1, *self.event_shape]))
            z_flat = tf.reshape(z, [-1, size])
        log_det = tf.linalg.slogdet(tape.batch_jacobian(z_flat, flat))[1]
        log_prob = self.base().log_prob(z) + log_det
        return tf.reshape(log_prob, tf.shape(x)[:tf.rank(x) - len(self.event_shape)])

    def call(self, x, training=None):
        # tf.identity: a fresh tensor so TFP's identity-keyed cache never serves a tensor from
        # another graph (the lazy-build trap of Keras 3 + TFP).
        return self.log_prob(tf.identity(x), training=bool(training))

    def _draw_latent(self, n, seed):
        """``(base, z, step kwargs)``: ``n`` base draws and the flow's kwargs, from one seed."""
        seed_base, seed_flow = tf.unstack(trf_random.split(self._resolve_seed(seed), 2))
        base = self.base()
        return base, base.sample(n, seed=seed_base), self.step_kwargs(seed_flow, training=False)

    def sample(self, n, seed=None):
        """Draws ``n`` samples (sampling direction of every step), shape ``[n, *event_shape]``.

        Raises:
          ValueError: when ``n`` is not an integer >= 0 (checked when its value is known).
        """
        return self._call_compiled("sample", self._sample, sample_count(n),
                                   self._seed_now(seed))

    def _sample(self, n, seed):
        _, z, kwargs = self._draw_latent(n, seed)
        return self._flow.forward(z, **kwargs)

    def sample_and_log_prob(self, n, seed=None):
        """Samples and their log-densities in one pass (``n`` as for :meth:`sample`)."""
        return self._call_compiled("sample_and_log_prob", self._sample_and_log_prob,
                                   sample_count(n), self._seed_now(seed))

    def _sample_and_log_prob(self, n, seed):
        base, z, kwargs = self._draw_latent(n, seed)
        x = self._flow.forward(z, **kwargs)
        fldj = self._flow.forward_log_det_jacobian(z, event_ndims=len(self.latent_shape),
                                                   **kwargs)
        return x, base.log_prob(z) - fldj

    # ----------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean negative log-likelihood (weighted as Keras does: ``mean(w * nll)``)."""
        return batch_mean_loss(self, -y_pred, sample_weight)

    def _checked(self, x, name):
        if isinstance(x, (np.ndarray, list, tuple)) or tf.is_tensor(x):
            return check_samples(x, self.event_shape, name=name)
        return x

    @property
    def training_loss_is_partial(self):
        """True when the training-mode loss leaves out part of the log-det's value.

        Relative-gradient steps never compute ``log|det W|`` in training mode (only its
        gradient), so ``fit``'s ``loss`` is then not the NLL; evaluation is exact.
        """
        return any(getattr(b, "training_log_det_is_partial", False) for b in self._keras_steps)

    @property
    def training_loss_notes(self):
        """What the training-mode loss leaves out, one note per kind of step (sorted)."""
        notes = {getattr(b, "training_loss_note", None) for b in self._keras_steps
                 if getattr(b, "training_log_det_is_partial", False)}
        return sorted(n for n in notes if n)

    def fit(self, x=None, y=None, **kwargs):
        """Keras ``fit`` by maximum likelihood (data ``x`` only), stopping with
        :class:`NonFiniteLossError` at the first non-finite training loss (module docstring).
        """
        if kwargs.get("verbose", "auto") != 0:
            for note in self.training_loss_notes:
                print(note, flush=True)
        if y is not None:
            raise ValueError("FlowModel is trained by maximum likelihood: pass data `x` only, "
                             "no labels `y`.")
        if kwargs.get("validation_data") is not None:
            val = kwargs["validation_data"]
            if isinstance(val, tuple) and len(val) == 1:
                val = val[0]
            val = self._checked(val, "validation_data")
            kwargs["validation_data"] = (val,) if isinstance(val, np.ndarray) else val
        callbacks = self._with_lipschitz_update(kwargs.get("callbacks"))
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(StopOnNonFiniteLoss())
        kwargs["callbacks"] = callbacks
        self._build_optimizer()
        return super().fit(self._checked(x, "x"), **kwargs)

    def _build_optimizer(self):
        """Creates the optimizer's slot variables now, eagerly, before the step is traced.

        Without a distribution strategy Keras defers this to the first call of the traced
        train step; variables created inside a ``tf.function`` make TensorFlow trace it twice
        and build every slot variable in graph mode: at depth that is most of the first
        step's time (``benchmarks/deep_toy.py``).
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def evaluate(self, x=None, y=None, **kwargs):
        """Mean negative log-likelihood (nats) on ``x``, reported as ``loss``."""
        kwargs["callbacks"] = self._with_lipschitz_update(kwargs.get("callbacks"))
        return super().evaluate(self._checked(x, "x"), y, **kwargs)

    def _with_lipschitz_update(self, callbacks):
        """Adds :class:`LipschitzUpdate` when the flow has Lipschitz layers (once)."""
        return with_lipschitz_update(callbacks, self.flow_layers)
