"""The ``coupling-image`` builder (the coupling baseline of Residual Flows, Table 5).

A small model on 8x8x1 images with random non-zero weights: the structure (checkerboard
couplings before the squeeze, channel couplings after it, vector couplings at the end, ActNorm
after every block), a round trip on fresh tensors, ``log_prob`` against the brute-force
Jacobian of the whole flow (exact: every step's log-det is exact), samples, a few training
steps and a ``.keras`` file.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import assert_keras_round_trip, randomize_weights
from tfresflow.models import build_model

SHAPE = [8, 8, 1]
SMALL = dict(scales=2, blocks_per_scale=2, hidden_channels=6, fc_blocks=2,
             fc_hidden_units=(16,))


def _pixels(n, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, size=(n, *SHAPE)) + rng.uniform(size=(n, *SHAPE))) / 256.0
            ).astype(np.float32)


def _small(**options):
    keras.utils.set_random_seed(0)
    model = build_model("coupling-image", SHAPE, **{**SMALL, **options})
    model.run_eagerly = True
    return model


def _couplings(model):
    return [b for b in trf.bijectors.tree.leaves(model.bijector)
            if isinstance(b, (trf.bijectors.ConvAffineCoupling, trf.bijectors.AffineCoupling))]


def test_structure_round_trip_exact_log_prob_and_samples():
    model = _small()
    leaves = trf.bijectors.tree.leaves(model.bijector)
    names = [b.name for b in leaves]
    assert names[:4] == ["logit", "actnorm_in", "scale0_block0", "scale0_actnorm0"]
    assert "squeeze_1" in names and names[-2:] == ["fc_block1", "fc_actnorm1"]
    couplings = _couplings(model)
    assert [(type(b).__name__, getattr(b, "mask", None), b.reverse) for b in couplings] == [
        ("ConvAffineCoupling", "checkerboard", False), ("ConvAffineCoupling", "checkerboard", True),
        ("ConvAffineCoupling", "channel", False), ("ConvAffineCoupling", "channel", True),
        ("AffineCoupling", "half", False), ("AffineCoupling", "half", True)]
    assert couplings[0].activation == "relu" and couplings[-1].activation == "relu"
    assert not model.has_stochastic_log_det
    x = _pixels(5)
    model.log_prob(tf.constant(x))    # ActNorm data-dependent initialisation
    randomize_weights([layer for b in couplings for layer in b.keras_layers()], scale=0.2,
                      seed=1)
    z = model.bijector.inverse(tf.constant(x))
    assert z.shape == (5, 64)
    back = model.bijector.forward(tf.constant(z.numpy())).numpy()
    np.testing.assert_allclose(back, x, atol=2e-4)
    log_prob = model.log_prob(tf.constant(x)).numpy()
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(log_prob, model.exact_log_prob(tf.constant(x)).numpy(),
                               rtol=1e-4, atol=2e-3)
    samples = model.sample(3, seed=[1, 2])
    assert samples.shape == (3, *SHAPE) and np.all(np.isfinite(samples.numpy()))


def test_trains_a_few_steps_and_round_trips_through_a_keras_file(tmp_path):
    model = _small()
    x = _pixels(64, seed=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    model.log_prob(tf.constant(x[:32]))
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, batch_size=32, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    moved = [not np.allclose(a, v.numpy()) for a, v in zip(before, model.trainable_variables)]
    assert all(moved)   # zero-initialised conditioner outputs still receive gradients
    assert np.all(np.isfinite(model.log_prob(tf.constant(x[:4])).numpy()))
    assert model.sample(2, seed=[3, 4]).shape == (2, *SHAPE)
    assert_keras_round_trip(model, str(tmp_path / "coupling.keras"), _pixels(4, seed=3))


def test_two_couplings_per_block_and_arguments():
    model = build_model("coupling-image", [4, 4, 3], scales=1, blocks_per_scale=2,
                        hidden_channels=4, couplings_per_block=2, fc_blocks=1,
                        fc_hidden_units=(8,), alpha=None)
    names = [b.name for b in trf.bijectors.tree.leaves(model.bijector)]
    assert names == ["actnorm_in", "scale0_block0_c0", "scale0_block0_c1", "scale0_actnorm0",
                     "scale0_block1_c0", "scale0_block1_c1", "scale0_actnorm1", "flatten",
                     "fc_block0_c0", "fc_block0_c1", "fc_actnorm0"]
    assert [b.reverse for b in _couplings(model)] == [False, True, False, True, False, True]
    x = np.random.default_rng(4).normal(size=(3, 4, 4, 3)).astype(np.float32)
    assert np.all(np.isfinite(model.log_prob(tf.constant(x)).numpy()))
    with pytest.raises(ValueError, match="couplings_per_block"):
        build_model("coupling-image", SHAPE, couplings_per_block=0)
    with pytest.raises(ValueError, match="2 channels"):
        build_model("coupling-image", SHAPE, scales=1, mask="channel")
    with pytest.raises(ValueError, match="scales"):
        build_model("coupling-image", [6, 6, 1], scales=3)


def test_standardization_replaces_the_logit_transform_and_its_log_det_is_counted(tmp_path):
    """The papers' CIFAR-10 hybrid preprocessing as the flow's first step: log_prob (of the
    dequantised data in [0, 1)) equals the brute-force log-density of the whole flow, the
    standardisation's constant -H W sum log std included, and the model file keeps it."""
    from tfresflow.data.standardization import channel_statistics
    images = (np.random.default_rng(5).integers(0, 256, size=(20, *SHAPE))).astype(np.uint8)
    stats = channel_statistics(images)
    model = _small(standardization=stats, fc_blocks=0)
    names = [b.name for b in trf.bijectors.tree.leaves(model.bijector)]
    assert names[:3] == ["standardize_shift", "standardize_scale", "actnorm_in"]
    assert "logit" not in names
    x = _pixels(4, seed=6)
    model.log_prob(tf.constant(x))
    randomize_weights([layer for b in _couplings(model) for layer in b.keras_layers()],
                      scale=0.2, seed=7)
    log_prob = model.log_prob(tf.constant(x)).numpy()
    np.testing.assert_allclose(log_prob, model.exact_log_prob(tf.constant(x)).numpy(),
                               rtol=1e-4, atol=2e-3)
    assert_keras_round_trip(model, str(tmp_path / "standardized.keras"), x)
    with pytest.raises(ValueError, match="standardization"):
        build_model("coupling-image", SHAPE, standardization=((0.1, 0.2), (0.3, 0.4)))
    with pytest.raises(ValueError, match="standardization"):
        build_model("resflow-image", SHAPE, standardization="yes")


def test_count_parameters_by_hand():
    """One checkerboard coupling on 4x4x1 images, 4 hidden channels, ActNorm before and after:
    3x3 conv 1->4 (36 + 4), 1x1 conv 4->4 (16 + 4), 3x3 conv 4->2 (shift and log-scale:
    72 + 2), two ActNorms of one channel (2 + 2): 138."""
    model = build_model("coupling-image", [4, 4, 1], scales=1, blocks_per_scale=1,
                        hidden_channels=4, fc_blocks=0)
    assert trf.models.count_parameters(model, print_fn=lambda *_: None) == 138
