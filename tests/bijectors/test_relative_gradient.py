"""Relative-gradient linear flows: gradients vs the explicit augmented-matrix formula, exact
log-likelihoods vs brute-force Jacobians, training plumbing, hyperbolic secant base, digits."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tfresflow.bijectors.relative_gradient import RelativeGradientLinear
from tfresflow.distributions.hyperbolic_secant import HyperbolicSecant
from tfresflow.models import relgrad
from tfresflow.models.relgrad import PARTIAL_LOSS_NOTE
from tests.helpers import brute_force_log_det

tfb, tfd = tfp.bijectors, tfp.distributions

D = 5


# ------------------------------------------------------------------ helpers (float64 flows)
def make_flow(relative, use_bias=True, activation="slrelu", n_linear=3, dtype=tf.float64,
              seed=0):
    """``[linear, act] x (n_linear - 1) + linear`` with non-orthogonal weights, nonzero biases."""
    steps = []
    for k in range(n_linear):
        steps.append(RelativeGradientLinear(D, use_bias=use_bias, relative=relative,
                                            dtype=dtype, name=f"lin{k}"))
        if k < n_linear - 1:
            steps.append(trf.bijectors.SmoothLeakyReLU(0.3, dtype=dtype, name=f"act{k}")
                         if activation == "slrelu" else
                         trf.bijectors.TanhLinear(1.0, 0.1, dtype=dtype, name=f"act{k}"))
    rng = np.random.default_rng(seed)
    for s in steps:
        s.build([D])
        for v in s.trainable_variables:
            value = rng.normal(0.0, 0.4, size=v.shape)
            if len(v.shape) == 2:
                value += np.eye(D)  # well conditioned but far from orthogonal
            v.assign(value.astype(v.dtype))
    return tfb.Chain(steps), steps


def base64():
    return tfd.Sample(tfd.Normal(tf.constant(0.0, tf.float64), 1.0), D)


def loss_and_grads(chain, steps, x, training):
    dist = tfd.TransformedDistribution(base64(), chain)
    kwargs = {s.name: {"training": training} for s in steps}
    variables = [v for s in steps for v in s.trainable_variables]
    with tf.GradientTape() as tape:
        log_prob = dist.log_prob(tf.constant(x), bijector_kwargs=kwargs)
        loss = -tf.reduce_mean(log_prob)
    return log_prob.numpy(), [g.numpy() for g in tape.gradient(loss, variables)]


def augmented_relative(kernel, bias, grad_kernel, grad_bias):
    """``M M^T [G; g_b]`` with the explicit augmented matrix ``M = [[W, 0], [b, 1]]``."""
    d = kernel.shape[0]
    m = np.zeros((d + 1, d + 1))
    m[:d, :d] = kernel
    m[d, :d] = bias
    m[d, d] = 1.0
    out = m @ m.T @ np.vstack([grad_kernel, grad_bias[None]])
    return out[:d], out[d]


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# ------------------------------------------------------------------ the relative gradient
@pytest.mark.parametrize("activation", ["slrelu", "tanh"])
@pytest.mark.parametrize("training", [True, False])
def test_relative_gradient_is_augmented_matrix_product_of_full_gradient(activation, training):
    """Done-criterion: relative grad = M M^T (ordinary gradient of the FULL objective)."""
    x = np.random.default_rng(1).normal(size=(11, D))
    ordinary, ord_steps = make_flow(False, activation=activation)
    relative, rel_steps = make_flow(True, activation=activation)
    _, full_grads = loss_and_grads(ordinary, ord_steps, x, training=False)  # autodiff + slogdet
    _, rel_grads = loss_and_grads(relative, rel_steps, x, training=training)
    i = 0
    for step in rel_steps:
        if not isinstance(step, RelativeGradientLinear):
            continue
        w, b = step.affine.kernel.numpy(), step.affine.bias.numpy()
        exp_w, exp_b = augmented_relative(w, b, full_grads[i], full_grads[i + 1])
        assert rel_err(rel_grads[i], exp_w) < 1e-5
        assert rel_err(rel_grads[i + 1], exp_b) < 1e-5
        # The relative gradient is a genuinely different direction (W W^T != I) ...
        assert rel_err(rel_grads[i], full_grads[i]) > 1e-2
        # ... and an ascent direction of the loss (so -R descends): <G, M M^T G> = |M^T G|^2.
        inner = (np.sum(rel_grads[i] * full_grads[i])
                 + np.sum(rel_grads[i + 1] * full_grads[i + 1]))
        assert inner > 0
        i += 2


def test_bias_term_of_the_log_det_is_minus_b_not_dropped():
    """The L_J^2 term contributes [W; b] (M M^T [W^{-T}; 0]); the reference drops the b."""
    x = np.random.default_rng(2).normal(size=(6, D))
    relative, steps = make_flow(True, n_linear=1)
    lin = steps[0]
    dist = tfd.TransformedDistribution(base64(), relative)
    with tf.GradientTape() as tape:
        log_prob = dist.log_prob(tf.constant(x), bijector_kwargs={"lin0": {"training": True}})
        data_term = base64().log_prob(lin.inverse(tf.constant(x), training=True))
        log_det_term = tf.reduce_mean(log_prob - data_term)  # only the surrogate remains
    g_w, g_b = tape.gradient(log_det_term, lin.trainable_variables)
    np.testing.assert_allclose(g_w.numpy(), lin.affine.kernel.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g_b.numpy(), lin.affine.bias.numpy(), rtol=1e-12)


def test_without_bias_relative_gradient_is_w_wt_g():
    x = np.random.default_rng(3).normal(size=(8, D))
    ordinary, ord_steps = make_flow(False, use_bias=False)
    relative, rel_steps = make_flow(True, use_bias=False)
    _, full = loss_and_grads(ordinary, ord_steps, x, training=False)
    _, rel = loss_and_grads(relative, rel_steps, x, training=True)
    kernels = [s.affine.kernel.numpy() for s in rel_steps if isinstance(s, RelativeGradientLinear)]
    assert len(rel) == len(kernels) == 3
    for w, g, r in zip(kernels, full, rel):
        assert rel_err(r, w @ w.T @ g) < 1e-5


def test_batch_larger_than_dimension_uses_the_other_product_order():
    x = np.random.default_rng(4).normal(size=(40, D))  # B > D: W ((xW)^T delta)
    ordinary, ord_steps = make_flow(False)
    relative, rel_steps = make_flow(True)
    _, full = loss_and_grads(ordinary, ord_steps, x, training=False)
    _, rel = loss_and_grads(relative, rel_steps, x, training=True)
    w, b = rel_steps[0].affine.kernel.numpy(), rel_steps[0].affine.bias.numpy()
    exp_w, exp_b = augmented_relative(w, b, full[0], full[1])
    assert rel_err(rel[0], exp_w) < 1e-5 and rel_err(rel[1], exp_b) < 1e-5


def test_ordinary_training_gradient_with_explicit_inverse_equals_slogdet_autodiff():
    x = np.random.default_rng(5).normal(size=(9, D))
    chain, steps = make_flow(False)
    _, via_slogdet = loss_and_grads(chain, steps, x, training=False)
    _, via_inverse = loss_and_grads(chain, steps, x, training=True)
    for a, b in zip(via_inverse, via_slogdet):
        assert rel_err(a, b) < 1e-10


# ------------------------------------------------------------------ values
@pytest.mark.parametrize("relative", [True, False])
def test_log_prob_matches_brute_force_jacobian(relative):
    chain, steps = make_flow(relative, activation="tanh")
    x = np.random.default_rng(6).normal(size=(7, D))
    log_prob, _ = loss_and_grads(chain, steps, x, training=False)
    kwargs = {s.name: {"training": False} for s in steps}
    z = chain.inverse(tf.constant(x), **kwargs)
    brute = base64().log_prob(z).numpy() + brute_force_log_det(
        lambda v: chain.inverse(v, **kwargs), x)
    np.testing.assert_allclose(log_prob, brute, rtol=1e-10)
    # training=True leaves out exactly sum_k log|det W_k| (and nothing else).
    train_log_prob, _ = loss_and_grads(chain, steps, x, training=True)
    log_det_w = sum(np.linalg.slogdet(s.affine.kernel.numpy())[1]
                    for s in steps if isinstance(s, RelativeGradientLinear))
    np.testing.assert_allclose(log_prob - train_log_prob, log_det_w, rtol=1e-10)


def test_flow_model_public_api_float32():
    """The issue's example: a tape on model.log_prob gives relative gradients; values exact."""
    lin0 = RelativeGradientLinear(event_size=D, use_bias=True, relative=True, name="l0")
    act = trf.bijectors.SmoothLeakyReLU(alpha=0.3, name="a0")
    lin1 = RelativeGradientLinear(event_size=D, use_bias=True, relative=True, name="l1")
    model = trf.models.FlowModel(bijector=tfb.Chain([lin0, act, lin1]), event_shape=[D])
    ordinary = trf.models.FlowModel(
        bijector=tfb.Chain([RelativeGradientLinear(D, relative=False, name="o0"),
                            trf.bijectors.SmoothLeakyReLU(alpha=0.3, name="oa0"),
                            RelativeGradientLinear(D, relative=False, name="o1")]),
        event_shape=[D])
    rng = np.random.default_rng(7)
    for v, u in zip(model.trainable_variables, ordinary.trainable_variables):
        value = rng.normal(0.0, 0.4, size=v.shape) + (np.eye(D) if len(v.shape) == 2 else 0)
        v.assign(value.astype(np.float32))
        u.assign(value.astype(np.float32))
    x = rng.normal(size=(16, D)).astype(np.float32)
    with tf.GradientTape() as t:
        loss = -tf.reduce_mean(model.log_prob(tf.constant(x)))
    grads = t.gradient(loss, model.trainable_variables)
    with tf.GradientTape() as t:
        loss_train = -tf.reduce_mean(model.log_prob(tf.constant(x), training=True))
    grads_train = t.gradient(loss_train, model.trainable_variables)
    with tf.GradientTape() as t:
        loss_ord = -tf.reduce_mean(ordinary.log_prob(tf.constant(x)))
    full = t.gradient(loss_ord, ordinary.trainable_variables)
    np.testing.assert_allclose(loss.numpy(), loss_ord.numpy(), rtol=1e-6)
    for k, lin in enumerate([lin0, lin1]):
        w, b = lin.affine.kernel.numpy(), lin.affine.bias.numpy()
        exp_w, exp_b = augmented_relative(w, b, full[2 * k].numpy(), full[2 * k + 1].numpy())
        for got in (grads, grads_train):
            assert rel_err(got[2 * k].numpy(), exp_w) < 1e-4
            assert rel_err(got[2 * k + 1].numpy(), exp_b) < 1e-4
    # Exact value vs brute force (autodiff Jacobian of the whole data -> latent map).
    kwargs = model.step_kwargs(training=False)
    z = model.bijector.inverse(tf.constant(x), **kwargs)
    brute = model.base().log_prob(z).numpy() + brute_force_log_det(
        lambda v: model.bijector.inverse(v, **kwargs), x)
    np.testing.assert_allclose(model.log_prob(tf.constant(x)).numpy(), brute, rtol=1e-5)


def _op_types(concrete):
    graph_def = concrete.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        ops |= {n.op for n in fn.node_def}
    return ops


CUBIC_OPS = {"MatrixDeterminant", "LogMatrixDeterminant", "MatrixInverse", "Lu", "MatrixSolve",
             "BatchMatrixInverse", "BatchMatrixDeterminant", "MatrixTriangularSolve", "Qr",
             "Svd", "Cholesky"}


def test_training_step_computes_no_determinant_and_no_inverse():
    model = trf.models.build_model("relgrad", D, n_steps=3)
    ordinary = trf.models.build_model("relgrad", D, n_steps=3, relative=False)

    def step_for(m):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = m.compute_loss(x, y_pred=m(x, training=True))
            return tape.gradient(loss, m.trainable_variables)
        return step.get_concrete_function(tf.TensorSpec([None, D], tf.float32))

    assert not _op_types(step_for(model)) & CUBIC_OPS
    assert "MatrixInverse" in _op_types(step_for(ordinary))  # the check can see such ops


def test_fit_applies_the_relative_gradient_with_any_optimizer():
    x = np.random.default_rng(8).normal(size=(32, D)).astype(np.float32)
    model = trf.models.build_model("relgrad", D, n_steps=2, seed=3)
    rng = np.random.default_rng(9)
    for v in model.trainable_variables:  # escape the orthogonal / zero initialisation
        v.assign((v.numpy() + rng.normal(0, 0.3, size=v.shape)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(tf.constant(x), training=True))
    expected = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    before = [v.numpy() for v in model.trainable_variables]
    lr = 0.01
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.fit(x, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for b, a, g in zip(before, model.trainable_variables, expected):
        np.testing.assert_allclose((b - a.numpy()) / lr, g, rtol=2e-3, atol=2e-4)


def test_fit_says_the_training_loss_omits_log_det_and_evaluate_is_exact(capsys):
    x = np.random.default_rng(10).normal(size=(20, D)).astype(np.float32)
    model = trf.models.build_model("relgrad", D, n_steps=2)
    rng = np.random.default_rng(11)
    for v in model.trainable_variables:
        v.assign((v.numpy() + rng.normal(0, 0.3, size=v.shape)).astype(np.float32))
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: weights stay put
    history = model.fit(x, batch_size=20, epochs=1, verbose=1)
    assert PARTIAL_LOSS_NOTE in capsys.readouterr().out
    exact = -np.mean(model.log_prob(tf.constant(x)).numpy())
    np.testing.assert_allclose(model.evaluate(x, verbose=0), exact, rtol=1e-5)
    log_det_w = float(relgrad.log_det_weights(model))
    np.testing.assert_allclose(history.history["loss"][0], exact + log_det_w, rtol=1e-5)


# ------------------------------------------------------------------ structure and sampling
def test_orthogonal_init_and_sampling_direction_round_trip():
    lin = RelativeGradientLinear(event_size=6, seed=1)
    lin.build([6])
    w = lin.affine.kernel.numpy()
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-5)
    np.testing.assert_array_equal(lin.affine.bias.numpy(), np.zeros(6))
    lin.affine.kernel.assign(w + np.random.default_rng(0).normal(0, 0.5, (6, 6)).astype("f"))
    lin.affine.bias.assign(np.arange(6, dtype="f"))
    z = np.random.default_rng(1).normal(size=(2, 3, 6)).astype(np.float32)
    x = lin.forward(tf.constant(z)).numpy()
    np.testing.assert_allclose(x @ lin.affine.kernel.numpy() + np.arange(6), z, atol=1e-4)
    np.testing.assert_allclose(lin.inverse(tf.constant(x)).numpy(), z, atol=1e-4)
    np.testing.assert_allclose(lin.log_det_value().numpy(),
                               np.linalg.slogdet(lin.affine.kernel.numpy())[1], rtol=1e-5)


def test_model_sampling_log_prob_and_save_load(tmp_path):
    model = trf.models.build_model("relgrad", D, n_steps=3, activation="tanh_linear",
                                   base_distribution="hypsecant", relative=False)
    rng = np.random.default_rng(12)
    for v in model.trainable_variables:
        v.assign((v.numpy() + rng.normal(0, 0.2, size=v.shape)).astype(np.float32))
    x, log_prob = model.sample_and_log_prob(50, seed=4)
    np.testing.assert_allclose(model.log_prob(tf.constant(x.numpy())).numpy(), log_prob.numpy(),
                               rtol=1e-4, atol=1e-3)
    path = str(tmp_path / "relgrad.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is trf.models.FlowModel
    assert [b.relative for b in relgrad.linear_steps(loaded)] == [False] * 3
    assert loaded.base_distribution_name == "hypsecant"
    np.testing.assert_allclose(loaded.log_prob(tf.constant(x.numpy())).numpy(),
                               model.log_prob(tf.constant(x.numpy())).numpy(), rtol=1e-6)


def test_builder_and_constructor_errors():
    with pytest.raises(ValueError, match="activation"):
        trf.models.build_model("relgrad", D, activation="relu")
    with pytest.raises(ValueError, match="n_steps"):
        trf.models.build_model("relgrad", D, n_steps=0)
    with pytest.raises(TypeError, match="hidden_units"):
        trf.models.build_model("relgrad", D, hidden_units=(4,))
    with pytest.raises(ValueError, match="event_size"):
        RelativeGradientLinear(event_size=0)
    with pytest.raises(TypeError, match="relative"):
        RelativeGradientLinear(event_size=3, relative="yes")
    with pytest.raises(ValueError, match="event shape"):
        RelativeGradientLinear(event_size=3).build([4])
    with pytest.raises(ValueError, match="hypsec"):
        trf.models.build_model("relgrad", D, base_distribution="hypsec")


# ------------------------------------------------------------------ hyperbolic secant base
def test_hyperbolic_secant_density_closed_forms():
    dist = HyperbolicSecant(tf.constant(0.0, tf.float64), 1.0)
    grid = np.linspace(-60.0, 60.0, 600001)
    pdf = np.exp(dist.log_prob(grid).numpy())
    np.testing.assert_allclose(pdf, 0.5 / np.cosh(np.pi * grid / 2), rtol=1e-12)
    assert abs(np.trapezoid(pdf, grid) - 1.0) < 1e-8
    assert abs(np.trapezoid(grid ** 2 * pdf, grid) - 1.0) < 1e-6
    entropy = -np.trapezoid(pdf * dist.log_prob(grid).numpy(), grid)
    np.testing.assert_allclose(dist.entropy().numpy(), entropy, rtol=1e-6)
    x = np.array([-3.0, -0.5, 0.0, 1.0, 4.0])
    cdf_numeric = [np.trapezoid(pdf[grid <= v], grid[grid <= v]) for v in x]
    np.testing.assert_allclose(dist.cdf(x).numpy(), cdf_numeric, atol=1e-6)
    np.testing.assert_allclose(dist.quantile(dist.cdf(x)).numpy(), x, atol=1e-10)
    shifted = HyperbolicSecant(tf.constant(1.0, tf.float64), 2.0)
    np.testing.assert_allclose(shifted.log_prob(x).numpy(),
                               dist.log_prob((x - 1.0) / 2.0).numpy() - np.log(2.0))


def test_hyperbolic_secant_sampling_statistics_and_seeds():
    dist = HyperbolicSecant(0.5, 2.0)
    n = 200_000
    s = dist.sample(n, seed=[1, 2]).numpy().astype(np.float64)
    np.testing.assert_array_equal(s, dist.sample(n, seed=[1, 2]).numpy())
    # Mean 0.5 and variance 4; the 4th central moment of the standard HS is 5.
    assert abs(s.mean() - 0.5) / (2.0 / np.sqrt(n)) < 4.5
    var_se = 4.0 * np.sqrt((5.0 - 1.0) / n)
    assert abs(s.var() - 4.0) / var_se < 4.5
    # Kolmogorov-Smirnov distance against the closed-form CDF.
    s.sort()
    cdf = dist.cdf(s.astype(np.float32)).numpy()
    ks = np.max(np.abs(cdf - np.arange(1, n + 1) / n))
    assert ks < 1.63 / np.sqrt(n) + 1e-4  # 1% critical value


def test_hypsecant_base_distribution_is_registered():
    base = trf.distributions.make_base_distribution("hypsecant", [3])
    x = np.array([[0.1, -2.0, 3.0]], np.float32)
    np.testing.assert_allclose(base.log_prob(x).numpy(),
                               np.sum(np.log(0.5 / np.cosh(np.pi * x / 2))), rtol=1e-5)
    assert base.event_shape == [3]


# ------------------------------------------------------------------ digits
def test_digits_loader_is_seeded_split_and_standardised():
    a = trf.data.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=3)
    b = trf.data.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=3)
    c = trf.data.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=4)
    assert a.train.shape[1] == 64 and a.train.dtype == np.float32
    assert len(a.train) + len(a.validation) + len(a.test) == 1797
    assert len(a.test) == 359 and len(a.validation) == 180
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)
    np.testing.assert_allclose(a.train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.train.std(0), 1.0, atol=1e-4)
    unit = a.to_unit_cube(np.concatenate([a.train, a.test]))
    assert unit.min() >= -1e-6 and unit.max() < 1.0 + 1e-6
    np.testing.assert_allclose(a.log_det_standardise, -np.sum(np.log(a.std)))
    # Pixels are dequantised: (pixel + u) / 17 has a non-integer fractional part.
    assert len(np.unique(np.round(unit[:, 30] * 17, 6))) > 100
    with pytest.raises(ValueError, match="test_fraction"):
        trf.data.load_digits(test_fraction=0.0)
    with pytest.raises(ValueError, match="validation_fraction"):
        trf.data.load_digits(test_fraction=0.5, validation_fraction=0.6)


def test_digits_training_stream_redraws_dequantisation_noise():
    data = trf.data.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=3)
    assert data.train_pixels.shape == data.train.shape
    # The fixed training draw is the integer pixels plus noise in [0, 1).
    frac = data.to_unit_cube(data.train) * 17 - data.train_pixels
    assert frac.min() >= -1e-4 and frac.max() < 1 + 1e-4
    n = len(data.train_pixels)
    batches = [b.numpy() for b in data.dequantized_train_dataset(n, seed=5).take(2)]
    again = next(iter(data.dequantized_train_dataset(n, seed=5))).numpy()
    np.testing.assert_array_equal(batches[0], again)          # seeded stream
    for b in batches:
        assert b.shape == (n, 64) and b.dtype == np.float32
        # One pass holds every training image once: each row is pixels + noise in [0, 1).
        offset = data.to_unit_cube(b) * 17 - 0.5
        match = np.concatenate([
            np.argmin(np.abs(chunk[:, None] - data.train_pixels[None]).max(-1), axis=1)
            for chunk in np.array_split(offset, 20)])
        assert np.array_equal(np.sort(match), np.arange(n))
        assert np.abs(offset - data.train_pixels[match]).max() <= 0.5 + 1e-3
    # Fresh noise: the two passes' noise differs and is uniform (mean 1/2, var 1/12).
    u = [np.sort(((data.to_unit_cube(b) * 17) % 1).ravel()) for b in batches]
    assert not np.allclose(u[0], u[1])
    m = u[0].size
    assert abs(u[0].mean() - 0.5) / np.sqrt(1 / 12 / m) < 4.5
    with pytest.raises(ValueError, match="batch_size"):
        data.dequantized_train_dataset(0)
    with pytest.raises(ValueError, match="batch_size"):
        data.dequantized_train_dataset(n + 1)


def test_models_saved_as_relative_gradient_flow_model_still_load(tmp_path):
    """Load alias: a .keras file of the former FlowModel subclass loads as a FlowModel."""
    import json
    import zipfile
    model = trf.models.build_model("relgrad", D, n_steps=2)
    path, old = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    model.save(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["class_name"] == "FlowModel"
                config["class_name"] = "RelativeGradientFlowModel"
                config["registered_name"] = "tfresflow>RelativeGradientFlowModel"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old)
    x = np.random.default_rng(3).normal(size=(7, D)).astype(np.float32)
    np.testing.assert_allclose(loaded.log_prob(tf.constant(x)), model.log_prob(tf.constant(x)),
                               rtol=1e-6)
