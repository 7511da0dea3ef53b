"""Parameter counts of Keras models (the number the papers quote for their architectures).

The papers count a PyTorch model's ``parameters()``: trainable tensors only, never buffers. The
Keras analogue is the model's ``trainable_weights``. ``keras.Model.count_params`` counts *every*
weight, including the non-trainable state of the Lipschitz layers (power-iteration vectors ``u``,
``v`` of size ``C H W`` per convolution, ``sigma``) and ActNorm's ``initialized`` flag, which for
an image flow is more than the parameters themselves; :func:`count_parameters` reports both.

References:
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Table 2: parameter counts of Residual Flows and i-DenseNets).
"""
import numpy as np


def _size(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


def count_parameters(model, print_fn=None):
    """The number of trainable parameters of a built Keras model (or layer).

    Args:
      model: a built ``keras.Model`` / ``keras.layers.Layer`` (e.g. a ``FlowModel``).
      print_fn: if given (e.g. ``print``), called with a one-line summary that also gives the
        non-trainable state, in millions as the papers write it.

    Returns:
      The count of trainable parameters (an int).
    """
    trainable = _size(model.trainable_weights)
    if print_fn is not None:
        state = _size(model.non_trainable_weights)
        print_fn(f"{model.name}: {trainable:,} trainable parameters ({trainable / 1e6:.1f}M); "
                 f"{state:,} non-trainable values (power-iteration and ActNorm state)")
    return trainable
