"""One conformance test of the bijector contract, parametrised over the bijector registry.

Every class registered in ``tfresflow.bijectors.BIJECTORS`` must have a factory in
:data:`FACTORIES` below (a new bijector without one fails ``test_every_registered_bijector_has
_a_conformance_case``), and then passes, against mathematics rather than against itself:

* round trip ``forward(inverse(x)) == x`` on fresh tensors (TFP caches by tensor identity);
* ``inverse_log_det_jacobian`` == ``log|det|`` of the brute-force ``batch_jacobian``;
* ``forward_log_det_jacobian(z) == -inverse_log_det_jacobian(x)`` at ``z = inverse(x)``;
* ``get_config`` -> ``from_config`` -> ``get_config`` is the identity;
* ``.keras`` save / load inside a ``FlowModel`` gives the same log-densities;
* inputs of batch shapes ``[]``, ``[5]`` and ``[3, 4]`` (``[..., *event_shape]``);
* ``validate_args=True`` (TFP's meaning) stops a NaN input in both directions, naming the step.

Stochastic log-dets are configured exact here (``logdet.Exact()``): the estimators themselves
are tested against brute force in ``tests/logdet``.
"""
import numpy as np
import pytest
import keras
import tensorflow as tf

import tfresflow as trf
from tests.helpers import brute_force_ildj, randomize_weights

BATCH_SHAPES = [[], [5], [3, 4]]


def _coupling():
    b = trf.bijectors.AffineCoupling(3, hidden_units=(8,), mask="alternating")
    b.build([3])
    randomize_weights(b.keras_layers(), scale=0.4, seed=1)
    return b, [3]


def _conv_coupling_channel():
    b = trf.bijectors.ConvAffineCoupling([4, 4, 3], hidden_channels=4, reverse=True)
    b.build([4, 4, 3])
    randomize_weights(b.keras_layers(), scale=0.3, seed=11)
    return b, [4, 4, 3]


def _conv_coupling_checkerboard():
    b = trf.bijectors.ConvAffineCoupling([4, 4, 1], hidden_channels=4)
    b.build([4, 4, 1])
    randomize_weights(b.keras_layers(), scale=0.3, seed=12)
    return b, [4, 4, 1]


def _actnorm():
    b = trf.bijectors.ActNorm([4, 4, 2])
    b.build([4, 4, 2])
    b.initialize(np.random.default_rng(2).normal(1.0, 2.0, size=(16, 4, 4, 2)))
    return b, [4, 4, 2]


def _residual_mlp():
    net = trf.nets.LipschitzMLP(3, hidden_units=(16,), coeff=0.9)
    b = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Exact())
    b.build([3])
    return b, [3]


def _residual_cnn():
    net = trf.nets.LipschitzCNN(2, hidden_channels=4, coeff=0.9)
    b = trf.bijectors.ResidualBlock(net, logdet=trf.logdet.Exact(), event_ndims=3)
    b.build([4, 4, 2])
    return b, [4, 4, 2]


def _dense_block():
    net = trf.nets.DenseNet(3, depth=2, growth=4, coeff=0.9)
    b = trf.bijectors.DenseBlock(net, logdet=trf.logdet.Exact())
    b.build([3])
    return b, [3]


def _dense_block_conv():
    net = trf.nets.DenseNet(3, depth=2, growth=4, coeff=0.9, conv=True)
    b = trf.bijectors.DenseBlock(net, logdet=trf.logdet.Exact(), event_ndims=3)
    b.build([4, 4, 3])
    return b, [4, 4, 3]


def _logit_transform():
    return trf.bijectors.LogitTransform(alpha=0.05), [4, 4, 3]


def _squeeze():
    return trf.bijectors.Squeeze(), [4, 4, 3]


def _relative_gradient_linear():
    b = trf.bijectors.RelativeGradientLinear(3, seed=3)
    b.build([3])
    rng = np.random.default_rng(4)
    b.affine.kernel.assign(b.affine.kernel.numpy() + rng.normal(0, 0.3, (3, 3)).astype("f"))
    b.affine.bias.assign(rng.normal(0, 0.5, 3).astype("f"))
    return b, [3]


def _smooth_leaky_relu():
    return trf.bijectors.SmoothLeakyReLU(alpha=0.3), [3]


def _tanh_linear():
    return trf.bijectors.TanhLinear(alpha=1.0, beta=0.2), [3]


def _batched_coupling():
    b = trf.bijectors.BatchedAffineCoupling(2, 4, hidden_units=(8,), reverse=[False, True])
    b.build([4])
    randomize_weights(b.keras_layers(), scale=0.4, seed=5)
    return b, [4]


#: Registered class name -> list of (case id, factory returning (bijector, event_shape)).
FACTORIES = {
    "AffineCoupling": [("vector", _coupling)],
    "ConvAffineCoupling": [("channel", _conv_coupling_channel),
                           ("checkerboard", _conv_coupling_checkerboard)],
    "ActNorm": [("image", _actnorm)],
    "ResidualBlock": [("mlp", _residual_mlp), ("cnn", _residual_cnn)],
    "DenseBlock": [("vector", _dense_block), ("conv", _dense_block_conv)],
    "RelativeGradientLinear": [("vector", _relative_gradient_linear)],
    "SmoothLeakyReLU": [("vector", _smooth_leaky_relu)],
    "TanhLinear": [("vector", _tanh_linear)],
    "BatchedAffineCoupling": [("two_components", _batched_coupling)],
    "LogitTransform": [("image", _logit_transform)],
    "Squeeze": [("image", _squeeze)],
}

#: Class name -> map of standard normal draws into the data domain (default: all of R^D).
DATA_DOMAINS = {"LogitTransform": lambda v: 1.0 / (1.0 + np.exp(-v))}

CASES = [pytest.param(cls, factory, id=f"{cls}-{case}")
         for cls, cases in FACTORIES.items() for case, factory in cases]


def test_every_registered_bijector_has_a_conformance_case():
    assert sorted(trf.bijectors.BIJECTORS) == sorted(FACTORIES)


def _component_axis(bijector):
    """``[C]`` for batched bijectors (inputs ``[..., C, *event]``), else ``[]``."""
    return [bijector.num_components] if hasattr(bijector, "num_components") else []


def _data(bijector, event_shape, batch_shape, seed=0):
    shape = [*batch_shape, *_component_axis(bijector), *event_shape]
    draws = np.random.default_rng(seed).normal(0.0, 1.0, size=shape)
    to_domain = DATA_DOMAINS.get(type(bijector).__name__, lambda v: v)
    return to_domain(draws).astype(np.float32)


@pytest.mark.parametrize("cls_name,factory", CASES)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=["single", "batch5", "batch3x4"])
def test_round_trip_and_log_dets_against_brute_force(cls_name, factory, batch_shape):
    bijector, event_shape = factory()
    nd = len(event_shape)
    x = _data(bijector, event_shape, batch_shape)
    z = bijector.inverse(tf.constant(x)).numpy()
    lead = [*batch_shape, *_component_axis(bijector)]
    assert list(z.shape) == [*lead, *bijector.inverse_event_shape(event_shape)]
    x_back = bijector.forward(tf.constant(z)).numpy()
    np.testing.assert_allclose(x_back, x, atol=2e-4, rtol=1e-4)
    ildj = bijector.inverse_log_det_jacobian(tf.constant(x), event_ndims=nd).numpy()
    assert list(np.shape(ildj)) == lead
    np.testing.assert_allclose(ildj, brute_force_ildj(bijector, x, event_shape),
                               atol=2e-4, rtol=1e-4)
    fldj = bijector.forward_log_det_jacobian(tf.constant(z), event_ndims=nd).numpy()
    np.testing.assert_allclose(fldj, -ildj, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("cls_name,factory", CASES)
def test_get_config_round_trip(cls_name, factory):
    bijector, _ = factory()
    config = bijector.get_config()
    cls = trf.bijectors.BIJECTORS[cls_name]
    assert type(bijector) is cls
    assert cls.from_config(config).get_config() == config


@pytest.mark.parametrize("cls_name,factory", CASES)
def test_keras_save_and_load_keep_the_map(cls_name, factory, tmp_path):
    bijector, event_shape = factory()
    if _component_axis(bijector):
        # A batched step (batch shape [C]) is not a FlowModel of one density; its Keras layer
        # round-trips through keras.saving and a rebuilt step maps data identically.
        layer = bijector.conditioner
        path = str(tmp_path / "conditioner.keras")
        keras.saving.save_model(keras.Sequential([keras.Input([2, 2]), layer]), path)
        loaded_layer = keras.saving.load_model(path).layers[0]
        twin = type(bijector).from_config({**bijector.get_config(),
                                           "conditioner": loaded_layer})
        x = _data(bijector, event_shape, [6], seed=7)
        np.testing.assert_allclose(twin.inverse(tf.constant(x)), bijector.inverse(tf.constant(x)),
                                   rtol=1e-6, atol=1e-6)
        return
    model = trf.models.FlowModel(bijector, event_shape=event_shape)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _data(bijector, event_shape, [6], seed=7)
    np.testing.assert_allclose(loaded.log_prob(tf.constant(x)), model.log_prob(tf.constant(x)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls_name,factory", CASES)
def test_validate_args_catches_non_finite_inputs(cls_name, factory):
    bijector, event_shape = factory()
    assert not bijector.validate_args
    checked = type(bijector).from_config({**bijector.get_config(), "validate_args": True,
                                          "name": "checked_step"})
    assert checked.validate_args and checked.get_config()["validate_args"] is True
    checked.build(event_shape)
    for twin_layer, layer in zip(checked.keras_layers(), bijector.keras_layers()):
        twin_layer.set_weights(layer.get_weights())
    x = _data(bijector, event_shape, [4])
    x[1].flat[0] = np.nan
    for method in (checked.inverse, checked.forward):
        with pytest.raises(tf.errors.InvalidArgumentError, match="checked_step.*NaN or inf"):
            method(tf.constant(x))
    finite = _data(bijector, event_shape, [4], seed=1)
    np.testing.assert_allclose(checked.inverse(tf.constant(finite)),
                               bijector.inverse(tf.constant(finite)), rtol=1e-5, atol=1e-5)
