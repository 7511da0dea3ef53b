import numpy as np
import pytest

import tfresflow as trf

NAMES = ["checkerboard", "2spirals", "moons", "circles", "8gaussians", "pinwheel", "rings"]


@pytest.mark.parametrize("name", NAMES)
def test_toy_sampler_is_seeded_float32_and_bounded(name):
    a = trf.data.sample(name, 2000, seed=3)
    assert a.dtype == np.float32 and a.shape == (2000, 2)
    np.testing.assert_array_equal(a, trf.data.sample(name, 2000, seed=3))
    assert not np.array_equal(a, trf.data.sample(name, 2000, seed=4))
    assert np.all(np.isfinite(a)) and np.abs(a).max() < 8.0
    assert a.std(0).min() > 0.3  # a spread-out 2-D density, not a degenerate one


def test_known_structure_of_some_densities():
    cb = trf.data.sample("checkerboard", 20000, seed=0)
    # checkerboard: 2 x 2 squares on [-4, 4]^2, occupied where the square indices sum to even
    assert np.abs(cb).max() <= 4.0
    squares = np.floor(cb / 2.0)
    assert np.mean((squares[:, 0] + squares[:, 1]) % 2 == 0) > 0.999
    assert len({tuple(s) for s in squares}) == 8
    g8 = trf.data.sample("8gaussians", 20000, seed=0)
    radius = np.linalg.norm(g8, axis=1)
    assert abs(np.median(radius) - 4.0 / 1.414) < 0.15
    circles = trf.data.sample("circles", 20000, seed=0)
    r = np.linalg.norm(circles, axis=1)
    assert np.mean(np.abs(r - 1.5) < 0.75) + np.mean(np.abs(r - 3.0) < 0.75) > 0.99  # 3 sd


def test_dataset_helper_batches_all_points():
    ds = trf.data.dataset("moons", 1000, batch_size=128, seed=1)
    batches = list(ds.as_numpy_iterator())
    assert sum(len(b) for b in batches) == 1000 and batches[0].shape == (128, 2)


def test_unknown_name_and_bad_size_raise():
    with pytest.raises(ValueError, match="Unknown toy density 'swissroll'"):
        trf.data.sample("swissroll", 10)
    with pytest.raises(ValueError, match="positive"):
        trf.data.sample("moons", 0)
