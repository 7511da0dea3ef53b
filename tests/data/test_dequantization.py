"""Uniform dequantisation and bits/dim (``tfresflow.data.dequantization``) against closed forms."""
import numpy as np
import pytest

from tfresflow.data.dequantization import bits_per_dim, dequantize, quantize

ALL_PIXELS = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)


def test_dequantised_pixels_lie_in_their_own_bin_of_the_unit_interval():
    for seed in range(5):
        raw = dequantize(ALL_PIXELS, seed).numpy()
        y = raw.astype(np.float64)
        assert raw.dtype == np.float32 and raw.shape == ALL_PIXELS.shape
        assert y.min() >= 0 and y.max() < 1
        np.testing.assert_array_equal(np.floor(y * 256), ALL_PIXELS)


def test_no_value_leaves_its_bin_by_float32_rounding():
    # 255 + u rounds to 256 in float32 for u > 1 - 2^-17: among 2^20 draws about 8 such u.
    y = dequantize(np.full(2 ** 20, 255, np.uint8), 0).numpy().astype(np.float64)
    assert y.max() < 1 and np.all(np.floor(y * 256) == 255)
    y = dequantize(np.full(2 ** 20, 100, np.uint8), 0).numpy().astype(np.float64)
    assert np.all(np.floor(y * 256) == 100)


def test_noise_is_uniform_and_seeded():
    x = np.zeros((4000,), np.uint8)
    u = dequantize(x, 3).numpy().astype(np.float64) * 256
    np.testing.assert_array_equal(u, dequantize(x, 3).numpy().astype(np.float64) * 256)
    assert not np.array_equal(u, dequantize(x, 4).numpy() * 256)
    # U[0, 1): mean 1/2, variance 1/12, a flat histogram (10 bins, 4 sigma bounds).
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 0.01
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 400) < 4 * np.sqrt(400 * 0.9))


@pytest.mark.parametrize("n_bits", [1, 5, 8])
def test_fewer_bits_keep_the_top_bits(n_bits):
    y = dequantize(ALL_PIXELS, 0, n_bits=n_bits).numpy().astype(np.float64)
    assert y.min() >= 0 and y.max() < 1
    np.testing.assert_array_equal(np.floor(y * 2 ** n_bits), ALL_PIXELS >> (8 - n_bits))


@pytest.mark.parametrize("n_bits", [3, 8])
def test_quantize_returns_the_bin_on_the_8_bit_scale(n_bits):
    x = dequantize(ALL_PIXELS, 2, n_bits=n_bits).numpy()
    step = 2 ** (8 - n_bits)
    np.testing.assert_array_equal(quantize(x, n_bits), ALL_PIXELS // step * step)
    np.testing.assert_array_equal(quantize([-0.5, 0.0, 1.0, 7.0]), [0, 0, 255, 255])
    with pytest.raises(ValueError, match="`y`"):
        quantize([0.5, np.nan])


def test_bits_per_dim_of_the_uniform_density_is_the_bit_depth():
    # log p = 0 on [0, 1)^D: every 2^n_bits-level pixel costs exactly n_bits bits.
    np.testing.assert_array_equal(bits_per_dim(np.zeros(3), 784), [8.0, 8.0, 8.0])
    assert bits_per_dim(0.0, 12288, n_bits=5) == 5.0
    # Density 2^D on [0, 1/2)^D (one bit of the 8 known): 7 bits/dim.
    assert np.isclose(bits_per_dim(64 * np.log(2), 64), 7.0)


def test_bits_per_dim_of_an_independent_pixel_model_is_the_empirical_entropy():
    rng = np.random.default_rng(0)
    values = np.array([0, 7, 128, 255])
    x = np.stack([rng.choice(values, p=p, size=3000) for p in
                  ([.5, .25, .15, .1], [.7, .1, .1, .1], [.25] * 4, [.97, .01, .01, .01],
                   [.4, .4, .1, .1], [.1, .2, .3, .4])], 1).astype(np.uint8)   # [n, D = 6]
    n, d = x.shape
    freq = np.zeros((d, 256))
    for j in range(d):
        freq[j] = np.bincount(x[:, j], minlength=256) / n
    # Its density on [0, 1)^D is piecewise constant: 256 * freq[j, pixel] in pixel's bin.
    levels = np.floor(dequantize(x, 1).numpy().astype(np.float64) * 256).astype(int)
    log_prob = np.sum(np.log(256 * freq[np.arange(d), levels]), axis=1)
    present = freq > 0
    entropy_bits = -np.sum(freq[present] * np.log2(freq[present])) / d
    assert np.isclose(bits_per_dim(log_prob, d).mean(), entropy_bits, rtol=1e-12)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(event_size=0), "event_size"),
    (dict(event_size=2.5), "event_size"),
    (dict(n_bits=9), "n_bits"),
    (dict(n_bits=0), "n_bits"),
])
def test_bad_bits_per_dim_arguments(kwargs, argument):
    args = dict(log_prob=np.zeros(2), event_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        bits_per_dim(**args)


def test_dequantize_wants_integer_pixels():
    with pytest.raises(ValueError, match="`images`"):
        dequantize(np.zeros((2, 2), np.float32), 0)
    with pytest.raises(ValueError, match="`n_bits`"):
        dequantize(ALL_PIXELS, 0, n_bits=16)
