"""The README's "Loading a trained model in another program" snippets run as written.

Each snippet runs in a fresh Python process in a folder holding ``runs/cb/`` (what the README's
command line writes: ``model.keras`` and ``saved_model/`` of a coupling flow on 2-D data).
The SavedModel snippet must work with plain TensorFlow: ``tfresflow`` is never imported.
The ``.keras`` snippet needs ``import tfresflow``, and without it Keras fails with
the message the README quotes.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.helpers import randomize_weights, readme_python_blocks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Loading a trained model in another program"
X = [[0.1, -0.3], [1.0, 0.5]]  # the points the snippets evaluate


def _snippets():
    return readme_python_blocks(SECTION)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A folder with ``runs/cb/model.keras`` and ``runs/cb/saved_model`` of a coupling flow."""
    root = tmp_path_factory.mktemp("readme")
    model = trf.models.build_model("coupling", 2, n_steps=2, hidden_units=(8,))
    randomize_weights(model.flow_layers, seed=3)
    os.makedirs(root / "runs" / "cb")
    model.save(str(root / "runs" / "cb" / "model.keras"))
    trf.export.export_saved_model(model, str(root / "runs" / "cb" / "saved_model"))
    return root, model.log_prob(tf.constant(X, tf.float32)).numpy()


def _run(code, cwd, env):
    done = subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_section_has_a_keras_and_a_saved_model_snippet():
    keras_snippet, saved_snippet = _snippets()
    assert "import tfresflow" in keras_snippet and "load_model" in keras_snippet
    assert "tfresflow" not in saved_snippet and "tf.saved_model.load" in saved_snippet


def test_saved_model_snippet_runs_with_plain_tensorflow(run_folder):
    root, expected = run_folder
    snippet = _snippets()[1]
    check = ("\nimport json, sys\n"
             "print(json.dumps({'tfresflow': [m for m in sys.modules"
             " if m.split('.')[0] == 'tfresflow'],"
             f" 'log_p': m.log_prob(tf.constant({X!r})).numpy().tolist(),"
             " 'seeded': log_p.numpy().tolist(), 'shape': list(samples.shape)}))\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = _run(snippet + check, root, env)  # no PYTHONPATH pointing at tfresflow
    assert out["tfresflow"] == []
    np.testing.assert_allclose(out["log_p"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["seeded"], expected, rtol=1e-5, atol=1e-5)  # exact model
    assert out["shape"] == [1000, 2]


def test_keras_snippet_runs_after_import_tfresflow_and_fails_without(run_folder):
    root, expected = run_folder
    snippet = _snippets()[0]
    before = ("import keras\n"
              "try:\n"
              "    keras.saving.load_model('runs/cb/model.keras')\n"
              "    without = 'loaded'\n"
              "except TypeError as err:\n"
              "    without = str(err)\n")
    check = ("\nimport json\n"
             "print(json.dumps({'without': without, 'log_p': log_p.numpy().tolist(),"
             " 'shape': list(x.shape)}))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    out = _run(before + snippet + check, root, env)
    assert "Could not locate class 'FlowModel'" in out["without"]
    np.testing.assert_allclose(out["log_p"], expected, rtol=1e-5, atol=1e-5)
    assert out["shape"] == [1000, 2]
