"""Evaluation helpers: NLL with standard errors and a fitted-Gaussian baseline."""
import numpy as np
import tensorflow as tf


def gaussian_baseline_nll(train, test):
    """Test NLL (nats/example) of a full-covariance Gaussian fitted to ``train`` by ML."""
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True).reshape(train.shape[1], train.shape[1])
    _, logdet = np.linalg.slogdet(cov)
    diff = test - mean
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    d = train.shape[1]
    return float(np.mean(0.5 * (maha + logdet + d * np.log(2 * np.pi))))


def nll_with_stderr(model, x, batch_size=1024, seed=0, exact=False):
    """Mean test NLL (nats) and its standard error over examples.

    For stochastic log-dets the evaluation-time estimator is used with a fixed seed, so the
    standard error covers both the data and the estimator's noise (one draw per example).
    ``exact=True`` uses ``model.exact_log_prob`` (brute-force Jacobian; small event sizes).
    """
    x = np.asarray(x, np.float32)
    parts = []
    for i, start in enumerate(range(0, len(x), batch_size)):
        seed_i = tf.constant([int(seed), i], tf.int32)
        batch = x[start:start + batch_size]
        log_p = model.exact_log_prob(batch) if exact else model.log_prob(batch, seed=seed_i)
        parts.append(-log_p.numpy())
    nll = np.concatenate(parts).astype(np.float64)
    if not np.all(np.isfinite(nll)):
        raise FloatingPointError(f"non-finite NLL for {int(np.sum(~np.isfinite(nll)))} examples")
    return float(nll.mean()), float(nll.std(ddof=1) / np.sqrt(len(nll))) if len(nll) > 1 else 0.0
