"""The image model builders ``resflow-image`` and ``idensenet-image`` and their parameter counts.

Small models (8x8x1 images, few blocks) are checked against mathematics: round trips on fresh
tensors, ``log_prob`` against the brute-force Jacobian of the whole flow (logit transform,
squeezes, flatten and blocks together, with exact block log-dets), samples, ``.keras`` files.
The parameter counts of the four paper configurations (i-DenseNets, Table 2 and Section 5.3)
are reproduced within 2%, with the configurations read from the papers' text.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow.models import build_model, count_parameters

SHAPE = [8, 8, 1]
#: Shortens the build-time power iteration of every Lipschitz layer (one step); for tests that
#: only look at a model's structure. It changes no weight shape.
FAST_BUILD = {"lipschitz_kwargs": {"max_iterations": 1}}
SMALL = {
    "resflow-image": dict(scales=2, blocks_per_scale=1, hidden_channels=8, fc_blocks=1,
                          fc_hidden_units=(16,), coeff=0.9),
    "idensenet-image": dict(scales=2, blocks_per_scale=1, depth=2, growth=4, fc_blocks=1,
                            fc_depth=2, fc_growth=4, fc_projection=8, coeff=0.9),
}


def _pixels(n, seed=0):
    """Dequantised-looking pixels in (0, 1)."""
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, size=(n, *SHAPE)) + rng.uniform(size=(n, *SHAPE))) / 256.0
            ).astype(np.float32)


def _small(kind, eager=True, **options):
    """A small model; ``eager``: its log_prob/sample run op by op (no tracing: faster here)."""
    keras.utils.set_random_seed(0)
    model = build_model(kind, SHAPE, **{**SMALL[kind], **options})
    model.run_eagerly = eager
    return model


@pytest.mark.parametrize("kind", list(SMALL))
def test_small_image_model_structure_round_trip_and_exact_log_prob(kind):
    model = _small(kind, logdet=trf.logdet.Exact())
    # logit, actnorm, [block, actnorm], squeeze, [block, actnorm], flatten, [fc block, actnorm]
    names = [b.name for b in trf.bijectors.tree.leaves(model.bijector)]
    assert names[:3] == ["logit", "actnorm_in", "scale0_block0"] and "squeeze_1" in names
    assert names[-3:] == ["flatten", "fc_block0", "fc_actnorm0"]
    assert model.event_shape == SHAPE and model.latent_shape == [64]
    x = _pixels(6)
    model.log_prob(tf.constant(x))    # ActNorm data-dependent initialisation
    z = model.bijector.inverse(tf.constant(x))
    assert z.shape == (6, 64)
    back = model.bijector.forward(tf.constant(z.numpy())).numpy()
    np.testing.assert_allclose(back, x, atol=2e-4)
    log_prob = model.log_prob(tf.constant(x)).numpy()
    assert log_prob.shape == (6,) and np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(log_prob, model.exact_log_prob(tf.constant(x)).numpy(),
                               rtol=1e-4, atol=2e-3)
    samples, sample_log_prob = model.sample_and_log_prob(4, seed=[1, 2])
    assert samples.shape == (4, *SHAPE) and np.all(np.isfinite(samples.numpy()))
    np.testing.assert_allclose(sample_log_prob, model.log_prob(tf.constant(samples.numpy())),
                               rtol=1e-4, atol=2e-3)


def test_small_image_model_trains_and_round_trips_through_a_keras_file(tmp_path):
    """The i-DenseNet (its FC blocks use the DenseNet projection); the Residual Flow's pieces
    are saved and reloaded by the conformance tests."""
    model = _small("idensenet-image")
    assert model.has_stochastic_log_det   # default: the unbiased estimator
    x = _pixels(32, seed=1)
    # op by op: tracing the train step would take most of this test's time
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    history = model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "image.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.latent_shape == [64]
    loaded.run_eagerly = True
    fresh = _pixels(5, seed=2)
    np.testing.assert_allclose(loaded.log_prob(tf.constant(fresh), seed=[3, 4]),
                               model.log_prob(tf.constant(fresh), seed=[3, 4]), rtol=1e-5)
    np.testing.assert_allclose(loaded.sample(3, seed=[5, 6]), model.sample(3, seed=[5, 6]),
                               atol=1e-5)


def test_image_builders_are_configurable():
    plain = build_model("resflow-image", [8, 8, 1], scales=3, blocks_per_scale=[1, 2, 1],
                        hidden_channels=4, fc_blocks=0, actnorm=False, alpha=None,
                        **FAST_BUILD)
    leaves = trf.bijectors.tree.leaves(plain.bijector)
    kinds = [type(b).__name__ for b in leaves]
    assert kinds == ["ResidualBlock", "Squeeze", "ResidualBlock", "ResidualBlock", "Squeeze",
                     "ResidualBlock"]
    assert plain.latent_shape == [2, 2, 16]    # no FC blocks: no flatten
    assert leaves[0].net.coeff == 0.98        # the papers' coefficient by default
    assert leaves[0].net.activation == "lipswish"
    dense = build_model("idensenet-image", [4, 4, 3], scales=1, blocks_per_scale=1, growth=6,
                        fc_blocks=1, fc_growth=4, fc_projection=8, activation="lipswish",
                        learnable_concat=False, **FAST_BUILD)
    block = trf.bijectors.tree.leaves(dense.bijector)[2]
    assert block.net.activation_name == "lipswish" and not block.net.learnable_concat
    assert trf.bijectors.tree.leaves(dense.bijector)[0].alpha == 0.05


def test_image_builder_arguments():
    with pytest.raises(ValueError, match="scales"):
        build_model("resflow-image", [6, 6, 1], scales=3)          # 6 is not divisible by 4
    with pytest.raises(ValueError, match="event_shape"):
        build_model("resflow-image", [64], scales=1)
    with pytest.raises(ValueError, match="blocks_per_scale"):
        build_model("idensenet-image", [8, 8, 1], scales=2, blocks_per_scale=[1, 2, 3])
    with pytest.raises(TypeError):
        build_model("resflow-image", [8, 8, 1], no_such_option=1)


def test_count_parameters_counts_the_trainable_weights_by_hand():
    """One residual block on 4x4x1 images with 4 hidden channels, ActNorm before and after:
    3x3 conv 1->4 (36 + 4), 1x1 conv 4->4 (16 + 4), 3x3 conv 4->1 (36 + 1), three LipSwish
    betas, two ActNorms of one channel (scale and shift): 100 + 4 = 104."""
    model = build_model("resflow-image", [4, 4, 1], scales=1, blocks_per_scale=1,
                        hidden_channels=4, fc_blocks=0)
    lines = []
    assert count_parameters(model, print_fn=lines.append) == 104
    assert lines and "104 trainable parameters" in lines[0]
    # Keras' count_params also counts the power-iteration state (not parameters)
    assert model.count_params() > 104


# ------------------------------------------------------------------ the papers' configurations
# The papers count PyTorch ``parameters()`` of the density models (no classifier head: that is
# only in the hybrid models) including ActNorm and the LipSwish/CLipSwish ``beta``. The
# configurations, from the text:
# * Residual Flow, CIFAR-10 (Chen et al. 2019, App. E): 32x32x3, logit transform, 3 scales of
#   16 blocks ``LipSwish -> 3x3 -> LipSwish -> 1x1 -> LipSwish -> 3x3`` with 512 hidden
#   channels, ActNorm before and after every block, 4 FC blocks with hidden widths 128 (two
#   hidden layers, as the conv branch). 25.2M (i-DenseNets, Table 2).
# * the small Residual Flow: the same with 3 scales of 4 blocks (i-DenseNets App. D.4). 8.7M.
# * i-DenseNet, CIFAR-10 (i-DenseNets Sec. 4.2, App. B, Table 7): 3 scales of 16 blocks,
#   DenseNet depth 3, growth 172, 3x3 convs, CLipSwish, learnable concatenation, then a 1x1
#   conv; 4 FC blocks: linear to 64, 3 dense layers of growth 32, CLipSwish, linear back.
#   24.9M (Table 2).
# * the small i-DenseNet: 3 scales of 4 blocks, depth 3, growth 178, CLipSwish (Sec. 5.3). 8.7M.
# ``FAST_BUILD``: the power-iteration estimates are not used here.
CIFAR = [32, 32, 3]
PAPER = {
    "resflow-small": ("resflow-image", dict(blocks_per_scale=4), 8.7e6),
    "idensenet-small": ("idensenet-image", dict(blocks_per_scale=4, depth=3, growth=178,
                                                activation="clipswish"), 8.7e6),
    "resflow-cifar10": ("resflow-image", dict(blocks_per_scale=16, hidden_channels=512), 25.2e6),
    "idensenet-cifar10": ("idensenet-image", dict(blocks_per_scale=16, depth=3, growth=172,
                                                  activation="clipswish"), 24.9e6),
}


def _check_paper_count(case):
    kind, options, paper = PAPER[case]
    model = build_model(kind, CIFAR, scales=3, fc_blocks=4, **options, **FAST_BUILD)
    count = count_parameters(model, print_fn=print)
    assert abs(count - paper) / paper < 0.02, (case, count, paper)


@pytest.mark.parametrize("case", ["resflow-small", "idensenet-small"])
def test_small_paper_configurations_have_the_papers_parameter_counts(case):
    _check_paper_count(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["resflow-cifar10", "idensenet-cifar10"])
def test_full_paper_configurations_have_the_papers_parameter_counts(case):
    _check_paper_count(case)
