"""Evaluation: NLL with standard errors, a fitted-Gaussian baseline and the exact-log-det policy.

Image models are scored in bits per dimension of the 8-bit data (:func:`image_bits_per_dim`,
:func:`bits_per_dim_with_stderr`; what is counted: :mod:`tfresflow.data.dequantization`).

Policy: a model with a stochastic log-det whose event size is at most
:data:`EXACT_EVAL_MAX_DIM` is evaluated with its exact log-det (brute-force Jacobian); the
unbiased estimate is reported beside it. :func:`nll_method` words how an NLL was computed.
"""
import numpy as np
import tensorflow as tf

import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow.bijectors.logit import LogitTransform
from tfresflow.data import dequantization
from tfresflow.data.images import check_labels

tfb = tfp.bijectors

#: Stochastic-log-det models are evaluated with the exact log-det up to this event size.
EXACT_EVAL_MAX_DIM = 2

#: A test NLL worse than the fitted Gaussian's by more than this, per data dimension, is
#: flagged by :func:`baseline_warnings`.
BASELINE_MARGIN_NATS_PER_DIM = 1.0


def use_exact_evaluation(model):
    """True for a stochastic-log-det model of event size <= :data:`EXACT_EVAL_MAX_DIM`."""
    return bool(model.has_stochastic_log_det) and \
        int(np.prod(model.event_shape)) <= EXACT_EVAL_MAX_DIM


def nll_method(model, exact, detail=True):
    """How an NLL of ``model`` evaluated with ``exact`` was computed, in words.

    ``"exact (brute-force Jacobian)"`` or ``"unbiased estimate (evaluation mode)"``
    (``detail=False``: ``"exact"`` or ``"unbiased estimate"``). A model without a stochastic
    log-det is always exact.
    """
    if exact or not model.has_stochastic_log_det:
        return "exact (brute-force Jacobian)" if detail else "exact"
    return "unbiased estimate (evaluation mode)" if detail else "unbiased estimate"


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


def baseline_warnings(test_nll, baseline_nll, event_size,
                      margin_per_dim=BASELINE_MARGIN_NATS_PER_DIM):
    """Warnings (a list of strings) for a test NLL far worse than the fitted Gaussian's.

    A full-covariance Gaussian fitted by maximum likelihood (:func:`gaussian_baseline_nll`) is
    the simplest density model of the data. A model whose test NLL exceeds it by more than
    ``margin_per_dim * event_size`` nats per example gives the test data, in geometric mean,
    ``exp(margin_per_dim)`` times less density per dimension than that Gaussian: its training
    diverged or stopped far too early. Returns ``[]`` otherwise.
    """
    margin = float(margin_per_dim) * int(event_size)
    gap = float(test_nll) - float(baseline_nll)
    if gap <= margin:
        return []
    return [f"the test NLL {test_nll:.4g} nats is {gap:.4g} nats worse than a fitted Gaussian's "
            f"({baseline_nll:.4f}; the alarm threshold is {margin:g} nats): training "
            "diverged or stopped too early; try a smaller learning rate or more steps."]


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
    return mean_and_stderr(nll)


def mean_and_stderr(values):
    """``(mean, std(ddof=1) / sqrt(n))`` of per-example ``values`` (stderr 0 for one value)."""
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) == 0:
        raise ValueError("`values` is empty: at least one example is needed.")
    stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(stderr)


def train_test_nll(model, x_train, x_test, seed=0, exact=False, n_train=None):
    """NLLs of a fitted ``model`` with standard errors, and the fitted-Gaussian baseline.

    The train NLL is taken over the first ``n_train`` training examples (default: as many as
    there are test examples) with ``seed``, the test NLL with ``seed + 1``; ``exact`` as for
    :func:`nll_with_stderr`. Returns a dict with keys ``train_nll``, ``train_nll_stderr``,
    ``test_nll``, ``test_nll_stderr`` and ``gaussian_baseline_test_nll``.
    """
    n_train = len(x_test) if n_train is None else int(n_train)
    train_nll, train_se = nll_with_stderr(model, x_train[:n_train], seed=seed, exact=exact)
    test_nll, test_se = nll_with_stderr(model, x_test, seed=seed + 1, exact=exact)
    return {"train_nll": train_nll, "train_nll_stderr": train_se,
            "test_nll": test_nll, "test_nll_stderr": test_se,
            "gaussian_baseline_test_nll": gaussian_baseline_nll(x_train, x_test)}


def bits_per_dim_with_stderr(log_prob, event_size, n_bits=8):
    """Mean bits/dim of the discrete data and its standard error over examples.

    ``log_prob``: per-example flow log-densities (nats) of the dequantised images in
    ``[0, 1)^D`` (logit transform included); each becomes
    :func:`tfresflow.data.dequantization.bits_per_dim` ``= (-log_prob + D log 2^n_bits) /
    (D log 2)`` and the pair is :func:`mean_and_stderr` of those values.
    """
    return mean_and_stderr(dequantization.bits_per_dim(log_prob, event_size, n_bits))


def dequantized_test_images(images, seed=0, n_bits=8):
    """uint8 test ``images`` dequantised once with the fixed seed
    ``fold_in_tag(seed, "eval/dequantize")`` (one noise draw per image), as float32 numpy: the
    inputs that :func:`image_bits_per_dim` and :func:`classification_with_stderr` score."""
    return dequantization.dequantize(np.asarray(images),
                                     trf_random.fold_in_tag(seed, "eval/dequantize"),
                                     n_bits).numpy()


def image_bits_per_dim(model, images, n_bits=8, seed=0, batch_size=256, exact=False):
    """Test bits/dim of an image flow on uint8 ``images``, with its standard error.

    The images are dequantised once with the fixed seed ``fold_in_tag(seed, "eval/dequantize")``
    (one noise draw per example: the standard error covers the data, the dequantisation noise
    and the log-det estimator's noise), their NLLs come from :func:`nll_with_stderr`, and since
    bits/dim is affine in the NLL the mean and standard error convert exactly:
    ``bpd = (nll + D log K) / (D log 2)``, ``se_bpd = se_nll / (D log 2)`` with ``K = 2^n_bits``
    (see :mod:`tfresflow.data.dequantization` for what is counted).

    Returns:
      ``(bits_per_dim, stderr)``.
    """
    images = np.asarray(images)
    d = int(np.prod(images.shape[1:]))
    x = dequantized_test_images(images, seed, n_bits)
    nll, nll_se = nll_with_stderr(model, x, batch_size=batch_size, seed=seed, exact=exact)
    return (float(dequantization.bits_per_dim(-nll, d, n_bits)),
            float(nll_se / (d * np.log(2.0))))


def samples_with_inverse_residual(model, n, seed=0):
    """``n`` samples of a flow drawn by its sampling map, and how well that map was inverted.

    Sampling a residual flow solves ``x + g(x) = z`` block by block by the fixed-point
    iteration (Behrmann et al., 2019, Algorithm 1); the result is checked by mapping the
    samples back: with ``z ~ p_Z`` and ``x = f(z)`` (TFP ``forward``, latent -> data), the
    residual is ``r = f^{-1}(x) - z`` with ``f^{-1}`` the cheap data -> latent direction, applied
    to a fresh tensor (no TFP cache). For an exact inverse ``r = 0``; it measures the solver's
    tolerance and the float32 rounding, amplified by at most ``1 / (1 - Lip(g))`` per block.

    Args:
      model: a ``FlowModel`` (anything with ``base()``, ``bijector``, ``step_kwargs``).
      n: number of samples.
      seed: integer seed of the latent draws.

    A flow whose data-side step is a :class:`~tfresflow.bijectors.LogitTransform` (the image
    flows) is checked up to that step's input ``u`` (``x = sigmoid-map(u)``): the logit's own
    inverse is closed-form, and its slope (up to ``1 / alpha``) would only amplify the float32
    rounding of ``x`` (and a sigmoid that rounds to exactly 0 or 1 has an infinite logit). A
    sample whose way back is still not finite is counted in ``inverse_nonfinite``, and the
    residual statistics are over the other samples.

    Returns:
      ``(samples, residual)``: float32 numpy ``[n, *event_shape]`` and a dict with
      ``inverse_residual_max_abs`` (max over all elements of ``|r|``),
      ``inverse_residual_rms``, ``inverse_nonfinite`` (samples whose ``f^{-1}(x)`` is not
      finite) and ``latent_max_abs`` (``max |z|``, the scale of ``r``).
    """
    seed_base, seed_flow = tf.unstack(trf_random.split(trf_random.as_seed([int(seed), 11]), 2))
    z = model.base().sample(int(n), seed=seed_base)
    kwargs = model.step_kwargs(seed_flow, training=False)
    flow, first = model.bijector, None
    parts = list(getattr(flow, "bijectors", ()))
    if parts and isinstance(parts[0], LogitTransform):   # data -> latent order: logit first
        first, flow = parts[0], tfb.Chain(parts[1:], name=flow.name)
    u = flow.forward(z, **kwargs)
    x = (u if first is None else first.forward(u)).numpy()
    z_back = flow.inverse(tf.constant(u.numpy()), **kwargs).numpy()
    r = (z_back.astype(np.float64) - z.numpy().astype(np.float64)).reshape(len(x), -1)
    finite = np.all(np.isfinite(r), axis=1)
    r = r[finite]
    return x, {"inverse_residual_max_abs": float(np.max(np.abs(r))) if r.size else float("nan"),
               "inverse_residual_rms": float(np.sqrt(np.mean(r ** 2))) if r.size else
               float("nan"),
               "inverse_nonfinite": int(np.sum(~finite)),
               "latent_max_abs": float(np.max(np.abs(z.numpy())))}


def classification_with_stderr(model, images, labels, n_bits=8, seed=0, batch_size=256):
    """Accuracy and cross-entropy of a classifier of images, with standard errors.

    The uint8 ``images`` are dequantised exactly as :func:`image_bits_per_dim` does for the
    same ``seed`` (the same inputs the bits/dim is computed on) and classified by
    ``model.classify`` (class probabilities ``p(y|x)``, e.g. a
    :class:`tfresflow.models.HybridFlowModel` or its SavedModel). Per image, correct =
    ``[argmax_k p(k|x) = y]`` and cross-entropy ``-log p(y|x)`` (nats); each metric is the
    :func:`mean_and_stderr` of those values (for the accuracy ``a``, ``sqrt(a (1 - a) / (n - 1))``).

    Returns:
      dict with ``test_accuracy``, ``test_accuracy_stderr``, ``test_cross_entropy``,
      ``test_cross_entropy_stderr``.
    """
    images = np.asarray(images)
    num_classes = getattr(model, "num_classes", None)
    labels = check_labels(np.asarray(labels).reshape(-1), len(images), "labels", num_classes)
    x = dequantized_test_images(images, seed, n_bits)
    probs = np.concatenate([np.asarray(model.classify(tf.constant(x[i:i + batch_size])))
                            for i in range(0, len(x), int(batch_size))]).astype(np.float64)
    if probs.ndim != 2:
        raise ValueError(f"`model.classify` must give class probabilities [n, classes], got "
                         f"shape {list(probs.shape)}.")
    if num_classes is None:   # a classifier that does not say its number of classes
        check_labels(labels, len(images), "labels", probs.shape[1])
    picked = probs[np.arange(len(labels)), labels]
    acc, acc_se = mean_and_stderr(np.argmax(probs, axis=1) == labels)
    ce, ce_se = mean_and_stderr(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)))
    return {"test_accuracy": acc, "test_accuracy_stderr": acc_se,
            "test_cross_entropy": ce, "test_cross_entropy_stderr": ce_se}
