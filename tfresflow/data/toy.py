"""Standard 2-D toy densities of the flow literature (FFJORD, Residual Flows, i-DenseNets).

Each sampler is ``fn(n, rng) -> float32 array [n, 2]`` drawing from a fixed distribution
with a ``numpy.random.Generator``; :func:`sample` gives them a seeded interface. Scales follow
the FFJORD / Residual Flows toy code conventions (data roughly within [-4, 4]^2).

References:
  Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), "FFJORD: Free-form Continuous Dynamics
    for Scalable Reversible Generative Models", ICLR, arXiv:1810.01367.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694.
"""
import numpy as np
import tensorflow as tf

from tfresflow.validation import check_positive_int


def _checkerboard(n, rng):
    # 4 x 4 board of 2 x 2 squares on [-4, 4]^2; occupied squares have an even index sum.
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], 1)


def _two_spirals(n, rng):
    m = np.sqrt(rng.uniform(0.0, 1.0, n)) * 540.0 * (2 * np.pi) / 360.0
    sign = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    d1 = sign * (-np.cos(m) * m + rng.uniform(size=n) * 0.5)
    d2 = sign * (np.sin(m) * m + rng.uniform(size=n) * 0.5)
    return np.stack([d1, d2], 1) / 3.0 + rng.normal(size=(n, 2)) * 0.1


def _moons(n, rng):
    t = rng.uniform(0.0, np.pi, n)
    upper = rng.uniform(size=n) < 0.5
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + rng.normal(size=(n, 2)) * 0.1
    return (pts - np.array([0.5, 0.25])) * 2.0


def _circles(n, rng):
    radius = np.where(rng.uniform(size=n) < 0.5, 1.0, 0.5)
    t = rng.uniform(0.0, 2 * np.pi, n)
    pts = radius[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    return (pts + rng.normal(size=(n, 2)) * 0.08) * 3.0


def _eight_gaussians(n, rng):
    angles = np.arange(8) * np.pi / 4
    centers = np.stack([np.cos(angles), np.sin(angles)], 1) * 4.0
    pts = centers[rng.integers(0, 8, n)] + rng.normal(size=(n, 2)) * 0.5
    return pts / 1.414


def _pinwheel(n, rng, n_arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    angles = np.linspace(0, 2 * np.pi, n_arms, endpoint=False)
    labels = rng.integers(0, n_arms, n)
    feats = rng.normal(size=(n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    rot = angles[labels] + rate * np.exp(feats[:, 0])
    c, s = np.cos(rot), np.sin(rot)
    pts = np.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1)
    return 2.0 * pts


def _rings(n, rng, radii=(1.0, 2.0, 3.0, 4.0)):
    radius = np.asarray(radii)[rng.integers(0, len(radii), n)]
    t = rng.uniform(0.0, 2 * np.pi, n)
    pts = radius[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    return (pts + rng.normal(size=(n, 2)) * 0.08) * 0.9


TOY_DENSITIES = {
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "pinwheel": _pinwheel,
    "rings": _rings,
}


def toy_names():
    """Names accepted by :func:`sample` and :func:`dataset`."""
    return sorted(TOY_DENSITIES)


def sample(name, n, seed=0):
    """Draws ``n`` points from the toy density ``name`` as a float32 ``[n, 2]`` array.

    Args:
      name: one of :func:`toy_names`.
      n: positive number of points.
      seed: integer seed; the same seed gives the same points.

    Raises:
      ValueError: for an unknown name or a non-positive ``n``.
    """
    if name not in TOY_DENSITIES:
        raise ValueError(f"Unknown toy density {name!r}; choose one of {toy_names()}.")
    n = check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    return TOY_DENSITIES[name](int(n), rng).astype(np.float32)


def dataset(name, n, batch_size=256, seed=0, shuffle=True, repeat=False):
    """A batched ``tf.data.Dataset`` of ``n`` points of the toy density ``name``."""
    ds = tf.data.Dataset.from_tensor_slices(sample(name, n, seed))
    if shuffle:
        ds = ds.shuffle(min(int(n), 10_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
