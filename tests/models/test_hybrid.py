"""``HybridFlowModel`` (Chen et al., 2019, Section 5.3 / Appendix E) and its SavedModel export.

Tiny 8x8x1 image flows (2 scales, 1 block per scale, 8 hidden channels). The checks are
mathematical: the loss is ``lambda NLL + CE`` computed independently from ``log_prob`` and
``classify``; the joint pass's ``log p(x)`` is the wrapped flow's and, with exact block
log-dets, the brute-force-Jacobian log-density; with ``lambda = 0`` the cross-entropy alone
still moves the flow's weights; the SavedModel reloads without tfresflow.
"""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import assert_keras_round_trip
from tfresflow.data import dequantization
from tfresflow.models import HybridFlowModel, build_model

SHAPE = [8, 8, 1]
D = 64
K = 3


def _pixels(n, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, size=(n, *SHAPE)) + rng.uniform(size=(n, *SHAPE))) / 256.0
            ).astype(np.float32)


def _labels(n, seed=0):
    return np.random.default_rng(seed + 100).integers(0, K, size=n)


def _flow(logdet=None, fc_blocks=0):
    keras.utils.set_random_seed(0)
    # One build-time power-iteration step (fit refreshes the estimates): the tests here do not
    # depend on the Lipschitz bound being tight.
    return build_model("resflow-image", SHAPE, scales=2, blocks_per_scale=1, hidden_channels=8,
                       fc_blocks=fc_blocks, fc_hidden_units=(16,), coeff=0.9, logdet=logdet,
                       lipschitz_kwargs={"max_iterations": 1})


def _hybrid(lam="1/D", logdet=None, fc_blocks=0, eager=True, **kwargs):
    flow = _flow(logdet, fc_blocks)
    flow.run_eagerly = eager   # eager log_prob/classify: no tracing (faster for tiny models)
    model = HybridFlowModel(flow, num_classes=K, lam=lam, branch_channels=8, seed=0, **kwargs)
    model.log_prob_and_logits(tf.constant(_pixels(32, seed=9)))   # ActNorm initialisation
    return model


@pytest.fixture(scope="module")
def exact_model():
    """lambda = 1/D, exact block log-dets (deterministic), one FC block after the conv part;
    read-only for the tests that use it."""
    return _hybrid(lam="1/D", logdet=trf.logdet.Exact(), fc_blocks=1, eager=True)


def test_branches_sit_after_every_squeeze_and_at_the_end_of_the_conv_part(exact_model):
    model = exact_model
    names = [p.name for p in model.flow.bijector.bijectors]
    tapped = [names[k] for k in model._taps]
    # logit, actnorm_in, block, actnorm, squeeze_1, block, actnorm, flatten, fc block, actnorm
    assert tapped == ["squeeze_1", "scale1_actnorm0"]
    assert [b.conv.kernel.shape for b in model.branches] == [(3, 3, 4, 8), (3, 3, 4, 8)]
    assert model.classifier.kernel.shape == (16, K)
    assert model.lam == pytest.approx(1.0 / D)
    probs = model.classify(tf.constant(_pixels(5))).numpy()
    assert probs.shape == (5, K)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


def test_joint_log_prob_is_the_wrapped_flows():
    """The generative part is the image flow: delegated calls are identical and the joint pass
    gives the same (unbiased) estimate for the same seed (the brute-force check of the joint
    pass is in the loss test). Zeroing the classifier (no branch signal: CE = log K for every
    example) leaves exactly the flow's NLL in the lambda = 1 loss."""
    model = _hybrid(lam=1.0, eager=True)
    x = _pixels(6, seed=1)
    seed = tf.constant([3, 4])
    flow_lp = model.flow.log_prob(tf.constant(x), seed=seed).numpy()
    np.testing.assert_array_equal(model.log_prob(tf.constant(x), seed=seed).numpy(), flow_lp)
    joint_lp, joint_logits = model.log_prob_and_logits(tf.constant(x), seed=seed)
    # classify's value-only pass (no log-dets) reads the same features.
    np.testing.assert_allclose(model.logits(tf.constant(x)).numpy(), joint_logits.numpy(),
                               rtol=1e-5, atol=1e-6)
    # Equal up to float32 rounding of a sum of per-step log-dets of size ~100 (summed in
    # another order than tfb.Chain's).
    np.testing.assert_allclose(joint_lp.numpy(), flow_lp, rtol=1e-5, atol=1e-4)

    for w in model.classifier.weights:
        w.assign(tf.zeros_like(w))
    y = _labels(6)
    x_t = tf.constant(x)
    outputs = model(x_t)
    loss = model.compute_loss(x_t, y, outputs).numpy()
    np.testing.assert_allclose(loss, -outputs["log_prob"].numpy().mean() + np.log(K), rtol=1e-6)


def test_loss_is_lambda_nll_plus_cross_entropy_and_metrics_are_its_parts(exact_model):
    """evaluate's loss and metrics against log_prob (brute-force Jacobian) and classify."""
    model = exact_model
    x, y = _pixels(16, seed=2), _labels(16, seed=2)
    model.compile(optimizer="adam")
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "bits_per_dim", "cross_entropy", "accuracy"}
    log_p = model.flow.exact_log_prob(tf.constant(x)).numpy().astype(np.float64)
    probs = model.classify(tf.constant(x)).numpy().astype(np.float64)
    ce = -np.log(probs[np.arange(16), y])
    assert result["loss"] == pytest.approx(np.mean(-log_p / D + ce), rel=1e-4)
    assert result["cross_entropy"] == pytest.approx(ce.mean(), rel=1e-4)
    assert result["bits_per_dim"] == pytest.approx(
        dequantization.bits_per_dim(log_p, D).mean(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    # The other weights, through compute_loss on the same outputs.
    outputs = model(tf.constant(x))
    np.testing.assert_allclose(outputs["log_prob"].numpy(), log_p, rtol=1e-4, atol=1e-4)
    for lam, weight in [(0.0, 0.0), (1.0, 1.0), (0.25, 0.25)]:
        other = HybridFlowModel(model.flow, num_classes=K, lam=lam, branch_channels=8)
        loss = other.compute_loss(None, y, outputs).numpy()
        assert loss == pytest.approx(np.mean(weight * -log_p + ce), rel=1e-4)


def test_with_lambda_zero_the_classifier_gradient_trains_the_flow(monkeypatch):
    """lambda = 0: only the cross-entropy is minimised, yet every flow weight before the last
    branch moves; fit reports the two parts and runs the Lipschitz power-iteration update."""
    calls = []
    update = trf.lipschitz.callbacks.update_lipschitz_layers
    monkeypatch.setattr(trf.lipschitz.callbacks, "update_lipschitz_layers",
                        lambda *a, **k: calls.append(1) or update(*a, **k))
    model = _hybrid(lam=0.0)
    flow_weights = [w for layer in model.flow_layers for w in layer.trainable_weights]
    before = [w.numpy().copy() for w in flow_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(_pixels(32, seed=3), _labels(32, seed=3), batch_size=16, epochs=2,
                        verbose=0)
    assert {"loss", "bits_per_dim", "cross_entropy", "accuracy"} <= set(history.history)
    np.testing.assert_allclose(history.history["loss"], history.history["cross_entropy"],
                               rtol=1e-6)
    moved = [not np.allclose(b, w.numpy()) for b, w in zip(before, flow_weights)]
    assert len(moved) > 4 and all(moved), [w.path for w, m in zip(flow_weights, moved) if not m]
    assert len(calls) >= 4   # once at train begin, then after every one of the 4 steps


def test_bad_arguments_give_clear_errors(exact_model):
    flow = exact_model.flow
    with pytest.raises(ValueError, match="`lam`"):
        HybridFlowModel(flow, num_classes=3, lam=-0.1)
    with pytest.raises(ValueError, match="`lam`"):
        HybridFlowModel(flow, num_classes=3, lam="1/N")
    with pytest.raises(ValueError, match="`num_classes`"):
        HybridFlowModel(flow, num_classes=1)
    with pytest.raises(ValueError, match="`branch_channels`"):
        HybridFlowModel(flow, num_classes=3, branch_channels=0)
    with pytest.raises(TypeError, match="`flow`"):
        HybridFlowModel(flow.bijector, num_classes=3)
    with pytest.raises(ValueError, match="`flow` must model images"):
        HybridFlowModel(build_model("coupling", 4, n_steps=1, hidden_units=(4,)), num_classes=3)
    model = HybridFlowModel(flow, num_classes=3, branch_channels=4)
    model.compile(optimizer="adam")
    x = _pixels(4)
    with pytest.raises(ValueError, match=r"`y` must hold class indices 0\.\.2"):
        model.fit(x, np.array([0, 1, 2, 3]), verbose=0)
    with pytest.raises(ValueError, match="`y` must be class indices >= 0"):
        model.fit(x, np.array([0, -1, 2, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"`y` must be an integer array \[4\]"):
        model.fit(x, np.array([0, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"`y` must be an integer array \[4\]"):
        model.fit(x, np.array([0, 1.5, 2, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[1\]` must hold class indices"):
        model.fit(x, np.array([0, 1, 2, 1]), validation_data=(x, np.array([0, 1, 2, 5])),
                  verbose=0)
    with pytest.raises(ValueError, match="needs class labels"):
        model.fit(x, verbose=0)


def test_keras_round_trip_keeps_density_and_class_probabilities(exact_model, tmp_path):
    model = exact_model
    x = _pixels(5, seed=4)
    model.flow.run_eagerly = False   # compiled, as the loaded model runs (same float rounding)
    try:
        loaded = assert_keras_round_trip(model, str(tmp_path / "hybrid.keras"), x)
    finally:
        model.flow.run_eagerly = True
    assert isinstance(loaded, HybridFlowModel)
    assert loaded.lam == pytest.approx(1.0 / D) and loaded.num_classes == K
    np.testing.assert_allclose(loaded.classify(tf.constant(x)).numpy(),
                               model.classify(tf.constant(x)).numpy(), rtol=1e-6, atol=1e-7)


RELOAD_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
x = np.load(sys.argv[1])
m = tf.saved_model.load(sys.argv[2])
print(json.dumps({
    "classify": m.classify(tf.constant(x)).numpy().tolist(),
    "log_prob": m.log_prob_seeded(tf.constant(x), tf.constant([1, 2])).numpy().tolist(),
    "sample_shape": list(m.sample(tf.constant(3)).shape),
    "imported_tfresflow": any(k.startswith("tfresflow") for k in sys.modules)}))
"""


@pytest.mark.slow   # traces five endpoints and starts a second TensorFlow process
def test_hybrid_saved_model_reloads_without_tfresflow(tmp_path):
    model = _hybrid(lam="1/D")   # unbiased (stochastic) log-det: the seeded endpoint matters
    path = str(tmp_path / "sm")
    trf.export.export_saved_model(model, path)
    x = _pixels(7, seed=5)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "x.npy"), path],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported_tfresflow"] is False
    expected = model.classify(tf.constant(x)).numpy()
    np.testing.assert_allclose(result["classify"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["log_prob"],
                               model.log_prob(tf.constant(x), seed=[1, 2]).numpy(), rtol=1e-5)
    assert result["sample_shape"] == [3, *SHAPE]
    # The reader exposes classify too; a plain flow's SavedModel has none.
    flow = trf.export.load_saved_model(path)
    assert flow.num_classes == K
    np.testing.assert_allclose(flow.classify(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    trf.export.export_saved_model(model.flow, str(tmp_path / "flow"))
    plain = trf.export.load_saved_model(str(tmp_path / "flow"))
    assert plain.num_classes is None
    with pytest.raises(ValueError, match="exports no classify endpoint"):
        plain.classify(x)
