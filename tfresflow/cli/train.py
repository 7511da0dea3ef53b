"""``tfresflow train | evaluate | sample``: fit a registered flow model, test it, draw from it.

``tfresflow train`` is the main job: data -> flow -> Keras ``fit`` -> evaluation -> figures ->
saved model. Everything it writes goes to ``--out`` atomically (``run.json``, ``checkpoints/``,
``metrics.json``, ``density.png``, ``samples.png``, ``model.keras``, ``saved_model/``); the
run-folder policy (``--resume``, ``--overwrite``) is :mod:`tfresflow.cli.runs`, the checkpointed
training :func:`tfresflow.models.checkpointing.fit_resumable` (a non-finite loss exits with
code 3). ``--model boosted`` is handed to :func:`tfresflow.cli.boosted.train_boosted`,
``--model vae`` to :func:`tfresflow.cli.vae.dispatch`.
``evaluate`` and ``sample`` take a run folder, a ``.keras`` file or a SavedModel
(:mod:`tfresflow.cli.loading`); ``evaluate`` scores the test set of the run's recorded data,
size and seed unless told otherwise.

TensorFlow is imported when a command runs, not when this module is imported.
"""
import os
import time

import numpy as np

from tfresflow.cli import image, loading, report, runs
from tfresflow.cli.arguments import (add_n_steps, int_list, option, output_file, positive_float,
                                     positive_int)
from tfresflow.cli.boosted import train_boosted
from tfresflow.cli import vae

DEFAULT_DATA = "checkerboard"
DEFAULT_MODEL = "coupling"
DEFAULT_CHECKPOINT_EVERY = 500
#: Defaults of a vector (toy / .npy) run; image runs have their own (tfresflow.cli.image).
DEFAULT_STEPS = 2000
DEFAULT_BATCH_SIZE = 256
DEFAULT_N_TRAIN = 20000
DEFAULT_N_TEST = 5000


def add_commands(subparsers):
    """Adds ``train``, ``evaluate`` and ``sample`` to an argparse subparsers object."""
    train = subparsers.add_parser("train", help="train a flow and write metrics, figures, models",
                                  epilog=image.config_help())
    train.set_defaults(run=run_train)
    runs.record_given_options(train)
    train.add_argument("--data", default=DEFAULT_DATA,
                       help="toy density name, a .npy file of shape [n, d], or an image "
                            "dataset (digits, mnist5k, tfds:NAME) for an image --model "
                            f"(default: {DEFAULT_DATA})")
    train.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default: {DEFAULT_MODEL})")
    train.add_argument("--steps", type=positive_int, default=None,
                       help=f"optimiser steps (default {DEFAULT_STEPS}; image models "
                            f"{image.DEFAULT_STEPS})")
    train.add_argument("--batch-size", type=positive_int, default=None,
                       help=f"default {DEFAULT_BATCH_SIZE}; image models "
                            f"{image.DEFAULT_BATCH_SIZE}")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (positive)")
    train.add_argument("--n-train", type=positive_int, default=None,
                       help=f"training examples (default {DEFAULT_N_TRAIN}; image data: at most "
                            "this many of the train split, default all)")
    train.add_argument("--n-test", type=positive_int, default=None,
                       help=f"test examples (default {DEFAULT_N_TEST}; image data: at most this "
                            "many of the test split, default all)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--hidden", type=int_list, default=None,
                       help="hidden widths, e.g. 64,64")
    add_n_steps(train, None, "number of flow steps (blocks)")
    train.add_argument("--components", type=positive_int, default=None,
                       help="mixture components of --model boosted (default 4) or of "
                            "--model vae --posterior boosted (default 2)")
    vae.add_vae_arguments(train)
    train.add_argument("--option", type=option, action="append", default=[],
                       metavar="KEY=VALUE", help="extra model option (repeatable)")
    image.add_arguments(train)
    train.add_argument("--out", default=None,
                       help="output directory (default runs/MODEL-DATA; runs/MODEL-hybrid-DATA "
                            "with --hybrid)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--checkpoint-every", type=positive_int, default=DEFAULT_CHECKPOINT_EVERY,
                       metavar="K", help="steps between training checkpoints in OUT/checkpoints "
                       f"(default {DEFAULT_CHECKPOINT_EVERY}; one is also written at the end)")
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue the unfinished run in RUN_DIR from its last checkpoint, "
                            "with the settings recorded in RUN_DIR/run.json")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the previous run in --out (once this run completes)")

    model_help = "a run folder written by `train`, a .keras file or a SavedModel directory"
    evaluate = subparsers.add_parser("evaluate", help="test NLL of a trained model")
    evaluate.set_defaults(run=run_evaluate)
    evaluate.add_argument("model_path", help=model_help)
    evaluate.add_argument("--data", default=None,
                          help="toy density name or .npy file (default: the data recorded in "
                               "the run's metrics.json)")
    evaluate.add_argument("--n", type=positive_int, default=None,
                          help="test examples of a toy density, or at most this many test "
                               "images of an image dataset (default: the run's --n-test)")
    evaluate.add_argument("--seed", type=int, default=None,
                          help="seed of the training run: the test set is the one `train` drew "
                               "(default: the run's seed)")

    sample = subparsers.add_parser("sample", help="draw samples from a trained model")
    sample.set_defaults(run=run_sample)
    sample.add_argument("model_path", help=model_help)
    sample.add_argument("--n", type=positive_int, default=1000)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, type=output_file,
                        help=".npy file to write (its folder must exist); for an image model "
                             "also a .png grid of the samples")


def load_data(spec, n_train, n_test, seed, event_shape=None):
    """Train/test arrays from a toy density name or a ``.npy`` file (split 80/20), checked
    against a model's ``event_shape`` when given."""
    from tfresflow.data.split import train_test_data
    return train_test_data(spec, n_train, n_test, seed, name="--data", event_shape=event_shape)


def _model_options(args):
    opts = dict(args.option)
    if args.hidden is not None:
        opts["hidden_units"] = args.hidden
    if args.n_steps is not None:
        opts["n_steps"] = args.n_steps
    opts.setdefault("seed", args.seed)
    return opts


def run_train(args):
    """Runs ``tfresflow train``; returns the metrics dict."""
    from tfresflow import io
    from tfresflow.models import MODEL_BUILDERS

    metrics = vae.dispatch(args)   # --model vae (or its --resume): binarised images, a VAE
    if metrics is not None:
        return metrics
    if args.model not in MODEL_BUILDERS:
        raise ValueError(f"Unknown --model {args.model!r}; choose one of "
                         f"{sorted(MODEL_BUILDERS)}.")
    if args.components is not None and args.model != "boosted":
        raise ValueError(f"--components applies to --model boosted only, not {args.model!r}.")
    run = runs.prepare(args, image.default_out(args) if image.is_image_data(args.data) else
                       os.path.join("runs", f"{args.model}-{os.path.basename(args.data)}"))
    if image.check_image_run(args):  # after prepare: --resume restores the run's settings
        return image.train_image(args, run)
    _resolve_defaults(args)
    x_train, x_test = load_data(args.data, args.n_train, args.n_test, args.seed)
    io.ensure_writable_dir(run.out, "--out")
    if args.model == "boosted":
        metrics = train_boosted(args, x_train, x_test, run.work, run=run)
        runs.finish(run)
        return metrics
    model, history, train_seconds, start = _fit(args, x_train, run)
    metrics, exact = _evaluate_fit(args, model, x_train, x_test)
    metrics.update(train_seconds=train_seconds, resumed_from_step=start)
    runs.report_warnings(metrics, x_train.shape[1])
    figures = None
    if x_train.shape[1] == 2:
        figures = report.Figures(
            log_prob=lambda p: (model.exact_log_prob(p) if exact else
                                model.log_prob(p, seed=[args.seed, 7])).numpy(),
            sample=lambda n: model.sample(n, seed=args.seed).numpy(), reference=x_test,
            title=f"{args.model} on {args.data}", resolution=150)
    written = report.report_fit(run.work, metrics, figures=figures, model=model)
    runs.finish(run)
    print(f"wrote {run.out}/" + ", ".join(written))
    return metrics


def _resolve_defaults(args):
    """Fills the options a vector run left unset (``None``) with the vector defaults."""
    for key, value in (("steps", DEFAULT_STEPS), ("batch_size", DEFAULT_BATCH_SIZE),
                       ("n_train", DEFAULT_N_TRAIN), ("n_test", DEFAULT_N_TEST)):
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _fit(args, x_train, run):
    """Builds ``args.model`` for ``x_train`` and fits it with checkpoints in ``run``.

    Returns ``(model, history, seconds, step resumed from)``; raises
    :class:`~tfresflow.models.checkpointing.TrainingDiverged` on a non-finite loss.
    """
    import keras

    from tfresflow.cli import progress
    from tfresflow.models import build_model
    from tfresflow.models.checkpointing import TrainingDiverged, fit_resumable, latest_step
    from tfresflow.optimizers import FusedAdam

    keras.utils.set_random_seed(args.seed)
    try:
        model = build_model(args.model, x_train.shape[1], **_model_options(args))
    except TypeError as err:
        raise ValueError(f"Bad option for --model {args.model}: {err}") from None
    model.compile(optimizer=FusedAdam(args.lr))  # Keras' Adam, one fused op per variable
    runs.begin(run, args)
    print(f"training {args.model} on {args.data}: {model.count_params()} parameters, "
          f"{args.steps} steps, batch {args.batch_size}")
    if run.resumed:
        print(f"resuming from step {latest_step(run.checkpoints) or 0} (checkpoints in "
              f"{run.checkpoints})")
    start = time.time()
    try:
        history, resumed_at = fit_resumable(model, x_train, args.steps, args.batch_size,
                                            args.seed, run.checkpoints, args.checkpoint_every,
                                            callbacks=progress.callbacks(quiet=args.quiet),
                                            verbose=0)
    except TrainingDiverged as err:
        raise err.with_hint(runs.diverged_hint(args.lr)) from None
    return model, history, time.time() - start, resumed_at


def _evaluate_fit(args, model, x_train, x_test):
    """Metrics of a fitted model (all but the training loss and time); prints the NLLs.

    Returns ``(metrics, exact)``: low-dimensional models with stochastic log-dets are
    evaluated (and plotted) with the exact log-det (``exact``), the unbiased estimate beside it.
    """
    from tfresflow import evaluation

    exact = evaluation.use_exact_evaluation(model)
    nlls = evaluation.train_test_nll(model, x_train, x_test, seed=args.seed, exact=exact,
                                     n_train=args.n_test)
    metrics = {
        "model": args.model, "data": args.data, "n_train": args.n_train, "n_test": args.n_test,
        "steps": args.steps,
        "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "parameters": int(model.count_params()),
        "nll_method": evaluation.nll_method(model, exact), **nlls,
        "stochastic_log_det": bool(model.has_stochastic_log_det),
    }
    print(f"train NLL {nlls['train_nll']:.4f} ± {nlls['train_nll_stderr']:.4f} nats | test NLL "
          f"{nlls['test_nll']:.4f} ± {nlls['test_nll_stderr']:.4f} nats | fitted Gaussian test "
          f"NLL {nlls['gaussian_baseline_test_nll']:.4f} nats [{metrics['nll_method']}]")
    if exact:
        est, est_se = evaluation.nll_with_stderr(model, x_test, seed=args.seed + 1)
        metrics.update(test_nll_unbiased_estimate=est, test_nll_unbiased_estimate_stderr=est_se)
        print(f"unbiased-estimator test NLL {est:.4f} ± {est_se:.4f} nats")
    return metrics, exact


def run_evaluate(args):
    """Runs ``tfresflow evaluate``; returns the test NLL and its standard error.

    The test set is the one the training run held out: data, size and seed default to those
    in the run's ``metrics.json`` (:func:`tfresflow.cli.loading.evaluation_split`).
    """
    from tfresflow import evaluation

    model = loading.load_model(args.model_path)
    if image.is_image_model_object(model):
        return image.run_evaluate(args, model)
    data, n, seed, note = loading.evaluation_split(args.model_path, args.data, args.n,
                                                   args.seed)
    x_test = load_data(data, 1, n, seed, event_shape=getattr(model, "event_shape", None))[1]
    exact = evaluation.use_exact_evaluation(model)
    nll, se = evaluation.nll_with_stderr(model, x_test, seed=seed + 1, exact=exact)
    method = evaluation.nll_method(model, exact, detail=False)
    print(f"test NLL {nll:.4f} ± {se:.4f} nats on {len(x_test)} examples of {data} "
          f"(seed {seed}{'; ' + note if note else ''}) [{method}]")
    return {"test_nll": nll, "test_nll_stderr": se}


def run_sample(args):
    """Runs ``tfresflow sample``; returns the samples."""
    from tfresflow.io import atomic_path

    model = loading.load_model(args.model_path)
    if image.is_image_model_object(model):
        return image.run_sample(args, model)
    samples = model.sample(args.n, seed=args.seed).numpy()
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, samples)
    print(f"wrote {args.n} samples to {args.out}")
    return samples
