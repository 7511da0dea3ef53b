"""Model recipes for images: the multi-scale Residual Flow and i-DenseNet of the papers.

The architecture of Residual Flows (Chen et al., 2019, Appendix E), used unchanged by
i-DenseNets (Perugachi-Diaz et al., 2021, Section 4.2 and Appendix B), in the density
direction (data -> latent, TFP ``inverse``)::

    image [H, W, C] -> LogitTransform(alpha) -> k x Block -> [Squeeze -> k x Block] x (scales - 1)
                    -> flatten -> n_fc x FC block -> z ~ N(0, I)

with an :class:`~tfresflow.bijectors.ActNorm` before the first block and after every block
("activation normalization before and after every residual block"; the reference code puts one
after every block and one before the first), ``k`` blocks per scale, a ``Squeeze`` (2x2
space-to-depth) between scales and no factor-out (the CIFAR-10/MNIST setting), and 4 fully
connected residual blocks on the flattened ``D = H W C`` vector at the end (the density models
of MNIST and CIFAR-10). Every Lipschitz layer has coefficient ``coeff`` (0.98 in both papers).

* ``resflow-image``: conv blocks ``LipSwish -> 3x3 -> LipSwish -> 1x1 -> LipSwish -> 3x3`` with
  512 hidden channels (:class:`~tfresflow.nets.LipschitzCNN`); FC blocks
  :class:`~tfresflow.nets.LipschitzMLP` with two hidden layers of 128 ("intermediate hidden
  dimensions of 128"; the reference uses as many hidden layers as conv kernels minus one).
* ``idensenet-image``: conv blocks are i-DenseNets (:class:`~tfresflow.nets.DenseNet`, ``conv``):
  ``depth`` dense layers ``3x3 conv -> CLipSwish -> learnable weighted concat`` of growth
  ``growth`` (172 for the full CIFAR-10 model), then a 1x1 convolution; FC blocks are dense
  i-DenseNets on the flattened vector: a linear map to 64, three dense layers of growth 32,
  CLipSwish, and a linear map back to ``D`` (App. B).

* ``coupling-image``: the coupling baseline of the hybrid experiments (Residual Flows, Sec. 5.3,
  Tables 4-5): "the same architecture for g(x) except we use ReLU activations and no longer
  constrain the Lipschitz constant". Each block is a Real NVP affine coupling
  (:class:`~tfresflow.bijectors.ConvAffineCoupling`, exact log-det) whose conditioner is a
  plain ``3x3 -> ReLU -> 1x1 -> ReLU -> 3x3`` CNN; FC blocks are vector
  :class:`~tfresflow.bijectors.AffineCoupling` steps with a ReLU MLP.

Parameter counts (trainable parameters, :func:`tfresflow.models.count_parameters`): the
papers quote 25.2M for the CIFAR-10 Residual Flow (3 scales x 16 blocks, 512 channels) and
24.9M for the i-DenseNet (depth 3, growth 172), 8.7M for the small 3 x 4-block Residual Flow and
8.7M for the small i-DenseNet (depth 3, growth 178, CLipSwish) (i-DenseNets, Table 2 and
Section 5.3); ``tests/models/test_image_models.py`` reproduces them within 2%.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Section 4.2, Table 2, Section 5.3, Appendix B).
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (logit transform, squeeze).
"""
import numpy as np
import tensorflow_probability as tfp

from tfresflow import logdet as logdet_lib
from tfresflow.bijectors.actnorm import ActNorm
from tfresflow.bijectors.conv_coupling import ConvAffineCoupling
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.bijectors.dense_block import DenseBlock
from tfresflow.bijectors.logit import LogitTransform
from tfresflow.bijectors.residual import ResidualBlock
from tfresflow.bijectors.squeeze import Squeeze
from tfresflow.data.standardization import as_standardization
from tfresflow.models.builders import register_model
from tfresflow.models.flow_model import FlowModel
from tfresflow.nets.densenet import DenseNet
from tfresflow.nets.lipschitz_cnn import LipschitzCNN
from tfresflow.nets.lipschitz_mlp import LipschitzMLP
from tfresflow.validation import check_event_shape, check_number, check_positive_int

tfb = tfp.bijectors


def _check_image_shape(event_shape, scales):
    shape = check_event_shape(event_shape)
    if len(shape) != 3:
        raise ValueError(f"`event_shape` must be an image shape [H, W, C], got {shape}.")
    scales = check_positive_int(scales, "scales")
    size = 2 ** (scales - 1)
    if shape[0] % size or shape[1] % size:
        raise ValueError(f"`scales`={scales} squeezes {scales - 1} times, so height and width "
                         f"must be divisible by {size}; got event shape {shape}.")
    return shape, scales


def multiscale_flow(event_shape, make_block, make_fc_block, scales=3, blocks_per_scale=16,
                    fc_blocks=4, actnorm=True, alpha=0.05, seed=0, name="image_flow",
                    standardization=None):
    """The appendix-E multi-scale image flow around the given block factories.

    Args:
      event_shape: ``[H, W, C]``; ``H`` and ``W`` divisible by ``2 ** (scales - 1)``.
      make_block: ``(event_shape [h, w, c], name) -> bijector`` for the conv blocks.
      make_fc_block: ``(size D, name) -> bijector`` for the fully connected end blocks.
      scales: number of scales (``scales - 1`` squeezes).
      blocks_per_scale: ``k``, an int or one int per scale.
      fc_blocks: number of fully connected blocks at the end (0: none, no flatten step).
      actnorm: ActNorm before the first block and after every block.
      alpha: of the :class:`LogitTransform` (``None``: no logit transform, data already real).
      standardization: ``None``, or a :class:`~tfresflow.data.standardization.Standardization`
        (or ``(mean, std)``) of the training data: the first step is then the per-channel
        standardisation ``(y - mean) / std`` *instead of* the logit transform (``alpha`` is
        not used), as the papers' CIFAR-10 hybrid models (Residual Flows, App. E); its
        constant log-det is part of ``log_prob``, so bits/dim stay those of the data in
        ``[0, 1)`` (feed the flow unstandardised dequantised batches).
      seed: the model's seed.
      name: the model's name.
    """
    shape, scales = _check_image_shape(event_shape, scales)
    counts = [blocks_per_scale] * scales if np.ndim(blocks_per_scale) == 0 \
        else list(blocks_per_scale)
    if len(counts) != scales:
        raise ValueError(f"`blocks_per_scale` needs one count per scale ({scales}), got "
                         f"{blocks_per_scale!r}.")
    counts = [check_positive_int(k, "blocks_per_scale") for k in counts]
    fc_blocks = check_positive_int(fc_blocks, "fc_blocks", minimum=0)
    standardization = as_standardization(standardization)
    if standardization is not None:
        if standardization.channels != shape[-1]:
            raise ValueError(f"`standardization` has {standardization.channels} channels, "
                             f"the images {shape[-1]}.")
        steps = [standardization.bijector()]
    else:
        steps = [] if alpha is None else [LogitTransform(alpha, name="logit")]
    h, w, c = shape
    if actnorm:
        steps.append(ActNorm([h, w, c], name="actnorm_in"))
    for s, k in enumerate(counts):
        if s:
            steps.append(Squeeze(name=f"squeeze_{s}"))
            h, w, c = h // 2, w // 2, 4 * c
        for i in range(k):
            steps.append(make_block([h, w, c], f"scale{s}_block{i}"))
            if actnorm:
                steps.append(ActNorm([h, w, c], name=f"scale{s}_actnorm{i}"))
    if fc_blocks:
        size = h * w * c
        # density direction (inverse): [h, w, c] -> [h w c]
        steps.append(tfb.Reshape(event_shape_out=[h, w, c], event_shape_in=[size],
                                 name="flatten"))
        for i in range(fc_blocks):
            steps.append(make_fc_block(size, f"fc_block{i}"))
            if actnorm:
                steps.append(ActNorm([size], name=f"fc_actnorm{i}"))
    # tfb.Chain applies its last element first in the sampling direction, so the list is in
    # data -> latent order.
    return FlowModel(tfb.Chain(steps, name=f"{name}_chain"), event_shape=shape, seed=seed,
                     name=name)


def _estimator(logdet):
    return logdet_lib.Unbiased() if logdet is None else logdet


@register_model("resflow-image")
def residual_flow_image(event_shape, scales=3, blocks_per_scale=16, hidden_channels=512,
                        kernel_sizes=(3, 1, 3), fc_blocks=4, fc_hidden_units=(128, 128),
                        activation="lipswish", coeff=0.98, actnorm=True, alpha=0.05,
                        logdet=None, output_init_scale=1.0, lipschitz_kwargs=None, seed=0,
                        standardization=None):
    """Multi-scale Residual Flow for images (Chen et al., 2019, App. E).

    Args:
      event_shape: ``[H, W, C]`` (e.g. ``[28, 28, 1]``, ``[32, 32, 3]``).
      scales, blocks_per_scale, fc_blocks, actnorm, alpha, seed, standardization: see
        :func:`multiscale_flow` (paper: 3 scales of 16 blocks, 4 FC blocks; ``alpha`` 1e-5
        for MNIST, 0.05 else; hybrid CIFAR-10: ``standardization`` instead of the logit).
      hidden_channels, kernel_sizes: of each conv block's :class:`LipschitzCNN` (paper: 512,
        ``3-1-3``).
      fc_hidden_units: hidden widths of each FC block's :class:`LipschitzMLP` (paper: 128, 128).
      activation: of every block (``"lipswish"``; ``"clipswish"`` doubles the inputs of every
        layer after an activation).
      coeff: Lipschitz coefficient of every layer (paper: 0.98).
      logdet: log-det estimator of every block (default ``logdet.Unbiased()``).
      output_init_scale, lipschitz_kwargs: of every residual function (see
        :class:`LipschitzMLP`).
    """
    def block(shape, name):
        net = LipschitzCNN(shape[-1], hidden_channels=hidden_channels, kernel_sizes=kernel_sizes,
                           activation=activation, coeff=coeff,
                           output_init_scale=output_init_scale,
                           lipschitz_kwargs=lipschitz_kwargs, name=f"{name}_net")
        return ResidualBlock(net, logdet=_estimator(logdet), event_ndims=3, name=name)

    def fc_block(size, name):
        net = LipschitzMLP(size, hidden_units=fc_hidden_units, activation=activation,
                           coeff=coeff, output_init_scale=output_init_scale,
                           lipschitz_kwargs=lipschitz_kwargs, name=f"{name}_net")
        return ResidualBlock(net, logdet=_estimator(logdet), name=name)

    return multiscale_flow(event_shape, block, fc_block, scales=scales,
                           blocks_per_scale=blocks_per_scale, fc_blocks=fc_blocks,
                           actnorm=actnorm, alpha=alpha, seed=seed, name="residual_flow_image",
                           standardization=standardization)


@register_model("idensenet-image")
def densenet_flow_image(event_shape, scales=3, blocks_per_scale=16, depth=3, growth=172,
                        fc_blocks=4, fc_depth=3, fc_growth=32, fc_projection=64,
                        activation="clipswish", learnable_concat=True, coeff=0.98,
                        actnorm=True, alpha=0.05, logdet=None, lipschitz_kwargs=None, seed=0,
                        standardization=None):
    """Multi-scale i-DenseNet for images (Perugachi-Diaz et al., 2021, Sec. 4.2 and App. B).

    Args:
      event_shape, scales, blocks_per_scale, fc_blocks, actnorm, alpha, logdet, seed,
        standardization: as :func:`residual_flow_image`.
      depth, growth: dense layers per conv block and channels each adds (paper: 3 and 172 for
        the full CIFAR-10 model, 3 and 178 for the small one).
      fc_depth, fc_growth, fc_projection: of each FC block's dense :class:`DenseNet` (paper:
        3, 32, and a linear map to 64 first).
      activation: ``"clipswish"`` (paper) halves each dense layer's convolution outputs.
      learnable_concat: learn the concatenation weights ``eta`` (paper: yes).
      coeff: Lipschitz coefficient of every layer (paper: 0.98).
      lipschitz_kwargs: options of every Lipschitz layer (see :class:`DenseNet`).
    """
    def block(shape, name):
        net = DenseNet(shape[-1], depth=depth, growth=growth, activation=activation,
                       learnable_concat=learnable_concat, coeff=coeff, conv=True,
                       lipschitz_kwargs=lipschitz_kwargs, name=f"{name}_net")
        return DenseBlock(net, logdet=_estimator(logdet), event_ndims=3, name=name)

    def fc_block(size, name):
        net = DenseNet(size, depth=fc_depth, growth=fc_growth, activation=activation,
                       learnable_concat=learnable_concat, coeff=coeff, projection=fc_projection,
                       lipschitz_kwargs=lipschitz_kwargs, name=f"{name}_net")
        return DenseBlock(net, logdet=_estimator(logdet), name=name)

    return multiscale_flow(event_shape, block, fc_block, scales=scales,
                           blocks_per_scale=blocks_per_scale, fc_blocks=fc_blocks,
                           actnorm=actnorm, alpha=alpha, seed=seed, name="idensenet_flow_image",
                           standardization=standardization)


@register_model("coupling-image")
def coupling_flow_image(event_shape, scales=3, blocks_per_scale=16, hidden_channels=512,
                        kernel_sizes=(3, 1, 3), couplings_per_block=1, mask="auto",
                        fc_blocks=4, fc_hidden_units=(128, 128), activation="relu",
                        log_scale_clamp=2.0, actnorm=True, alpha=0.05, seed=0,
                        standardization=None):
    """Multi-scale affine-coupling flow: the coupling baseline of Residual Flows (Table 5).

    The :func:`multiscale_flow` of :func:`residual_flow_image` (logit transform, ActNorm
    before the first block and after every block, squeezes, FC blocks at the end) with every
    residual block replaced by ``couplings_per_block`` affine couplings
    (:class:`~tfresflow.bijectors.ConvAffineCoupling`; Chen et al., 2019, Sec. 5.3: ReLU, no
    Lipschitz constraint). Within each scale (and within the FC blocks) successive couplings
    alternate ``reverse``, so every coordinate is transformed by every second coupling. Single
    channel images use the checkerboard mask before the first squeeze (``mask="auto"``).

    Depth: a coupling transforms only half of the coordinates, so at equal depth a coupling
    flow is weaker than a residual flow. The paper swaps block for block
    (``couplings_per_block=1``, the default); ``couplings_per_block=2`` (a coupling and its
    reversed twin per block, one ActNorm after the pair) transforms every coordinate once per
    block, a comparison at equal per-coordinate depth (and about twice the conditioner
    parameters of a ``couplings_per_block=1`` flow). At the papers' hybrid configuration
    (3 scales x 16 blocks, 512 hidden channels, no FC blocks) a ``32 x 32 x 3`` coupling flow
    has 19.6M trainable parameters with one coupling per block and 39.2M with two, the
    Residual Flow 21.9M (``count_parameters``; a coupling's conditioner reads half the
    channels and writes a shift and a log-scale for the other half).

    Args:
      event_shape, scales, blocks_per_scale, fc_blocks, actnorm, alpha, seed,
        standardization: as :func:`residual_flow_image` (see :func:`multiscale_flow`). The
        papers' hybrid models use no FC blocks (``fc_blocks=0``, Residual Flows App. E) and,
        on CIFAR-10, standardised inputs instead of the logit transform
        (``standardization``).
      hidden_channels, kernel_sizes: of each conditioner :class:`~tfresflow.nets.CNN`
        (default 512 and ``3-1-3``, the residual blocks' shape).
      couplings_per_block: couplings in each block (1: the paper's swap; 2: see above).
      mask: of the conv couplings: ``"auto"`` (checkerboard for 1 channel, else channel-wise),
        ``"channel"`` or ``"checkerboard"``.
      fc_hidden_units: hidden widths of each FC coupling's MLP conditioner.
      activation: of every conditioner (default ``"relu"``: the paper's baseline).
      log_scale_clamp: soft clamp ``c`` of every coupling's log-scale,
        ``s = c tanh(s_raw / c)``.
    """
    per_block = check_positive_int(couplings_per_block, "couplings_per_block")
    clamp = check_number(log_scale_clamp, "log_scale_clamp", 0.0, low_open=True)
    counter = {}

    def _reverses(key):
        start = counter.get(key, 0)
        counter[key] = start + per_block
        return [bool((start + j) % 2) for j in range(per_block)]

    def _group(couplings, name):
        return couplings[0] if len(couplings) == 1 else tfb.Chain(couplings, name=name)

    def block(shape, name):
        return _group([ConvAffineCoupling(shape, hidden_channels=hidden_channels,
                                          kernel_sizes=kernel_sizes, mask=mask, reverse=rev,
                                          activation=activation, log_scale_clamp=clamp,
                                          name=name if per_block == 1 else f"{name}_c{j}")
                       for j, rev in enumerate(_reverses(tuple(shape)))], name)

    def fc_block(size, name):
        return _group([AffineCoupling(size, hidden_units=fc_hidden_units, mask="half",
                                      reverse=rev, activation=activation,
                                      log_scale_clamp=clamp,
                                      name=name if per_block == 1 else f"{name}_c{j}")
                       for j, rev in enumerate(_reverses("fc"))], name)

    return multiscale_flow(event_shape, block, fc_block, scales=scales,
                           blocks_per_scale=blocks_per_scale, fc_blocks=fc_blocks,
                           actnorm=actnorm, alpha=alpha, seed=seed, name="coupling_flow_image",
                           standardization=standardization)
