"""Relative-gradient linear flows (Gresele et al., NeurIPS 2020) as a ``FlowModel``.

``relgrad_flow`` builds the paper's architecture: ``L`` square :class:`RelativeGradientLinear`
steps with an elementwise activation between consecutive ones and none after the last
(data -> latent: ``x -> x W_1 + b_1 -> s -> ... -> s -> . W_L + b_L``). It is registered as
``--model relgrad`` for the CLI.

Training: ``fit`` (and any tape on ``log_prob``) receives relative gradients through the
bijectors' custom gradients, so any Keras optimiser applies them. A ``fit`` step uses
``training=True``, which never computes a determinant, LU or inverse: **the training ``loss``
shown by ``fit`` leaves out ``-sum_k log|det W_k|``** (its gradient is included).
:class:`RelativeGradientFlowModel` prints this once per ``fit``; ``val_loss``, ``evaluate``
and ``log_prob`` (``training=False``) are exact (``log|det W|`` by LU).
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfresflow.bijectors.elementwise import SmoothLeakyReLU, TanhLinear
from tfresflow.bijectors.relative_gradient import RelativeGradientLinear
from tfresflow.models.builders import register_model
from tfresflow.models.flow_model import FlowModel

tfb = tfp.bijectors

ACTIVATIONS = {"smooth_leaky_relu": SmoothLeakyReLU, "tanh_linear": TanhLinear}

PARTIAL_LOSS_NOTE = (
    "note: the training `loss` leaves out -sum_k log|det W_k| (never computed in a "
    "relative-gradient step; its gradient is applied); `val_loss`, evaluate() and log_prob() "
    "are the exact NLL (log|det W| by LU).")


@keras.saving.register_keras_serializable(package="tfresflow")
class RelativeGradientFlowModel(FlowModel):
    """A :class:`FlowModel` whose ``fit`` says that the training loss omits ``log|det W|``.

    Behaves exactly as ``FlowModel`` otherwise (a plain ``FlowModel`` of the same bijectors
    trains identically).
    """

    def linear_steps(self):
        """The :class:`RelativeGradientLinear` steps, data -> latent order."""
        return [b for b in self._keras_steps if isinstance(b, RelativeGradientLinear)]

    def log_det_weights(self):
        """``sum_k log|det W_k|`` by LU: the value the training loss leaves out."""
        values = [b.log_det_value() for b in self.linear_steps()]
        return tf.add_n(values) if values else tf.zeros([])

    def fit(self, x=None, y=None, **kwargs):
        if kwargs.get("verbose", "auto") != 0 and any(
                getattr(b, "training_log_det_is_partial", False) for b in self._keras_steps):
            print(PARTIAL_LOSS_NOTE, flush=True)
        return super().fit(x, y, **kwargs)


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
    """
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown `activation` {activation!r}; choose one of "
                         f"{sorted(ACTIVATIONS)}.")
    if activation == "smooth_leaky_relu":
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
    return RelativeGradientFlowModel(tfb.Chain(steps, name="relgrad_flow"),
                                     event_shape=[event_size],
                                     base_distribution=base_distribution, seed=seed,
                                     name="relgrad_flow_model")
