"""``FusedAdam``: Keras' Adam, applied with one fused TensorFlow kernel per variable.

Keras 3's :class:`keras.optimizers.Adam` writes its update as about twenty element-wise ops per
variable (casts, powers, the two moment updates, the step). A deep flow has hundreds of
variables (a 100-block Residual Flow of the 2-D toy recipe: 1,500), so those ops dominate the
traced training step (in ``benchmarks/deep_toy.py``, Adam's update was ~70 % of the first
step's time at 20 blocks) and add per-op overhead to every step. :class:`FusedAdam` computes
the same update with TensorFlow's ``ResourceApplyAdam`` kernel, one op per variable:

    m_t = beta_1 m_{t-1} + (1 - beta_1) g_t
    v_t = beta_2 v_{t-1} + (1 - beta_2) g_t^2
    theta_t = theta_{t-1} - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m_t / (sqrt(v_t) + epsilon)

which is Keras' Adam (Kingma & Ba, 2015, Algorithm 1 with epsilon added to ``sqrt(v_t)`` as
Keras does), in float64 without the float32 roundoff of Keras' constants: same variables (``momentum``/``velocity`` slots), same ``get_config``, so
checkpoints and ``.keras`` files interchange. ``amsgrad=True`` falls back to Keras' update.
Weight decay, clipping, gradient accumulation and EMA are Keras' own and apply unchanged.

References:
  Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR, arXiv:1412.6980.
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfresflow")
class FusedAdam(keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` with the update in TensorFlow's fused Adam kernel.

    Use it wherever ``keras.optimizers.Adam`` is used, with the same arguments, e.g.
    ``model.compile(optimizer=tfresflow.optimizers.FusedAdam(1e-3))``.
    """

    def apply(self, grads, trainable_variables=None):
        # The step's scalars (beta powers, casts) are made once per apply and dtype, not per
        # variable: :meth:`update_step` then adds one op per variable.
        self._step_scalars = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_scalars = None

    def _scalars(self, dtype, learning_rate):
        cache = getattr(self, "_step_scalars", None)
        if cache is not None and dtype in cache:
            return cache[dtype]
        # tf.constant, not tf.cast: a Python float cast to float64 passes through float32.
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.constant(self.beta_1, dtype)
        beta_2 = tf.constant(self.beta_2, dtype)
        scalars = dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                       lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                       epsilon=tf.constant(self.epsilon, dtype))
        if cache is not None:
            cache[dtype] = scalars
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        if gradient.dtype != dtype:
            gradient = tf.cast(gradient, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]), grad=gradient,
            **self._scalars(dtype, learning_rate))


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable."""
    if isinstance(variable, keras.Variable):
        variable = variable.value  # the tf.Variable it wraps
    return variable.handle
