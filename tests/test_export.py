import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import randomize_weights

RELOAD_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
x = np.load(sys.argv[1])
outs = []
for path in sys.argv[2:]:
    m = tf.saved_model.load(path)
    outs.append({
        "log_prob": m.log_prob(tf.constant(x)).numpy().tolist(),
        "seeded_a": m.sample_seeded(tf.constant(5), tf.constant([1, 2])).numpy().tolist(),
        "seeded_b": m.sample_seeded(tf.constant(5), tf.constant([1, 2])).numpy().tolist(),
        "fresh_a": m.sample(tf.constant(5)).numpy().tolist(),
        "fresh_b": m.sample(tf.constant(5)).numpy().tolist(),
    })
print(json.dumps({"models": outs,
                  "imported_tfresflow": any(k.startswith("tfresflow") for k in sys.modules)}))
"""


def _boosted_mixture():
    comps = trf.models.build_model("boosted", 2, num_components=2, n_steps=1, hidden_units=(8,))
    for i, c in enumerate(comps):
        randomize_weights(c.flow_layers, seed=10 + i)
    return trf.models.BoostedFlowModel(comps, mixture_weights=[0.3, 0.7], seed=1)


def test_saved_model_reloads_without_tfresflow(tmp_path):
    """A flow and a boosted mixture (``BoostedFlowModel``) both reload with plain TF."""
    model = trf.models.build_model("coupling", 2, n_steps=2, hidden_units=(8,))
    randomize_weights(model.flow_layers, seed=2)
    models = [model, _boosted_mixture()]
    paths = [str(tmp_path / f"sm{i}") for i in range(len(models))]
    for m, path in zip(models, paths):
        trf.export.export_saved_model(m, path)
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "x.npy")] + paths,
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported_tfresflow"] is False
    for m, out in zip(models, result["models"]):
        np.testing.assert_allclose(out["log_prob"], m.log_prob(tf.constant(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["seeded_a"], out["seeded_b"])
        np.testing.assert_allclose(out["seeded_a"],
                                   m.sample(5, seed=tf.constant([1, 2])).numpy(), atol=1e-5)
        assert not np.allclose(out["fresh_a"], out["fresh_b"])


def test_export_failure_leaves_no_partial_directory(tmp_path, monkeypatch):
    model = trf.models.build_model("coupling", 2, n_steps=1, hidden_units=(4,))

    def broken_save(obj, path, *args, **kwargs):
        tf.io.gfile.makedirs(path)
        open(path + "/partial", "w").close()
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    target = tmp_path / "sm"
    with pytest.raises(OSError, match="disk full"):
        trf.export.export_saved_model(model, str(target))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_saved_model_flow_scores_through_the_exported_signatures(tmp_path):
    """A stochastic 2-D model exports ``exact_log_prob``; the reader matches the model."""
    model = trf.models.build_model("resflow", 2, n_steps=1, hidden_units=(8,))
    rng = np.random.default_rng(7)
    for v in model.trainable_variables:  # (not ActNorm's `initialized` flag)
        v.assign(rng.normal(0.0, 0.2, size=v.shape).astype(np.float32))
    trf.export.export_saved_model(model, str(tmp_path / "sm"))
    flow = trf.export.load_saved_model(str(tmp_path / "sm"))
    assert flow.event_shape == [2] and flow.has_stochastic_log_det
    assert trf.evaluation.use_exact_evaluation(flow)
    x = np.random.default_rng(4).normal(size=(40, 2)).astype(np.float32)
    np.testing.assert_allclose(flow.exact_log_prob(x).numpy(),
                               model.exact_log_prob(tf.constant(x)).numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(flow.log_prob(x, seed=[3, 4]).numpy(),
                               model.log_prob(tf.constant(x), seed=[3, 4]).numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(flow.sample(6, seed=9).numpy(),
                               model.sample(6, seed=9).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match=r"`x` must have shape \[n, 2\]"):
        flow.log_prob(np.zeros((3, 5), np.float32))
    assert trf.evaluation.nll_with_stderr(flow, x, exact=True) == pytest.approx(
        trf.evaluation.nll_with_stderr(model, x, exact=True), rel=1e-5)


def test_exact_model_exports_no_exact_endpoint(tmp_path):
    model = trf.models.build_model("coupling", 2, n_steps=1, hidden_units=(4,))
    trf.export.export_saved_model(model, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert not bool(loaded.stochastic_log_det()) and not hasattr(loaded, "exact_log_prob")
    flow = trf.export.load_saved_model(str(tmp_path / "sm"))
    assert not flow.has_stochastic_log_det and not trf.evaluation.use_exact_evaluation(flow)
    with pytest.raises(ValueError, match="exports no exact_log_prob"):
        flow.exact_log_prob(np.zeros((1, 2), np.float32))


def test_load_saved_model_rejects_other_directories(tmp_path):
    with pytest.raises(ValueError, match="not a SavedModel directory"):
        trf.export.load_saved_model(str(tmp_path))
    module = tf.Module()
    module.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "foreign"))
    with pytest.raises(ValueError, match="not written by tfresflow"):
        trf.export.load_saved_model(str(tmp_path / "foreign"))
