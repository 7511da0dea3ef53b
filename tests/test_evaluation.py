"""The evaluation policy of ``tfresflow.evaluation``: when to evaluate exactly, and its wording."""
import types

import numpy as np

from tfresflow import evaluation


def _model(stochastic, event_shape):
    return types.SimpleNamespace(has_stochastic_log_det=stochastic, event_shape=event_shape)


def test_exact_evaluation_only_for_small_stochastic_models():
    assert evaluation.EXACT_EVAL_MAX_DIM == 2
    assert evaluation.use_exact_evaluation(_model(True, [2]))
    assert not evaluation.use_exact_evaluation(_model(True, [3]))
    assert not evaluation.use_exact_evaluation(_model(False, [2]))


def test_nll_method_wording():
    stochastic, analytic = _model(True, [5]), _model(False, [5])
    assert evaluation.nll_method(stochastic, exact=True) == "exact (brute-force Jacobian)"
    assert evaluation.nll_method(analytic, exact=False) == "exact (brute-force Jacobian)"
    assert evaluation.nll_method(stochastic, exact=False) == \
        "unbiased estimate (evaluation mode)"
    assert evaluation.nll_method(stochastic, False, detail=False) == "unbiased estimate"
    assert evaluation.nll_method(analytic, False, detail=False) == "exact"


def test_train_test_nll_keys_and_train_subset_size():
    class Gaussian:
        def log_prob(self, x, seed):
            import tensorflow as tf
            return tf.constant(-0.5 * np.sum(x ** 2, 1) - np.log(2 * np.pi), tf.float32)

    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    out = evaluation.train_test_nll(Gaussian(), x[:30], x[30:])
    assert set(out) == {"train_nll", "train_nll_stderr", "test_nll", "test_nll_stderr",
                        "gaussian_baseline_test_nll"}
    assert np.isclose(out["test_nll"], np.mean(0.5 * np.sum(x[30:] ** 2, 1) + np.log(2 * np.pi)))
    assert np.isclose(out["train_nll"], np.mean(0.5 * np.sum(x[:10] ** 2, 1)
                                                + np.log(2 * np.pi)))
