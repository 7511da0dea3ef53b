"""Step-indexed training batches (``tfresflow.data.batches``): full reshuffles, resumable."""
import numpy as np
import pytest

from tfresflow.data.batches import step_batches


def _rows(dataset):
    return np.concatenate([b.numpy() for b in dataset])[:, 0]


def test_every_epoch_is_a_fresh_permutation_of_the_examples():
    n = 12
    x = np.arange(n, dtype=np.float32)[:, None]
    seen = _rows(step_batches(x, 4, seed=5, stop_step=3 * 6)).reshape(6, n)  # 6 epochs
    for epoch in seen:
        assert sorted(epoch) == list(range(n))
    assert len({tuple(e) for e in seen}) == 6  # 6 distinct orders (12! of them)


def test_a_pipeline_started_at_step_s_yields_the_batches_from_s_on():
    x = np.arange(50, dtype=np.float32)[:, None]
    full = [b.numpy() for b in step_batches(x, 7, seed=1, stop_step=40)]
    tail = [b.numpy() for b in step_batches(x, 7, seed=1, start_step=23, stop_step=40)]
    assert len(tail) == 17
    for a, b in zip(full[23:], tail):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_batches_other_seed_other_order():
    x = np.arange(30, dtype=np.float32)[:, None]
    a = _rows(step_batches(x, 10, seed=0, stop_step=3))
    np.testing.assert_array_equal(a, _rows(step_batches(x, 10, seed=0, stop_step=3)))
    assert not np.array_equal(a, _rows(step_batches(x, 10, seed=1, stop_step=3)))


def test_fewer_examples_than_the_batch_size_gives_whole_epochs():
    x = np.arange(5, dtype=np.float32)[:, None]
    batches = [b.numpy()[:, 0] for b in step_batches(x, 64, seed=0, stop_step=3)]
    assert all(sorted(b) == list(range(5)) for b in batches)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        step_batches(np.zeros((4, 1)), 0, seed=0)
    with pytest.raises(ValueError, match="start_step"):
        step_batches(np.zeros((4, 1)), 2, seed=0, start_step=-1)


def test_transform_sees_each_batch_and_its_step():
    import tensorflow as tf
    x = np.arange(6, dtype=np.float32)[:, None]

    def transform(batch, step):
        return tf.concat([batch, tf.fill(tf.shape(batch), tf.cast(step, tf.float32))], 1)

    plain = [b.numpy() for b in step_batches(x, 4, seed=2, start_step=1, stop_step=4)]
    moved = [b.numpy() for b in step_batches(x, 4, seed=2, start_step=1, stop_step=4,
                                             transform=transform)]
    for step, (a, b) in enumerate(zip(plain, moved), start=1):
        np.testing.assert_array_equal(b[:, :1], a)
        np.testing.assert_array_equal(b[:, 1], step)
