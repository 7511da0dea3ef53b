"""``report_fit``: what every trainer of the command line writes when its fit is done.

``train``, ``train --model boosted`` and ``match`` each hand :func:`report_fit` their metrics,
the figures to draw (:class:`Figures`: a log-density, a sampler, the reference points, the
titles) and the Keras model to save (every trainer has one). Every file is written atomically
(:mod:`tfresflow.io`), and ``metrics.json`` last, so its presence means the run is complete.

TensorFlow and matplotlib are imported when a report is written, not when this module is.
"""
import dataclasses
import os
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Figures:
    """What ``density.png`` and ``samples.png`` of a 2-D fit show.

    Attributes:
      log_prob: ``points -> log-densities``: float32 ``[m, 2]`` -> numpy ``[m]``.
      sample: ``n -> samples``: numpy ``[n, 2]`` draws of the fitted model.
      reference: ``[n, 2]`` points drawn beside as many model samples (test data, or draws of
        a target density).
      title: title of the density figure.
      limits: ``[(x0, x1), (y0, y1)]`` of both figures; ``None``: the limits
        :func:`tfresflow.plotting.plot_limits` gives for ``reference``.
      samples_title: title of the samples figure.
      resolution: grid points per axis of the density figure.
    """
    log_prob: Callable
    sample: Callable
    reference: np.ndarray
    title: str
    limits: list = None
    samples_title: str = "samples vs data"
    resolution: int = 200


def save_keras_model(model, path):
    """Saves ``model`` in the ``.keras`` format at ``path`` atomically."""
    from tfresflow.io import atomic_path

    with atomic_path(path) as tmp:
        model.save(tmp + ".keras")  # Keras insists on the suffix
        os.replace(tmp + ".keras", tmp)
    return path


def report_fit(out_dir, metrics, figures=None, model=None):
    """Writes the results of a fit to ``out_dir``; returns the names written.

    Writes ``density.png`` and ``samples.png`` when ``figures`` is given, ``model.keras`` and
    ``saved_model/`` when ``model`` (a ``FlowModel``, or the ``BoostedFlowModel`` of a boosted
    or matched mixture) is given, and always ``metrics.json`` (last). The names come back in
    the order ``metrics.json``, models, figures (the order the command lines print them in).
    """
    from tfresflow import io

    written = []
    if figures is not None:
        from tfresflow import plotting

        limits = figures.limits or plotting.plot_limits(figures.reference)
        plotting.save_density(os.path.join(out_dir, "density.png"), figures.log_prob, limits,
                              title=figures.title, resolution=figures.resolution)
        samples = figures.sample(len(figures.reference))
        plotting.save_samples(os.path.join(out_dir, "samples.png"), figures.reference, samples,
                              limits, title=figures.samples_title)
        written += ["density.png", "samples.png"]
    if model is not None:
        from tfresflow.export import export_saved_model

        save_keras_model(model, os.path.join(out_dir, "model.keras"))
        export_saved_model(model, os.path.join(out_dir, "saved_model"))
        written = ["model.keras", "saved_model/"] + written
    io.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return ["metrics.json"] + written
