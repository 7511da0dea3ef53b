"""BoostedFlowModel: a boosted mixture of flows as one Keras model that saves and loads."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf
from tests.helpers import assert_keras_round_trip, randomize_weights

tfb = tfp.bijectors
LOCS = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]], np.float32)
RHO = np.array([1.0, 2.0, 3.0])


def shifted_normals():
    """Components g_c = N(loc_c, I) (a FlowModel with a tfb.Shift flow): separable draws."""
    return [trf.models.FlowModel(tfb.Shift(loc), event_shape=[2], name=f"g{i}")
            for i, loc in enumerate(LOCS)]


def coupling_mixture(seed=0):
    comps = trf.models.build_model("boosted", 2, num_components=3, n_steps=2,
                                   hidden_units=(8,), seed=seed)
    for i, c in enumerate(comps):
        randomize_weights(c.flow_layers, seed=seed + i)
    return trf.models.BoostedFlowModel(comps, mixture_weights=[0.5, 0.3, 0.2], seed=3)


def np_logsumexp(a, axis=-1):
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis=axis))


def gauss_logpdf(x, loc):
    return np.sum(-0.5 * (x - loc) ** 2 - 0.5 * np.log(2 * np.pi), -1)


def test_log_prob_is_the_weighted_mixture_of_the_component_densities():
    model = trf.models.BoostedFlowModel(shifted_normals(), mixture_weights=RHO)
    x = np.random.default_rng(0).normal(size=(50, 2)) * 10 + 8
    expected = np_logsumexp(np.log(RHO / RHO.sum())
                            + np.stack([gauss_logpdf(x, loc) for loc in LOCS], -1))
    np.testing.assert_allclose(model.log_prob(tf.constant(x, tf.float32)).numpy(), expected,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.mixture_weights.numpy(), RHO / RHO.sum(), rtol=1e-6)
    np.testing.assert_allclose(model.exact_log_prob(tf.constant(x, tf.float32)).numpy(),
                               expected, rtol=1e-5, atol=1e-4)
    assert not model.has_stochastic_log_det and model.event_shape == [2]


def test_keras_file_round_trip_keeps_density_weights_and_seeded_samples(tmp_path):
    model = coupling_mixture()
    x = np.random.default_rng(1).normal(size=(20, 2)).astype(np.float32)
    loaded = assert_keras_round_trip(model, str(tmp_path / "mix.keras"), x)
    assert type(loaded) is trf.models.BoostedFlowModel and loaded.num_components == 3
    np.testing.assert_allclose(loaded.mixture_weights.numpy(), [0.5, 0.3, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(loaded.sample(7, seed=[4, 5]).numpy(),
                                  model.sample(7, seed=[4, 5]).numpy())
    # exact components: the brute-force log-det agrees with the analytic one
    np.testing.assert_allclose(loaded.exact_log_prob(tf.constant(x)).numpy(),
                               loaded.log_prob(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_samples_of_a_reloaded_mixture_follow_its_weights(tmp_path):
    model = trf.models.BoostedFlowModel(shifted_normals(), mixture_weights=RHO)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    n = 6000
    x = loaded.sample(n, seed=11).numpy()
    labels = np.argmin(((x[:, None, :] - LOCS[None]) ** 2).sum(-1), axis=1)
    expected = n * RHO / RHO.sum()
    chi2 = float(np.sum((np.bincount(labels, minlength=3) - expected) ** 2 / expected))
    assert chi2 < 13.8, chi2  # chi-square(2) 0.999 quantile
    a, b = loaded.sample(5).numpy(), loaded.sample(5).numpy()
    assert not np.allclose(a, b)  # unseeded calls draw fresh noise


def test_from_distribution_takes_a_trainers_mixture():
    comps = shifted_normals()
    mix = trf.distributions.BoostedFlow(comps, weights=RHO)
    model = trf.models.BoostedFlowModel.from_distribution(mix)
    assert model.components == comps
    np.testing.assert_allclose(model.mixture_weights.numpy(), RHO / RHO.sum(), rtol=1e-6)
    with pytest.raises(TypeError, match="list-form BoostedFlow"):
        trf.models.BoostedFlowModel.from_distribution(comps[0].distribution())


def test_bad_components_and_weights_are_rejected():
    with pytest.raises(TypeError, match=r"components\[0\]"):
        trf.models.BoostedFlowModel([shifted_normals()[0].distribution()])
    with pytest.raises(ValueError, match="weights"):
        trf.models.BoostedFlowModel(shifted_normals(), mixture_weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        trf.models.BoostedFlowModel(shifted_normals(), mixture_weights=[1.0, 1.0])
    other = trf.models.FlowModel(tfb.Shift(np.zeros(3, np.float32)), event_shape=[3])
    with pytest.raises(ValueError, match="event shape"):
        trf.models.BoostedFlowModel(shifted_normals()[:1] + [other])


@pytest.mark.parametrize("n", [-1, 2.5, [3]])
def test_a_bad_sample_count_names_n(n):
    model = trf.models.BoostedFlowModel(shifted_normals())
    with pytest.raises(ValueError, match="`n`|n must|n="):
        model.sample(n, seed=[1, 2])
