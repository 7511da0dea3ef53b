"""Model recipes for vector data: Residual Flow, i-ResNet and i-DenseNet stacks.

A stack of ``n_steps`` residual blocks ``x + g(x)`` with ``Lip(g) <= coeff``, each preceded by
an :class:`~tfresflow.bijectors.ActNorm` (as in the Residual Flows toy models, Chen et al. 2019,
App. C). Registered for the CLI as ``resflow`` (unbiased Russian-roulette log-det with the
Neumann gradient), ``iresnet`` (Behrmann et al. 2019: the biased truncated power series) and
``idensenet`` (Perugachi-Diaz et al. 2021: DenseNet residual functions with learnable
concatenation and CLipSwish). ``benchmarks/toy_compare.py`` compares them on 2-D toys
(snapshot in ``docs/results/toy_compare.json``).

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
  Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019), "Invertible Residual Networks", ICML,
    arXiv:1811.00995.
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694.
"""
import tensorflow_probability as tfp

from tfresflow import logdet as logdet_lib
from tfresflow.bijectors.actnorm import ActNorm
from tfresflow.bijectors.dense_block import DenseBlock
from tfresflow.bijectors.residual import ResidualBlock
from tfresflow.models.builders import register_model
from tfresflow.models.flow_model import FlowModel
from tfresflow.nets.densenet import DenseNet
from tfresflow.nets.lipschitz_mlp import LipschitzMLP

tfb = tfp.bijectors


def _stack(event_size, make_block, n_steps, actnorm, seed, name):
    steps = []
    for i in range(n_steps):
        if actnorm:
            steps.append(ActNorm([event_size], name=f"actnorm_{i}"))
        steps.append(make_block(i))
    # tfb.Chain applies its last element first in the sampling direction, so the list is in
    # data -> latent order: ActNorm_0, block_0, ActNorm_1, ...
    return FlowModel(tfb.Chain(steps, name=f"{name}_chain"), event_shape=[event_size],
                     seed=seed, name=name)


@register_model("resflow")
def residual_flow(event_size, n_steps=10, hidden_units=(128, 128), activation="lipswish",
                  coeff=0.97, actnorm=True, logdet=None, kernel_initializer="glorot_uniform",
                  output_init_scale=1.0, lipschitz_kwargs=None, seed=0):
    """Residual Flow: LipschitzMLP residual functions, unbiased log-det (``logdet.Unbiased()``).

    Args:
      event_size: data dimension D.
      n_steps: number of residual blocks (the paper's 2-D toys use 100).
      hidden_units, activation, coeff: of each block's :class:`LipschitzMLP`.
      actnorm: an :class:`ActNorm` before every block.
      logdet: the log-det estimator of every block (default ``logdet.Unbiased()``).
      kernel_initializer: of every linear layer.
      output_init_scale: factor on each branch's last-layer initial kernel; ``1e-3`` is the
        reference implementation's start (every block close to the identity).
      lipschitz_kwargs: options of every :class:`LipschitzDense` (e.g. ``block_size=1`` for
        one power-iteration vector per layer, as the reference; ``n_iterations``, ``margin``).
      seed: the model's seed.
    """
    def block(i):
        net = LipschitzMLP(event_size, hidden_units=hidden_units, activation=activation,
                           coeff=coeff, kernel_initializer=kernel_initializer,
                           output_init_scale=output_init_scale,
                           lipschitz_kwargs=lipschitz_kwargs, name=f"resblock_{i}_net")
        est = logdet_lib.Unbiased() if logdet is None else logdet
        return ResidualBlock(net, logdet=est, name=f"resblock_{i}")
    return _stack(event_size, block, n_steps, actnorm, seed, "residual_flow")


@register_model("iresnet")
def iresnet_flow(event_size, n_steps=10, hidden_units=(128, 128), activation="elu",
                 coeff=0.9, n_terms=10, actnorm=True, seed=0, **options):
    """i-ResNet: the same stack with the biased truncated series (``n_terms`` terms).

    ``options``: the initialisation and Lipschitz options of :func:`residual_flow`.
    """
    return residual_flow(event_size, n_steps=n_steps, hidden_units=hidden_units,
                         activation=activation, coeff=coeff, actnorm=actnorm,
                         logdet=logdet_lib.Truncated(n_terms), seed=seed, **options)


@register_model("idensenet")
def densenet_flow(event_size, n_steps=10, depth=3, growth=32, activation="clipswish",
                  learnable_concat=True, coeff=0.97, actnorm=True, logdet=None, seed=0):
    """i-DenseNet: DenseNet residual functions with (learnable) weighted concatenation."""
    def block(i):
        net = DenseNet(event_size, depth=depth, growth=growth, activation=activation,
                       learnable_concat=learnable_concat, coeff=coeff, name=f"denseblock_{i}_net")
        est = logdet_lib.Unbiased() if logdet is None else logdet
        return DenseBlock(net, logdet=est, name=f"denseblock_{i}")
    return _stack(event_size, block, n_steps, actnorm, seed, "idensenet_flow")
