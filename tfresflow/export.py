"""SavedModel export of flow models, loadable with plain ``tf.saved_model.load``.

Endpoints (all ``tf.function``s with fixed signatures):

* ``log_prob(x)``: per-example log-density, ``x`` of shape ``[None, *event_shape]``;
  evaluation-time estimator for stochastic log-dets (fresh noise each call);
* ``log_prob_seeded(x, seed)``: the same with a stateless ``seed`` (int32 ``[2]``), so a
  stochastic model gives reproducible values;
* ``sample(n)``: ``n`` samples with fresh noise each call;
* ``sample_seeded(n, seed)``: reproducible samples.
"""
import keras
import tensorflow as tf

from tfresflow.io import atomic_path


def export_saved_model(model, path):
    """Writes ``model`` (a ``FlowModel``) as a SavedModel directory at ``path`` atomically."""
    event = [None, *model.event_shape]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "log_prob", lambda x: model.log_prob(x),
        input_signature=[tf.TensorSpec(event, tf.float32, name="x")])
    archive.add_endpoint(
        "log_prob_seeded", lambda x, seed: model.log_prob(x, seed=seed),
        input_signature=[tf.TensorSpec(event, tf.float32, name="x"),
                         tf.TensorSpec([2], tf.int32, name="seed")])
    archive.add_endpoint(
        "sample", lambda n: model.sample(n),
        input_signature=[tf.TensorSpec([], tf.int32, name="n")])
    archive.add_endpoint(
        "sample_seeded", lambda n, seed: model.sample(n, seed=seed),
        input_signature=[tf.TensorSpec([], tf.int32, name="n"),
                         tf.TensorSpec([2], tf.int32, name="seed")])
    with atomic_path(path) as tmp:
        archive.write_out(tmp, verbose=False)
    return path
