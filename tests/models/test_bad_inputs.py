"""FlowModel's answers to bad input: a ValueError naming ``n`` for a bad sample count, and a
``fit`` that stops at the first non-finite loss (a ``tf.data.Dataset`` holding NaN, which
``fit`` cannot check beforehand) with :class:`NonFiniteLossError` naming the step."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresflow.models import FlowModel, NonFiniteLossError, build_model


def _model(lr=1e-3):
    model = build_model("coupling", 2, n_steps=1, hidden_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(lr))
    return model


@pytest.mark.parametrize("n", [-1, 2.5, True, "3", [2, 3], tf.constant(-4)])
@pytest.mark.parametrize("method", ["sample", "sample_and_log_prob"])
def test_bad_sample_counts_raise_naming_n(method, n):
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 0"):
        getattr(_model(), method)(n, seed=[1, 2])


def test_good_sample_counts():
    model = _model()
    for n in (0, 3, np.int64(3), 3.0, tf.constant(3)):
        assert model.sample(n, seed=[1, 2]).shape == (int(n), 2)
    # a symbolic count is left to TensorFlow (checked when the graph runs)
    fn = tf.function(lambda k: model.sample(k, seed=[1, 2]),
                     input_signature=[tf.TensorSpec([], tf.int32)])
    assert fn(tf.constant(4)).shape == (4, 2)


def test_fit_on_a_dataset_with_nan_stops_at_that_step():
    x = np.random.default_rng(0).normal(size=(80, 2)).astype(np.float32)
    x[50, 1] = np.nan                        # in batch 4 (0-based 3) of 16 examples
    seen = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(batch))
    model = _model()
    with pytest.raises(NonFiniteLossError, match=r"Training stopped at step 4: the training "
                                                 r"loss is nan.*NaN or inf.*learning rate") \
            as info:
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0,
                  shuffle=False, callbacks=[counter])
    assert info.value.step == 4 and np.isnan(info.value.loss)
    assert isinstance(info.value, FloatingPointError)
    assert seen == [0, 1, 2, 3]              # stopped at once: batch 5 never ran


def test_the_step_counts_over_epochs():
    x = np.random.default_rng(1).normal(size=(48, 2)).astype(np.float32)   # 3 batches
    # 6 good batches (2 epochs of 3 steps), then a batch of inf: step 7 = epoch 3, batch 1
    bad = tf.data.Dataset.from_tensor_slices(x).batch(16).repeat(2).concatenate(
        tf.data.Dataset.from_tensor_slices(np.full((16, 2), np.inf, np.float32)).batch(16))
    with pytest.raises(NonFiniteLossError, match=r"step 7 \(epoch 3, batch 1 of 3\)") as info:
        _model().fit(bad.repeat(), epochs=4, steps_per_epoch=3, verbose=0, shuffle=False)
    assert (info.value.step, info.value.epoch, info.value.batch) == (7, 3, 1)


def test_a_terminate_on_nan_of_the_caller_is_respected():
    x = np.full((32, 2), np.nan, np.float32)
    model = _model()
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0,
                        shuffle=False, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][-1])  # Keras' own graceful stop, no error


def test_flow_model_exports_its_error():
    import tfresflow as trf

    assert trf.models.NonFiniteLossError is NonFiniteLossError
    assert issubclass(FlowModel, keras.Model)
