"""i-DenseNet: Lip(g) <= coeff (exact Jacobians), eta normalisation, and the ResidualBlock
checks (unbiased log-det, gradients, reconstruction) run on DenseBlock."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tests.bijectors import residual_block_checks as checks


def make_densenet(dim, coeff=0.9, conv=False, activation="clipswish", seed=0, growth=8,
                  spatial=None, projection=None):
    net = trf.nets.DenseNet(dim, depth=3, growth=growth, activation=activation, coeff=coeff,
                            conv=conv, projection=projection)
    shape = (None, *spatial, dim) if conv else (None, dim)
    net.build(shape)
    # random kernels far from the Lipschitz constraint, then renormalise; random eta
    kernels = [v for v in net.trainable_weights if "kernel" in v.path]
    rng = np.random.default_rng(seed)
    for v in kernels:
        v.assign(rng.normal(0, 1.0, v.shape).astype(np.float32))
    net.eta_raw.assign(rng.normal(0, 2.0, net.eta_raw.shape).astype(np.float32))
    trf.lipschitz.update_lipschitz_layers(net)
    return net


def jacobian_spectral_norms(net, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = net(x)
    jac = tape.jacobian(y, x).numpy()   # [B, *out, B, *in]; examples are independent
    b = x.shape[0]
    n = int(np.prod(x.shape[1:]))
    return np.array([np.linalg.svd(jac[i].reshape(n, b, n)[:, i, :], compute_uv=False)[0]
                     for i in range(b)])


@pytest.mark.parametrize("activation", ["clipswish", "lipswish", "elu"])
def test_dense_variant_is_coeff_lipschitz(activation):
    coeff = 0.9
    net = make_densenet(3, coeff=coeff, activation=activation)
    x = np.random.default_rng(1).normal(0, 3, size=(64, 3)).astype(np.float32)
    norms = jacobian_spectral_norms(net, x)
    assert norms.max() <= coeff * (1 + 1e-3), norms.max()
    assert norms.max() > 0.05  # not trivially zero


@pytest.mark.parametrize("projection", [None, 3])
def test_conv_variant_is_coeff_lipschitz(projection):
    coeff = 0.9
    net = make_densenet(2, coeff=coeff, conv=True, growth=4, spatial=(5, 5),
                        projection=projection)
    x = np.random.default_rng(2).normal(0, 2, size=(6, 5, 5, 2)).astype(np.float32)
    norms = jacobian_spectral_norms(net, x)
    assert norms.max() <= coeff * (1 + 1e-3), norms.max()


def test_projection_maps_the_input_to_its_width_first():
    """The i-DenseNet FC blocks (App. B): a linear map D -> 64, then the dense layers."""
    net = make_densenet(10, projection=4, growth=6)
    assert net.input_map.kernel.shape == (10, 4)
    assert net.linears[0].kernel.shape == (4, 3)           # CLipSwish: growth / 2 outputs
    assert net.output_map.kernel.shape == (4 + 3 * 6, 10)
    x = np.random.default_rng(3).normal(0, 3, size=(32, 10)).astype(np.float32)
    norms = jacobian_spectral_norms(net, x)
    assert 0.05 < norms.max() <= 0.9 * (1 + 1e-3), norms.max()
    twin = trf.nets.DenseNet.from_config(net.get_config())
    assert twin.projection == 4
    with pytest.raises(ValueError, match="projection"):
        trf.nets.DenseNet(10, projection=0)


def test_normalized_eta_is_on_the_unit_circle_and_initialised_at_one_over_sqrt2():
    net = trf.nets.DenseNet(2, depth=4, growth=8)
    net.build((None, 2))
    np.testing.assert_allclose(net.normalized_eta().numpy(), np.full((4, 2), 2 ** -0.5),
                               rtol=1e-6)
    fixed = trf.nets.DenseNet(2, depth=2, growth=8, learnable_concat=False)
    fixed.build((None, 2))
    assert not any(v.name == "eta_raw" for v in fixed.trainable_weights)
    assert any(v.name == "eta_raw" for v in net.trainable_weights)
    net.eta_raw.assign(np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(net.normalized_eta().numpy(), axis=1), 1.0,
                               rtol=1e-6)


def test_clipswish_halves_the_linear_width():
    net = trf.nets.DenseNet(2, depth=2, growth=16, activation="clipswish")
    net.build((None, 2))
    assert [layer.units for layer in net.linears] == [8, 8]
    assert net.output_map.kernel.shape[0] == 2 + 2 * 16
    with pytest.raises(ValueError, match="divisible"):
        trf.nets.DenseNet(2, growth=7, activation="clipswish")


def make_dense_block(dim, logdet=None, seed=0, lipschitz=0.7, **kwargs):
    """Factory for the shared residual-block checks: a DenseBlock with Lip(g) <= lipschitz."""
    net = make_densenet(dim, coeff=lipschitz, seed=seed)
    block = trf.bijectors.DenseBlock(net, logdet=logdet, **kwargs)
    block.build([dim])
    return block


def test_dense_block_log_det_unbiased():
    checks.check_log_det_unbiased(make_dense_block, 3, trf.logdet.Unbiased(), n_draws=400)


def test_dense_block_neumann_gradient_unbiased():
    checks.check_log_det_gradient_unbiased(make_dense_block, 2, trf.logdet.Unbiased(),
                                           n_draws=200)


def test_dense_block_backward_in_forward_matches_neumann():
    weights = np.array([0.5, 2.0, 0.0, 1.0, 3.0], np.float32)
    checks.check_same_gradients(
        make_dense_block, 3, trf.logdet.Unbiased(grad_in_forward=True),
        trf.logdet.Unbiased(grad_in_forward=False), weights=weights, atol=5e-3)
    # Tolerance: with CLipSwish the two float32 graphs differ by up to ~2e-3 (relative to the
    # largest gradient entry) for a draw with many roulette terms; both are unbiased (the
    # gradient-unbiasedness check above passes for either), elementwise activations agree
    # to 1e-5.


def test_dense_block_reconstruction():
    checks.check_reconstruction(make_dense_block, 4)


def test_dense_block_trained_with_fit_stays_invertible_and_round_trips(tmp_path):
    model = trf.models.build_model("idensenet", 2, n_steps=2, growth=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = trf.data.sample("moons", 512, seed=0)
    model.fit(x, epochs=2, batch_size=128, verbose=0)
    for step in model.bijector.bijectors:
        if isinstance(step, trf.bijectors.DenseBlock):
            norms = jacobian_spectral_norms(step.net, x[:16])
            assert norms.max() <= step.net.coeff * (1 + 1e-3)
    z = model.bijector.inverse(tf.constant(x[:64])).numpy()
    np.testing.assert_allclose(model.bijector.forward(tf.constant(z)).numpy(), x[:64],
                               atol=1e-4)
    path = str(tmp_path / "d.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.log_prob(x[:8], seed=[1, 2]).numpy(),
                               model.log_prob(x[:8], seed=[1, 2]).numpy(), rtol=1e-5)


def test_dense_block_rejects_other_nets():
    with pytest.raises(TypeError, match="DenseNet"):
        trf.bijectors.DenseBlock(keras.layers.Dense(2))
