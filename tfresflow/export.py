"""SavedModel export of flow models, loadable with plain ``tf.saved_model.load``; and reading one
back as a model-like object (:func:`load_saved_model`).

Endpoints (all ``tf.function``s with fixed signatures):

* ``log_prob(x)``: per-example log-density, ``x`` of shape ``[None, *event_shape]``;
  evaluation-time estimator for stochastic log-dets (fresh noise each call);
* ``log_prob_seeded(x, seed)``: the same with a stateless ``seed`` (int32 ``[2]``), so a
  stochastic model gives reproducible values;
* ``sample(n)``: ``n`` samples with fresh noise each call;
* ``sample_seeded(n, seed)``: reproducible samples;
* ``stochastic_log_det()``: a boolean scalar, whether ``log_prob`` is a random estimate;
* ``classify(x)`` (only for a hybrid model, :class:`tfresflow.models.HybridFlowModel`, or any
  model with a ``classify`` method): class probabilities ``p(y|x)``, ``[None, num_classes]``;
* ``exact_log_prob(x)`` (only for a stochastic-log-det model that
  :func:`tfresflow.evaluation.use_exact_evaluation` evaluates exactly, i.e. of event size
  <= ``EXACT_EVAL_MAX_DIM``): the deterministic log-density from the brute-force Jacobian.

Any model with ``event_shape``, ``log_prob(x, seed)``, ``sample(n, seed)``,
``has_stochastic_log_det`` and ``exact_log_prob`` exports: a ``FlowModel`` or a
``BoostedFlowModel`` (the mixture of a boosted or density-matched run).
"""
import keras
import tensorflow as tf

from tfresflow import evaluation
from tfresflow import random as trf_random
from tfresflow.io import atomic_path
from tfresflow.validation import check_samples

__all__ = ["export_saved_model", "load_saved_model", "SavedModelFlow"]


def export_saved_model(model, path):
    """Writes ``model`` (a ``FlowModel``, ``BoostedFlowModel`` or ``HybridFlowModel``) as a
    SavedModel directory at ``path`` atomically; returns ``path``. A model with a ``classify``
    method (a hybrid model) also gets the ``classify`` endpoint."""
    event = [None, *model.event_shape]
    x_spec = tf.TensorSpec(event, tf.float32, name="x")
    n_spec = tf.TensorSpec([], tf.int32, name="n")
    seed_spec = tf.TensorSpec([2], tf.int32, name="seed")
    stochastic = bool(model.has_stochastic_log_det)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("log_prob", lambda x: model.log_prob(x), input_signature=[x_spec])
    archive.add_endpoint("log_prob_seeded", lambda x, seed: model.log_prob(x, seed=seed),
                         input_signature=[x_spec, seed_spec])
    archive.add_endpoint("sample", lambda n: model.sample(n), input_signature=[n_spec])
    archive.add_endpoint("sample_seeded", lambda n, seed: model.sample(n, seed=seed),
                         input_signature=[n_spec, seed_spec])
    archive.add_endpoint("stochastic_log_det", lambda: tf.constant(stochastic),
                         input_signature=[])
    if callable(getattr(model, "classify", None)):
        archive.add_endpoint("classify", lambda x: model.classify(x), input_signature=[x_spec])
    if evaluation.use_exact_evaluation(model):
        archive.add_endpoint("exact_log_prob", lambda x: model.exact_log_prob(x),
                             input_signature=[x_spec])
    with atomic_path(path) as tmp:
        archive.write_out(tmp, verbose=False)
    return path


class SavedModelFlow:
    """A SavedModel written by :func:`export_saved_model`, with a model's calling interface.

    ``log_prob(x, seed)``, ``exact_log_prob(x)`` and ``sample(n, seed)`` call the exported
    signatures (so :mod:`tfresflow.evaluation` scores it like the model it came from);
    ``event_shape`` comes from the ``log_prob`` signature. A SavedModel exported before the
    ``stochastic_log_det`` endpoint existed counts as stochastic (its ``log_prob`` is then
    always called with a seed, which an exact model ignores). A hybrid model's SavedModel also
    has ``classify(x)`` (class probabilities) and ``num_classes`` (``None`` for other models).

    Args:
      loaded: the object ``tf.saved_model.load`` returned.
      path: where it was loaded from (for messages).
    """

    def __init__(self, loaded, path):
        missing = [e for e in ("log_prob_seeded", "sample_seeded") if not hasattr(loaded, e)]
        if missing:
            raise ValueError(f"SavedModel {path!r} has no {' or '.join(missing)} signature; "
                             "it was not written by tfresflow.export.export_saved_model.")
        self.loaded = loaded
        self.path = path
        spec = loaded.signatures["log_prob"].structured_input_signature[1]["x"]
        self.event_shape = list(spec.shape[1:])
        self.has_stochastic_log_det = bool(loaded.stochastic_log_det()) \
            if hasattr(loaded, "stochastic_log_det") else True
        self.num_classes = None
        if hasattr(loaded, "classify"):
            out = loaded.signatures["classify"].structured_outputs
            self.num_classes = int(next(iter(out.values())).shape[-1])

    def _batch(self, x):
        """``x`` checked against the signature ``[None, *event_shape]`` (ValueError naming it)."""
        return tf.constant(check_samples(x, self.event_shape, name="x"))

    def log_prob(self, x, seed=None):
        """Per-example log-density through ``log_prob_seeded`` (``log_prob`` without seed)."""
        x = self._batch(x)
        if seed is None:
            return self.loaded.log_prob(x)
        return self.loaded.log_prob_seeded(x, trf_random.as_seed(seed))

    def exact_log_prob(self, x):
        """The exported deterministic ``exact_log_prob``.

        Raises:
          ValueError: if the SavedModel has no ``exact_log_prob`` endpoint.
        """
        if not hasattr(self.loaded, "exact_log_prob"):
            raise ValueError(f"SavedModel {self.path!r} exports no exact_log_prob; re-export "
                             "it with this version of tfresflow.")
        return self.loaded.exact_log_prob(self._batch(x))

    def classify(self, x):
        """Class probabilities ``p(y|x)`` through the exported ``classify`` endpoint.

        Raises:
          ValueError: if the SavedModel is not a hybrid model's (no ``classify`` endpoint).
        """
        if self.num_classes is None:
            raise ValueError(f"SavedModel {self.path!r} exports no classify endpoint: it is not "
                             "a hybrid model's (tfresflow.models.HybridFlowModel).")
        return self.loaded.classify(self._batch(x))

    def sample(self, n, seed=None):
        """``n`` samples through ``sample_seeded`` (``sample`` without seed: fresh noise)."""
        n = tf.constant(int(n), tf.int32)
        if seed is None:
            return self.loaded.sample(n)
        return self.loaded.sample_seeded(n, trf_random.as_seed(seed))


def load_saved_model(path):
    """Loads the SavedModel directory ``path`` as a :class:`SavedModelFlow`.

    Raises:
      ValueError: if ``path`` is not a SavedModel directory or lacks the tfresflow signatures.
    """
    if not tf.saved_model.contains_saved_model(path):
        raise ValueError(f"{path!r} is not a SavedModel directory (no saved_model.pb).")
    return SavedModelFlow(tf.saved_model.load(path), path)
