"""Stage-wise gradient boosting of a VAE's flow posterior (GBF, Giaquinto & Banerjee 2020).

The posterior of a :class:`tfresflow.models.FlowVAE` with ``C`` components is the mixture

    G^(c)(z|x) = (1 - rho_c) G^(c-1)(z|x) + rho_c g_c(z|x)                      (eq. 7)

of flows ``g_j(z|x)`` sharing the encoder's base Gaussian ``q0(z0|x)`` (eq. 9). It is grown
stage by stage (Sec. 3, Algorithm 1; :class:`BoostedVAETrainer`):

* **stage 0** trains component 0 as an ordinary flow VAE: minimise the negative ELBO
  ``E_{g_0}[-log p(x|z) + beta (log g_0(z|x) - log p(z))]``.
* **stage c > 0** freezes the fixed components (their variables never reach the optimiser)
  and trains the new component ``g_c`` on the boosting objective (eq. 12, with the reference
  code's KL weight ``beta``; notes B.2):

      E_{z ~ g_c}[ -log p(x|z) + max(log G(z|x), floor(z)) + beta (lam log g_c(z|x) - log p(z)) ]

  while the encoder and decoder keep learning. ``log G`` is the exact log-density of the
  *whole* fixed mixture at the new samples (a ``logsumexp`` over every fixed component's
  inverse), not one randomly drawn fixed component as in the paper (Sec. 4.2) and the reference
  code (a quirk: that is a noisy, biased stand-in for ``log G``). ``log G`` is differentiated
  in everything it depends on: the fixed flows are frozen, but their density moves with the
  shared encoder's base posterior ``q0(z0|x)`` and context. (Stopping the encoder's gradient
  there, so that only the new samples feel the ``log G`` term, lets the encoder push its own
  base posterior away from a mixture that follows it: in a trial on binarised digits the
  fixed component's ``-ELBO`` went from 26 to 195 nats within one stage and the next stage
  diverged.)

  *The shared encoder.* Every component transforms the same base posterior ``q0(z0|x)``, so
  whatever the boosting term teaches the encoder changes the frozen components too. The
  boosting objective wants ``g_c`` to cover what ``G`` leaves unexplained, and the cheapest way
  to broaden ``g_c`` is to widen ``q0``, which widens (and spoils) every fixed component:
  letting it train the encoder (``boost_encoder=True``, as the reference code does) took the
  fixed component's held-out ``-ELBO`` from 27 to 57 nats in a 300-step stage on binarised
  digits. By default the boosting examples therefore see the encoder's outputs with their
  gradient stopped (``g_c``'s own flow and the decoder learn from them); the encoder keeps
  learning from the decoder-shock examples below, whose plain ELBO of the fixed components is
  what keeps those components valid while the decoder moves.

  *Floor.* The objective rewards ``g_c`` without bound for moving where ``G`` vanishes, so
  ``log G`` is floored, ``max(log G, floor)``; the default is the reference code's -10 nats
  (``log_mixture_floor``; ``None``: no floor). A floor far below the fixed mixture's typical
  log-density (tens of nats for a 16-64-dimensional latent) caps the reward for leaving ``G``
  at a few tens of nats while keeping the prior term ``-beta log p(z)`` that confines ``g_c``.
  (A floor *at the prior*, ``max(log G, log p(z))``, looks scale-free but cancels that prior
  term wherever it binds once ``beta = lam = 1``: in a trial the new component ran off to a
  held-out ``-ELBO`` of 15,000 nats. It is not offered.)
* **Decoder shock** (Sec. 4.3). The shared decoder has adapted to the fixed components'
  samples; at a stage start it suddenly sees ``g_c``'s and the loss jumps. The fix blends in
  samples from the fixed mixture ``G`` for the decoder's (and encoder's) benefit: *each example*
  of a batch independently (a Bernoulli draw per example, so every batch mixes both kinds and
  the gradient is smooth) takes ``z ~ G`` with probability ``rate(t)`` and then contributes the
  plain ELBO of its sampled component ``j``, ``-log p(x|z) + beta (log g_j(z|x) - log p(z))``;
  the fixed components' flows stay frozen. ``rate(t)`` rises linearly from 0 to
  ``shock_max_rate`` (0.5, the paper's) over the stage (:func:`shock_rate`);
  ``shock_fix=False`` switches it off (the ablation).
* **KL annealing restarts** every boosting stage: the model's warm-up counter is reset
  (``FlowVAE.reset_kl_warmup``) and ``beta`` rises linearly from ``1 / T`` to 1 over the
  stage's first ``T = kl_warmup_steps`` steps (:func:`tfresflow.models.vae.kl_warmup_beta`;
  default ``T``: the model's ``kl_warmup_steps``); the model's ``kl_step`` counts the stage's
  steps. Fine-tuning stages use ``finetune_kl_warmup_steps`` (default 0: no annealing, as the
  reference's second pass).
* **rho** (Sec. 3.3, Algorithm 1, App. E). After stage ``c`` trains, ``rho_c`` is fitted by SGD
  with the decaying step ``delta_0 / (1 + decay t)``
  (:func:`tfresflow.boosting.weights.fit_mixture_weight`) on the gradient
  ``E_{g_c}[gamma] - E_G[gamma]``, ``gamma = log(((1 - rho) G + rho g_c)(z|x) / p(x, z))``
  (:func:`~tfresflow.boosting.weights.matching_weight_gradient`): a pool of ``rho_pool_size``
  training images, one draw of ``g_c`` and one of ``G`` each, whose ``log g_c``, ``log G`` and
  ``log p(x, z)`` are computed once (the model is frozen during the fit). The mixture becomes
  ``(1 - rho_c) G + rho_c g_c`` and the model's mixture-weight variable is set to it.
* **GBF+** (Sec. 3.3, Fig. 3): ``finetune_passes`` further passes re-train each component
  ``c`` with all the *others* fixed (same objective, same decoder-shock blend), then re-fit its
  weight starting from its current value.

Every stage writes one record to :attr:`BoostedVAETrainer.history` (its ``rho``, weights,
``-ELBO`` and importance-sampled NLL with standard errors on the evaluation data) and its
steps to :attr:`~BoostedVAETrainer.steps` (loss, reconstruction term, ``beta``, shock rate and
fraction of blended examples per step; with ``monitor_data``, held-out ``-ELBO`` of the fixed
and new components every ``monitor_every`` steps in :attr:`~BoostedVAETrainer.monitor`), which
show the decoder-shock spike at stage starts. With ``checkpoint_dir`` a checkpoint
``stage_XX`` (all model weights and the trainer's state, atomically) follows every stage and a
resumed :meth:`~BoostedVAETrainer.fit` continues after the latest one; every random stream is
a function of ``(seed, stage, step)``, so a resumed run takes exactly the steps of an
uninterrupted one.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (eqs. 7, 9, 12, 13; Sec. 3.3 Algorithm 1; Sec. 4.3; Sec. 5.2; App. E).
  Bowman et al. (2016), "Generating Sentences from a Continuous Space", CoNLL (KL annealing).
"""
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.boosting import checkpoint
from tfresflow.boosting.weights import (fit_mixture_weight, fixed_mixture,
                                        matching_weight_gradient, mixture_weights_with,
                                        stage_schedule)
from tfresflow.data.batches import step_batches
from tfresflow.models.vae import kl_warmup_beta
from tfresflow.models.vae_evaluation import evaluate_vae, vae_negative_elbo
from tfresflow.validation import check_choice, check_number, check_positive_int

__all__ = ["BoostedVAETrainer", "shock_rate", "boosted_neg_elbo", "LOG_MIXTURE_FLOOR"]

#: Default floor on ``log G`` (nats): the reference code's value.
LOG_MIXTURE_FLOOR = -10.0


def shock_rate(step, steps, max_rate=0.5):
    """Probability that an example of step ``step`` takes ``z ~ G`` (decoder-shock fix).

    ``rate(t) = max_rate * t / (steps - 1)``: 0 at the stage's first step, ``max_rate`` at its
    last (``max_rate`` throughout for a one-step stage). Works on numbers and tensors.
    """
    denom = max(int(steps) - 1, 1)
    if isinstance(step, (int, float, np.integer, np.floating)):
        return float(max_rate) * min(float(step) / denom, 1.0)
    step = tf.cast(step, tf.float32)
    return float(max_rate) * tf.minimum(step / denom, 1.0)


def boosted_neg_elbo(recon_nll, log_g, log_prior, beta, log_fixed=None, regularization=1.0,
                     floor=None):
    """Per-example stage loss of the new component (eq. 12 with the KL weight ``beta``).

    Without fixed components (``log_fixed`` None): the flow-VAE negative ELBO
    ``recon + beta (log g - log p(z))``. With them:
    ``recon + max(log G, floor) + beta (lam log g - log p(z))``, ``lam = regularization``.

    Args:
      recon_nll: ``-log p(x|z)`` ``[B]``.
      log_g: ``log g_c(z|x)`` ``[B]`` of the new component at its samples ``z``.
      log_prior: ``log p(z)`` ``[B]``.
      beta: KL weight (scalar).
      log_fixed: ``log G(z|x)`` ``[B]`` of the fixed mixture at ``z``, or None.
      regularization: ``lam > 0``, the entropy weight of eq. 11.
      floor: ``[B]`` or scalar floor on ``log G`` (None: no floor).
    """
    if log_fixed is None:
        return recon_nll + beta * (log_g - log_prior)
    if floor is not None:
        log_fixed = tf.maximum(log_fixed, floor)
    return recon_nll + log_fixed + beta * (regularization * log_g - log_prior)


class BoostedVAETrainer:
    """Trains the boosted flow posterior of a ``FlowVAE`` stage by stage (module docstring).

    Args:
      model: a :class:`tfresflow.models.FlowVAE` with ``C >= 1`` posterior components.
      regularization: ``lam > 0`` of the boosting objective (1.0, the paper's).
      log_mixture_floor: floor on ``log G`` in nats (default -10), or None (module docstring).
      learning_rate: Adam learning rate (one fresh optimiser per stage, as the reference).
      clipnorm: optional gradient-norm clipping.
      batch_size: images per step.
      kl_warmup_steps: steps of the linear KL warm-up restarted each boosting stage (0: none;
        default None: the model's ``kl_warmup_steps``).
      finetune_kl_warmup_steps: the same for GBF+ stages (default 0).
      shock_fix: blend samples of the fixed components into training (decoder-shock fix).
      shock_max_rate: the blend rate reached at the end of a stage, in [0, 1].
      boost_encoder: let the boosting objective train the shared encoder too (the reference
        code's coupling; default False: the encoder learns from the blended plain-ELBO
        examples of the fixed components only, see the module docstring).
      rho_step_size, rho_decay, rho_tolerance, rho_max_iters, rho_min_iters, rho_batch_size,
      rho_bounds: Algorithm 1 settings (:func:`~tfresflow.boosting.weights.fit_mixture_weight`;
        the step 0.005 is the reference VAE's ``rho_lr``: the gradient is in nats).
      rho_pool_size: training images in the pool of Algorithm 1.
      rho_init: weight of a new component at the start of Algorithm 1 (default ``1/C``,
        Algorithm 1); also the new component's weight in the monitored provisional mixture.
      eval_samples: importance samples of the per-stage NLL (:meth:`evaluate`; the paper
        uses 2000, the default 100 keeps a CPU run short).
      monitor_every: with ``monitor_data`` in :meth:`fit`, steps between held-out checks.
      seed: integer seed of all training randomness.
      verbose: 0 silent, 1 a progress bar per stage.

    Attributes:
      weights: mixture weights (numpy ``[C]``; zero for untrained components).
      trained: which components have been trained.
      history: one dict per completed stage.
      steps: per-step records, a dict of lists (``stage``, ``step``, ``loss``, ``recon``,
        ``beta``, ``rate``, ``blended``).
      monitor: held-out checks, a dict of lists (``stage``, ``step``, ``fixed_neg_elbo``: the
        fixed mixture's ``-ELBO``, the trained component itself in stage 0; ``new_neg_elbo``:
        the component being trained; ``mixture_neg_elbo``: ``(1 - rho_init)`` and ``rho_init``
        of the two), one draw per image, each scored by its own component's density.
    """

    def __init__(self, model, regularization=1.0, log_mixture_floor=LOG_MIXTURE_FLOOR,
                 learning_rate=1e-3, clipnorm=None, batch_size=64, kl_warmup_steps=None,
                 finetune_kl_warmup_steps=0, shock_fix=True, shock_max_rate=0.5,
                 boost_encoder=False, rho_step_size=0.005, rho_decay=0.05, rho_tolerance=1e-3,
                 rho_max_iters=100, rho_min_iters=10, rho_batch_size=256, rho_pool_size=512,
                 rho_bounds=(5e-4, 0.999), rho_init=None, eval_samples=100, monitor_every=50,
                 seed=0, verbose=1):
        self.model = model
        self.num_components = check_positive_int(len(model.components), "model.components")
        self.regularization = check_number(regularization, "regularization", 0.0,
                                           low_open=True)
        if log_mixture_floor is not None:
            log_mixture_floor = check_number(log_mixture_floor, "log_mixture_floor")
        self.log_mixture_floor = log_mixture_floor
        self.learning_rate = check_number(learning_rate, "learning_rate", 0.0, low_open=True)
        self.clipnorm = clipnorm
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.kl_warmup_steps = int(model.kl_warmup_steps) if kl_warmup_steps is None else \
            check_positive_int(kl_warmup_steps, "kl_warmup_steps", 0)
        self.finetune_kl_warmup_steps = check_positive_int(
            finetune_kl_warmup_steps, "finetune_kl_warmup_steps", 0)
        if not isinstance(shock_fix, (bool, np.bool_)):
            raise ValueError(f"`shock_fix` must be True or False, got {shock_fix!r}.")
        self.shock_fix = bool(shock_fix)
        self.shock_max_rate = check_number(shock_max_rate, "shock_max_rate", 0.0, 1.0)
        if not isinstance(boost_encoder, (bool, np.bool_)):
            raise ValueError(f"`boost_encoder` must be True or False, got {boost_encoder!r}.")
        self.boost_encoder = bool(boost_encoder)
        self.rho_options = dict(step_size=rho_step_size, decay=rho_decay,
                                tolerance=rho_tolerance, max_iters=rho_max_iters,
                                min_iters=rho_min_iters, batch_size=rho_batch_size,
                                bounds=tuple(rho_bounds))
        check_number(rho_step_size, "rho_step_size", 0.0, low_open=True)
        self.rho_pool_size = check_positive_int(rho_pool_size, "rho_pool_size")
        self.rho_init = 1.0 / self.num_components if rho_init is None else check_number(
            rho_init, "rho_init", 0.0, 1.0)
        self.eval_samples = check_positive_int(eval_samples, "eval_samples")
        self.monitor_every = check_positive_int(monitor_every, "monitor_every")
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.weights = np.zeros(self.num_components)
        self.trained = np.zeros(self.num_components, bool)
        self.history = []
        self.steps = {k: [] for k in ("stage", "step", "loss", "recon", "beta", "rate",
                                      "blended")}
        self.monitor = {k: [] for k in ("stage", "step", "fixed_neg_elbo", "new_neg_elbo",
                                        "mixture_neg_elbo")}

    # ----------------------------------------------------------------- variables
    def component_variables(self, c):
        """Trainable variables of posterior component ``c``."""
        return list(self.model.components[c].trainable_variables)

    def shared_variables(self):
        """Trainable variables of everything but the components (encoder, decoder)."""
        comp = {id(v) for layer in self.model.components for v in layer.trainable_variables}
        return [v for v in self.model.trainable_variables if id(v) not in comp]

    # ----------------------------------------------------------------- randomness
    def _seed(self, tag, *ints):
        return trf_random.stream_seed(self.seed, tag, *ints)

    # ----------------------------------------------------------------- mixture views
    def _fixed(self, c):
        """Indices and normalised weights of the fixed mixture seen by component ``c``."""
        return fixed_mixture(self.weights, self.trained, c)

    def _set_weights(self, weights):
        self.weights = np.asarray(weights, np.float64)
        self.model.set_mixture_weights(self.weights.astype(np.float32))

    def _floor(self):
        if self.log_mixture_floor is None:
            return None
        return tf.constant(float(self.log_mixture_floor))

    def _fixed_log_prob(self, fixed, fixed_w, z, enc, training=False):
        """``log G(z|x) = logsumexp_j(log w_j + log g_j(z|x))`` over *all* fixed components."""
        return self.model.mixture_log_prob(z, enc, components=fixed, weights=fixed_w,
                                           training=training)

    def _fixed_sample(self, fixed, fixed_w, enc, seed, training=False):
        """One draw of the fixed mixture per example (a component drawn per example):
        ``(z [B, D], log g_j(z|x) [B])`` with ``j`` the drawn component."""
        z, _, log_q = self.model.mixture_sample(enc, 1, seed=seed, components=fixed,
                                                weights=fixed_w, training=training)
        return z[0], log_q[0]

    def _sample(self, c, enc, seed, training=False):
        """One reparameterised draw of component ``c`` per example: ``(z [B, D], log g_c)``."""
        z, log_g = self.model.component_sample(enc, c, 1, seed=seed, training=training)
        return z[0], log_g[0]

    # ----------------------------------------------------------------- the stage loss
    def _loss_fn(self, c, fixed, fixed_w, blend):
        """``(x, seed, beta, rate) -> (loss, recon, blended fraction)`` of stage component ``c``.

        ``blend``: whether the decoder-shock blend is active (fixed components exist and
        ``shock_fix``).
        """
        model, lam = self.model, self.regularization
        fixed_w = np.asarray(fixed_w, np.float32)

        def loss(x, seed, beta, rate):
            s_new, s_fix, s_mask = tf.unstack(trf_random.split(seed, 3))
            enc = model.encode(x, training=True)
            if not fixed:
                z_new, log_g = self._sample(c, enc, s_new, training=True)
                recon = -model.log_likelihood(x, z_new, training=True)
                per = boosted_neg_elbo(recon, log_g, model.prior_log_prob(z_new), beta)
                return tf.reduce_mean(per), tf.reduce_mean(recon), tf.constant(0.0)
            # The boosting term reaches the encoder only with boost_encoder (module docstring).
            enc_new = enc if self.boost_encoder else tf.nest.map_structure(tf.stop_gradient, enc)
            z_new, log_g = self._sample(c, enc_new, s_new, training=True)
            log_big = self._fixed_log_prob(fixed, fixed_w, z_new, enc_new, training=True)
            if blend:
                z_fix, log_q_fix = self._fixed_sample(fixed, fixed_w, enc, s_fix,
                                                      training=True)
                mask = tf.random.stateless_uniform(tf.shape(log_g), s_mask) < rate
                z = tf.where(mask[:, None], z_fix, z_new)
            else:
                mask, z = tf.zeros(tf.shape(log_g), tf.bool), z_new
            recon = -model.log_likelihood(x, z, training=True)
            log_prior = model.prior_log_prob(z)
            boosted = boosted_neg_elbo(recon, log_g, log_prior, beta, log_big, lam,
                                       self._floor())
            if blend:
                plain = boosted_neg_elbo(recon, log_q_fix, log_prior, beta)
                per = tf.where(mask, plain, boosted)
            else:
                per = boosted
            return (tf.reduce_mean(per), tf.reduce_mean(recon),
                    tf.reduce_mean(tf.cast(mask, tf.float32)))
        return loss

    def stage_loss(self, c, x, seed=0, step=0, steps=1, beta=None):
        """One mini-batch value of the loss component ``c`` minimises at stage step ``step``.

        The fixed mixture is every other trained component; with none, the flow-VAE negative
        ELBO. ``beta`` defaults to the warm-up value at ``step``. Returns ``(loss, recon,
        blended fraction)`` as floats (for inspection and tests; training uses the same code).
        """
        fixed, fixed_w = self._fixed(c)
        blend = bool(fixed) and self.shock_fix
        beta = kl_warmup_beta(step, self.kl_warmup_steps) if beta is None else beta
        rate = shock_rate(step, steps, self.shock_max_rate) if blend else 0.0
        out = self._loss_fn(c, fixed, fixed_w, blend)(
            tf.constant(np.asarray(x, np.float32)), self._seed("stage_loss", seed),
            tf.constant(beta, tf.float32), tf.constant(rate, tf.float32))
        return tuple(float(v) for v in out)

    # ----------------------------------------------------------------- training
    def _train_component(self, c, x, steps, fixed, fixed_w, stage, warmup, monitor_data,
                         progress_dir=None, every=None):
        model = self.model
        model.freeze_components([j for j in range(self.num_components) if j != c])
        model.reset_kl_warmup()
        variables = self.shared_variables() + self.component_variables(c)
        optimizer = keras.optimizers.Adam(self.learning_rate, clipnorm=self.clipnorm)
        optimizer.build(variables)
        blend = bool(fixed) and self.shock_fix
        loss_fn = self._loss_fn(c, fixed, fixed_w, blend)
        seed0 = self._seed("train", stage)

        @tf.function(reduce_retracing=True)
        def train_step(xb, step):
            seed = tf.random.experimental.stateless_fold_in(seed0, step)
            beta = tf.cast(kl_warmup_beta(step, warmup), tf.float32)
            rate = shock_rate(step, steps, self.shock_max_rate) if blend else tf.constant(0.0)
            with tf.GradientTape() as tape:
                loss, recon, blended = loss_fn(xb, seed, beta, rate)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            model.kl_step.assign(tf.cast(step + 1, model.kl_step.dtype))
            return loss, recon, blended, beta, rate

        progress = None if progress_dir is None else checkpoint.StageProgress(
            progress_dir, model, optimizer, steps)
        start, restored = (0, []) if progress is None else progress.restore()
        if start:   # a within-stage restore: the stage's earlier steps keep only their loss
            keep = [i for i, s in enumerate(self.steps["stage"]) if s != stage]
            for key in self.steps:
                self.steps[key] = [self.steps[key][i] for i in keep]
            for i, loss in enumerate(restored):
                for key, value in zip(self.steps, (stage, i, loss) + (float("nan"),) * 4):
                    self.steps[key].append(value)
        batches = step_batches(x, self.batch_size, self._seed("batches", stage), start, steps)
        progbar = keras.utils.Progbar(steps, verbose=self.verbose,
                                      stateful_metrics=["loss", "recon"]) \
            if self.verbose and steps else None
        shown = max(1, steps // 50)
        losses = []
        for i, xb in enumerate(batches, start=start):
            out = [float(v) for v in train_step(xb, tf.constant(i, tf.int64))]
            loss, recon, blended, beta, rate = out
            if not np.isfinite(loss):
                raise FloatingPointError(f"Non-finite loss {loss} at step {i} of stage {stage} "
                                         f"(component {c}); lower the learning rate.")
            losses.append(loss)
            for key, value in zip(("stage", "step", "loss", "recon", "beta", "rate", "blended"),
                                  (stage, i, loss, recon, beta, rate, blended)):
                self.steps[key].append(value)
            if monitor_data is not None and (i % self.monitor_every == 0 or i + 1 == steps):
                self._monitor(c, fixed, fixed_w, monitor_data, stage, i)
            if progbar is not None and ((i + 1) % shown == 0 or i + 1 == steps):
                progbar.update(i + 1, [("loss", loss), ("recon", recon)])
            if progress is not None and (i + 1) % every == 0 and i + 1 < steps:
                progress.save(self._stage_losses(stage))
        return self._stage_losses(stage)

    def _stage_losses(self, stage):
        return [v for s, v in zip(self.steps["stage"], self.steps["loss"]) if s == stage]

    def _monitor(self, c, fixed, fixed_w, x, stage, step):
        """Held-out ``-ELBO`` of the fixed mixture, the new component and their provisional
        mixture ``(1 - rho_init) G + rho_init g_c`` (each sample scored by its own component's
        density, as the paper's evaluation), one draw per image."""
        seed = self._seed("monitor", stage, step)
        per = {j: float(np.mean(self._component_neg_elbo(j, x, seed)))
               for j in set(fixed) | {c}}
        new = per[c]
        fixed_val = float(np.dot(fixed_w, [per[j] for j in fixed])) if fixed else new
        rho = self.rho_init if fixed else 1.0
        for key, value in zip(self.monitor, (stage, step, fixed_val, new,
                                             (1 - rho) * fixed_val + rho * new)):
            self.monitor[key].append(value)

    def _component_neg_elbo(self, j, x, seed, chunk=512):
        """``-log p(x|z) + log g_j(z|x) - log p(z)``, ``z ~ g_j``, one draw per image."""
        model, out = self.model, []
        for i in range(0, len(x), chunk):
            xb = tf.constant(x[i:i + chunk])
            enc = model.encode(xb)
            z, log_q = self._sample(j, enc, tf.random.experimental.stateless_fold_in(seed, i))
            out.append((-model.log_likelihood(xb, z) + log_q - model.prior_log_prob(z)).numpy())
        return np.concatenate(out)

    # ----------------------------------------------------------------- rho (Algorithm 1)
    def weight_pool(self, c, x, seed=0, chunk=256):
        """Algorithm 1's pool for component ``c``: per image, one draw of ``g_c`` and one of
        the fixed mixture ``G``, each with ``(log g_c, log G, log p(x, z))``.

        Returns ``(new, big)``: two triples of float64 arrays ``[n]`` (at ``g_c``'s and at
        ``G``'s draws), the input of :func:`~tfresflow.boosting.weights.matching_weight_gradient`.
        """
        fixed, fixed_w = self._fixed(c)
        if not fixed:
            raise ValueError(f"Component {c} has no fixed components to weigh against.")
        fixed_w = np.asarray(fixed_w, np.float32)
        model = self.model
        new, big = ([], [], []), ([], [], [])
        base = self._seed("weight_pool", seed, c)
        for i in range(0, len(x), chunk):
            xb = tf.constant(np.asarray(x[i:i + chunk], np.float32))
            s_new, s_big = tf.unstack(trf_random.split(
                tf.random.experimental.stateless_fold_in(base, i), 2))
            enc = model.encode(xb)
            z_g, log_g = self._sample(c, enc, s_new)
            z_big, _ = self._fixed_sample(fixed, fixed_w, enc, s_big)
            for z, log_new, pool in ((z_g, log_g, new),
                                     (z_big, model.component_log_prob(c, z_big, enc), big)):
                log_big = self._fixed_log_prob(fixed, fixed_w, z, enc)
                log_joint = model.log_likelihood(xb, z) + model.prior_log_prob(z)
                for part, value in zip(pool, (log_new, log_big, log_joint)):
                    part.append(value.numpy().astype(np.float64))
        return tuple(np.concatenate(p) for p in new), tuple(np.concatenate(p) for p in big)

    def fit_weight(self, c, x, rho_init=None, seed=0):
        """Fits ``rho_c`` by Algorithm 1 on a pool of images ``x``; returns ``(rho, iters)``.

        Does not change :attr:`weights` (see :meth:`_finish_stage`).
        """
        new, big = self.weight_pool(c, x, seed)
        grad = matching_weight_gradient(new, big)
        init = self.rho_init if rho_init is None else rho_init
        rho, iters, _ = fit_mixture_weight(grad, len(new[0]), init,
                                           seed=[self.seed % (2 ** 31 - 1), c, int(seed)],
                                           **self.rho_options)
        return rho, iters

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, x, nll_samples=None, seed=0):
        """Scores of the current mixture posterior on images ``x``, with standard errors over
        images (:mod:`tfresflow.models.vae_evaluation`): ``negative_elbo`` (``3C`` mixture
        draws, each scored by the mixture density ``G``), ``negative_elbo_component`` (the
        same draws scored by their own component's density, the paper's eq. 5 protocol, a
        looser bound) and the importance-sampled ``nll`` with ``nll_samples`` samples
        (default ``eval_samples``; the paper uses 2000).
        """
        nll_samples = self.eval_samples if nll_samples is None else check_positive_int(
            nll_samples, "nll_samples")
        x = np.asarray(x, np.float32)
        out = evaluate_vae(self.model, x, n_importance=nll_samples,
                           sample_batch=min(nll_samples, 250), seed=seed)
        comp = vae_negative_elbo(self.model, x, density="component",
                                 seed=trf_random.fold_in_tag(seed, "elbo"))
        out.update(negative_elbo_component=comp["mean"],
                   negative_elbo_component_stderr=comp["stderr"])
        return out

    # ----------------------------------------------------------------- stages
    def schedule(self, finetune_passes=0):
        """Stages as ``(phase, component)``: boost 0..C-1, then ``finetune_passes`` GBF+ passes."""
        return stage_schedule(self.num_components, finetune_passes)

    def _run_stage(self, stage, phase, c, steps, x, eval_data, monitor_data, progress_dir,
                   every, evaluate=True):
        start = time.time()
        fixed, fixed_w = self._fixed(c)
        if self.verbose:
            what = "boosting" if phase == "boost" else "GBF+ fine-tuning"
            print(f"stage {stage}: {what} component {c} against {len(fixed)} fixed")
        warmup = self.kl_warmup_steps if phase == "boost" else self.finetune_kl_warmup_steps
        # The model samples its mixture with the weights it holds: the provisional mixture.
        rho0 = self.rho_init if fixed else 1.0
        if phase == "boost":
            self._set_weights(mixture_weights_with(self.num_components, fixed, fixed_w, c,
                                                   rho0) if fixed else np.eye(
                self.num_components)[c])
        losses = self._train_component(c, x, steps, fixed, fixed_w, stage, warmup,
                                       monitor_data, progress_dir, every)
        rho, iters = 1.0, 0
        if fixed:
            pool = x[np.random.default_rng([self.seed % (2 ** 31 - 1), stage]).choice(
                len(x), min(self.rho_pool_size, len(x)), replace=False)]
            init = self.rho_init if phase == "boost" else float(np.clip(
                self.weights[c], *self.rho_options["bounds"]))
            rho, iters = self.fit_weight(c, pool, rho_init=init, seed=stage)
        self.trained[c] = True
        self._set_weights(mixture_weights_with(self.num_components, fixed, fixed_w, c, rho)
                          if fixed else np.eye(self.num_components)[c])
        tail = losses[-max(1, len(losses) // 10):] if losses else [float("nan")]
        record = {"stage": stage, "phase": phase, "component": c, "steps": steps,
                  "num_fixed": len(fixed), "final_loss": float(np.mean(tail)),
                  "rho": float(rho), "rho_iterations": int(iters),
                  "weights": [float(w) for w in self.weights]}
        if eval_data is not None and evaluate:
            record.update(self.evaluate(eval_data, seed=stage))
        record["seconds"] = time.time() - start
        if self.verbose:
            shown = {k: round(v, 3) for k, v in record.items() if k in
                     ("rho", "negative_elbo", "negative_elbo_stderr", "nll", "nll_stderr")}
            print(f"  -> {shown}")
        return record

    def fit(self, x, steps_per_component=1000, finetune_steps=None, finetune_passes=0,
            eval_data=None, monitor_data=None, checkpoint_dir=None, checkpoint_every=None,
            on_stage_end=None, eval_stages="all"):
        """Runs the remaining stages of :meth:`schedule` (resumes after a restored checkpoint).

        Args:
          x: training images, float32 ``[n, H, W, C]`` in ``{0, 1}``.
          steps_per_component: optimiser steps of each boosting stage.
          finetune_steps: steps of each GBF+ stage (default ``steps_per_component``).
          finetune_passes: GBF+ passes over all components (0: plain GBF).
          eval_data: optional images evaluated after every stage (:meth:`evaluate`).
          monitor_data: optional (small) held-out images scored every ``monitor_every`` steps.
          checkpoint_dir: write ``stage_XX`` after every stage (and resume from the latest one
            found there when :meth:`load_checkpoint` was called, or see :meth:`resume`).
          checkpoint_every: with ``checkpoint_dir``, also save within a stage every this many
            steps (``stage_XX.partial``); a resumed ``fit`` continues the stage from there.
          on_stage_end: optional callable ``(trainer, record)`` called after every stage.
          eval_stages: ``"all"`` (evaluate ``eval_data`` after every stage) or
            ``"phase_ends"`` (only after the last boosting stage, GBF, and the last
            fine-tuning stage, GBF+: the importance-sampled NLL is the costly part).

        Returns:
          The history (list of per-stage dicts).
        """
        check_choice(eval_stages, "eval_stages", ("all", "phase_ends"))
        x = self._check_images(x, "x")
        eval_data = None if eval_data is None else self._check_images(eval_data, "eval_data")
        monitor_data = None if monitor_data is None else self._check_images(monitor_data,
                                                                            "monitor_data")
        steps_per_component = check_positive_int(steps_per_component, "steps_per_component", 0)
        finetune_steps = steps_per_component if finetune_steps is None else check_positive_int(
            finetune_steps, "finetune_steps", 0)
        finetune_passes = check_positive_int(finetune_passes, "finetune_passes", 0)
        if finetune_passes and self.num_components < 2:
            raise ValueError("`finetune_passes` (GBF+) needs at least two components.")
        every = None
        if checkpoint_dir is not None and checkpoint_every is not None:
            every = check_positive_int(checkpoint_every, "checkpoint_every")
        schedule = self.schedule(finetune_passes)
        ends = {self.num_components - 1, len(schedule) - 1}

        def run_stage(stage, phase, c, progress_dir):
            steps = steps_per_component if phase == "boost" else finetune_steps
            return self._run_stage(stage, phase, c, steps, x, eval_data, monitor_data,
                                   progress_dir, every,
                                   evaluate=eval_stages == "all" or stage in ends)

        return checkpoint.run_stages(self, schedule, run_stage, checkpoint_dir, every,
                                     on_stage_end)

    def _check_images(self, x, name):
        x = np.asarray(x, np.float32)
        shape = list(self.model.image_shape)
        if x.ndim != 4 or list(x.shape[1:]) != shape or len(x) == 0:
            raise ValueError(f"`{name}` must be images [n, {', '.join(map(str, shape))}], got "
                             f"shape {list(x.shape)}.")
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"`{name}` must be binary images (values 0 and 1) for the "
                             "Bernoulli decoder.")
        return x

    # ----------------------------------------------------------------- curves
    def stage_offsets(self):
        """``{stage: global step of its first step}`` over the recorded steps (stages in order,
        each as long as its recorded steps)."""
        offsets, total = {}, 0
        for stage in sorted(set(self.steps["stage"])):
            offsets[stage] = total
            total += sum(1 for s in self.steps["stage"] if s == stage)
        return offsets

    def step_curve(self, key="loss"):
        """``(global steps, values)`` of a per-step record (``loss``, ``recon``, ``beta``,
        ``rate``, ``blended``) through all stages."""
        off = self.stage_offsets()
        steps = [off[s] + t for s, t in zip(self.steps["stage"], self.steps["step"])]
        return np.asarray(steps), np.asarray(self.steps[key], np.float64)

    def monitor_curve(self, key="fixed_neg_elbo"):
        """``(global steps, values)`` of a held-out check (``fixed_neg_elbo``,
        ``new_neg_elbo``, ``mixture_neg_elbo``) through all stages."""
        off = self.stage_offsets()
        steps = [off.get(s, 0) + t for s, t in zip(self.monitor["stage"], self.monitor["step"])]
        return np.asarray(steps), np.asarray(self.monitor[key], np.float64)

    # ----------------------------------------------------------------- checkpoints
    def state(self):
        """JSON-serialisable trainer state (weights, trained flags, histories, settings)."""
        return {"kind": "boosted_vae", "num_components": self.num_components,
                "weights": [float(w) for w in self.weights],
                "trained": [bool(t) for t in self.trained], "history": self.history,
                "steps": self.steps, "monitor": self.monitor, "seed": self.seed,
                "regularization": self.regularization, "shock_fix": self.shock_fix}

    def save_checkpoint(self, path):
        """Writes ``path/`` atomically: ``model.weights.h5`` (all model weights), ``state.json``."""
        return checkpoint.write_checkpoint_dir(path, {"model.weights.h5": self.model},
                                               self.state())

    def load_checkpoint(self, path):
        """Restores the model weights and trainer state written by :meth:`save_checkpoint`.

        Raises:
          ValueError: if ``path`` is not such a checkpoint or holds another number of
            components.
        """
        state = checkpoint.read_checkpoint_state(path, "boosted-VAE")
        if state.get("kind") != "boosted_vae" or state["num_components"] != self.num_components:
            raise ValueError(f"Checkpoint {path!r} is not a boosted-VAE checkpoint of "
                             f"{self.num_components} components.")
        self.model.load_weights(os.path.join(path, "model.weights.h5"))
        self.trained = np.asarray(state["trained"], bool)
        self._set_weights(state["weights"])
        self.history = list(state["history"])
        self.steps = {k: list(v) for k, v in state["steps"].items()}
        self.monitor = {k: list(v) for k, v in state["monitor"].items()}
        return self

    def resume(self, checkpoint_dir):
        """Loads the latest ``stage_XX`` in ``checkpoint_dir`` (if any); returns its path."""
        latest = checkpoint.latest_checkpoint(checkpoint_dir)
        if latest is not None:
            self.load_checkpoint(latest)
        return latest
