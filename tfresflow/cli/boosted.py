"""Gradient boosted flows on the command line: ``train --model boosted`` and ``match``.

* ``tfresflow train --model boosted --components C --n-steps K ...`` ->
  :func:`train_boosted`: C coupling components of K steps, boosted stage by stage on data.
  ``--steps`` counts optimiser steps *per stage*. Extra settings via ``--option KEY=VALUE``:
  ``regularization``, ``density_objective`` (``boosting`` | ``mixture``),
  ``finetune_passes``, ``finetune_steps``, ``max_weight``, ``rho_step_size``.
* ``tfresflow match --energy U1 ...`` -> :func:`run_match`: density matching of a Rezende &
  Mohamed energy by reverse KL.

Both write to ``--out`` (atomically): ``metrics.json`` (with the per-stage history), one
``stage_XX_density.png`` per stage, ``density.png``, ``samples.png``, the trained mixture as
``model.keras`` and ``saved_model/`` (a ``BoostedFlowModel``, which ``evaluate`` and ``sample``
read), and a weights-only training checkpoint per stage under ``checkpoints/``. ``--n-steps``
was ``--flow-steps`` (still accepted, deprecated); ``metrics.json`` records it as ``n_steps``.

TensorFlow is imported when a command runs, not when this module is imported (so
``tfresflow --help`` stays fast).
"""
import os
import time

import numpy as np

from tfresflow.cli import report, runs
from tfresflow.cli.arguments import (add_n_steps, int_list, nonnegative_int, positive_float,
                                     positive_int)

DEFAULT_COMPONENTS = 4
DEFAULT_N_STEPS = 2
DEFAULT_HIDDEN = (64, 64)

#: ``--option`` keys accepted by ``train --model boosted`` -> trainer keyword / converter.
TRAIN_OPTIONS = {"regularization": float, "density_objective": str, "finetune_passes": int,
                 "finetune_steps": int, "max_weight": float, "rho_step_size": float}


def _stage_title(record):
    what = "boost" if record["phase"] == "boost" else "GBF+ fine-tune"
    return f"stage {record['stage']}: {what} component {record['component'] + 1}, " \
           f"rho={record['rho']:.3f}"


def _stage_figure_writer(out_dir, limits, log_prob_fn_of):
    """``on_stage_end`` callback writing the mixture density after each stage."""
    from tfresflow import plotting

    def on_stage_end(trainer, record):
        mix = trainer.mixture()
        plotting.save_density(os.path.join(out_dir, f"stage_{record['stage']:02d}_density.png"),
                              log_prob_fn_of(mix), limits, title=_stage_title(record))
    return on_stage_end


def _mixture_model(mix):
    """The saveable Keras model (``BoostedFlowModel``) of a trained mixture."""
    from tfresflow.models import BoostedFlowModel
    return BoostedFlowModel.from_distribution(mix, name="boosted_flow")


def _trainer_options(args):
    opts = dict(getattr(args, "option", None) or [])
    unknown = sorted(set(opts) - set(TRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown --option for --model boosted: {unknown}; accepted: "
                         f"{sorted(TRAIN_OPTIONS)}.")
    try:
        return {k: TRAIN_OPTIONS[k](v) for k, v in opts.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"Bad --option value for --model boosted: {err}") from None


def _architecture(args):
    components = getattr(args, "components", None) or DEFAULT_COMPONENTS
    n_steps = getattr(args, "n_steps", None) or DEFAULT_N_STEPS
    hidden = tuple(getattr(args, "hidden", None) or DEFAULT_HIDDEN)
    return int(components), int(n_steps), hidden


def _trainer(args, num, dim, n_steps, hidden, **options):
    """Seeds Keras and builds ``num`` coupling flows and their ``BoostedFlowTrainer``.

    ``args`` gives ``lr``, ``batch_size``, ``seed`` and ``quiet``; ``options`` go to the
    trainer. Returns ``(trainer, number of parameters)``.
    """
    import keras

    from tfresflow.boosting import BoostedFlowTrainer
    from tfresflow.models import build_model

    keras.utils.set_random_seed(args.seed)
    comps = build_model("boosted", dim, num_components=num, n_steps=n_steps, hidden_units=hidden,
                        seed=args.seed)
    trainer = BoostedFlowTrainer(comps, learning_rate=args.lr, batch_size=args.batch_size,
                                 seed=args.seed,
                                 verbose=0 if getattr(args, "quiet", False) else 1, **options)
    return trainer, int(sum(c.count_params() for c in comps))


def train_boosted(args, x_train, x_test, out_dir, run=None):
    """Trains a boosted coupling flow on ``x_train``; writes results to ``out_dir``.

    Reads ``args.components``, ``args.n_steps``, ``args.hidden``, ``args.steps`` (per
    stage), ``args.batch_size``, ``args.lr``, ``args.seed``, ``args.quiet``, ``args.data`` and
    ``args.option`` (see the module docstring). With a :class:`tfresflow.cli.runs.Run`, the
    run's settings are recorded when training starts and training resumes after the latest
    stage checkpoint in ``out_dir/checkpoints``. Returns the metrics dict.
    """
    from tfresflow import evaluation, io, plotting
    from tfresflow.boosting.checkpoint import latest_checkpoint

    io.ensure_writable_dir(out_dir, "--out")
    num, n_steps, hidden = _architecture(args)
    opts = _trainer_options(args)
    finetune_passes = opts.pop("finetune_passes", 0)
    finetune_steps = opts.pop("finetune_steps", None)
    dim = x_train.shape[1]
    trainer, params = _trainer(args, num, dim, n_steps, hidden, objective="density", **opts)
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    if run is not None:
        runs.begin(run, args)
        latest = latest_checkpoint(checkpoint_dir) if run.resumed else None
        if latest:
            trainer.load_checkpoint(latest)
            print(f"resuming after {os.path.basename(latest)} (checkpoints in {checkpoint_dir})")
    print(f"training boosted flow on {getattr(args, 'data', 'data')}: {num} components x "
          f"{n_steps} coupling steps, {params} parameters, {args.steps} steps per stage, "
          f"{finetune_passes} GBF+ pass(es)")
    callback = None
    if dim == 2:
        limits = plotting.plot_limits(x_test)
        callback = _stage_figure_writer(
            out_dir, limits, lambda mix: (lambda p: mix.log_prob(p, seed=[args.seed, 7]).numpy()))
    start = time.time()
    history = trainer.fit(x_train, steps_per_component=args.steps,
                          finetune_steps=finetune_steps, finetune_passes=finetune_passes,
                          validation_data=x_test, checkpoint_dir=checkpoint_dir,
                          checkpoint_every=args.checkpoint_every, on_stage_end=callback)
    train_seconds = time.time() - start
    mix = trainer.mixture()
    nlls = evaluation.train_test_nll(mix, x_train, x_test, seed=args.seed)
    train_nll, train_se = nlls["train_nll"], nlls["train_nll_stderr"]
    test_nll, test_se = nlls["test_nll"], nlls["test_nll_stderr"]
    metrics = {
        "model": "boosted", "data": getattr(args, "data", None),
        "n_train": getattr(args, "n_train", None), "n_test": getattr(args, "n_test", None),
        "components": num,
        "n_steps": n_steps, "hidden_units": list(hidden),
        "steps_per_stage": args.steps, "finetune_passes": finetune_passes,
        "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "trainer_options": opts, "parameters": params,
        **nlls, "weights": [float(w) for w in trainer.weights], "history": history,
        "train_seconds": train_seconds,
    }
    print(f"train NLL {train_nll:.4f} ± {train_se:.4f} nats | test NLL {test_nll:.4f} ± "
          f"{test_se:.4f} nats | weights {np.round(trainer.weights, 3).tolist()}")
    runs.report_warnings(metrics, dim)
    figures = None
    if dim == 2:
        figures = report.Figures(
            log_prob=lambda p: mix.log_prob(p, seed=[args.seed, 7]).numpy(),
            sample=lambda n: mix.sample(n, seed=args.seed).numpy(), reference=x_test,
            limits=limits, title=f"boosted ({num}x{n_steps}) on {metrics['data']}")
    written = report.report_fit(out_dir, metrics, figures=figures, model=_mixture_model(mix))
    print(f"wrote {out_dir}/" + ", ".join(written[:1] + ["checkpoints/"] + written[1:])
          + (", stage_XX_density.png" if dim == 2 else ""))
    return metrics


# --------------------------------------------------------------------------- match
def add_match_command(subparsers):
    """Adds ``match`` (density matching of an energy U1-U4) to an argparse subparsers object."""
    match = subparsers.add_parser(
        "match", help="fit a boosted flow to an unnormalised 2-D energy (U1-U4) by reverse KL")
    match.set_defaults(run=run_match)
    match.add_argument("--energy", required=True, help="target energy: U1, U2, U3 or U4")
    match.add_argument("--components", type=positive_int, default=2)
    add_n_steps(match, 4, "coupling steps per component")
    match.add_argument("--hidden", type=int_list, default=DEFAULT_HIDDEN,
                       help="conditioner hidden widths, e.g. 64,64")
    match.add_argument("--steps", type=positive_int, default=2000,
                       help="optimiser steps per stage")
    match.add_argument("--finetune-passes", type=nonnegative_int, default=0,
                       help="GBF+ fine-tuning passes over all components")
    match.add_argument("--batch-size", type=positive_int, default=256,
                       help="samples per step")
    match.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    match.add_argument("--regularization", type=float, default=1.0,
                       help="entropy weight lambda of the boosting objective (eq. 11)")
    match.add_argument("--floor", type=float, default=-10.0,
                       help="floor on log G of the fixed mixture (use 'nan' for none)")
    match.add_argument("--box", type=float, default=4.0,
                       help="half-width of the soft box (z1/a)^8 added to U (<= 0: none; U2-U4 "
                            "are not integrable without it)")
    match.add_argument("--seed", type=int, default=0)
    match.add_argument("--out", default=None, help="output directory (default runs/match-ENERGY)")
    match.add_argument("--quiet", action="store_true", help="no progress bar")
    match.add_argument("--overwrite", action="store_true",
                       help="replace the previous run in --out (once this run completes)")
    return match


def _target_samples(log_density, limits, n, seed, resolution=400):
    """``n`` approximate draws from ``exp(log_density)`` by sampling grid cells (figures only)."""
    (x0, x1), (y0, y1) = limits
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    pts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    logp = np.asarray(log_density(pts), np.float64)
    p = np.exp(logp - logp.max())
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pts), size=n, p=p / p.sum())
    cell = np.array([xs[1] - xs[0], ys[1] - ys[0]])
    return pts[idx] + (rng.uniform(size=(n, 2)) - 0.5) * cell


def run_match(args):
    """Runs ``tfresflow match``; returns the metrics dict."""
    from tfresflow import data, io, plotting

    box = args.box if args.box is not None and args.box > 0 else None
    floor = None if args.floor is None or np.isnan(args.floor) else args.floor
    target = data.log_density(args.energy, box=box)  # raises for an unknown name
    name = args.energy.upper()
    run = runs.prepare(args, os.path.join("runs", f"match-{name}"))
    io.ensure_writable_dir(run.out, "--out")
    trainer, params = _trainer(args, args.components, 2, args.n_steps, args.hidden,
                               objective="matching", target_log_prob=target,
                               regularization=args.regularization, log_mixture_floor=floor)
    out_dir = runs.begin(run, args).work
    log_z = data.log_normalizer(name, box=box) if box is not None or name == "U1" else None
    print(f"matching {name}: {args.components} components x {args.n_steps} coupling steps, "
          f"{params} parameters, {args.steps} steps per stage")
    limits = [(-4.0, 4.0), (-4.0, 4.0)]
    plotting.save_density(os.path.join(out_dir, "target.png"), lambda p: target(p).numpy(),
                          limits, title=f"target exp(-{name})")
    callback = _stage_figure_writer(out_dir, limits,
                                    lambda mix: (lambda p: mix.log_prob(p).numpy()))
    start = time.time()
    history = trainer.fit(steps_per_component=args.steps, finetune_passes=args.finetune_passes,
                          checkpoint_dir=os.path.join(out_dir, "checkpoints"),
                          on_stage_end=callback)
    seconds = time.time() - start
    final = trainer.matching_metrics(n=20000, seed=10 ** 5)
    metrics = {"energy": name, "box": box, "log_mixture_floor": floor,
               "components": args.components, "n_steps": args.n_steps,
               "hidden_units": list(args.hidden), "steps_per_stage": args.steps,
               "finetune_passes": args.finetune_passes, "regularization": args.regularization,
               "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
               "parameters": params, "log_normalizer_grid": log_z, **final,
               "weights": [float(w) for w in trainer.weights], "history": history,
               "train_seconds": seconds}
    if log_z is not None:
        metrics["reverse_kl"] = final["kl_minus_log_z"] + log_z
        for record in history:
            record["reverse_kl"] = record["kl_minus_log_z"] + log_z
    mix = trainer.mixture()
    n = 20000
    report.report_fit(out_dir, metrics, model=_mixture_model(mix), figures=report.Figures(
        log_prob=lambda p: mix.log_prob(p).numpy(),
        sample=lambda m: mix.sample(m, seed=args.seed).numpy(),
        reference=_target_samples(lambda p: target(p).numpy(), limits, n, args.seed),
        limits=limits, title=f"boosted ({args.components}x{args.n_steps}) for {name}",
        samples_title=f"target (grid draws) vs boosted flow samples, {name}"))
    kl = f"KL(G||p) {metrics['reverse_kl']:.4f} nats" if log_z is not None else \
        f"E[log G - log p~] {final['kl_minus_log_z']:.4f}"
    runs.finish(run)
    print(f"{name}: {kl}, ESS fraction {final['ess_fraction']:.3f}, weights "
          f"{np.round(trainer.weights, 3).tolist()}; wrote {run.out}/")
    return metrics
