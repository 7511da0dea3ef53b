"""``HybridFlowModel``: one invertible image flow that is both a density model and a classifier.

A hybrid model (Nalisnick et al., 2019) models the joint ``log p(x, y) = log p(x) + log p(y|x)``
with a flow ``p(x)`` and a classifier ``p(y|x)`` that reads the flow's own features. Residual
Flows (Chen et al., 2019, Section 5.3 and Appendix E) and i-DenseNets (Perugachi-Diaz et al.,
2021, Section 4.3 and Appendix B) train it on the weighted objective (eq. 12 of Residual Flows)

    maximise  E_(x,y) [ lambda log p(x) + log p(y|x) ],      lambda in {0, 1/D, 1},

so :class:`HybridFlowModel` minimises, averaged over the batch,

    loss = -( lambda log p(x) + log p(y|x) ) = lambda NLL(x) + CE(y, x)      (nats),

with ``D = H W C`` the data dimension (``lambda = 1/D`` weighs the density per dimension like the
class; ``lambda = 0`` is a pure classifier whose features are an invertible network's).

Classifier (Chen et al., 2019, Appendix E): the image flow of :mod:`tfresflow.models.image`
(``Logit -> blocks -> [Squeeze -> blocks] x (scales - 1) [-> flatten -> FC blocks]``) is walked
in the density direction (data -> latent, TFP ``inverse``); a branch is attached to the tensor
after every ``Squeeze`` step and to the output of the convolutional part (before the flatten
and the FC blocks, which Residual Flows leaves out of its hybrid models). Each branch is

    3x3 conv (``branch_channels``, 256 in the papers) -> ActNorm -> ReLU -> global average pool,

the branch vectors are concatenated and a linear softmax layer maps them to ``num_classes``
logits. The branches are unconstrained (not Lipschitz), as in the reference code. The ActNorm is
:class:`tfresflow.bijectors.actnorm.ActNormParameters` with its data-dependent initialisation
(Kingma & Dhariwal, 2018): the first batch the branch sees (the first training batch) sets the
per-channel scale and shift so that batch leaves with zero mean and unit variance; after that
both are learned.

One pass gives both parts: :meth:`HybridFlowModel.log_prob_and_logits` applies the flow's
top-level chain steps one by one, each step's ``inverse`` and ``inverse_log_det_jacobian`` with
the per-step keyword arguments the wrapped :class:`FlowModel` itself routes
(:meth:`FlowModel.step_kwargs`: ``training`` and a split seed), so the log-density is the
wrapped flow's ``log p_Z(z) + sum_k log|det J_k|`` (the same estimator and the same noise for the
same seed) and the classifier's gradient reaches every flow weight before the last branch.

The generative part stays the wrapped flow: :meth:`log_prob`, :meth:`sample`,
:meth:`distribution`, :meth:`exact_log_prob` delegate to it. :meth:`classify` gives class
probabilities. ``fit(x, y)`` (integer labels) reports ``loss`` and its parts as metrics:
``bits_per_dim`` (of ``log p(x)``: :func:`tfresflow.data.dequantization.bits_per_dim`, which
counts the full flow log-density of the dequantised data in ``[0, 1)^D`` -- logit transform
included -- plus ``D log 2^n_bits`` for the ``1/K`` scaling; meaningful for data on that scale),
``cross_entropy`` (nats) and ``accuracy``. Lipschitz power iterations are refreshed after every
step as in ``FlowModel.fit``. Saves as ``.keras``; :func:`tfresflow.export.export_saved_model`
adds a ``classify`` endpoint.

References:
  Nalisnick, Matsukawa, Teh, Gorur & Lakshminarayanan (2019), "Hybrid Models with Deep and
    Invertible Features", ICML, arXiv:1902.02767.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Section 5.3, eq. 12, Tables 4-5, Appendix E).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Section 4.3, Table 4, Appendix B).
  Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS,
    arXiv:1807.03039 (ActNorm).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from tfresflow.bijectors import tree
from tfresflow.bijectors.actnorm import ActNormParameters
from tfresflow.bijectors.squeeze import Squeeze
from tfresflow.data.dequantization import check_n_bits
from tfresflow.data.images import check_labels
from tfresflow.models.flow_model import FlowModel, StopOnNonFiniteLoss, batch_mean_loss
from tfresflow.validation import check_number, check_positive_int, check_samples

__all__ = ["HybridFlowModel", "ClassifierBranch", "hybrid_lambda"]


def hybrid_lambda(lam, event_size):
    """The weight ``lambda`` of ``log p(x)`` as a float: a number ``>= 0``, or ``"1/D"``
    (``1 / event_size``, the papers' per-dimension weighting).

    Raises:
      ValueError: naming ``lam`` for a negative, non-finite or unknown value.
    """
    if isinstance(lam, str):
        if lam.replace(" ", "").upper() != "1/D":
            raise ValueError(f"`lam` must be a number >= 0 or the string '1/D', got {lam!r}.")
        return 1.0 / check_positive_int(event_size, "event_size")
    return check_number(lam, "lam", low=0.0)


@keras.saving.register_keras_serializable(package="tfresflow")
class ClassifierBranch(keras.layers.Layer):
    """One classifier branch of a hybrid model (Chen et al., 2019, Appendix E):
    ``3x3 conv -> ActNorm -> ReLU -> global average pool``, ``[n, h, w, c] -> [n, channels]``.

    The ActNorm is :class:`ActNormParameters` (data-dependent initialisation from the first
    batch, then learned per-channel ``log_scale`` and ``shift``).

    Args:
      channels: output channels of the convolution (papers: 256).
    """

    def __init__(self, channels=256, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "branch_channels")
        self.conv = keras.layers.Conv2D(self.channels, 3, padding="same", name="conv")
        self.actnorm = ActNormParameters(self.channels, name="actnorm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.actnorm.build()
        self.built = True

    def call(self, x):
        h = self.conv(x)
        self.actnorm.initialize_once(h)
        return tf.reduce_mean(tf.nn.relu(self.actnorm(h)), axis=[1, 2])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _bits_per_dim(log_prob, event_size, n_bits):
    """In-graph :func:`tfresflow.data.dequantization.bits_per_dim`:
    ``n_bits - log p / (D ln 2)`` (= ``(-log p + D log 2^n_bits) / (D ln 2)``)."""
    return float(n_bits) - log_prob / (float(event_size) * math.log(2.0))


@keras.saving.register_keras_serializable(package="tfresflow")
class HybridFlowModel(keras.Model):
    """Image flow + classifier on its features, trained on ``-(lambda log p(x) + log p(y|x))``.

    See the module docstring for the architecture and the objective.

    Args:
      flow: a :class:`FlowModel` over images ``[H, W, C]`` whose bijector is a ``tfb.Chain``
        (the multi-scale builders of :mod:`tfresflow.models.image`: ``resflow-image``,
        ``idensenet-image``, :func:`~tfresflow.models.image.multiscale_flow`).
      num_classes: number of classes (>= 2); labels are integers ``0..num_classes-1``.
      lam: weight ``lambda`` of ``log p(x)``: a float >= 0, or ``"1/D"`` (default).
      branch_channels: channels of every classifier branch (papers: 256).
      n_bits: bits per pixel of the discrete data, for the ``bits_per_dim`` metric (8).
      seed: integer seed of the classifier layers' initialisation (``None``: Keras' default).

    Raises:
      TypeError: if ``flow`` is not a ``FlowModel``.
      ValueError: naming the argument, for a non-image flow, a flow whose bijector is not a
        ``tfb.Chain``, ``num_classes < 2``, a negative ``lam``, or bad ``branch_channels``.
    """

    def __init__(self, flow, num_classes, lam="1/D", branch_channels=256, n_bits=8, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(flow, dict):
            flow = keras.saving.deserialize_keras_object(flow)
        if not isinstance(flow, FlowModel):
            raise TypeError(f"`flow` must be a tfresflow FlowModel, got {type(flow).__name__}.")
        if len(flow.event_shape) != 3:
            raise ValueError(f"`flow` must model images [H, W, C]; its event shape is "
                             f"{flow.event_shape}.")
        if not tree.is_chain(flow.bijector):
            raise ValueError("`flow` must have a tfb.Chain bijector (a multi-scale image flow of "
                             "tfresflow.models.image), got "
                             f"{type(flow.bijector).__name__}.")
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        self.event_size = int(np.prod(flow.event_shape))
        self.lam = hybrid_lambda(lam, self.event_size)
        self.lam_config = "1/D" if isinstance(lam, str) else self.lam   # as saved
        self.branch_channels = check_positive_int(branch_channels, "branch_channels")
        self.n_bits = check_n_bits(n_bits)
        self.seed = seed
        self.flow = flow
        # data -> latent order; kept out of Keras tracking (tf.Modules, see FlowModel).
        object.__setattr__(self, "_parts", list(flow.bijector.bijectors))
        self._taps, shapes = self._tap_points()
        self.branches = [ClassifierBranch(self.branch_channels, name=f"branch_{i}")
                         for i in range(len(self._taps))]
        self.classifier = keras.layers.Dense(
            self.num_classes, name="classifier",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
        for i, (branch, shape) in enumerate(zip(self.branches, shapes)):
            branch.conv.kernel_initializer = keras.initializers.GlorotUniform(
                seed=None if seed is None else seed + 1 + i)
            branch.build((None, *shape))
        self.classifier.build((None, self.branch_channels * len(self.branches)))
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    # ----------------------------------------------------------------- structure
    def _tap_points(self):
        """Indices ``k`` (a branch reads the output of top-level step ``k``) and the shapes
        there: after every ``Squeeze`` and after the last step whose output is an image."""
        shape = list(self.flow.event_shape)
        taps, shapes, last_image = [], [], None
        for k, part in enumerate(self._parts):
            shape = [int(d) for d in part.inverse_event_shape(shape)]
            if len(shape) != 3:
                break
            last_image = (k, list(shape))
            if isinstance(part, Squeeze):
                taps.append(k)
                shapes.append(list(shape))
        if last_image is None:
            raise ValueError("`flow` has no image-shaped step to attach a classifier to.")
        if not taps or taps[-1] != last_image[0]:
            taps.append(last_image[0])
            shapes.append(last_image[1])
        return taps, shapes

    @property
    def event_shape(self):
        """Shape ``[H, W, C]`` of one image."""
        return list(self.flow.event_shape)

    @property
    def latent_shape(self):
        """Shape of the flow's latent ``z``."""
        return list(self.flow.latent_shape)

    @property
    def bijector(self):
        """The wrapped flow's bijector (latent -> data in TFP's ``forward`` direction)."""
        return self.flow.bijector

    @property
    def flow_layers(self):
        """The Keras layers of the flow's steps (those of the wrapped ``FlowModel``)."""
        return self.flow.flow_layers

    @property
    def has_stochastic_log_det(self):
        """True when ``log_prob`` is a random estimate (the wrapped flow's)."""
        return self.flow.has_stochastic_log_det

    @property
    def training_loss_notes(self):
        """The wrapped flow's notes on what its training-mode loss leaves out."""
        return self.flow.training_loss_notes

    def compute_output_shape(self, input_shape):
        return {"log_prob": (input_shape[0],), "logits": (input_shape[0], self.num_classes)}

    def get_config(self):
        return {**super().get_config(), "flow": keras.saving.serialize_keras_object(self.flow),
                "num_classes": self.num_classes, "lam": self.lam_config,
                "branch_channels": self.branch_channels, "n_bits": self.n_bits,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["flow"] = keras.saving.deserialize_keras_object(config["flow"])
        return cls(**config)

    # ----------------------------------------------------------------- generative part
    def base(self):
        """The flow's base distribution ``p_Z``."""
        return self.flow.base()

    def distribution(self):
        """The flow as a ``tfd.TransformedDistribution`` (:meth:`FlowModel.distribution`)."""
        return self.flow.distribution()

    def log_prob(self, x, seed=None, training=False):
        """The flow's per-example ``log p(x)`` (:meth:`FlowModel.log_prob`)."""
        return self.flow.log_prob(x, seed=seed, training=training)

    def exact_log_prob(self, x, max_event_size=64):
        """The flow's brute-force-Jacobian log-density (:meth:`FlowModel.exact_log_prob`)."""
        return self.flow.exact_log_prob(x, max_event_size=max_event_size)

    def sample(self, n, seed=None):
        """``n`` images drawn from the flow (:meth:`FlowModel.sample`)."""
        return self.flow.sample(n, seed=seed)

    def sample_and_log_prob(self, n, seed=None):
        """Samples and their log-densities (:meth:`FlowModel.sample_and_log_prob`)."""
        return self.flow.sample_and_log_prob(n, seed=seed)

    # ----------------------------------------------------------------- joint pass
    def _walk(self, x, seed, training, with_log_det=True):
        """``(log p(x) or None, logits)``: the flow's top-level steps in the density direction,
        with the branches reading the tapped activations (module docstring). Without log-dets
        (classification) each step's value-only map (:func:`tree.data_to_latent_value`,
        evaluation mode) runs up to the last branch."""
        flow = self.flow
        kwargs = flow.step_kwargs(seed, training) if with_log_det else None
        ndims = len(self.event_shape)
        log_det = 0.0
        features = []
        last = len(self._parts) - 1 if with_log_det else self._taps[-1]
        taps = dict(zip(self._taps, self.branches))
        h = x
        for k, part in enumerate(self._parts[:last + 1]):
            if with_log_det:
                kw = kwargs.get(part.name, {})
                y = part.inverse(h, **kw)
                log_det = log_det + part.inverse_log_det_jacobian(h, event_ndims=ndims, **kw)
                ndims = int(part.inverse_event_ndims(ndims))
                h = y
            else:
                h = tree.data_to_latent_value(part, h)
            if k in taps:
                features.append(taps[k](h))
        logits = self.classifier(tf.concat(features, axis=-1))
        if not with_log_det:
            return None, logits
        return flow.base().log_prob(h) + log_det, logits

    def log_prob_and_logits(self, x, seed=None, training=False):
        """``(log p(x), logits of p(y|x))`` from one density-direction pass.

        ``log p(x)`` is the wrapped flow's (estimator, seeds and ``training`` as for
        :meth:`FlowModel.log_prob`), ``logits`` the unnormalised ``log p(y|x)``, shape
        ``[n, num_classes]``.
        """
        training = bool(training)
        flow = self.flow
        return flow._call_compiled(
            f"hybrid_joint_{training}_{id(self)}",
            lambda v, s: self._walk(v, s, training), flow._as_batch(x),
            flow._seed_now(seed, flow.has_stochastic_log_det))

    def logits(self, x):
        """Unnormalised class log-probabilities ``[n, num_classes]`` (evaluation mode; the
        flow's values only, no log-det, so deterministic)."""
        flow = self.flow
        return flow._call_compiled(
            f"hybrid_logits_{id(self)}",
            lambda v: self._walk(v, None, False, with_log_det=False)[1], flow._as_batch(x))

    def classify(self, x):
        """Class probabilities ``p(y|x) = softmax(logits)``, shape ``[n, num_classes]``."""
        return tf.nn.softmax(self.logits(x), axis=-1)

    def predict_proba(self, x, batch_size=256):
        """Class probabilities of ``x`` (a numpy array of images) in batches, as numpy."""
        x = check_samples(x, self.event_shape, name="x")
        batch_size = check_positive_int(batch_size, "batch_size")
        parts = [self.classify(tf.constant(x[i:i + batch_size])).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros([0, self.num_classes], np.float32)

    def call(self, x, training=None):
        # tf.identity: a fresh tensor for TFP's identity-keyed cache (see FlowModel.call).
        log_prob, logits = self._walk(tf.identity(x), None, bool(training))
        return {"log_prob": log_prob, "logits": logits}

    # ----------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean of ``lambda NLL(x) + CE(y, x)`` over the batch (weighted as ``mean(w * loss)``
        with sample weights), nats."""
        if y is None:
            raise ValueError("HybridFlowModel needs class labels: call fit(x, y).")
        y = tf.reshape(tf.cast(y, tf.int32), [-1])
        checks = [tf.debugging.assert_non_negative(y, message="labels `y` must be >= 0"),
                  tf.debugging.assert_less(y, self.num_classes, message=(
                      f"labels `y` must be < num_classes={self.num_classes}"))]
        with tf.control_dependencies(checks):
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, y_pred["logits"])
        return batch_mean_loss(self, self.lam * -y_pred["log_prob"] + ce, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates ``bits_per_dim`` (of ``log p(x)``), ``cross_entropy`` and ``accuracy``."""
        y = tf.reshape(tf.cast(y, tf.int32), [-1])
        w = None if sample_weight is None else tf.reshape(sample_weight, [-1])
        self.bits_per_dim_tracker.update_state(
            _bits_per_dim(y_pred["log_prob"], self.event_size, self.n_bits), sample_weight=w)
        self.cross_entropy_tracker.update_state(
            tf.nn.sparse_softmax_cross_entropy_with_logits(y, y_pred["logits"]),
            sample_weight=w)
        self.accuracy_tracker.update_state(y, y_pred["logits"], sample_weight=w)
        return self.get_metrics_result()

    def _check_xy(self, x, y, name_x="x", name_y="y"):
        """Checks numpy/tensor data and integer labels (before any tracing)."""
        if not (isinstance(x, (np.ndarray, list, tuple)) or tf.is_tensor(x)):
            if y is not None:
                raise ValueError(f"Pass labels inside the dataset `{name_x}`, not as `{name_y}`.")
            return x, y   # a dataset / generator: labels are checked in the graph
        x = check_samples(x, self.event_shape, name=name_x)
        if y is None:
            raise ValueError(f"HybridFlowModel needs class labels `{name_y}` (integers "
                             f"0..{self.num_classes - 1}).")
        labels = check_labels(y, len(x), name=name_y, num_classes=self.num_classes)
        return x, labels.astype(np.int32)

    def fit(self, x=None, y=None, **kwargs):
        """Keras ``fit`` on ``(x, y)`` (integer labels ``y``; or a dataset of ``(x, y)``
        pairs), minimising the hybrid loss; adds the flow's Lipschitz update and stops with
        :class:`tfresflow.models.NonFiniteLossError` on a non-finite loss, as ``FlowModel.fit``.
        """
        if kwargs.get("verbose", "auto") != 0:
            for note in self.training_loss_notes:
                print(note, flush=True)
        x, y = self._check_xy(x, y)
        val = kwargs.get("validation_data")
        if isinstance(val, tuple):
            kwargs["validation_data"] = self._check_xy(*val[:2], "validation_data[0]",
                                                       "validation_data[1]")
        callbacks = self.flow._with_lipschitz_update(kwargs.get("callbacks"))
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(StopOnNonFiniteLoss())
        kwargs["callbacks"] = callbacks
        FlowModel._build_optimizer(self)
        return super().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """``loss``, ``bits_per_dim``, ``cross_entropy`` and ``accuracy`` on ``(x, y)``."""
        x, y = self._check_xy(x, y)
        kwargs["callbacks"] = self.flow._with_lipschitz_update(kwargs.get("callbacks"))
        return super().evaluate(x, y, **kwargs)
