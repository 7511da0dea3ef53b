"""``BoostedFlowTrainer``: stage-wise training of gradient boosted flows.

Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows". The model is the mixture

    G^(c)(x) = (1 - rho_c) G^(c-1)(x) + rho_c g_c(x)                             (eq. 7)

of C flows (tfresflow ``FlowModel``s, Keras owns their weights). Stage ``c`` trains component
``g_c`` with every other component frozen (only ``g_c``'s variables reach the optimiser),
then fits ``rho_c`` by Algorithm 1, then moves on. An optional fine-tuning pass ("GBF+",
Sec. 3.3) re-trains each component against all the others and re-fits its weight.

Objectives of the new component (first stage: the ordinary flow objective):

* ``"matching"`` (variational; eq. 11-12): minimise over ``g``
      E_{z ~ g}[ log G(z) - log p~(z) + lambda log g(z) ]
  with ``z`` reparameterised through ``g``'s flow and the fixed mixture ``G`` evaluated at the
  new samples through *all* fixed components' inverses (exact ``logsumexp``; the paper and the
  reference code use one randomly drawn fixed component instead). ``lambda`` weighs the
  entropy term; the optimum over all densities is ``g* ∝ (p~ / G)^(1/lambda)``. An optional
  floor ``max(log G, floor)`` (the reference uses -10) bounds the reward for leaving G.
* ``"density"`` (maximum likelihood from data): the functional gradient of
  ``-E_p[log G]`` at ``G`` is ``-p / G``, so the new component is fitted to the residual
  target ``p / G`` by weighted maximum likelihood (Rosset & Segal 2002; the reference code):
      minimise  - sum_n w_n log g(x_n),    w_n ∝ G(x_n)^(-1/lambda)   (self-normalised per batch)
  ``lambda = 1`` gives the boosting weights ``1/G``; larger ``lambda`` flattens them towards
  plain maximum likelihood (more regularisation, as for the entropy weight of eq. 11; the
  paper defines ``lambda`` only for the variational objective). ``max_weight`` optionally
  clips each normalised weight (the reference clips at 0.1) and renormalises.
  Alternative ``density_objective="mixture"`` (greedy mixture learning, Li & Barron 1999):
  train ``g`` on the likelihood of the next mixture with its weight held at ``rho_0``,
      minimise  - mean_n log((1 - rho_0) G(x_n) + rho_0 g(x_n)),
  whose gradient weights each point by ``g``'s responsibility ``rho_0 g / M`` instead of
  ``1/G``; in our toy benchmarks it reaches clearly better test NLL than the residual
  weights (which pull the new component towards sparse tail points), see
  ``benchmarks/boosted.py``. ``rho_0`` is ``rho_init`` (boosting) or the current weight
  (fine-tuning); ``lambda`` is unused there.

Mixture weights (Algorithm 1, Sec. 3.3): with ``M_rho = (1 - rho) G + rho g`` and the
components frozen, ``rho`` follows SGD ``rho <- clip(rho - delta_t * d/drho F, bounds)``,
``delta_t = delta_0 / (1 + decay * t)``, stopped when ``|rho_t - rho_{t-1}| < tolerance``
(after ``min_iters``) or after ``max_iters``. The Monte Carlo gradients are

* matching: ``dF/drho = E_g[gamma] - E_G[gamma]``, ``gamma = log M_rho(z) - log p~(z)``;
* density:  ``dF/drho = -E_p[(g(x) - G(x)) / M_rho(x)]`` (``F = -E_p log M_rho``; the
  reference's version of this has its sign flipped and is disabled there).

Mini-batches are drawn from a pool of ``rho_pool_size`` samples (data, or draws of ``g`` and
``G``) whose log-densities are evaluated once, since nothing but ``rho`` changes during the
fit. Weights are kept on the simplex; ``rho_bounds`` keeps them strictly inside so a
fine-tuning pass can renormalise ``G^(-c) = sum_{j != c} w_j g_j / (1 - w_c)``.
"""
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.distributions.boosted import BoostedFlow
from tfresflow.io import atomic_path, ensure_writable_dir, write_json
from tfresflow.models.flow_model import FlowModel
from tfresflow.validation import check_samples

tfb = tfp.bijectors

OBJECTIVES = ("density", "matching")
DENSITY_OBJECTIVES = ("boosting", "mixture")

__all__ = ["BoostedFlowTrainer", "boosted_coupling_components", "fit_mixture_weight",
           "density_weight_gradient", "matching_weight_gradient", "OBJECTIVES"]


# --------------------------------------------------------------------------- components
def boosted_coupling_components(num_components, event_size, flow_steps=1, hidden_units=(64, 64),
                                seed=0, name="boosted"):
    """``num_components`` RealNVP coupling flows of ``flow_steps`` steps each.

    Component ``c`` starts its alternating masks at offset ``c`` (the reference's
    ``flip_init``), so one-step components transform different coordinates.
    """
    if int(num_components) < 1 or int(flow_steps) < 1:
        raise ValueError(f"`num_components` and `flow_steps` must be >= 1, got "
                         f"{num_components!r} and {flow_steps!r}.")
    models = []
    for c in range(int(num_components)):
        steps = [AffineCoupling(event_size, hidden_units=hidden_units, reverse=bool((i + c) % 2),
                                name=f"{name}_c{c}_coupling_{i}")
                 for i in range(int(flow_steps))]
        models.append(FlowModel(tfb.Chain(steps, name=f"{name}_c{c}_flow"),
                                event_shape=[event_size], seed=seed * 1000 + c,
                                name=f"{name}_component_{c}"))
    return models


# --------------------------------------------------------------------------- Algorithm 1
def _log_mixture(rho, log_big, log_new):
    """``log((1 - rho) G + rho g)`` from ``log G`` and ``log g`` (numpy, stable)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-rho) + log_big, np.log(rho) + log_new)


def density_weight_gradient(log_new, log_big):
    """``rho -> dF/drho`` for ``F(rho) = -mean_n log M_rho(x_n)`` at pooled data.

    ``log_new[n] = log g(x_n)``, ``log_big[n] = log G(x_n)``; returns a function of
    ``(rho, idx)`` evaluating ``-mean_{n in idx} (g - G) / M_rho`` at the rows ``idx``.
    """
    log_new, log_big = np.asarray(log_new, np.float64), np.asarray(log_big, np.float64)

    def grad(rho, idx):
        lg, lb = log_new[idx], log_big[idx]
        lm = _log_mixture(rho, lb, lg)
        return -float(np.mean(np.exp(lg - lm) - np.exp(lb - lm)))
    return grad


def matching_weight_gradient(new_samples, big_samples):
    """``rho -> E_g[gamma] - E_G[gamma]`` with ``gamma = log M_rho - log p~`` (Sec. 3.3).

    Each argument is a triple ``(log g, log G, log p~)`` of arrays evaluated at samples of
    ``g`` (``new_samples``) or of ``G`` (``big_samples``); the returned function takes
    ``(rho, idx)`` and uses rows ``idx`` of both pools.
    """
    new = [np.asarray(a, np.float64) for a in new_samples]
    big = [np.asarray(a, np.float64) for a in big_samples]

    def gamma(rho, pool, idx):
        lg, lb, lp = (a[idx] for a in pool)
        return _log_mixture(rho, lb, lg) - lp

    def grad(rho, idx):
        return float(np.mean(gamma(rho, new, idx)) - np.mean(gamma(rho, big, idx)))
    return grad


def fit_mixture_weight(grad_fn, pool_size, rho_init, step_size=0.05, decay=0.05,
                       tolerance=1e-3, max_iters=300, min_iters=10, batch_size=512,
                       bounds=(1e-4, 1 - 1e-4), seed=0):
    """Algorithm 1 of Giaquinto & Banerjee (2020): SGD on one mixture weight ``rho``.

    ``rho_{t+1} = clip(rho_t - step_size / (1 + decay t) * grad_fn(rho_t, idx_t), bounds)``
    with ``idx_t`` a random mini-batch of ``batch_size`` pool rows (the whole pool when
    ``batch_size`` is None or larger); stops when ``|rho_{t+1} - rho_t| < tolerance`` after at
    least ``min_iters`` iterations, or after ``max_iters``.

    Returns:
      ``(rho, iterations, trace)`` with ``trace`` the list of iterates.
    """
    lo, hi = bounds
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"`bounds` must satisfy 0 <= low < high <= 1, got {bounds!r}.")
    if not step_size > 0 or decay < 0 or not tolerance > 0:
        raise ValueError("`step_size` and `tolerance` must be > 0 and `decay` >= 0, got "
                         f"{step_size!r}, {tolerance!r}, {decay!r}.")
    rng = np.random.default_rng(seed)
    rho = float(np.clip(rho_init, lo, hi))
    trace = [rho]
    full = batch_size is None or batch_size >= pool_size
    t = 0
    for t in range(1, int(max_iters) + 1):
        idx = slice(None) if full else rng.integers(0, pool_size, int(batch_size))
        new = float(np.clip(rho - step_size / (1.0 + decay * (t - 1)) * grad_fn(rho, idx),
                            lo, hi))
        delta, rho = abs(new - rho), new
        trace.append(rho)
        if t >= min_iters and delta < tolerance:
            break
    return rho, t, trace


# --------------------------------------------------------------------------- trainer
class BoostedFlowTrainer:
    """Trains a gradient boosted flow stage by stage (see the module docstring).

    Args:
      components: list of C tfresflow ``FlowModel``s with one event shape (e.g. from
        :func:`boosted_coupling_components`); the mixture's components, trained in order.
      objective: ``"density"`` (fit data by maximum likelihood) or ``"matching"`` (fit an
        unnormalised target density by reverse KL).
      target_log_prob: for ``"matching"``, a callable ``z [n, *event] -> log p~(z) [n]``
        (e.g. :func:`tfresflow.data.log_density`); must be differentiable in ``z``.
      regularization: ``lambda > 0`` of the boosting objective (module docstring).
      density_objective: ``"boosting"`` (residual weights ``G^(-1/lambda)``, the paper's) or
        ``"mixture"`` (greedy mixture likelihood); ``"density"`` objective only.
      learning_rate: Adam learning rate (ignored when ``optimizer`` is given).
      optimizer: optional callable returning a fresh Keras optimizer; one per stage.
      clipnorm: optional gradient-norm clipping of the default Adam optimizer.
      batch_size: mini-batch size (data points or samples of the new component).
      max_weight: optional cap in (0, 1] on each normalised density-boosting weight.
      log_mixture_floor: floor on ``log G`` in the matching objective (default -10, the
        reference's value; ``None`` disables it). Without a floor the objective is unbounded
        below whenever ``G`` has lighter tails than ``p~`` (the new component runs away to
        where ``G`` vanishes); we observed exactly that divergence on U1-U4.
      rho_step_size, rho_decay, rho_tolerance, rho_max_iters, rho_min_iters, rho_batch_size,
      rho_pool_size, rho_bounds: Algorithm 1 settings (:func:`fit_mixture_weight`).
      rho_init: initial weight of a new component in Algorithm 1 (default ``1/C``, as the paper).
      eval_samples: samples of the mixture used for the matching metrics of each stage.
      seed: integer seed of all training randomness.
      verbose: 0 silent, 1 a progress bar per stage.

    Attributes:
      history: one dict per completed stage (phase, component, losses, rho, weights, metrics).
      weights: current mixture weights (numpy ``[C]``, zero for untrained components).
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
            if not isinstance(c, FlowModel):
                raise TypeError(f"`components[{i}]` must be a tfresflow FlowModel (trainable "
                                f"Keras weights), got {type(c).__name__}.")
            if list(c.event_shape) != list(components[0].event_shape):
                raise ValueError(f"All components must share one event shape: components[0] has "
                                 f"{components[0].event_shape}, components[{i}] has "
                                 f"{c.event_shape}.")
        if objective not in OBJECTIVES:
            raise ValueError(f"Unknown `objective` {objective!r}; choose one of {OBJECTIVES}.")
        if objective == "matching" and not callable(target_log_prob):
            raise ValueError("objective='matching' needs a callable `target_log_prob` "
                             "(unnormalised target log-density).")
        if density_objective not in DENSITY_OBJECTIVES:
            raise ValueError(f"Unknown `density_objective` {density_objective!r}; choose one of "
                             f"{DENSITY_OBJECTIVES}.")
        if not regularization > 0:
            raise ValueError(f"`regularization` (lambda) must be > 0, got {regularization!r}.")
        if max_weight is not None and not 0 < max_weight <= 1:
            raise ValueError(f"`max_weight` must be in (0, 1], got {max_weight!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
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
        self.batch_size = int(batch_size)
        self.max_weight = max_weight
        self.log_mixture_floor = log_mixture_floor
        self.rho_options = dict(step_size=rho_step_size, decay=rho_decay,
                                tolerance=rho_tolerance, max_iters=rho_max_iters,
                                min_iters=rho_min_iters, batch_size=rho_batch_size,
                                bounds=tuple(rho_bounds))
        self.rho_pool_size = int(rho_pool_size)
        self.rho_init = 1.0 / self.num_components if rho_init is None else float(rho_init)
        self.eval_samples = int(eval_samples)
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.weights = np.zeros(self.num_components)
        self.trained = np.zeros(self.num_components, bool)
        self.history = []
        self._logp_fns = {}

    # ----------------------------------------------------------------- mixture views
    def mixture(self, include=None):
        """The current :class:`BoostedFlow` over the trained components (or ``include``)."""
        idx = [j for j in range(self.num_components) if self.trained[j]] if include is None \
            else list(include)
        if not idx:
            raise ValueError("No trained component yet: call `fit` first.")
        w = self.weights[idx]
        if not w.sum() > 0:
            w = np.ones(len(idx))
        return BoostedFlow([self.components[j] for j in idx], weights=w.astype(np.float32))

    def _fixed(self, c):
        """Indices and normalised weights of the fixed mixture seen by component ``c``."""
        idx = [j for j in range(self.num_components) if self.trained[j] and j != c]
        if not idx:
            return [], np.zeros(0)
        w = self.weights[idx]
        return idx, w / w.sum()

    # ----------------------------------------------------------------- evaluation
    def _stage_seed(self, *ints):
        seed = tf.constant([self.seed % (2 ** 31 - 1), 0], tf.int32)
        for i in ints:
            seed = tf.random.experimental.stateless_fold_in(seed, int(i))
        return seed

    def _log_prob_fn(self, j):
        if j not in self._logp_fns:
            comp = self.components[j]
            spec = tf.TensorSpec([None, *self.event_shape], tf.float32)
            self._logp_fns[j] = tf.function(
                lambda x, seed: comp.log_prob(x, seed=seed),
                input_signature=[spec, tf.TensorSpec([2], tf.int32)], reduce_retracing=True)
        return self._logp_fns[j]

    def component_log_prob(self, j, x, chunk=8192):
        """``log g_j(x)`` for a numpy array ``x`` (float64 numpy ``[n]``), in chunks."""
        fn = self._log_prob_fn(j)
        out = [fn(tf.constant(x[i:i + chunk]), self._stage_seed(10 ** 6 + j, i)).numpy()
               for i in range(0, len(x), chunk)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def evaluate(self, x):
        """Mean negative log-likelihood (nats) of the current mixture on data ``x``."""
        x = check_samples(x, self.event_shape, name="x")
        return float(-np.mean(self._mixture_log_prob(_LogProbTable(self, x))))

    def _mixture_log_prob(self, table, include=None):
        idx = [j for j in range(self.num_components) if self.trained[j]] if include is None \
            else list(include)
        w = self.weights[idx] / self.weights[idx].sum()
        with np.errstate(divide="ignore"):
            return _logsumexp(np.log(w)[None, :] + table.columns(idx), axis=1)

    def matching_metrics(self, n=None, seed=0):
        """Reverse-KL diagnostics of the current mixture ``G`` against ``p~`` from ``n`` draws.

        Returns ``kl_minus_log_z = E_G[log G - log p~]`` (``KL(G||p) - log Z``, lower is
        better), ``log_z_estimate = log mean exp(log p~ - log G)`` (importance-sampling estimate
        of ``log Z``) and ``ess_fraction`` (effective sample size / n of those weights).
        """
        if self.target_log_prob is None:
            raise ValueError("matching_metrics needs `target_log_prob`.")
        n = self.eval_samples if n is None else int(n)
        z, log_q = self.mixture().sample_and_log_prob(n, seed=self._stage_seed(777, seed))
        log_w = (self.target_log_prob(z) - log_q).numpy().astype(np.float64)
        lse = _logsumexp(log_w, axis=0)
        ess = float(np.exp(2 * lse - _logsumexp(2 * log_w, axis=0)) / len(log_w))
        return {"kl_minus_log_z": float(-np.mean(log_w)),
                "log_z_estimate": float(lse - np.log(len(log_w))), "ess_fraction": ess}

    # ----------------------------------------------------------------- stage training
    def _loss_fn(self, c, fixed, fixed_w, data, rho0):
        """The stage objective of component ``c`` as a function of a stateless seed."""
        comp = self.components[c]
        boosted = bool(fixed)
        lam = self.regularization
        if self.objective == "density":
            x_all, log_big_all = data
            n_data = int(x_all.shape[0])

            def loss_fn(seed):
                s_idx, s_model = tf.unstack(trf_random.split(seed, 2))
                idx = tf.random.stateless_uniform([self.batch_size], s_idx, 0, n_data, tf.int32)
                log_g = comp.log_prob(tf.gather(x_all, idx), seed=s_model, training=True)
                if not boosted:
                    return -tf.reduce_mean(log_g)
                log_big = tf.gather(log_big_all, idx)
                if self.density_objective == "mixture":
                    return -tf.reduce_mean(tf.reduce_logsumexp(tf.stack(
                        [np.log1p(-rho0) + log_big, np.log(rho0) + log_g], -1), -1))
                w = tf.nn.softmax(-log_big / lam)
                if self.max_weight is not None:
                    w = tf.minimum(w, self.max_weight)
                    w = w / tf.reduce_sum(w)
                return -tf.reduce_sum(tf.stop_gradient(w) * log_g)
        else:
            fixed_mix = BoostedFlow([self.components[j] for j in fixed],
                                    weights=fixed_w.astype(np.float32)) if boosted else None
            floor = self.log_mixture_floor

            def loss_fn(seed):
                s_g, s_big = tf.unstack(trf_random.split(seed, 2))
                z, log_g = comp.sample_and_log_prob(self.batch_size, seed=s_g)
                log_p = self.target_log_prob(z)
                if not boosted:
                    return tf.reduce_mean(log_g - log_p)
                # log G at the new samples: through every fixed component's inverse.
                log_big = fixed_mix.log_prob(z, seed=s_big)
                if floor is not None:
                    log_big = tf.maximum(log_big, float(floor))
                return tf.reduce_mean(log_big - log_p + lam * log_g)
        return loss_fn

    def _density_data(self, fixed, fixed_w, table):
        """(x, log G_fixed(x)) tensors of the training data for the density objective."""
        if fixed:
            with np.errstate(divide="ignore"):
                log_big = _logsumexp(np.log(fixed_w)[None, :] + table.columns(fixed), axis=1)
        else:
            log_big = np.zeros(table.n)
        return tf.constant(table.x), tf.constant(log_big, tf.float32)

    def stage_loss(self, c, x=None, seed=0):
        """One mini-batch value of the objective that training component ``c`` minimises.

        The fixed mixture is every *other* trained component (with renormalised weights); with
        none, the plain flow objective. ``x`` is the data (``"density"`` only). Useful to
        inspect or test the boosting objective; training uses the same function.
        """
        fixed, fixed_w = self._fixed(c)
        data = None
        if self.objective == "density":
            if x is None:
                raise ValueError("objective='density' needs data `x`.")
            table = _LogProbTable(self, check_samples(x, self.event_shape, name="x"))
            data = self._density_data(fixed, fixed_w, table)
        rho0 = float(np.clip(self.weights[c] if self.trained[c] else self.rho_init,
                             *self.rho_options["bounds"]))
        loss_fn = self._loss_fn(c, fixed, fixed_w, data, rho0)
        return float(loss_fn(self._stage_seed(10 ** 7, seed)))

    def _train_component(self, c, steps, fixed, fixed_w, data, stage, rho0):
        variables = list(self.components[c].trainable_variables)
        optimizer = self.optimizer_fn()
        optimizer.build(variables)
        seed0 = self._stage_seed(stage)
        loss_fn = self._loss_fn(c, fixed, fixed_w, data, rho0)

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
        every = max(1, steps // 100)
        losses = []
        for i in range(steps):
            loss = float(train_step(tf.constant(i, tf.int64)))
            if not np.isfinite(loss):
                raise FloatingPointError(f"Non-finite loss {loss} at step {i} of stage {stage} "
                                         f"(component {c}); lower the learning rate.")
            losses.append(loss)
            if progbar is not None and ((i + 1) % every == 0 or i + 1 == steps):
                progbar.update(i + 1, [("loss", loss)])
        return losses

    def _fit_weight(self, c, fixed, fixed_w, table, stage, rho_init):
        """Algorithm 1 for component ``c`` against the fixed mixture; returns (rho, iters)."""
        pool = self.rho_pool_size
        if self.objective == "density":
            rows = np.random.default_rng([self.seed, stage]).permutation(table.n)[:pool]
            cols = table.columns(fixed + [c], rows)
            with np.errstate(divide="ignore"):
                log_big = _logsumexp(np.log(fixed_w)[None, :] + cols[:, :-1], axis=1)
            grad = density_weight_gradient(cols[:, -1], log_big)
            pool = len(rows)
        else:
            both = BoostedFlow([self.components[j] for j in fixed + [c]],
                               weights=np.append(fixed_w, 0.0).astype(np.float32))
            seeds = [self._stage_seed(stage, 10 + k) for k in range(4)]
            z_new = self.components[c].sample(pool, seed=seeds[0])
            z_big = self.mixture(include=fixed).sample(pool, seed=seeds[1])
            pools = []
            for z, s in ((z_new, seeds[2]), (z_big, seeds[3])):
                cols = both.component_log_probs(z, seed=s).numpy().astype(np.float64)
                with np.errstate(divide="ignore"):
                    log_big = _logsumexp(np.log(fixed_w)[None, :] + cols[:, :-1], axis=1)
                pools.append((cols[:, -1], log_big,
                              self.target_log_prob(z).numpy().astype(np.float64)))
            grad = matching_weight_gradient(*pools)
        rho, iters, _ = fit_mixture_weight(grad, pool, rho_init, seed=[self.seed, stage],
                                           **self.rho_options)
        return rho, iters

    def _run_stage(self, stage, phase, c, steps, table, val_table):
        start = time.time()
        fixed, fixed_w = self._fixed(c)
        if self.verbose:
            what = "boosting" if phase == "boost" else "fine-tuning"
            print(f"stage {stage}: {what} component {c + 1}/{self.num_components} "
                  f"against {len(fixed)} fixed component(s)")
        data = self._density_data(fixed, fixed_w, table) if self.objective == "density" else None
        rho0 = float(np.clip(self.rho_init if phase == "boost" else self.weights[c],
                             *self.rho_options["bounds"]))
        losses = self._train_component(c, steps, fixed, fixed_w, data, stage, rho0)
        self.trained[c] = True
        for t in (table, val_table):
            if t is not None:
                t.invalidate(c)
        if fixed:
            rho, iters = self._fit_weight(c, fixed, fixed_w, table, stage, rho0)
            self.weights[:] = 0.0
            self.weights[fixed] = (1.0 - rho) * fixed_w
            self.weights[c] = rho
        else:
            rho, iters = 1.0, 0
            self.weights[:] = 0.0
            self.weights[c] = 1.0
        tail = losses[-max(1, len(losses) // 10):] if losses else [float("nan")]
        record = {"stage": stage, "phase": phase, "component": c, "steps": steps,
                  "final_loss": float(np.mean(tail)), "rho": float(rho), "rho_iterations": iters,
                  "weights": [float(w) for w in self.weights],
                  "num_fixed": len(fixed)}
        if self.objective == "density":
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
        stages = [("boost", c) for c in range(self.num_components)]
        return stages + [("finetune", c) for _ in range(int(finetune_passes))
                         for c in range(self.num_components)]

    def fit(self, x=None, steps_per_component=1000, finetune_steps=None, finetune_passes=0,
            validation_data=None, checkpoint_dir=None, on_stage_end=None):
        """Runs the remaining stages of :meth:`schedule` (resumes after a restored checkpoint).

        Args:
          x: training data ``[n, *event_shape]`` (objective ``"density"`` only).
          steps_per_component: optimiser steps of each boosting stage.
          finetune_steps: steps of each GBF+ fine-tuning stage (default: ``steps_per_component``).
          finetune_passes: number of GBF+ passes over all components (0: plain GBF).
          validation_data: optional held-out data; its mixture NLL is recorded per stage.
          checkpoint_dir: if given, a checkpoint ``stage_XX`` is written atomically after
            every stage (see :meth:`save_checkpoint`).
          on_stage_end: optional callable ``(trainer, record)`` called after every stage.

        Returns:
          The history (list of per-stage dicts).
        """
        if self.objective == "density":
            if x is None:
                raise ValueError("objective='density' needs training data `x`.")
            table = _LogProbTable(self, check_samples(x, self.event_shape, name="x"))
            val_table = None if validation_data is None else _LogProbTable(
                self, check_samples(validation_data, self.event_shape, name="validation_data"))
        else:
            if x is not None or validation_data is not None:
                raise ValueError("objective='matching' learns from `target_log_prob`; do not pass "
                                 "data `x` / `validation_data`.")
            table = val_table = None
        if int(steps_per_component) < 0:
            raise ValueError(f"`steps_per_component` must be >= 0, got {steps_per_component!r}.")
        finetune_steps = steps_per_component if finetune_steps is None else int(finetune_steps)
        for stage, (phase, c) in enumerate(self.schedule(finetune_passes)):
            if stage < len(self.history):
                continue  # completed before a checkpoint restore
            steps = int(steps_per_component) if phase == "boost" else finetune_steps
            record = self._run_stage(stage, phase, c, steps, table, val_table)
            self.history.append(record)
            if checkpoint_dir is not None:
                self.save_checkpoint(os.path.join(checkpoint_dir, f"stage_{stage:02d}"))
            if on_stage_end is not None:
                on_stage_end(self, record)
        return self.history

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
        table = None
        if self.objective == "density":
            if x is None:
                raise ValueError("objective='density' needs data `x` to fit a weight.")
            table = _LogProbTable(self, check_samples(x, self.event_shape, name="x"))
        init = self.weights[c] if rho_init is None else rho_init
        rho, _ = self._fit_weight(c, fixed, fixed_w, table, len(self.history) + 10 ** 4, init)
        self.weights[:] = 0.0
        self.weights[fixed] = (1.0 - rho) * fixed_w
        self.weights[c] = rho
        return rho

    # ----------------------------------------------------------------- checkpoints
    def state(self):
        """JSON-serialisable trainer state (weights, trained flags, history, settings)."""
        return {"objective": self.objective, "num_components": self.num_components,
                "event_shape": self.event_shape, "regularization": self.regularization,
                "weights": [float(w) for w in self.weights],
                "trained": [bool(t) for t in self.trained], "history": self.history,
                "density_objective": self.density_objective, "seed": self.seed}

    def save_checkpoint(self, path):
        """Writes ``path/`` atomically: ``component_J.weights.h5`` per component, ``state.json``."""
        ensure_writable_dir(os.path.dirname(os.path.abspath(path)), "checkpoint_dir")
        with atomic_path(path) as tmp:
            os.makedirs(tmp)
            for j, comp in enumerate(self.components):
                comp.save_weights(os.path.join(tmp, f"component_{j}.weights.h5"))
            write_json(os.path.join(tmp, "state.json"), self.state())
        return path

    def load_checkpoint(self, path):
        """Restores component weights and trainer state written by :meth:`save_checkpoint`."""
        state_file = os.path.join(path, "state.json")
        if not os.path.isfile(state_file):
            raise ValueError(f"`path`={path!r} is not a boosted-flow checkpoint (no state.json).")
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)
        if state["num_components"] != self.num_components or \
                state["event_shape"] != self.event_shape or state["objective"] != self.objective:
            raise ValueError(f"Checkpoint {path!r} was written for {state['num_components']} "
                             f"components, event shape {state['event_shape']}, objective "
                             f"{state['objective']!r}; this trainer has {self.num_components}, "
                             f"{self.event_shape}, {self.objective!r}.")
        for j, comp in enumerate(self.components):
            comp.load_weights(os.path.join(path, f"component_{j}.weights.h5"))
        self.weights = np.asarray(state["weights"], np.float64)
        self.trained = np.asarray(state["trained"], bool)
        self.history = list(state["history"])
        return self


def _logsumexp(a, axis):
    a = np.asarray(a, np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


class _LogProbTable:
    """Lazily computed ``log g_j(x_n)`` columns for a fixed data set.

    A frozen component's log-densities at the training data do not change, so each column is
    computed once and reused by every later stage (recomputed after that component trains).
    """

    def __init__(self, trainer, x):
        self.trainer = trainer
        self.x = np.asarray(x, np.float32)
        self.n = len(self.x)
        self._cols = {}

    def invalidate(self, j):
        self._cols.pop(j, None)

    def columns(self, idx, rows=None):
        for j in idx:
            if j not in self._cols:
                self._cols[j] = self.trainer.component_log_prob(j, self.x)
        cols = np.stack([self._cols[j] for j in idx], axis=1)
        return cols if rows is None else cols[rows]
