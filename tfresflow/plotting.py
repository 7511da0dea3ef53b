"""Figures: density heat-maps and samples next to data for 2-D flows, grids of image samples
(PNG, written atomically)."""
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


def image_grid(images, columns=None):
    """Tiles ``[n, H, W, C]`` images (C = 1 or 3) into one ``[rows H, columns W, C]`` array.

    ``columns`` defaults to ``ceil(sqrt(n))``; empty cells of the last row stay 0 (black).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty array [n, H, W, C] with C = 1 or 3, "
                         f"got shape {list(images.shape)}.")
    n, h, w, c = images.shape
    columns = int(np.ceil(np.sqrt(n))) if columns is None else int(columns)
    rows = int(np.ceil(n / columns))
    grid = np.zeros((rows * h, columns * w, c), images.dtype)
    for i, image in enumerate(images):
        r, q = divmod(i, columns)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = image
    return grid


def save_image_grid(path, images, title=None, columns=None):
    """Images as one grid PNG (:func:`image_grid`), grey-scale for one channel.

    ``images``: uint8 ``[n, H, W, C]`` (e.g. :func:`tfresflow.data.dequantization.quantize` of
    samples), or floats in [0, 1] (1 is white), ``[n, H, W]`` or ``[n, H, W, C]``.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if np.issubdtype(images.dtype, np.floating):
        images = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    grid = image_grid(images, columns)
    rows, cols = grid.shape[0] / images.shape[1], grid.shape[1] / images.shape[2]
    fig, ax = plt.subplots(figsize=(max(2.0, 0.6 * cols), max(2.0, 0.6 * rows) + 0.3))
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_stage_curves(path, panels, boundaries=(), title="loss through the stages",
                      smooth=1):
    """Curves over training steps, one panel per entry of ``panels``, stage starts marked.

    Args:
      path: the PNG to write.
      panels: list of ``(ylabel, [(label, steps, values), ...])``; ``steps`` are global step
        numbers (all stages concatenated).
      boundaries: global steps where a stage starts (dotted vertical lines).
      title: figure title.
      smooth: width of a trailing moving average applied to each curve (1: none).
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.0 * len(panels)), squeeze=False,
                             sharex=True)
    for ax, (ylabel, curves) in zip(axes[:, 0], panels):
        for label, steps, values in curves:
            values = np.asarray(values, np.float64)
            if smooth > 1 and len(values) >= smooth:
                kernel = np.ones(int(smooth)) / int(smooth)
                head = [values[:i + 1].mean() for i in range(int(smooth) - 1)]
                values = np.concatenate([head, np.convolve(values, kernel, mode="valid")])
            ax.plot(steps, values, label=label, lw=1.2)
        for b in boundaries:
            ax.axvline(b, color="grey", ls=":", lw=1)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("training step (all stages)")
    fig.suptitle(title)
    return _save(fig, path)
