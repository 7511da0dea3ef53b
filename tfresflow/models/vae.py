"""``FlowVAE``: a variational autoencoder with a flow or boosted-mixture-of-flows posterior.

Model (Kingma & Welling, 2014; Rezende & Mohamed, 2015; Giaquinto & Banerjee, 2020, GBF):

* prior ``p(z) = N(0, I_D)``, ``log p(z) = -0.5 |z|^2 - 0.5 D log 2 pi`` (:meth:`prior_log_prob`);
* Bernoulli decoder ``log p(x|z) = sum_pixels [x l - softplus(l)]``, ``l = decode(z)`` the
  logits of a gated-convolution decoder (:meth:`log_likelihood`, GBF appendix B);
* base posterior ``q0(z0|x) = N(mu(x), diag sigma(x)^2)`` and a context vector ``h(x)``, both
  from a gated-convolution encoder (:meth:`encode`); ``sigma = softplus(.) + 1e-4``;
  ``log q0`` keeps its ``-0.5 D log 2 pi`` as the prior does (the reference code drops it in
  one and not the other: a ``0.5 D log 2 pi`` shift of the KL, notes B.8 - not copied);
* posterior ``G(z|x) = sum_c w_c g_c(z|x)`` (GBF eq. 7), each component a flow
  ``z = f_c(z0; h(x))`` over the shared base, ``log g_c(z|x) = log q0(f_c^{-1}(z)) +
  log|det d f_c^{-1}/dz|``. ``C = 1`` with the identity flow is the plain VAE, ``C = 1`` with
  a flow the flow VAE, ``C > 1`` the boosted posterior.

Component type (the issue's "say which you built"): by default the components are AMORTISED
conditional RealNVP couplings (:class:`~tfresflow.models.vae_posterior.ConditionalCouplingFlow`:
vector couplings over the latent whose shift / log-scale nets take ``[z_a, h(x)]``, as the
paper's RealNVP posterior takes its parameters from the encoder); ``flow=`` a list of tfresflow
vector bijectors (or a callable ``c -> bijector``) gives GLOBAL (non-amortised) components
(:class:`~tfresflow.models.vae_posterior.GlobalFlowComponent`), e.g. residual flows.

The mixture is computed here rather than with :class:`tfresflow.distributions.BoostedFlow`,
whose components are unconditional distributions: a VAE component is conditional on ``x``
(through the shared base ``q0(.|x)`` and ``h(x)``) and evaluated at latents with sample
dimensions. The rules are the same: a component drawn per sample, ``logsumexp`` mixing.

Public API (stable; the boosted stage-wise trainer builds on it). Shapes: ``x [B, H, W, C]``;
latents ``z [..., B, D]`` with any leading sample dimensions; an *encoding* is the tuple
``(mu [B, D], log_sigma [B, D], h [B, H])`` (a Python ``tuple``; anything else is taken for
images); methods taking ``x_or_encoding`` accept either.

* ``encode(x) -> (mu, log_sigma, h)``; ``decode(z) -> logits [..., B, H, W, C]``;
* ``log_likelihood(x, z) -> log p(x|z) [..., B]``; ``prior_log_prob(z) -> [..., B]``;
  ``base_log_prob(z0, encoding) -> log q0(z0|x) [..., B]``;
* ``component_forward(c, z0, h) -> (z, log|det dz/dz0|)``,
  ``component_inverse(c, z, h) -> (z0, log|det dz0/dz|)``;
* ``component_sample(x_or_encoding, c, n, seed) -> (z [n, B, D], log g_c(z|x) [n, B])``
  (reparameterised: differentiable in the encoder and component ``c``);
* ``component_log_prob(c, z, encoding) -> log g_c(z|x)`` (through the inverse);
* ``component_log_probs(z, encoding, components=None) -> [..., B, C']``;
* ``mixture_log_prob(z, encoding, components=None, weights=None)
  = logsumexp_c(log w_c + log g_c(z|x))`` over ``components`` (indices; default all) with
  ``weights`` (default: the stored weights of those components), renormalised to sum 1;
* ``mixture_sample(x_or_encoding, n, seed, components=None, weights=None)
  -> (z [n, B, D], ids [n, B], log g_ids(z|x) [n, B])``: one component drawn per sample
  (``Categorical(w)``, not one per batch as the reference code), with that component's own
  log-density;
* ``elbo(x, n_samples=1, seed=None, beta=1.0, density="mixture", components=None,
  weights=None) -> {"elbo", "reconstruction", "kl"}`` per example ``[B]``, averaged over
  ``n_samples`` draws of the mixture: ``reconstruction = E log p(x|z)``,
  ``kl = E[log q(z|x) - log p(z)]`` (one-sample estimate per draw), ``elbo = reconstruction -
  beta * kl``; ``q = G`` (``density="mixture"``) or the drawn component's own ``g_c``
  (``"component"``: GBF eq. 5 as in the paper's evaluation, a looser bound);
* weights: ``mixture_weights`` (normalised tensor ``[C]``), ``mixture_weights_variable`` (the
  non-trainable variable), ``set_mixture_weights(w)``;
* trainable components: ``set_component_trainable(c, flag)``, ``freeze_components(fixed)``,
  ``trainable_components`` (list of bools). A frozen component's weights leave
  ``trainable_variables`` (the encoder and decoder stay trainable);
* KL annealing: ``kl_warmup_steps``, ``kl_step`` (non-trainable variable, counts training
  steps), ``kl_beta()`` = ``min(1, (kl_step + 1) / kl_warmup_steps)`` (1 without warm-up),
  :func:`kl_warmup_beta` the schedule as a function, ``reset_kl_warmup()`` (the boosted trainer
  restarts the warm-up per stage);
* ``sample(n, seed) -> Bernoulli means sigmoid(decode(z)), z ~ p(z)``;
* ``fit(x)`` (no labels): Keras training on the mean negative ELBO with the annealed beta
  (one mixture draw per example; ``kl_step`` advances once per step); metrics ``loss``,
  ``reconstruction``, ``kl`` (running means over the epoch's batches) and ``beta`` (the last
  step's). Frozen components do not move; after changing which components train, use a
  fresh optimiser (or ``compile`` again) when the optimiser was built on other variables.
  Global residual components get their power iteration refreshed after every step
  (``LipschitzUpdate``, as ``FlowModel.fit``).

Evaluation (negative ELBO with 3C samples, importance-sampled NLL):
:mod:`tfresflow.models.vae_evaluation`. SavedModel export: :func:`tfresflow.export.export_vae_saved_model`.

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (sections 2.2, 3, 4.1-4.3, 5.2; appendices B-D).
  Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR, arXiv:1312.6114.
  Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows", ICML,
    arXiv:1505.05770.
  Bowman et al. (2016), "Generating Sentences from a Continuous Space", CoNLL (KL annealing).
"""
import keras
import numpy as np
import tensorflow as tf

from tfresflow import random as trf_random
from tfresflow.lipschitz import with_lipschitz_update
from tfresflow.models.vae_posterior import (ConditionalCouplingFlow, GlobalFlowComponent,
                                            IdentityComponent)
from tfresflow.nets.gated_conv import GatedConvDecoder, GatedConvEncoder
from tfresflow.validation import (check_choice, check_event_shape, check_number,
                                  check_positive_int, check_samples)

__all__ = ["FlowVAE", "kl_warmup_beta", "LOG_2PI"]

LOG_2PI = float(np.log(2.0 * np.pi))
SIGMA_FLOOR = 1e-4
DENSITIES = ("mixture", "component")


def kl_warmup_beta(step, warmup_steps):
    """KL weight after ``step`` completed training steps: ``min(1, (step + 1) / T)``.

    Linear warm-up over ``T = warmup_steps`` steps (``T = 0``: no warm-up, always 1); the first
    step has ``1 / T`` and step ``T - 1`` (0-based) the full weight, as the reference code's
    ``beta = ((e - 1) % A) / A + 1 / A`` per epoch ``e`` (notes B.7). Works on numbers and
    tensors.
    """
    if isinstance(warmup_steps, (int, np.integer)) and warmup_steps == 0:
        return 1.0 if not tf.is_tensor(step) else tf.ones_like(tf.cast(step, tf.float32))
    if tf.is_tensor(step):
        return tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(warmup_steps))
    return min(1.0, (float(step) + 1.0) / float(warmup_steps))


def _gaussian_log_prob(eps_sq_sum, log_scale_sum, d):
    return -0.5 * eps_sq_sum - log_scale_sum - 0.5 * d * LOG_2PI


@keras.saving.register_keras_serializable(package="tfresflow")
class FlowVAE(keras.Model):
    """VAE with a none / flow / boosted-mixture posterior (see the module docstring).

    Args:
      image_shape: ``(H, W, C)`` of the binarised images (values in {0, 1}).
      latent_size: ``D`` (64 as in the paper).
      num_components: ``C`` posterior components (1: plain or flow VAE; > 1: boosted).
      flow: ``"coupling"`` (amortised conditional couplings, the default), ``None`` / ``"none"``
        (plain VAE; needs ``num_components=1``), or global flows: a list of ``C`` tfresflow
        vector bijectors, or a callable ``c -> bijector`` (called for ``c = 0 .. C-1``).
      flow_steps: ``K`` couplings per coupling component.
      flow_hidden_units: hidden widths of each coupling conditioner.
      context_size: ``H``, width of the encoder's context vector ``h(x)``.
      encoder_depth, decoder_depth: gated layers per network (6, GBF appendix B).
      encoder_channels, decoder_channels: widths (defaults in :mod:`tfresflow.nets.gated_conv`).
      kernel_size: gated-convolution kernel (5).
      kl_warmup_steps: ``T`` of the linear KL warm-up (0: none).
      mixture_weights: initial weights ``[C]`` (normalised; default uniform).
      log_scale_clamp: soft clamp of the couplings' log-scales.
      seed: seed of the model's seed generator (fresh noise for calls without ``seed``).
    """

    def __init__(self, image_shape, latent_size=64, num_components=1, flow="coupling",
                 flow_steps=4, flow_hidden_units=(256,), context_size=64, encoder_depth=6,
                 decoder_depth=6, encoder_channels=None, decoder_channels=None, kernel_size=5,
                 kl_warmup_steps=0, mixture_weights=None, log_scale_clamp=2.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_event_shape(image_shape, "image_shape")
        if len(self.image_shape) != 3:
            raise ValueError(f"`image_shape` must be (height, width, channels), got "
                             f"{self.image_shape}.")
        self.latent_size = check_positive_int(latent_size, "latent_size")
        self.num_components = check_positive_int(num_components, "num_components")
        self.context_size = check_positive_int(context_size, "context_size", minimum=0)
        self.kl_warmup_steps = check_positive_int(kl_warmup_steps, "kl_warmup_steps", minimum=0)
        self.flow_steps = check_positive_int(flow_steps, "flow_steps")
        self.flow_hidden_units = tuple(check_positive_int(u, "flow_hidden_units")
                                       for u in flow_hidden_units)
        self.log_scale_clamp = check_number(log_scale_clamp, "log_scale_clamp", 0.0,
                                            low_open=True)
        self.seed = seed
        self.components = self._make_components(flow)
        self.flow_type = flow if isinstance(flow, str) or flow is None else "global"
        if self.flow_type == "none":
            self.flow_type = None
        self.encoder = GatedConvEncoder(self.image_shape, depth=encoder_depth,
                                        channels=encoder_channels, kernel_size=kernel_size,
                                        name="encoder")
        self.decoder = GatedConvDecoder(self.image_shape, self.latent_size, depth=decoder_depth,
                                        channels=decoder_channels, kernel_size=kernel_size,
                                        name="decoder")
        self.encoder_depth, self.decoder_depth = int(encoder_depth), int(decoder_depth)
        self.encoder_channels = list(self.encoder.channels)
        self.decoder_channels = list(self.decoder.channels)
        self.kernel_size = int(kernel_size)
        self.posterior_head = keras.layers.Dense(2 * self.latent_size, name="posterior_head")
        # Only the amortised couplings read h(x); other posteriors get a [B, 0] context.
        self.context_head = keras.layers.Dense(self.context_size, name="context_head") \
            if self.context_size and self.flow_type == "coupling" else None
        w = self._checked_weights(np.full([self.num_components], 1.0 / self.num_components)
                                  if mixture_weights is None else mixture_weights)
        self.mixture_weights_variable = self.add_weight(
            name="mixture_weights", shape=(self.num_components,),
            initializer=keras.initializers.Constant(w), trainable=False)
        self.kl_step = self.add_weight(name="kl_step", shape=(), initializer="zeros",
                                       trainable=False)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.build((None, *self.image_shape))

    # ----------------------------------------------------------------- construction
    def _make_components(self, flow):
        c_count = self.num_components
        if flow is None or flow == "none":
            if c_count != 1:
                raise ValueError(f"`flow=None` (plain VAE) needs `num_components=1`, got "
                                 f"{c_count}.")
            return [IdentityComponent(self.latent_size, name="component_0")]
        if isinstance(flow, str):
            check_choice(flow, "flow", ("coupling", "none"))
            return [ConditionalCouplingFlow(self.latent_size, self.context_size,
                                            n_steps=self.flow_steps,
                                            hidden_units=self.flow_hidden_units,
                                            log_scale_clamp=self.log_scale_clamp,
                                            name=f"component_{c}") for c in range(c_count)]
        if callable(flow) and not isinstance(flow, (list, tuple)):
            flows = [flow(c) for c in range(c_count)]
        elif isinstance(flow, (list, tuple)):
            flows = list(flow)
            if len(flows) != c_count:
                raise ValueError(f"`flow` lists {len(flows)} bijectors but `num_components` is "
                                 f"{c_count}; give one per component.")
        else:
            raise ValueError("`flow` must be 'coupling', None, a list of bijectors or a "
                             f"callable c -> bijector, got {type(flow).__name__}.")
        return [GlobalFlowComponent(f, self.latent_size, name=f"component_{c}")
                for c, f in enumerate(flows)]

    def _checked_weights(self, weights):
        w = np.asarray(weights, np.float64).reshape(-1)
        if w.shape != (self.num_components,):
            raise ValueError(f"`mixture_weights` must have shape [{self.num_components}] (one "
                             f"per component), got {list(np.shape(weights))}.")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"`mixture_weights` must be finite, non-negative and not all zero, "
                             f"got {w.tolist()}.")
        return (w / w.sum()).astype(np.float32)

    def build(self, input_shape=None):
        self.encoder.build()
        self.posterior_head.build((None, self.encoder.output_size))
        if self.context_head is not None:
            self.context_head.build((None, self.encoder.output_size))
        self.decoder.build()
        for comp in self.components:
            comp.build()
        self.built = True

    def get_config(self):
        if self.flow_type == "global":
            flow = [c.get_config()["bijector"] for c in self.components]
        else:
            flow = self.flow_type
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "latent_size": self.latent_size, "num_components": self.num_components,
                "flow": flow, "flow_steps": self.flow_steps,
                "flow_hidden_units": list(self.flow_hidden_units),
                "context_size": self.context_size, "encoder_depth": self.encoder_depth,
                "decoder_depth": self.decoder_depth,
                "encoder_channels": self.encoder_channels,
                "decoder_channels": self.decoder_channels, "kernel_size": self.kernel_size,
                "kl_warmup_steps": self.kl_warmup_steps,
                "mixture_weights": self.mixture_weights.numpy().tolist(),
                "log_scale_clamp": self.log_scale_clamp, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        flow = config.get("flow")
        if isinstance(flow, list):
            config["flow"] = [GlobalFlowComponent(f, config["latent_size"]).bijector
                              for f in flow]
        return cls(**config)

    # ----------------------------------------------------------------- helpers
    def _seed(self, seed):
        """A stateless seed: ``seed`` converted, or a fresh one from the seed generator."""
        return trf_random.from_generator(self.seed_generator) if seed is None \
            else trf_random.as_seed(seed)

    def _images(self, x):
        if isinstance(x, (np.ndarray, list)):
            x = check_samples(x, self.image_shape, name="x")
        return tf.convert_to_tensor(x, tf.float32)

    def _check_component(self, c):
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool) \
                and 0 <= int(c) < self.num_components:
            return int(c)
        raise ValueError(f"`c` must be a component index in [0, {self.num_components}), "
                         f"got {c!r}.")

    def _component_list(self, components):
        if components is None:
            return list(range(self.num_components))
        comps = [self._check_component(c) for c in components]
        if not comps:
            raise ValueError("`components` must name at least one component.")
        return comps

    def _as_encoding(self, x_or_encoding, training=False):
        if isinstance(x_or_encoding, tuple) and len(x_or_encoding) == 3:
            return tuple(tf.convert_to_tensor(t, tf.float32) for t in x_or_encoding)
        return self.encode(x_or_encoding, training=training)

    # ----------------------------------------------------------------- networks
    def encode(self, x, training=False):
        """``(mu(x), log sigma(x), h(x))`` of the base posterior ``q0(z0|x) = N(mu, sigma^2)``.

        ``sigma = softplus(raw) + 1e-4`` (positive, floored); ``h`` has ``context_size``
        columns for the amortised coupling posterior, zero columns otherwise (plain VAE,
        global flows, ``context_size=0``).
        """
        x = self._images(x)
        features = self.encoder(x, training=training)
        mu, raw = tf.split(self.posterior_head(features), 2, axis=-1)
        log_sigma = tf.math.log(tf.nn.softplus(raw) + SIGMA_FLOOR)
        if self.context_head is None:
            h = tf.zeros([tf.shape(x)[0], 0], tf.float32)
        else:
            h = self.context_head(features)
        return mu, log_sigma, h

    def decode(self, z, training=False):
        """Bernoulli logits ``[..., B, H, W, C]`` of ``p(x|z)`` for latents ``z [..., B, D]``."""
        z = tf.convert_to_tensor(z, tf.float32)
        logits = self.decoder(tf.reshape(z, [-1, self.latent_size]), training=training)
        return tf.reshape(logits, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))

    def log_likelihood(self, x, z, training=False):
        """``log p(x|z) = sum_pixels [x l - softplus(l)]``, ``l = decode(z)``; ``[..., B]``.

        ``x [B, H, W, C]`` broadcasts over the leading sample dimensions of ``z [..., B, D]``.
        Exact Bernoulli log-probability for binary ``x`` (the negative binary cross-entropy).
        """
        x = self._images(x)
        logits = self.decode(z, training=training)
        labels = tf.broadcast_to(x, tf.shape(logits))
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return -tf.reduce_sum(ce, axis=[-3, -2, -1])

    def prior_log_prob(self, z):
        """``log N(z; 0, I) = -0.5 |z|^2 - 0.5 D log 2 pi`` (normalised), ``[..., B]``."""
        z = tf.convert_to_tensor(z, tf.float32)
        return _gaussian_log_prob(tf.reduce_sum(tf.square(z), -1), 0.0, self.latent_size)

    def base_log_prob(self, z0, encoding):
        """``log q0(z0|x) = log N(z0; mu, diag sigma^2)`` (normalised, as the prior), ``[..., B]``."""
        mu, log_sigma, _ = encoding
        eps = (tf.convert_to_tensor(z0, tf.float32) - mu) * tf.exp(-log_sigma)
        return _gaussian_log_prob(tf.reduce_sum(tf.square(eps), -1),
                                  tf.reduce_sum(log_sigma, -1), self.latent_size)

    # ----------------------------------------------------------------- components
    def component_forward(self, c, z0, h, training=False, seed=None):
        """``(z, log|det dz/dz0|)`` of component ``c`` (sampling direction)."""
        return self.components[self._check_component(c)].forward(
            tf.convert_to_tensor(z0, tf.float32), h, training=training, seed=seed)

    def component_inverse(self, c, z, h, training=False, seed=None):
        """``(z0, log|det dz0/dz|)`` of component ``c`` (density direction)."""
        return self.components[self._check_component(c)].inverse(
            tf.convert_to_tensor(z, tf.float32), h, training=training, seed=seed)

    def _base_sample(self, encoding, n, seed):
        mu, log_sigma, _ = encoding
        shape = tf.concat([[n], tf.shape(mu)], 0)
        eps = tf.random.stateless_normal(shape, seed=trf_random.as_seed(seed))
        z0 = mu + tf.exp(log_sigma) * eps
        log_q0 = _gaussian_log_prob(tf.reduce_sum(tf.square(eps), -1),
                                    tf.reduce_sum(log_sigma, -1), self.latent_size)
        return z0, log_q0

    def component_sample(self, x_or_encoding, c, n, seed=None, training=False):
        """``n`` reparameterised draws of component ``c`` per example and their log-density.

        ``z0 = mu + sigma eps``, ``eps ~ N(0, I)``; ``z = f_c(z0; h)``;
        ``log g_c(z|x) = log q0(z0|x) - log|det dz/dz0|``.

        Returns:
          ``(z [n, B, D], log_g [n, B])``.
        """
        c = self._check_component(c)
        n = check_positive_int(n, "n") if not tf.is_tensor(n) else n
        encoding = self._as_encoding(x_or_encoding, training=training)
        seed_base, seed_flow = tf.unstack(trf_random.split(self._seed(seed), 2))
        z0, log_q0 = self._base_sample(encoding, n, seed_base)
        z, log_det = self.component_forward(c, z0, encoding[2], training=training,
                                            seed=seed_flow)
        return z, log_q0 - log_det

    def component_log_prob(self, c, z, encoding, training=False, seed=None):
        """``log g_c(z|x) = log q0(f_c^{-1}(z)|x) + log|det d f_c^{-1}/dz|``, ``[..., B]``."""
        encoding = self._as_encoding(encoding, training=training)
        z0, log_det = self.component_inverse(c, z, encoding[2], training=training, seed=seed)
        return self.base_log_prob(z0, encoding) + log_det

    def component_log_probs(self, z, encoding, components=None, training=False):
        """``log g_c(z|x)`` for ``c`` in ``components`` (default all), stacked ``[..., B, C']``."""
        encoding = self._as_encoding(encoding, training=training)
        return tf.stack([self.component_log_prob(c, z, encoding, training=training)
                         for c in self._component_list(components)], axis=-1)

    def _mixture(self, components, weights):
        comps = self._component_list(components)
        if weights is None:
            w = tf.gather(self.mixture_weights_variable, comps)
        else:
            w = tf.convert_to_tensor(weights, tf.float32)
            if w.shape.rank != 1 or w.shape[0] != len(comps):
                raise ValueError(f"`weights` must have shape [{len(comps)}] (one per component "
                                 f"in `components`), got {w.shape}.")
            static = tf.get_static_value(w)
            if static is not None and (not np.all(np.isfinite(static)) or np.any(static < 0)
                                       or not static.sum() > 0):
                raise ValueError("`weights` must be finite, non-negative and not all zero, got "
                                 f"{static.tolist()}.")
        return comps, w / tf.reduce_sum(w)

    def mixture_log_prob(self, z, encoding, components=None, weights=None, training=False):
        """``log G(z|x) = logsumexp_c(log w_c + log g_c(z|x))`` (GBF eq. 7), ``[..., B]``.

        Over ``components`` (indices, default all) with ``weights`` (default the stored
        weights of those components), renormalised to sum 1; zero-weight components drop out.
        """
        comps, w = self._mixture(components, weights)
        log_g = self.component_log_probs(z, encoding, comps, training=training)
        log_w = tf.where(w > 0, tf.math.log(tf.maximum(w, 1e-38)), -np.inf)
        terms = tf.where(w > 0, log_g + log_w, tf.fill(tf.shape(log_g), -np.inf))
        return tf.reduce_logsumexp(terms, axis=-1)

    def mixture_sample(self, x_or_encoding, n, seed=None, components=None, weights=None,
                       training=False):
        """``n`` draws per example of ``G(z|x)``: one component id per draw, ``j ~ Cat(w)``.

        Only the drawn component's flow runs on each draw (``tf.dynamic_partition`` /
        ``dynamic_stitch``). Returns ``(z [n, B, D], ids [n, B] (int32, indices into the
        model's components), log g_ids(z|x) [n, B])`` - the drawn component's own density;
        the mixture's is :meth:`mixture_log_prob`.
        """
        comps, w = self._mixture(components, weights)
        n = check_positive_int(n, "n") if not tf.is_tensor(n) else n
        encoding = self._as_encoding(x_or_encoding, training=training)
        seed_ids, seed_base, seed_flow = tf.unstack(trf_random.split(self._seed(seed), 3))
        z0, log_q0 = self._base_sample(encoding, n, seed_base)
        batch = tf.shape(z0)[1]
        logits = tf.where(w > 0, tf.math.log(tf.maximum(w, 1e-38)), tf.float32.min)
        local = tf.random.stateless_categorical(logits[tf.newaxis], n * batch,
                                                seed=seed_ids, dtype=tf.int32)[0]
        if len(comps) == 1:
            z, log_det = self.component_forward(comps[0], z0, encoding[2], training=training,
                                                seed=seed_flow)
        else:
            flat_z0 = tf.reshape(z0, [-1, self.latent_size])
            h = tf.reshape(tf.broadcast_to(encoding[2][tf.newaxis],
                                           tf.concat([[n], tf.shape(encoding[2])], 0)),
                           [-1, tf.shape(encoding[2])[-1]])
            rows = tf.dynamic_partition(tf.range(n * batch), local, len(comps))
            seeds = tf.unstack(trf_random.split(seed_flow, len(comps)))
            zs, dets = [], []
            for i, c in enumerate(comps):
                zc, dc = self.component_forward(c, tf.gather(flat_z0, rows[i]),
                                                tf.gather(h, rows[i]), training=training,
                                                seed=seeds[i])
                zs.append(zc)
                dets.append(dc)
            z = tf.reshape(tf.dynamic_stitch(rows, zs), tf.shape(z0))
            log_det = tf.reshape(tf.dynamic_stitch(rows, dets), tf.shape(log_q0))
        ids = tf.gather(tf.constant(comps, tf.int32), tf.reshape(local, [n, batch]))
        return z, ids, log_q0 - log_det

    # ----------------------------------------------------------------- weights / freezing
    @property
    def mixture_weights(self):
        """Normalised mixture weights ``w [C]`` (a tensor)."""
        w = tf.convert_to_tensor(self.mixture_weights_variable)
        return w / tf.reduce_sum(w)

    def set_mixture_weights(self, weights):
        """Assigns (normalised) mixture weights ``[C]``; ValueError for bad ones."""
        self.mixture_weights_variable.assign(self._checked_weights(weights))

    @property
    def trainable_components(self):
        """``[bool] * C``: which components' weights are trainable."""
        return [bool(c.trainable) for c in self.components]

    def set_component_trainable(self, c, trainable):
        """Marks component ``c`` trainable or frozen (its weights leave ``trainable_variables``).

        Changing trainability after ``compile`` needs a new ``compile`` for ``fit`` to see it
        (Keras rebuilds its train function then).
        """
        self.components[self._check_component(c)].trainable = bool(trainable)

    def freeze_components(self, fixed):
        """Freezes the components in ``fixed`` and makes every other component trainable."""
        fixed = set(self._component_list(fixed)) if fixed else set()
        for c in range(self.num_components):
            self.set_component_trainable(c, c not in fixed)

    # ----------------------------------------------------------------- KL annealing
    def kl_beta(self):
        """Current KL weight ``kl_warmup_beta(kl_step, kl_warmup_steps)`` (float32 tensor)."""
        return tf.cast(kl_warmup_beta(tf.convert_to_tensor(self.kl_step),
                                      self.kl_warmup_steps), tf.float32)

    def reset_kl_warmup(self):
        """Restarts the KL warm-up (``kl_step = 0``), as the boosted trainer does per stage."""
        self.kl_step.assign(0.0)

    # ----------------------------------------------------------------- objectives
    def elbo(self, x, n_samples=1, seed=None, beta=1.0, density="mixture", components=None,
             weights=None, training=False):
        """Per-example ELBO of the mixture posterior and its parts, ``dict`` of ``[B]`` tensors.

        ``z_s ~ G(z|x)`` (``n_samples`` draws, one component per draw), then
        ``reconstruction = mean_s log p(x|z_s)``, ``kl = mean_s [log q(z_s|x) - log p(z_s)]``
        and ``elbo = reconstruction - beta * kl`` (eq. 2 / eq. 8), with ``q = G`` for
        ``density="mixture"`` and ``q = g_{j_s}`` (the drawn component's own density; GBF eq.
        5, the paper's evaluation protocol, a looser bound) for ``density="component"``; with
        one component the two coincide.
        """
        check_choice(density, "density", DENSITIES)
        n_samples = check_positive_int(n_samples, "n_samples")
        beta = check_number(beta, "beta", 0.0) if not tf.is_tensor(beta) else beta
        x = self._images(x)
        encoding = self.encode(x, training=training)
        comps = self._component_list(components)
        z, _, log_own = self.mixture_sample(encoding, n_samples, seed=seed, components=comps,
                                            weights=weights, training=training)
        if density == "component" or len(comps) == 1:
            log_q = log_own
        else:
            log_q = self.mixture_log_prob(z, encoding, comps, weights, training=training)
        recon = tf.reduce_mean(self.log_likelihood(x, z, training=training), 0)
        kl = tf.reduce_mean(log_q - self.prior_log_prob(z), 0)
        return {"elbo": recon - beta * kl, "reconstruction": recon, "kl": kl}

    def sample(self, n, seed=None):
        """``n`` images' Bernoulli means ``sigmoid(decode(z))``, ``z ~ N(0, I)``: ``[n, H, W, C]``."""
        n = check_positive_int(n, "n") if not tf.is_tensor(n) else n
        z = tf.random.stateless_normal(tf.stack([n, self.latent_size]), seed=self._seed(seed))
        return tf.sigmoid(self.decode(z))

    def call(self, x, training=None):
        """Per-example ELBO (``beta = 1``, one draw of the mixture)."""
        return self.elbo(x, training=bool(training))["elbo"]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    # ----------------------------------------------------------------- training
    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def _step_loss(self, data, training):
        x = data[0] if isinstance(data, (tuple, list)) else data
        beta = self.kl_beta() if training else tf.constant(1.0)
        # Under a tf.distribute strategy every replica draws its own noise.
        seed = trf_random.fold_in_replica(self._seed(None))
        parts = self.elbo(x, seed=seed, beta=beta, training=training)
        loss = -tf.reduce_mean(parts["elbo"])
        return loss, parts, beta

    def _update_metrics(self, loss, parts, beta):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(tf.reduce_mean(parts["reconstruction"]))
        self.kl_tracker.update_state(tf.reduce_mean(parts["kl"]))
        return {"loss": self.loss_tracker.result(),
                "reconstruction": self.reconstruction_tracker.result(),
                "kl": self.kl_tracker.result(), "beta": beta}

    def train_step(self, data):
        """One step on the mean negative ELBO with the annealed ``beta``; then ``kl_step += 1``."""
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            loss, parts, beta = self._step_loss(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = loss / replicas if replicas > 1 else loss
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.kl_step.assign_add(1.0)
        return self._update_metrics(loss, parts, beta)

    def test_step(self, data):
        """Mean negative ELBO (``beta = 1``, one draw per example) and its parts."""
        loss, parts, beta = self._step_loss(data, training=False)
        return self._update_metrics(loss, parts, beta)

    def fit(self, x=None, y=None, **kwargs):
        """Keras ``fit`` on the negative ELBO (images ``x`` only; metrics loss /
        reconstruction / kl / beta)."""
        if y is not None:
            raise ValueError("FlowVAE is trained on the ELBO: pass images `x` only, no labels "
                             "`y`.")
        if isinstance(x, (np.ndarray, list)):
            x = check_samples(x, self.image_shape, name="x")
        kwargs["callbacks"] = self._with_lipschitz_update(kwargs.get("callbacks"))
        return super().fit(x, **kwargs)

    def _with_lipschitz_update(self, callbacks):
        """Adds :class:`~tfresflow.lipschitz.LipschitzUpdate` (power iteration refreshed after
        every step, as ``FlowModel.fit``) when a global residual component has Lipschitz
        layers."""
        return with_lipschitz_update(callbacks, self.components)

    def evaluate(self, x=None, y=None, **kwargs):
        """Mean negative ELBO (one draw per example, ``beta = 1``) on images ``x``."""
        if isinstance(x, (np.ndarray, list)):
            x = check_samples(x, self.image_shape, name="x")
        kwargs["callbacks"] = self._with_lipschitz_update(kwargs.get("callbacks"))
        return super().evaluate(x, y, **kwargs)
