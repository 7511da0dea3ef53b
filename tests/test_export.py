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
m = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
out = {
    "log_prob": m.log_prob(tf.constant(x)).numpy().tolist(),
    "seeded_a": m.sample_seeded(tf.constant(5), tf.constant([1, 2])).numpy().tolist(),
    "seeded_b": m.sample_seeded(tf.constant(5), tf.constant([1, 2])).numpy().tolist(),
    "fresh_a": m.sample(tf.constant(5)).numpy().tolist(),
    "fresh_b": m.sample(tf.constant(5)).numpy().tolist(),
    "imported_tfresflow": any(k.startswith("tfresflow") for k in sys.modules),
}
print(json.dumps(out))
"""


def test_saved_model_reloads_without_tfresflow(tmp_path):
    model = trf.models.build_model("coupling", 2, n_steps=2, hidden_units=(8,))
    randomize_weights(model.flow_layers, seed=2)
    path = str(tmp_path / "sm")
    trf.export.export_saved_model(model, path)
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, path, str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported_tfresflow"] is False
    np.testing.assert_allclose(out["log_prob"], model.log_prob(tf.constant(x)).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["seeded_a"], out["seeded_b"])
    np.testing.assert_allclose(out["seeded_a"],
                               model.sample(5, seed=tf.constant([1, 2])).numpy(), atol=1e-5)
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
