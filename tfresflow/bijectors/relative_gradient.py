"""Square linear flow steps trained with the relative gradient (Gresele et al., NeurIPS 2020).

Model (row-vector convention, as Keras ``Dense``; the paper writes columns, ``W_paper = W^T``):
a flow ``x -> y_1 = x W_1 + b_1 -> z_1 = s(y_1) -> ... -> y_L = z_{L-1} W_L + b_L`` with square
``D x D`` matrices, whose log-likelihood splits as (paper eq. 3)

    log p(x) = L_p + L_J^1 + L_J^2,   L_p = log p_Z(y_L),   L_J^1 = sum_k sum_i log s'(y_k^i),
                                      L_J^2 = sum_k log|det W_k|.

The gradient of ``L_J^2`` is ``W^{-T}`` (an O(D^3) inverse) and its value an O(D^3)
determinant. The **relative gradient** (paper eq. 15 and App. A.1) right-multiplies the
Euclidean gradient by ``W_paper^T W_paper``; in row convention, with ``G = dL/dW``,

    relative gradient of W = W W^T G,

which turns the ``L_J^2`` term into exactly ``W`` (``W W^T W^{-T} = W``) and the data terms into
``W W^T z^T delta = (W (z W)^T) delta`` with ``delta = dL/dy`` the back-propagated error: two
GEMMs with the batch dimension inside, O(B D^2), no inverse, no determinant (App. A, C, D;
``benchmarks/relative_gradient.py`` times it against the O(D^3) gradients, snapshot in
``docs/results/relative_gradient.json``).
(This is the reference code's update too. Right-multiplying the *row-convention* gradient,
``G W^T W``, would be a different, input-side relative gradient: not the paper's method.)

**Biases** (App. F): the affine map is the augmented matrix ``M = [[W, 0], [b, 1]]``
(``[x, 1] M = [x W + b, 1]``). The projected relative gradient keeps the last column fixed and
applies ``M M^T`` to the projected gradient ``[G; g_b]``:

    dW = W W^T G + (W b^T) g_b,          db = b W^T G + (1 + b b^T) g_b
       = (W (zW)^T) delta + (W b^T) g_b,    = ((zW) b^T)^T delta + (1 + b b^T) g_b,

(paper eqs. 32-33 transposed). For ``L_J^2`` the projected gradient is ``[W^{-T}; 0]`` and
``M M^T [W^{-T}; 0] = [W; b]``: the log-det term contributes ``W`` to ``dW`` **and ``b`` to
``db``**. The reference implementation drops this ``b`` (its bias update is ``M M^T grad + b``
in loss terms, so its fixed points are not ML stationary points unless ``b = 0``); here the
consistent term is used (tests compare with the explicit ``M M^T grad``).

How the relative gradient reaches an optimiser: ``y = z W + b`` is a ``tf.custom_gradient``
whose gradient for ``(W, b)`` is the projected relative gradient of whatever flows into ``y``
(``delta`` already contains every later layer and the base density, so this is the relative
gradient of ``L_p`` plus the later ``L_J^1`` terms), and ``log|det W|`` enters the log-density
through a zero-valued surrogate whose gradient is ``[W; b]`` (relative) or ``[W^{-T}; 0]``
(ordinary, explicit inverse). Gradients are linear, so every tape -- Keras ``fit`` with any
optimiser, or a plain ``tf.GradientTape`` -- receives the relative gradient of the whole
objective when ``relative=True`` and the ordinary gradient when ``relative=False``. The
gradient with respect to the *input* ``z`` is always the ordinary one (``delta W^T``), so
Jacobians of the flow are exact.

``training`` selects only what is *computed as a value*:

* ``training=False`` (the default of ``FlowModel.log_prob``, ``evaluate``, validation): the
  log-det is the exact ``log|det W|`` by LU (``tf.linalg.slogdet``), so log-densities are
  exact. With ``relative=False`` its gradient is autodiff through ``slogdet``; with
  ``relative=True`` the value is ``stop_gradient``-ed and the surrogate supplies ``W``.
* ``training=True`` (``FlowModel.fit`` steps): **the value of ``log|det W|`` is left out** (the
  returned log-det is 0) and no determinant, LU or inverse is computed for ``relative=True``;
  the training loss displayed by ``fit`` is therefore the NLL *without* ``-sum_k log|det W_k|``,
  while its gradient is that of the full NLL. ``relative=False`` uses the explicit inverse
  ``W^{-T}`` for the gradient (the paper's "ordinary" baseline).

References:
  Gresele, Fissore, Javaloy, Schölkopf & Hyvärinen (2020), "Relative gradient optimization of the
    Jacobian term in unsupervised deep learning", NeurIPS, arXiv:2006.15090 (eqs. 3, 15, 32-33;
    Appendices A, C, D, F).
"""
import keras
import tensorflow as tf

from tfresflow.bijectors.base import (KerasBijector, deserialize_layer, serialize_layer,
                                      unique_name)
from tfresflow.validation import check_positive_int


@keras.saving.register_keras_serializable(package="tfresflow")
class SquareAffine(keras.layers.Layer):
    """Holds a square kernel ``W`` (``units x units``, orthogonal init) and optional bias ``b``.

    ``call`` is the plain affine map ``x W + b`` with ordinary gradients; the relative-gradient
    map is :func:`relative_affine`.
    """

    def __init__(self, units, use_bias=True, kernel_initializer="orthogonal",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] is not None and int(input_shape[-1]) != self.units:
            raise ValueError(f"{self.name}: expected inputs with last dimension {self.units}, "
                             f"got shape {tuple(input_shape)}.")
        self.kernel = self.add_weight(shape=(self.units, self.units), name="kernel",
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(shape=(self.units,), name="bias",
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)
        self.built = True

    def call(self, x):
        y = tf.matmul(x, self.kernel)
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


def _relative_kernel_gradient(kernel, u, d):
    """``W u^T d`` (``u``, ``d``: ``[N, D]``), i.e. ``W W^T G`` for ``u = xW``, ``G = x^T d``.

    For ``N <= D`` rows the order ``(W u^T) d`` has the batch dimension inside both products
    (``4 N D^2`` flops, never ``D x D x D``); for ``N > D`` the order ``W (u^T d)`` costs
    ``2 N D^2 + 2 D^3 < 4 N D^2`` and is used instead (both O(N D^2)).
    """
    n, dim = u.shape[0], kernel.shape[0]
    if n is not None and dim is not None and n > dim:
        return tf.matmul(kernel, tf.matmul(u, d, transpose_a=True))
    return tf.matmul(tf.matmul(kernel, u, transpose_b=True), d)


def relative_affine(x, kernel, *bias):
    """``y = x W (+ b)`` for ``x`` of shape ``[B, D]`` whose parameter gradients are relative.

    The gradient returned for ``x`` is the ordinary ``delta W^T``; for ``W`` (and ``b``) it is
    the projected relative gradient ``M M^T [G; g_b]`` of the module docstring, computed in
    O(B D^2) from ``delta = dL/dy`` and the cached ``x W``.

    Args:
      x: ``[B, D]`` inputs.
      kernel: ``[D, D]`` matrix ``W``.
      *bias: optionally the ``[D]`` bias ``b``.
    """
    @tf.custom_gradient
    def affine(x, kernel, *bias):
        xw = tf.matmul(x, kernel)

        def grad(dy):
            dx = tf.matmul(dy, kernel, transpose_b=True)
            if not bias:
                return dx, _relative_kernel_gradient(kernel, xw, dy)
            # Augmented rows u = [xW; b], d = [dy; g_b] ((B + 1) x D):
            #   dW = W W^T G + (W b^T) g_b = W u^T d,   db = (u b^T)^T d + g_b.
            b = bias[0]
            gb = tf.reduce_sum(dy, axis=0)
            u = tf.concat([xw, b[None]], axis=0)
            d = tf.concat([dy, gb[None]], axis=0)
            dkernel = _relative_kernel_gradient(kernel, u, d)
            dbias = tf.linalg.matvec(d, tf.linalg.matvec(u, b), transpose_a=True) + gb
            return dx, dkernel, dbias

        return (xw + bias[0] if bias else xw), grad

    return affine(x, kernel, *bias)


def log_det_surrogate(relative, kernel, *bias):
    """A zero scalar whose gradient is the (relative or ordinary) gradient of ``log|det W|``.

    ``relative=True``: gradient ``[W; b]`` (= ``M M^T [W^{-T}; 0]``, no inverse computed).
    ``relative=False``: gradient ``[W^{-T}; 0]`` by an explicit inverse (O(D^3)).
    """
    @tf.custom_gradient
    def surrogate(kernel, *bias):
        def grad(g):
            if relative:
                return [g * kernel] + [g * b for b in bias]
            inv_t = tf.linalg.matrix_transpose(tf.linalg.inv(kernel))
            return [g * inv_t] + [tf.zeros_like(b) for b in bias]
        return tf.zeros([], kernel.dtype), grad

    return surrogate(kernel, *bias)


class RelativeGradientLinear(KerasBijector):
    """Square affine flow step ``y = x W + b`` trained with the relative gradient.

    Density direction (TFP ``inverse``): ``y = x W + b``, log-det ``log|det W|`` (see the
    module docstring for what is computed when ``training=True``). Sampling direction
    (TFP ``forward``): ``x = (y - b) W^{-1}`` by an LU solve.

    Args:
      event_size: dimension D.
      use_bias: include the bias ``b`` (trained with the projected relative gradient).
      relative: ``True`` for relative gradients, ``False`` for ordinary gradients (autodiff
        through ``slogdet`` when ``training=False``, explicit ``W^{-T}`` when ``training=True``).
      kernel_initializer: Keras initializer of ``W`` (orthogonal by default, as the paper).
      seed: integer seed of the default orthogonal initializer.
      weights: optional pre-built :class:`SquareAffine` layer (used by deserialisation).
      dtype: float dtype of weights and inputs.
      validate_args: assert finite inputs at run time (TFP's meaning, see
        :class:`~tfresflow.bijectors.KerasBijector`).

    Example::

        lin = RelativeGradientLinear(event_size=D, use_bias=True, relative=True)
        act = SmoothLeakyReLU(alpha=0.3)
        model = FlowModel(bijector=tfb.Chain([lin, act, lin2]), event_shape=[D])
        with tf.GradientTape() as t:
            loss = -tf.reduce_mean(model.log_prob(x))      # exact value (LU) ...
        grads = t.gradient(loss, model.trainable_variables)  # ... relative gradients
        # model.log_prob(x, training=True): same gradients, no O(D^3) value computed.
    """

    #: In ``training=True`` mode the returned log-det leaves out the value of ``log|det W|``
    #: (its gradient is still the exact one); ``training=False`` values are exact.
    training_log_det_is_partial = True
    #: What ``FlowModel.fit`` prints once when a flow has such steps.
    training_loss_note = (
        "note: the training `loss` leaves out -sum_k log|det W_k| (never computed in a "
        "relative-gradient step; its gradient is applied); `val_loss`, evaluate() and "
        "log_prob() are the exact NLL (log|det W| by LU).")

    def __init__(self, event_size, use_bias=True, relative=True,
                 kernel_initializer="orthogonal", seed=None, weights=None,
                 dtype=tf.float32, validate_args=False, name=None):
        parameters = dict(locals())
        name = unique_name(name, "relative_gradient_linear")
        if not isinstance(relative, bool):
            raise TypeError(f"`relative` must be a bool, got {type(relative).__name__}.")
        self.event_size = check_positive_int(event_size, "event_size")
        self.relative = relative
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise ValueError(f"`dtype` must be a floating dtype, got {dtype.name}.")
        if weights is None:
            if kernel_initializer == "orthogonal":
                kernel_initializer = keras.initializers.Orthogonal(seed=seed)
            weights = SquareAffine(self.event_size, use_bias=use_bias,
                                   kernel_initializer=kernel_initializer, dtype=dtype.name,
                                   name=f"{name}_weights")
        else:
            weights = deserialize_layer(weights)
            if weights.units != self.event_size:
                raise ValueError(f"`weights` has {weights.units} units, expected "
                                 f"`event_size`={self.event_size}.")
        self.affine = weights
        self.use_bias = self.affine.use_bias
        parameters.update(weights=weights, name=name)
        super().__init__(parameters=parameters, name=name, dtype=dtype,
                         validate_args=validate_args)

    # ---------------------------------------------------------------- Keras side
    def keras_layers(self):
        return [self.affine]

    def build(self, event_shape):
        self._check_event_shape(event_shape, [self.event_size])
        if not self.affine.built:
            self.affine.build((None, self.event_size))

    def get_config(self):
        return dict(event_size=self.event_size, use_bias=self.use_bias, relative=self.relative,
                    weights=serialize_layer(self.affine), dtype=self.dtype.name,
                    validate_args=self.validate_args, name=self.name)

    # ---------------------------------------------------------------- values
    def _params(self):
        kernel = tf.convert_to_tensor(self.affine.kernel)
        bias = [tf.convert_to_tensor(self.affine.bias)] if self.use_bias else []
        return kernel, bias

    def log_det_value(self):
        """Exact ``log|det W|`` by LU (``tf.linalg.slogdet``), O(D^3); never used in training."""
        if not self.built:
            self.build([self.event_size])
        return tf.linalg.slogdet(tf.convert_to_tensor(self.affine.kernel))[1]

    def _data_to_latent(self, x, training, seed):
        kernel, bias = self._params()
        shape = tf.shape(x)
        flat = x if x.shape.rank == 2 else tf.reshape(x, [-1, self.event_size])
        if self.relative:
            y = relative_affine(flat, kernel, *bias)
            log_det = log_det_surrogate(True, kernel, *bias)
            if not training:
                log_det = log_det + tf.stop_gradient(tf.linalg.slogdet(kernel)[1])
        else:
            y = tf.matmul(flat, kernel) + bias[0] if bias else tf.matmul(flat, kernel)
            log_det = (log_det_surrogate(False, kernel, *bias) if training
                       else tf.linalg.slogdet(kernel)[1])
        if x.shape.rank != 2:
            y = tf.reshape(y, shape)
        return y, tf.broadcast_to(log_det, shape[:-1])

    def _latent_to_data(self, y, training, seed):
        kernel, bias = self._params()
        shape = tf.shape(y)
        flat = tf.reshape(y, [-1, self.event_size])
        if bias:
            flat = flat - bias[0]
        # x W = y - b  <=>  W^T x^T = (y - b)^T  (LU solve, no explicit inverse).
        x = tf.linalg.matrix_transpose(
            tf.linalg.solve(kernel, tf.linalg.matrix_transpose(flat), adjoint=True))
        return tf.reshape(x, shape)
