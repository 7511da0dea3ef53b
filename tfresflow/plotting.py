"""Figures for 2-D flows: density heat-maps and samples next to data (PNG, written atomically)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfresflow.io import atomic_path  # noqa: E402


def plot_limits(data, margin=0.1):
    """Square plotting limits covering ``data`` (central 99.9%) plus a margin."""
    lo, hi = np.percentile(data, [0.05, 99.95], axis=0)
    half = 0.5 * float(np.max(hi - lo)) * (1 + margin)
    center = 0.5 * (lo + hi)
    return [(float(c - half), float(c + half)) for c in center]


def density_grid(log_prob_fn, limits, resolution=200, batch_size=8192):
    """Evaluates ``exp(log_prob_fn(points))`` on a regular grid; returns (xx, yy, density)."""
    (x0, x1), (y0, y1) = limits
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    logp = np.concatenate([np.asarray(log_prob_fn(pts[i:i + batch_size]))
                           for i in range(0, len(pts), batch_size)])
    return xx, yy, np.exp(logp).reshape(xx.shape)


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_density(path, log_prob_fn, limits, title="model density", resolution=200):
    """Heat-map of the density ``exp(log_prob_fn)`` over ``limits`` saved as PNG."""
    xx, yy, dens = density_grid(log_prob_fn, limits, resolution)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.pcolormesh(xx, yy, dens, cmap="magma", shading="auto")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def save_samples(path, data, samples, limits, title="samples vs data"):
    """Side-by-side 2-D histograms of data and model samples saved as PNG."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, pts, name in zip(axes, (data, samples), ("data", "model samples")):
        ax.hist2d(pts[:, 0], pts[:, 1], bins=120, range=limits, cmap="viridis")
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return _save(fig, path)
