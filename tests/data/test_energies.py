"""Rezende & Mohamed (2015) energies U1-U4: closed-form values, symmetries, normalisers."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfresflow import data


def _u(name, z, box=None):
    return data.energy(name, tf.constant(np.asarray(z, np.float32)), box=box).numpy()


@pytest.mark.parametrize("name, point, expected", [
    # On the ring |z| = 2 at z1 = 2: first term 0; the far bump adds exp(-0.5 (4/0.6)^2).
    ("U1", (2.0, 0.0), -math.log1p(math.exp(-0.5 * (4 / 0.6) ** 2))),
    # Off the ring: 0.5 ((3 - 2)/0.4)^2 with z1 = 0 (both bumps at distance 2/0.6).
    ("U1", (0.0, 3.0), 0.5 * (1 / 0.4) ** 2 - math.log(2 * math.exp(-0.5 * (2 / 0.6) ** 2))),
    ("U2", (1.0, 1.0), 0.0),                      # w1(1) = sin(pi/2) = 1
    ("U2", (0.0, 0.4), 0.5),                      # w1(0) = 0: 0.5 (0.4/0.4)^2
    # U3 at (1, 1): z2 - w1 = 0, w2(1) = 3.
    ("U3", (1.0, 1.0), -math.log1p(math.exp(-0.5 * (3 / 0.35) ** 2))),
    # U4 at (1, 1): z2 - w1 = 0, w3(1) = 3 sigmoid(0) = 1.5.
    ("U4", (1.0, 1.0), -math.log1p(math.exp(-0.5 * (1.5 / 0.35) ** 2))),
])
def test_closed_form_values(name, point, expected):
    np.testing.assert_allclose(_u(name, [point])[0], expected, rtol=1e-5, atol=1e-6)


def test_u1_symmetries_and_case_insensitive_names():
    z = np.random.default_rng(0).normal(size=(50, 2)) * 2
    u = _u("U1", z)
    np.testing.assert_allclose(_u("u1", z * [-1, 1]), u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_u("U1", z * [1, -1]), u, rtol=1e-5, atol=1e-5)


def test_u2_minimum_follows_the_sine():
    z1 = np.linspace(-4, 4, 41)
    z = np.stack([z1, np.sin(np.pi * z1 / 2)], 1)
    np.testing.assert_allclose(_u("U2", z), 0.0, atol=1e-5)


def test_log_sum_exp_is_stable_far_from_the_modes():
    far = np.array([[0.0, 60.0], [3.0, -80.0]])
    for name in data.energy_names():
        u = _u(name, far)
        assert np.all(np.isfinite(u)) and np.all(u > 100), (name, u)


def test_batch_shapes_and_gradients():
    z = tf.constant(np.random.default_rng(1).normal(size=(3, 4, 2)), tf.float32)
    for name in data.energy_names():
        with tf.GradientTape() as tape:
            tape.watch(z)
            log_p = data.log_density(name)(z)
        assert log_p.shape == (3, 4)
        assert np.all(np.isfinite(tape.gradient(log_p, z).numpy()))


def test_box_adds_the_soft_wall():
    z = np.array([[2.0, 0.3], [-6.0, 1.0]])
    np.testing.assert_allclose(_u("U3", z, box=4.0) - _u("U3", z), (z[:, 0] / 4.0) ** 8,
                               rtol=1e-4)


def test_log_normalizer_matches_closed_form_for_boxed_u2():
    # int exp(-U2 - (z1/a)^8) dz = [0.4 sqrt(2 pi)] * [2 a Gamma(9/8)] (Gaussian in z2 given z1).
    a = 3.0
    expected = math.log(0.4 * math.sqrt(2 * math.pi)) + math.log(2 * a * math.gamma(9 / 8))
    assert data.log_normalizer("U2", box=a) == pytest.approx(expected, abs=1e-4)


def test_log_normalizer_converges_for_u1():
    coarse = data.log_normalizer("U1", resolution=401)
    fine = data.log_normalizer("U1", limits=((-10, 10), (-10, 10)), resolution=1201)
    assert coarse == pytest.approx(fine, abs=1e-4)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown energy 'U7'.*U1"):
        data.log_density("U7")
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\]"):
        data.energy("U1", tf.zeros([4, 3]))
    with pytest.raises(ValueError, match="box"):
        data.log_density("U2", box=-1.0)
