"""Relative-gradient linear flows (Gresele et al., NeurIPS 2020) as a ``FlowModel``.

``relgrad_flow`` builds the paper's architecture: ``L`` square :class:`RelativeGradientLinear`
steps with an elementwise activation between consecutive ones and none after the last
(data -> latent: ``x -> x W_1 + b_1 -> s -> ... -> s -> . W_L + b_L``). It is registered as
``--model relgrad`` for the CLI.

Training: ``fit`` (and any tape on ``log_prob``) receives relative gradients through the
bijectors' custom gradients, so any Keras optimiser applies them. A ``fit`` step uses
``training=True``, which never computes a determinant, LU or inverse: **the training ``loss``
shown by ``fit`` leaves out ``-sum_k log|det W_k|``** (its gradient is included).
``FlowModel.fit`` prints :data:`PARTIAL_LOSS_NOTE` once per call for such flows; ``val_loss``,
``evaluate`` and ``log_prob`` (``training=False``) are exact (``log|det W|`` by LU).

References:
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow.bijectors.elementwise import SmoothLeakyReLU, TanhLinear
from tfresflow.bijectors.relative_gradient import RelativeGradientLinear
from tfresflow.models.builders import register_model
from tfresflow.models.flow_model import FlowModel
from tfresflow.registry import Registry
from tfresflow.validation import check_positive_int

tfb = tfp.bijectors

#: The elementwise activations of relative-gradient flows (paper eqs. 34-35).
ACTIVATIONS = Registry("relative-gradient activation")
ACTIVATIONS.register("smooth_leaky_relu", SmoothLeakyReLU)
ACTIVATIONS.register("tanh_linear", TanhLinear)

PARTIAL_LOSS_NOTE = RelativeGradientLinear.training_loss_note

#: Load alias: models saved as ``RelativeGradientFlowModel`` (a ``FlowModel`` subclass of
#: earlier releases) load as plain ``FlowModel``s, which behave identically.
RelativeGradientFlowModel = FlowModel
keras.saving.get_custom_objects()["tfresflow>RelativeGradientFlowModel"] = FlowModel


def linear_steps(model):
    """The :class:`RelativeGradientLinear` steps of a flow model, data -> latent order."""
    return [b for b in model.steps if isinstance(b, RelativeGradientLinear)]


def log_det_weights(model):
    """``sum_k log|det W_k|`` by LU: the value a relative-gradient training loss leaves out."""
    values = [b.log_det_value() for b in linear_steps(model)]
    return tf.add_n(values) if values else tf.zeros([])


@register_model("relgrad")
def relgrad_flow(event_size, n_steps=2, activation="smooth_leaky_relu", alpha=None, beta=0.1,
                 use_bias=True, relative=True, base_distribution="normal", seed=0):
    """``n_steps`` square linear layers with ``activation`` in between (paper App. H.3).

    Args:
      event_size: dimension D.
      n_steps: number ``L >= 1`` of linear layers (``L - 1`` activations). The paper uses
        L = 2 for MNIST and 25-100 for UCI data and 2-D toys.
      activation: ``"smooth_leaky_relu"`` (eq. 34) or ``"tanh_linear"`` (eq. 35).
      alpha: the leak of the smooth leaky ReLU (default 0.3) or the steepness of tanh-linear
        (default 1.0).
      beta: linear slope of tanh-linear (ignored by the smooth leaky ReLU).
      use_bias: biases, trained with the projected relative gradient (App. F).
      relative: relative (``True``) or ordinary (``False``) gradients.
      base_distribution: ``"normal"`` or ``"hypsecant"``.
      seed: seed of the orthogonal initialisation and of the model's noise.

    Returns:
      A :class:`FlowModel`.
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    activation_cls = ACTIVATIONS.lookup(activation, "activation")
    if activation_cls is SmoothLeakyReLU:
        def make_activation(i):
            return SmoothLeakyReLU(alpha=0.3 if alpha is None else alpha, name=f"act_{i}")
    else:
        def make_activation(i):
            return TanhLinear(alpha=1.0 if alpha is None else alpha, beta=beta,
                              name=f"act_{i}")
    steps = []
    for i in range(n_steps):
        if i:
            steps.append(make_activation(i - 1))
        steps.append(RelativeGradientLinear(event_size, use_bias=use_bias, relative=relative,
                                            seed=None if seed is None else int(seed) * 1009 + i,
                                            name=f"linear_{i}"))
    return FlowModel(tfb.Chain(steps, name="relgrad_flow"), event_shape=[event_size],
                     base_distribution=base_distribution, seed=seed, name="relgrad_flow_model")
