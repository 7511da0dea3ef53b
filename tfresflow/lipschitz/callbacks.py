"""Keeping Lipschitz layers normalised during training: find, update, and a Keras callback.

Power iteration is not part of the forward pass (see :mod:`tfresflow.lipschitz.base`), so the
estimate ``sigma`` must be refreshed after every optimizer step and before every evaluation -
the reference ``update_lipschitz(model)`` called after ``optimizer.step()`` and after swapping
in EMA weights (Chen et al., 2019, App. E, "adaptive number of power iterations").

* :func:`find_lipschitz_layers` walks Keras layers recursively (sub-layers, also those held in
  lists and dicts), plain lists/tuples/dicts, and objects exposing ``keras_layers()`` (every
  :class:`tfresflow.bijectors.KerasBijector`) or ``bijectors`` (``tfb.Chain``).
* :func:`update_lipschitz_layers` runs :meth:`LipschitzLayer.update_normalization` on all of them
  (eagerly: one compiled function for the whole model, traced once).
* :class:`LipschitzUpdate` calls it after every training batch and before evaluation and
  prediction. Also call :func:`update_lipschitz_layers` yourself after ``load_weights`` or an
  EMA swap outside ``fit``.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735 (Appendix E).
"""
import warnings
import weakref

import keras
import tensorflow as tf

from tfresflow.lipschitz.base import LipschitzLayer, update_layers_batched

_COMPILED_MODEL_UPDATES = weakref.WeakKeyDictionary()


def find_lipschitz_layers(obj):
    """All distinct :class:`LipschitzLayer` instances reachable from ``obj``, in visit order."""
    found, seen = [], set()

    def visit(item):
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, LipschitzLayer):
            found.append(item)
        if isinstance(item, keras.layers.Layer):
            for sub in item._flatten_layers(include_self=False, recursive=False):
                visit(sub)
            return
        if isinstance(item, dict):
            for value in item.values():
                visit(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)
        elif callable(getattr(item, "keras_layers", None)):
            visit(list(item.keras_layers()))
        elif isinstance(getattr(item, "bijectors", None), (list, tuple)):
            visit(list(item.bijectors))

    visit(obj)
    return found


def update_lipschitz_layers(model_or_layer, n_iterations=None, atol=None, rtol=None,
                            max_iterations=None):
    """Refreshes the power-iteration estimate of every Lipschitz layer in ``model_or_layer``.

    Args:
      model_or_layer: a Keras layer/model, a bijector, or a (nested) list/dict of them.
      n_iterations, atol, rtol, max_iterations: as
        :meth:`LipschitzLayer.update_normalization` (``None``: each layer's own settings).

    Returns:
      The list of updated layers. Unbuilt layers are skipped (they converge when built).
    """
    layers = [layer for layer in find_lipschitz_layers(model_or_layer) if layer.built]
    kwargs = dict(n_iterations=n_iterations, atol=atol, rtol=rtol, max_iterations=max_iterations)
    if not layers:
        return layers
    if not tf.executing_eagerly():
        update_layers_batched(layers, **kwargs)
        return layers
    try:
        cache = _COMPILED_MODEL_UPDATES.setdefault(model_or_layer, {})
    except TypeError:            # not weak-referenceable (a plain list): per-layer functions
        for layer in layers:
            layer.update_normalization(**kwargs)
        return layers
    key = (tuple(id(layer) for layer in layers), tuple(sorted(kwargs.items(), key=str)))
    fn = cache.get(key)
    if fn is not None and any(ref() is not layer for ref, layer in zip(fn.refs, layers)):
        fn = None                # an id was reused by a new layer: rebuild
    if fn is None:
        refs = [weakref.ref(layer) for layer in layers]
        cache.clear()

        @tf.function(autograph=False)
        def fn():
            update_layers_batched([ref() for ref in refs], **kwargs)

        fn.refs = refs
        cache[key] = fn
    fn()
    return layers


class LipschitzUpdate(keras.callbacks.Callback):
    """Runs :func:`update_lipschitz_layers` after each train batch and before test/predict.

    Args:
      n_iterations, atol, rtol, max_iterations: forwarded to the update (``None``: adaptive,
        with each layer's own tolerances).
      on_train_begin_update: also update once when ``fit`` starts (e.g. after loading weights).
    """

    def __init__(self, n_iterations=None, atol=None, rtol=None, max_iterations=None,
                 on_train_begin_update=True):
        super().__init__()
        self.kwargs = dict(n_iterations=n_iterations, atol=atol, rtol=rtol,
                           max_iterations=max_iterations)
        self.on_train_begin_update = bool(on_train_begin_update)
        self._warned = False

    def _update(self):
        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                layers = update_lipschitz_layers(self.model, **self.kwargs)
        else:
            layers = update_lipschitz_layers(self.model, **self.kwargs)
        if not layers and not self._warned:
            warnings.warn("LipschitzUpdate: the model has no built Lipschitz layers.")
            self._warned = True

    def on_train_begin(self, logs=None):
        if self.on_train_begin_update:
            self._update()

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_test_begin(self, logs=None):
        self._update()

    def on_predict_begin(self, logs=None):
        self._update()


def with_lipschitz_update(callbacks, layers):
    """``callbacks`` (a list, or ``None``) plus one :class:`LipschitzUpdate` when ``layers``
    (anything :func:`find_lipschitz_layers` walks) hold Lipschitz layers and the list has no
    update yet: the callbacks a model's ``fit``/``evaluate`` passes on to Keras.

    A ``keras.callbacks.CallbackList`` is returned unchanged: it is ``fit``'s own validation
    pass, whose list already holds the update.
    """
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks or [])
    if find_lipschitz_layers(layers) and not any(isinstance(c, LipschitzUpdate)
                                                 for c in callbacks):
        callbacks.append(LipschitzUpdate())
    return callbacks
