"""BoostedFlow: mixture density, per-sample component sampling, shapes, batched form."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tfresflow.bijectors import BatchedAffineCoupling
from tfresflow.distributions import BoostedFlow, stack_coupling_flows
from tfresflow.bijectors.batched_coupling import forward_select
from tfresflow.distributions.boosted import _supports_selection

tfd = tfp.distributions

LOCS = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
SCALES = np.array([[1.0, 0.5], [0.7, 1.2], [1.5, 1.0], [0.4, 0.9]])
RHO = np.array([1.0, 2.0, 3.0, 4.0])


def gaussians():
    return [tfd.MultivariateNormalDiag(loc=l.astype(np.float32), scale_diag=s.astype(np.float32))
            for l, s in zip(LOCS, SCALES)]


def np_logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis=axis))


def np_gauss_logpdf(x, loc, scale):
    return np.sum(-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), -1)


def random_coupling_models(num, steps=2, hidden=(8, 8), seed=0, alternate=False):
    """Coupling flows with random weights; ``alternate``: per-component mask offsets."""
    rng = np.random.default_rng(seed)
    if alternate:
        models = trf.models.boosted_coupling_components(num, 2, n_steps=steps,
                                                        hidden_units=hidden)
    else:
        models = [trf.models.build_model("coupling", 2, n_steps=steps, hidden_units=hidden,
                                         seed=i) for i in range(num)]
    for m in models:  # non-trivial weights (the zero-initialised output makes an identity)
        for v in m.trainable_variables:
            v.assign(rng.normal(size=v.shape).astype(np.float32) * 0.5)
    return models


def test_log_prob_equals_manual_logsumexp_closed_form():
    mix = BoostedFlow(gaussians(), weights=RHO)
    x = np.random.default_rng(0).normal(size=(64, 2)) * 12 + 10
    comps = np.stack([np_gauss_logpdf(x, l, s) for l, s in zip(LOCS, SCALES)], -1)
    expected = np_logsumexp(np.log(RHO / RHO.sum()) + comps, axis=-1)
    np.testing.assert_allclose(mix.log_prob(tf.constant(x, tf.float32)).numpy(), expected,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mix.weights.numpy(), RHO / RHO.sum(), rtol=1e-6)


def test_flow_model_components_and_tfd_mixture_agree():
    models = random_coupling_models(3)
    x = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32) * 2
    weights = np.array([0.2, 0.5, 0.3])
    manual = np_logsumexp(np.log(weights) + np.stack(
        [m.log_prob(tf.constant(x)).numpy() for m in models], -1), axis=-1)
    for comps in (models, [m.distribution() for m in models]):
        mix = BoostedFlow(comps, weights=weights)
        np.testing.assert_allclose(mix.log_prob(tf.constant(x)).numpy(), manual, rtol=1e-5,
                                   atol=1e-5)
    reference = tfd.Mixture(cat=tfd.Categorical(probs=weights.astype(np.float32)),
                            components=[m.distribution() for m in models])
    np.testing.assert_allclose(reference.log_prob(tf.constant(x)).numpy(), manual, rtol=1e-5,
                               atol=1e-5)


def test_component_frequencies_match_weights_chi_square():
    mix = BoostedFlow(gaussians(), weights=RHO)
    n = 20000
    x = mix.sample(n, seed=42).numpy()
    labels = np.argmin(((x[:, None, :] - LOCS[None]) ** 2).sum(-1), axis=1)
    observed = np.bincount(labels, minlength=4)
    expected = n * RHO / RHO.sum()
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert chi2 < 16.27, (observed, expected, chi2)  # chi2(3) upper 0.1% point
    for c in range(4):  # each component's samples come from that component (z-score bound)
        xc = x[labels == c]
        z = (xc.mean(0) - LOCS[c]) / (SCALES[c] / np.sqrt(len(xc)))
        assert np.all(np.abs(z) < 4.5), (c, z)
        np.testing.assert_allclose(xc.std(0), SCALES[c], rtol=0.1)


class CountingNormal(tfd.Distribution):
    """Standard-normal-like 2-D distribution recording how many samples are requested."""

    def __init__(self, loc):
        self.loc = np.asarray(loc, np.float32)
        self.requested = []
        super().__init__(dtype=tf.float32, reparameterization_type=tfd.FULLY_REPARAMETERIZED,
                         validate_args=False, allow_nan_stats=True, parameters=dict(loc=loc),
                         name="CountingNormal")

    def _batch_shape(self):
        return tf.TensorShape([])

    def _event_shape(self):
        return tf.TensorShape([2])

    def _sample_n(self, n, seed=None):
        self.requested.append(int(n))
        return self.loc + tf.random.stateless_normal([n, 2], seed=seed)

    def _log_prob(self, x):
        return tf.reduce_sum(-0.5 * tf.square(x - self.loc) - 0.5 * np.log(2 * np.pi), -1)


def test_sampling_runs_only_the_chosen_component():
    comps = [CountingNormal([10.0 * c, 0.0]) for c in range(8)]
    mix = BoostedFlow(comps)
    n = 1000
    x = mix.sample(n, seed=3).numpy()
    requested = [sum(c.requested) for c in comps]
    assert sum(requested) == n  # tfd.Mixture would request 8 * n
    labels = np.rint(x[:, 0] / 10.0).astype(int)
    np.testing.assert_array_equal(np.bincount(labels, minlength=8), requested)


def test_shapes_follow_tfp_conventions():
    mix = BoostedFlow(gaussians())
    assert mix.batch_shape == [] and mix.event_shape == [2]
    assert mix.sample(seed=1).shape == (2,)
    assert mix.sample((3, 4), seed=1).shape == (3, 4, 2)
    assert mix.log_prob(tf.zeros([3, 4, 2])).shape == (3, 4)
    assert mix.component_log_probs(tf.zeros([5, 2])).shape == (5, 4)
    np.testing.assert_allclose(mix.responsibilities(tf.zeros([5, 2])).numpy().sum(-1), 1.0,
                               rtol=1e-6)


def test_seeded_sampling_is_reproducible_and_sample_and_log_prob_consistent():
    mix = BoostedFlow(random_coupling_models(3), weights=[1.0, 1.0, 2.0])
    a = mix.sample(50, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(a, mix.sample(50, seed=[1, 2]).numpy())
    assert not np.allclose(a, mix.sample(50, seed=[1, 3]).numpy())
    x, lp = mix.sample_and_log_prob(40, seed=5)
    np.testing.assert_allclose(lp.numpy(), mix.log_prob(tf.constant(x.numpy())).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_sample_inside_tf_function():
    mix = BoostedFlow(random_coupling_models(2))
    fn = tf.function(lambda n, seed: mix.sample(n, seed=seed))
    x = fn(tf.constant(17), tf.constant([0, 4]))
    assert x.shape == (17, 2)
    np.testing.assert_allclose(x.numpy(), mix.sample(17, seed=[0, 4]).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_zero_weight_component_is_never_sampled_and_gradients_reach_weights():
    rho = tf.Variable([1.0, 0.0, 1.0, 1.0])
    mix = BoostedFlow(gaussians(), weights=rho)
    x = mix.sample(3000, seed=0).numpy()
    assert not np.any(np.linalg.norm(x - LOCS[1], axis=1) < 6)
    data = tf.constant(LOCS[[0, 2, 3]], tf.float32)
    with tf.GradientTape() as tape:
        nll = -tf.reduce_mean(mix.log_prob(data))
    # d/drho_k of -mean log(sum_c rho_c g_c / sum_c rho_c) = -mean(g_k / sum rho g) + 1/sum rho
    dens = np.exp(np.stack([np_gauss_logpdf(LOCS[[0, 2, 3]], l, s)
                            for l, s in zip(LOCS, SCALES)], -1))
    expected = -np.mean(dens / (dens @ np.array([1.0, 0.0, 1.0, 1.0]))[:, None], 0) + 1 / 3
    np.testing.assert_allclose(tape.gradient(nll, rho).numpy(), expected, rtol=1e-4, atol=1e-6)
    rho.assign([1.0, 1.0, 1.0, 1.0])  # a Variable is read at call time
    np.testing.assert_allclose(mix.weights.numpy(), 0.25)


def test_gradients_reach_flow_model_components():
    models = random_coupling_models(2)
    mix = BoostedFlow(models)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(mix.log_prob(tf.random.normal([16, 2], seed=1)))
    variables = [v for m in models for v in m.trainable_variables]
    grads = tape.gradient(loss, variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


@pytest.mark.parametrize("alternate", [False, True])
def test_batched_form_equals_list_form(alternate):
    models = random_coupling_models(3, steps=3, alternate=alternate)
    x = np.random.default_rng(2).normal(size=(64, 2)).astype(np.float32) * 2
    batched = stack_coupling_flows(models)
    assert batched.batch_shape == [3] and batched.event_shape == [2]
    # Slice c of the batched distribution is component c.
    per_comp = batched.log_prob(tf.constant(x)[:, None, :]).numpy()
    for c, m in enumerate(models):
        np.testing.assert_allclose(per_comp[:, c], m.log_prob(tf.constant(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)
    weights = [0.5, 0.2, 0.3]
    list_mix, batch_mix = BoostedFlow(models, weights), BoostedFlow(batched, weights)
    assert batch_mix.is_batched and not list_mix.is_batched
    assert _supports_selection(batched)  # sampling takes the one-flow-per-sample path
    np.testing.assert_allclose(batch_mix.log_prob(tf.constant(x)).numpy(),
                               list_mix.log_prob(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-5)
    # Selective sampling: row n goes through component ids[n]'s flow only.
    z = np.random.default_rng(3).normal(size=(30, 2)).astype(np.float32)
    ids = np.random.default_rng(4).integers(0, 3, 30).astype(np.int32)
    out = forward_select(batched.bijector, tf.constant(z), tf.constant(ids), 3).numpy()
    for c, m in enumerate(models):
        rows = ids == c
        np.testing.assert_allclose(out[rows], m.bijector.forward(tf.constant(z[rows])).numpy(),
                                   rtol=1e-5, atol=1e-5)
    xs, lp = batch_mix.sample_and_log_prob(500, seed=9)
    np.testing.assert_allclose(lp.numpy(), list_mix.log_prob(tf.constant(xs.numpy())).numpy(),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reverse", [False, [False, True]])
def test_batched_affine_coupling_log_det_matches_brute_force_jacobian(reverse):
    step = BatchedAffineCoupling(2, 2, hidden_units=(8,), reverse=reverse)
    step.build([2])
    rng = np.random.default_rng(5)
    for v in step.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    x = tf.constant(rng.normal(size=(6, 2)).astype(np.float64))
    for c in range(2):
        xc = tf.cast(x, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(xc)
            z = step.inverse(tf.broadcast_to(xc[:, None, :], [6, 2, 2]))[:, c]
        jac = tape.batch_jacobian(z, xc).numpy()
        ildj = step.inverse_log_det_jacobian(tf.constant(x.numpy()[:, None, :], tf.float32),
                                             event_ndims=1).numpy()
        np.testing.assert_allclose(ildj[:, c], np.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-5)


def test_generic_batched_distribution_falls_back_to_select():
    batched = tfd.MultivariateNormalDiag(loc=LOCS.astype(np.float32),
                                         scale_diag=SCALES.astype(np.float32))
    mix, ref = BoostedFlow(batched, RHO), BoostedFlow(gaussians(), RHO)
    assert not _supports_selection(batched)
    x = tf.constant(np.random.default_rng(6).normal(size=(20, 2)) * 10, tf.float32)
    np.testing.assert_allclose(mix.log_prob(x).numpy(), ref.log_prob(x).numpy(), rtol=1e-5)
    s = mix.sample(4000, seed=1).numpy()
    labels = np.argmin(((s[:, None, :] - LOCS[None]) ** 2).sum(-1), axis=1)
    freq = np.bincount(labels, minlength=4) / 4000
    np.testing.assert_allclose(freq, RHO / RHO.sum(), atol=0.03)


def test_bad_arguments_raise_clear_errors():
    g = gaussians()
    with pytest.raises(ValueError, match="at least one"):
        BoostedFlow([])
    with pytest.raises(TypeError, match=r"components\[1\]"):
        BoostedFlow([g[0], "not a flow"])
    with pytest.raises(ValueError, match="event shape"):
        BoostedFlow([g[0], tfd.MultivariateNormalDiag(loc=tf.zeros(3))])
    with pytest.raises(ValueError, match="batch shape"):
        BoostedFlow([g[0], tfd.MultivariateNormalDiag(loc=tf.zeros([2, 2]))])
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        BoostedFlow(g, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        BoostedFlow(g, weights=[1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"batch shape \[C\]"):
        BoostedFlow(g[0])
    with pytest.raises(ValueError, match="equal sizes"):
        BatchedAffineCoupling(2, 3, reverse=[False, True])
    with pytest.raises(ValueError, match="structure"):
        stack_coupling_flows([random_coupling_models(1, steps=2)[0],
                              random_coupling_models(1, steps=3)[0]])


@pytest.mark.parametrize("kind", ["resflow", "relgrad",
                                  pytest.param("iresnet", marks=pytest.mark.slow),
                                  pytest.param("idensenet", marks=pytest.mark.slow)])
def test_other_flow_families_as_components(kind):
    if kind not in trf.models.MODEL_BUILDERS:
        pytest.skip(f"model builder {kind!r} not available")
    models = [trf.models.build_model(kind, 2, seed=i) for i in range(2)]
    mix = BoostedFlow(models, weights=[0.3, 0.7])
    x = np.random.default_rng(7).normal(size=(16, 2)).astype(np.float32)
    lp = mix.log_prob(tf.constant(x), seed=[1, 2]).numpy()
    assert lp.shape == (16,) and np.all(np.isfinite(lp))
    # Seeds reach stochastic log-det estimators: same seed, same value.
    np.testing.assert_array_equal(lp, mix.log_prob(tf.constant(x), seed=[1, 2]).numpy())
    samples = mix.sample(20, seed=3).numpy()
    assert samples.shape == (20, 2) and np.all(np.isfinite(samples))
