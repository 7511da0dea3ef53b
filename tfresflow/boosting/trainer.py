"""``BoostedFlowTrainer``: stage-wise training of gradient boosted flows.

The model is the mixture of C flows (tfresflow ``FlowModel``s; Keras owns their weights)

    G^(c)(x) = (1 - rho_c) G^(c-1)(x) + rho_c g_c(x)                             (eq. 7)

grown stage by stage: stage ``c`` trains component ``g_c`` with every other component frozen
(only ``g_c``'s variables reach the optimiser) on a stage objective
(:mod:`tfresflow.boosting.objectives`), then fits ``rho_c`` by Algorithm 1
(:mod:`tfresflow.boosting.weights`), then moves on. An optional fine-tuning pass ("GBF+",
Sec. 3.3) re-trains each component against all the others and re-fits its weight.

Algorithm 1 runs on a pool of ``rho_pool_size`` samples (data, or draws of ``g`` and ``G``) whose
log-densities are evaluated once. Weights are kept on the simplex; ``rho_bounds`` keeps them
strictly inside so that a fine-tuning pass can renormalise
``G^(-c) = sum_{j != c} w_j g_j / (1 - w_c)``. Every random stream is named
(:func:`tfresflow.random.fold_in_tag`) and derived from the one integer ``seed``.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eq. 7, Algorithm 1, Sec. 3.3).
"""
import time

import keras
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.boosting import checkpoint
from tfresflow.boosting.log_probs import LogProbTable, compiled_log_prob
from tfresflow.boosting.objectives import make_objective
from tfresflow.boosting.weights import (density_weight_gradient, fit_mixture_weight,
                                        fixed_mixture, logsumexp, matching_weight_gradient,
                                        mixture_weights_with, stage_schedule,
                                        weighted_log_mixture)
from tfresflow.distributions.boosted import BoostedFlow, is_flow_model
from tfresflow.validation import check_number, check_positive_int, check_samples

__all__ = ["BoostedFlowTrainer"]


class BoostedFlowTrainer:
    """Trains a gradient boosted flow stage by stage (see the module docstring).

    Args:
      components: list of C tfresflow ``FlowModel``s with one event shape (e.g. from
        :func:`tfresflow.models.boosted_coupling_components`); trained in order.
      objective: ``"density"`` (fit data by maximum likelihood) or ``"matching"`` (fit an
        unnormalised target density by reverse KL).
      target_log_prob: for ``"matching"``, a callable ``z [n, *event] -> log p~(z) [n]``
        (e.g. :func:`tfresflow.data.log_density`); must be differentiable in ``z``.
      regularization: ``lambda > 0`` of the boosting objectives.
      density_objective: ``"boosting"`` (residual weights ``G^(-1/lambda)``, the paper's) or
        ``"mixture"`` (greedy mixture likelihood); ``"density"`` objective only.
      learning_rate: Adam learning rate (ignored when ``optimizer`` is given).
      optimizer: optional callable returning a fresh Keras optimizer; one per stage.
      clipnorm: optional gradient-norm clipping of the default Adam optimizer.
      batch_size: mini-batch size (data points or samples of the new component).
      max_weight: optional cap in (0, 1] on each normalised density-boosting weight.
      log_mixture_floor: floor on ``log G`` in the matching objective (default -10, the
        reference's value; ``None`` disables it; see :class:`~objectives.ReverseKLMatching`).
      rho_step_size, rho_decay, rho_tolerance, rho_max_iters, rho_min_iters, rho_batch_size,
      rho_pool_size, rho_bounds: Algorithm 1 settings (:func:`~weights.fit_mixture_weight`).
      rho_init: initial weight of a new component in Algorithm 1 (default ``1/C``, as the paper).
      eval_samples: samples of the mixture used for the matching metrics of each stage.
      seed: integer seed of all training randomness.
      verbose: 0 silent, 1 a progress bar per stage.

    Attributes:
      history: one dict per completed stage (phase, component, losses, rho, weights, metrics).
      weights: current mixture weights (numpy ``[C]``, zero for untrained components).
      loss: the stage objective object (from :func:`~objectives.make_objective`).
    """

    def __init__(self, components, objective="density", target_log_prob=None,
                 regularization=1.0, density_objective="boosting", learning_rate=1e-3,
                 optimizer=None, clipnorm=None, batch_size=256, max_weight=None,
                 log_mixture_floor=-10.0,
                 rho_step_size=0.05, rho_decay=0.05, rho_tolerance=1e-3, rho_max_iters=300,
                 rho_min_iters=10, rho_batch_size=512, rho_pool_size=4096,
                 rho_bounds=(1e-4, 1 - 1e-4), rho_init=None, eval_samples=4096, seed=0,
                 verbose=1):
        components = list(components)
        if not components:
            raise ValueError("`components` must contain at least one FlowModel.")
        for i, c in enumerate(components):
            if not is_flow_model(c):
                raise TypeError(f"`components[{i}]` must be a tfresflow FlowModel (trainable "
                                f"Keras weights), got {type(c).__name__}.")
            if list(c.event_shape) != list(components[0].event_shape):
                raise ValueError(f"All components must share one event shape: components[0] has "
                                 f"{components[0].event_shape}, components[{i}] has "
                                 f"{c.event_shape}.")
        self.loss = make_objective(objective, density_objective, target_log_prob,
                                   regularization, max_weight, log_mixture_floor)
        self.components = components
        self.num_components = len(components)
        self.event_shape = list(components[0].event_shape)
        self.objective = objective
        self.target_log_prob = target_log_prob
        self.regularization = float(regularization)
        self.density_objective = density_objective
        self.learning_rate = learning_rate
        self.optimizer_fn = optimizer or (lambda: keras.optimizers.Adam(learning_rate,
                                                                        clipnorm=clipnorm))
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_weight = max_weight
        self.log_mixture_floor = log_mixture_floor
        self.rho_options = dict(step_size=rho_step_size, decay=rho_decay,
                                tolerance=rho_tolerance, max_iters=rho_max_iters,
                                min_iters=rho_min_iters, batch_size=rho_batch_size,
                                bounds=tuple(rho_bounds))
        self.rho_pool_size = check_positive_int(rho_pool_size, "rho_pool_size")
        self.rho_init = 1.0 / self.num_components if rho_init is None else check_number(
            rho_init, "rho_init", 0.0, 1.0)
        self.eval_samples = check_positive_int(eval_samples, "eval_samples")
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.weights = np.zeros(self.num_components)
        self.trained = np.zeros(self.num_components, bool)
        self.history = []
        self._logp_fns = {}

    # ----------------------------------------------------------------- mixture views
    def _trained_indices(self, include=None):
        return [j for j in range(self.num_components) if self.trained[j]] if include is None \
            else list(include)

    def mixture(self, include=None):
        """The current :class:`BoostedFlow` over the trained components (or ``include``)."""
        idx = self._trained_indices(include)
        if not idx:
            raise ValueError("No trained component yet: call `fit` first.")
        w = self.weights[idx]
        if not w.sum() > 0:
            w = np.ones(len(idx))
        return BoostedFlow([self.components[j] for j in idx], weights=w.astype(np.float32))

    def _fixed(self, c):
        """Indices and normalised weights of the fixed mixture seen by component ``c``."""
        return fixed_mixture(self.weights, self.trained, c)

    def _set_weight(self, c, fixed, fixed_w, rho):
        """The mixture becomes ``(1 - rho) G + rho g_c`` (the one place weights change)."""
        self.weights[:] = mixture_weights_with(self.num_components, fixed, fixed_w, c, rho)

    # ----------------------------------------------------------------- randomness
    def _seed(self, tag, *ints):
        """The stateless TF seed of the stream ``tag`` (then ``ints`` folded in)."""
        return trf_random.stream_seed(self.seed, tag, *ints)

    def _numpy_seed(self, tag):
        """The numpy seed of the stream ``tag`` (for ``np.random.default_rng``)."""
        return [self.seed % (2 ** 31 - 1), trf_random.tag_hash(tag)]

    # ----------------------------------------------------------------- evaluation
    def component_log_prob(self, j, x, chunk=8192):
        """``log g_j(x)`` for a numpy array ``x`` (float64 numpy ``[n]``), in chunks."""
        if j not in self._logp_fns:
            self._logp_fns[j] = compiled_log_prob(self.components[j], self.event_shape)
        fn = self._logp_fns[j]
        out = [fn(tf.constant(x[i:i + chunk]), self._seed("component_log_prob", j, i)).numpy()
               for i in range(0, len(x), chunk)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def evaluate(self, x):
        """Mean negative log-likelihood (nats) of the current mixture on data ``x``."""
        x = check_samples(x, self.event_shape, name="x")
        table = LogProbTable(self.component_log_prob, x)
        return float(-np.mean(self._mixture_log_prob(table)))

    def _mixture_log_prob(self, table, include=None):
        idx = self._trained_indices(include)
        w = self.weights[idx]
        return weighted_log_mixture(table.columns(idx), w / w.sum())

    def matching_metrics(self, n=None, seed=0):
        """Reverse-KL diagnostics of the current mixture ``G`` against ``p~`` from ``n`` draws.

        Returns ``kl_minus_log_z = E_G[log G - log p~]`` (``KL(G||p) - log Z``, lower is
        better), ``log_z_estimate = log mean exp(log p~ - log G)`` (importance-sampling estimate
        of ``log Z``) and ``ess_fraction`` (effective sample size / n of those weights).
        """
        if self.target_log_prob is None:
            raise ValueError("matching_metrics needs `target_log_prob`.")
        n = self.eval_samples if n is None else int(n)
        z, log_q = self.mixture().sample_and_log_prob(n, seed=self._seed("matching_metrics",
                                                                         seed))
        log_w = (self.target_log_prob(z) - log_q).numpy().astype(np.float64)
        lse = logsumexp(log_w, axis=0)
        ess = float(np.exp(2 * lse - logsumexp(2 * log_w, axis=0)) / len(log_w))
        return {"kl_minus_log_z": float(-np.mean(log_w)),
                "log_z_estimate": float(lse - np.log(len(log_w))), "ess_fraction": ess}

    # ----------------------------------------------------------------- stage training
    def _loss_fn(self, c, fixed, fixed_w, table, rho0):
        """The stage objective of component ``c`` as a function of a stateless seed."""
        comp = self.components[c]
        if self.loss.uses_data:
            log_fixed = None
            if fixed:
                log_fixed = tf.constant(weighted_log_mixture(table.columns(fixed), fixed_w),
                                        tf.float32)
            return self.loss.loss_fn(comp, self.batch_size, tf.constant(table.x), log_fixed,
                                     rho0)
        fixed_mix = BoostedFlow([self.components[j] for j in fixed],
                                weights=fixed_w.astype(np.float32)) if fixed else None
        return self.loss.loss_fn(comp, self.batch_size, fixed_mix)

    def _data_table(self, x, name="x", what="data"):
        """The log-density table of checked data ``x`` (None unless the objective uses data)."""
        if not self.loss.uses_data:
            return None
        if x is None:
            raise ValueError(f"objective='density' needs {what} `{name}`.")
        x = check_samples(x, self.event_shape, name=name)
        return LogProbTable(self.component_log_prob, x)

    def _rho0(self, c, boosting):
        """``rho_0``: the new weight held during training (``rho_init``, or the current one)."""
        return float(np.clip(self.rho_init if boosting else self.weights[c],
                             *self.rho_options["bounds"]))

    def stage_loss(self, c, x=None, seed=0):
        """One mini-batch value of the objective that training component ``c`` minimises.

        The fixed mixture is every *other* trained component (with renormalised weights); with
        none, the plain flow objective. ``x`` is the data (``"density"`` only). Useful to
        inspect or test the boosting objective; training uses the same function.
        """
        fixed, fixed_w = self._fixed(c)
        table = self._data_table(x)
        loss_fn = self._loss_fn(c, fixed, fixed_w, table, self._rho0(c, not self.trained[c]))
        return float(loss_fn(self._seed("stage_loss", seed)))

    def _train_component(self, c, steps, fixed, fixed_w, table, stage, rho0, progress_dir=None,
                         every=None):
        variables = list(self.components[c].trainable_variables)
        optimizer = self.optimizer_fn()
        optimizer.build(variables)
        progress = None if progress_dir is None else checkpoint.StageProgress(
            progress_dir, self.components[c], optimizer, steps)
        seed0 = self._seed("train", stage)
        loss_fn = self._loss_fn(c, fixed, fixed_w, table, rho0)

        @tf.function(reduce_retracing=True)
        def train_step(step):
            seed = tf.random.experimental.stateless_fold_in(seed0, step)
            with tf.GradientTape() as tape:
                loss = loss_fn(seed)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return loss

        progbar = keras.utils.Progbar(steps, verbose=self.verbose, stateful_metrics=["loss"]) \
            if self.verbose and steps else None
        shown = max(1, steps // 100)
        start, losses = (0, []) if progress is None else progress.restore()
        for i in range(start, steps):
            loss = float(train_step(tf.constant(i, tf.int64)))
            if not np.isfinite(loss):
                raise FloatingPointError(f"Non-finite loss {loss} at step {i} of stage {stage} "
                                         f"(component {c}); lower the learning rate.")
            losses.append(loss)
            if progbar is not None and ((i + 1) % shown == 0 or i + 1 == steps):
                progbar.update(i + 1, [("loss", loss)])
            if progress is not None and (i + 1) % every == 0 and i + 1 < steps:
                progress.save(losses)
        return losses

    def _fit_weight(self, c, fixed, fixed_w, table, rho_init, stream):
        """Algorithm 1 for component ``c`` against the fixed mixture; returns (rho, iters).

        ``stream`` names the random streams of this fit (``"stage_3"``, ``"refit_5"``).
        """
        pool = self.rho_pool_size
        if self.loss.uses_data:
            rows = np.random.default_rng(self._numpy_seed(f"{stream}/weight_pool")) \
                .permutation(table.n)[:pool]
            cols = table.columns(fixed + [c], rows)
            grad = density_weight_gradient(cols[:, -1], weighted_log_mixture(cols[:, :-1],
                                                                             fixed_w))
            pool = len(rows)
        else:
            both = BoostedFlow([self.components[j] for j in fixed + [c]],
                               weights=np.append(fixed_w, 0.0).astype(np.float32))
            samples = {"new": self.components[c].sample(pool, seed=self._seed(
                           f"{stream}/weight_pool/new_samples")),
                       "fixed": self.mixture(include=fixed).sample(pool, seed=self._seed(
                           f"{stream}/weight_pool/fixed_samples"))}
            pools = []
            for which, z in samples.items():
                cols = both.component_log_probs(z, seed=self._seed(
                    f"{stream}/weight_pool/{which}_log_probs")).numpy().astype(np.float64)
                pools.append((cols[:, -1], weighted_log_mixture(cols[:, :-1], fixed_w),
                              self.target_log_prob(z).numpy().astype(np.float64)))
            grad = matching_weight_gradient(*pools)
        rho, iters, _ = fit_mixture_weight(grad, pool, rho_init,
                                           seed=self._numpy_seed(f"{stream}/weight_fit"),
                                           **self.rho_options)
        return rho, iters

    def _run_stage(self, stage, phase, c, steps, table, val_table, progress_dir=None,
                   every=None):
        start = time.time()
        fixed, fixed_w = self._fixed(c)
        if self.verbose:
            what = "boosting" if phase == "boost" else "fine-tuning"
            print(f"stage {stage}: {what} component {c + 1}/{self.num_components} "
                  f"against {len(fixed)} fixed component(s)")
        rho0 = self._rho0(c, phase == "boost")
        losses = self._train_component(c, steps, fixed, fixed_w, table, stage, rho0,
                                       progress_dir, every)
        self.trained[c] = True
        for t in (table, val_table):
            if t is not None:
                t.invalidate(c)
        rho, iters = self._fit_weight(c, fixed, fixed_w, table, rho0, f"stage_{stage}") \
            if fixed else (1.0, 0)
        self._set_weight(c, fixed, fixed_w, rho)
        tail = losses[-max(1, len(losses) // 10):] if losses else [float("nan")]
        record = {"stage": stage, "phase": phase, "component": c, "steps": steps,
                  "final_loss": float(np.mean(tail)), "rho": float(rho), "rho_iterations": iters,
                  "weights": [float(w) for w in self.weights],
                  "num_fixed": len(fixed)}
        if self.loss.uses_data:
            record["train_nll"] = float(-np.mean(self._mixture_log_prob(table)))
            if val_table is not None:
                record["val_nll"] = float(-np.mean(self._mixture_log_prob(val_table)))
        else:
            record.update(self.matching_metrics(seed=stage))
        record["seconds"] = time.time() - start
        if self.verbose:
            shown = {k: round(v, 4) for k, v in record.items()
                     if k in ("rho", "train_nll", "val_nll", "kl_minus_log_z", "log_z_estimate")}
            print(f"  -> {shown}")
        return record

    def schedule(self, finetune_passes=0):
        """Stages as ``(phase, component)``: boost 0..C-1, then ``finetune_passes`` GBF+ passes."""
        return stage_schedule(self.num_components, finetune_passes)

    def fit(self, x=None, steps_per_component=1000, finetune_steps=None, finetune_passes=0,
            validation_data=None, checkpoint_dir=None, checkpoint_every=None,
            on_stage_end=None):
        """Runs the remaining stages of :meth:`schedule` (resumes after a restored checkpoint).

        Args:
          x: training data ``[n, *event_shape]`` (objective ``"density"`` only).
          steps_per_component: optimiser steps of each boosting stage.
          finetune_steps: steps of each GBF+ fine-tuning stage (default: ``steps_per_component``).
          finetune_passes: number of GBF+ passes over all components (0: plain GBF).
          validation_data: optional held-out data; its mixture NLL is recorded per stage.
          checkpoint_dir: if given, a checkpoint ``stage_XX`` is written atomically after
            every stage (see :meth:`save_checkpoint`).
          checkpoint_every: with ``checkpoint_dir``, also checkpoint the training component
            every this many steps within a stage (``stage_XX.partial``, removed when the stage
            is complete); a resumed ``fit`` continues the stage from there.
          on_stage_end: optional callable ``(trainer, record)`` called after every stage.

        Returns:
          The history (list of per-stage dicts).
        """
        if not self.loss.uses_data and (x is not None or validation_data is not None):
            raise ValueError("objective='matching' learns from `target_log_prob`; do not pass "
                             "data `x` / `validation_data`.")
        table = self._data_table(x, what="training data")
        val_table = None if validation_data is None else self._data_table(
            validation_data, "validation_data")
        steps_per_component = check_positive_int(steps_per_component, "steps_per_component",
                                                 minimum=0)
        finetune_steps = steps_per_component if finetune_steps is None else check_positive_int(
            finetune_steps, "finetune_steps", minimum=0)
        every = None
        if checkpoint_dir is not None and checkpoint_every is not None:
            every = check_positive_int(checkpoint_every, "checkpoint_every")

        def run_stage(stage, phase, c, progress_dir):
            steps = steps_per_component if phase == "boost" else finetune_steps
            return self._run_stage(stage, phase, c, steps, table, val_table, progress_dir,
                                   every)

        return checkpoint.run_stages(self, self.schedule(finetune_passes), run_stage,
                                     checkpoint_dir, every, on_stage_end)

    def refit_weight(self, c, x=None, rho_init=None):
        """Re-fits the weight of trained component ``c`` against the others (Algorithm 1).

        Uses data ``x`` for ``"density"``; returns the new ``rho_c`` and updates
        :attr:`weights`.
        """
        if not self.trained[c]:
            raise ValueError(f"Component {c} is not trained yet.")
        fixed, fixed_w = self._fixed(c)
        if not fixed:
            raise ValueError("refit_weight needs at least one other trained component.")
        table = self._data_table(x)
        init = self.weights[c] if rho_init is None else rho_init
        rho, _ = self._fit_weight(c, fixed, fixed_w, table, init, f"refit_{len(self.history)}")
        self._set_weight(c, fixed, fixed_w, rho)
        return rho

    # ----------------------------------------------------------------- checkpoints
    def state(self):
        """JSON-serialisable trainer state (see :func:`tfresflow.boosting.checkpoint`)."""
        return checkpoint.trainer_state(self)

    def save_checkpoint(self, path):
        """Writes ``path/`` atomically: ``component_J.weights.h5`` per component, ``state.json``."""
        return checkpoint.save_checkpoint(self, path)

    def load_checkpoint(self, path):
        """Restores component weights and trainer state written by :meth:`save_checkpoint`."""
        return checkpoint.load_checkpoint(self, path)

