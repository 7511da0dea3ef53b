"""Command line: ``tfresflow train | evaluate | sample``.

``tfresflow train`` is the main job: data -> flow -> Keras ``fit`` -> evaluation -> figures ->
saved model. Everything it writes goes to ``--out`` atomically (``metrics.json``,
``density.png``, ``samples.png``, ``model.keras``, ``saved_model/``).
"""
import argparse
import ast
import os
import sys
import time

import numpy as np

DEFAULT_DATA = "checkerboard"
DEFAULT_MODEL = "coupling"


def _int_list(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _option(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # keep as a string
    return key.strip().replace("-", "_"), value


def build_parser():
    parser = argparse.ArgumentParser(prog="tfresflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a flow and write metrics, figures, models")
    train.add_argument("--data", default=DEFAULT_DATA,
                       help="toy density name or a .npy file of shape [n, d] (default: "
                            f"{DEFAULT_DATA})")
    train.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default: {DEFAULT_MODEL})")
    train.add_argument("--steps", type=_positive_int, default=2000, help="optimiser steps")
    train.add_argument("--batch-size", type=_positive_int, default=256)
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--n-train", type=_positive_int, default=20000)
    train.add_argument("--n-test", type=_positive_int, default=5000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--hidden", type=_int_list, default=None,
                       help="hidden widths, e.g. 64,64")
    train.add_argument("--flow-steps", type=_positive_int, default=None,
                       help="number of flow steps (blocks)")
    train.add_argument("--components", type=_positive_int, default=None,
                       help="mixture components of --model boosted (default 4)")
    train.add_argument("--option", type=_option, action="append", default=[],
                       metavar="KEY=VALUE", help="extra model option (repeatable)")
    train.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATA)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="test NLL of a saved .keras model")
    evaluate.add_argument("model_path")
    evaluate.add_argument("--data", default=DEFAULT_DATA)
    evaluate.add_argument("--n", type=_positive_int, default=5000)
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the training run: the test set is the one `train` drew")

    sample = sub.add_parser("sample", help="draw samples from a saved .keras model")
    sample.add_argument("model_path")
    sample.add_argument("--n", type=_positive_int, default=1000)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, help=".npy file to write")

    from tfresflow.cli_boosted import add_match_command
    add_match_command(sub)
    return parser


def load_data(spec, n_train, n_test, seed):
    """Train/test arrays from a toy density name or a ``.npy`` file (split 80/20)."""
    from tfresflow.data.split import train_test_data
    return train_test_data(spec, n_train, n_test, seed, name="--data")


def _model_options(args):
    opts = dict(args.option)
    if args.hidden is not None:
        opts["hidden_units"] = args.hidden
    if args.flow_steps is not None:
        opts["n_steps"] = args.flow_steps
    opts.setdefault("seed", args.seed)
    return opts


def train(args):
    import keras
    import tensorflow as tf

    from tfresflow import evaluation, io, plotting
    from tfresflow.export import export_saved_model
    from tfresflow.models import MODEL_BUILDERS, build_model

    if args.model not in MODEL_BUILDERS and args.model != "boosted":
        raise ValueError(f"Unknown --model {args.model!r}; choose one of "
                         f"{sorted([*MODEL_BUILDERS, 'boosted'])}.")
    if args.components is not None and args.model != "boosted":
        raise ValueError(f"--components applies to --model boosted only, not {args.model!r}.")
    out = args.out or os.path.join("runs", f"{args.model}-{os.path.basename(args.data)}")
    x_train, x_test = load_data(args.data, args.n_train, args.n_test, args.seed)
    io.ensure_writable_dir(out, "--out")
    if args.model == "boosted":
        from tfresflow.cli_boosted import train_boosted
        return train_boosted(args, x_train, x_test, out)
    keras.utils.set_random_seed(args.seed)
    try:
        model = build_model(args.model, x_train.shape[1], **_model_options(args))
    except TypeError as err:
        raise ValueError(f"Bad option for --model {args.model}: {err}") from None
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    ds = (tf.data.Dataset.from_tensor_slices(x_train)
          .shuffle(min(len(x_train), 10000), seed=args.seed).repeat()
          .batch(args.batch_size, drop_remainder=len(x_train) >= args.batch_size)
          .prefetch(tf.data.AUTOTUNE))
    print(f"training {args.model} on {args.data}: {model.count_params()} parameters, "
          f"{args.steps} steps, batch {args.batch_size}")
    start = time.time()
    history = model.fit(ds, epochs=1, steps_per_epoch=args.steps, shuffle=False,
                        verbose=0 if args.quiet else 1)
    train_seconds = time.time() - start

    # Low-dimensional models with stochastic log-dets are evaluated (and plotted) with the
    # exact log-det of the brute-force Jacobian; the unbiased estimate is reported beside it.
    exact = evaluation.use_exact_evaluation(model)
    nlls = evaluation.train_test_nll(model, x_train, x_test, seed=args.seed, exact=exact,
                                     n_train=args.n_test)
    train_nll, train_se = nlls["train_nll"], nlls["train_nll_stderr"]
    test_nll, test_se = nlls["test_nll"], nlls["test_nll_stderr"]
    metrics = {
        "model": args.model, "data": args.data, "steps": args.steps,
        "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "parameters": int(model.count_params()),
        "nll_method": evaluation.nll_method(model, exact), **nlls,
        "final_training_loss": float(history.history["loss"][-1]),
        "final_training_loss_excludes_log_det_w": any(
            getattr(b, "training_log_det_is_partial", False)
            for b in model.steps),
        "stochastic_log_det": bool(model.has_stochastic_log_det),
        "train_seconds": train_seconds,
    }
    if exact:
        est, est_se = evaluation.nll_with_stderr(model, x_test, seed=args.seed + 1)
        metrics.update(test_nll_unbiased_estimate=est, test_nll_unbiased_estimate_stderr=est_se)
    print(f"train NLL {train_nll:.4f} ± {train_se:.4f} nats | test NLL {test_nll:.4f} ± "
          f"{test_se:.4f} nats | fitted Gaussian test NLL "
          f"{metrics['gaussian_baseline_test_nll']:.4f} nats [{metrics['nll_method']}]")
    if exact:
        print(f"unbiased-estimator test NLL {metrics['test_nll_unbiased_estimate']:.4f} ± "
              f"{metrics['test_nll_unbiased_estimate_stderr']:.4f} nats")
    if x_train.shape[1] == 2:
        limits = plotting.plot_limits(x_test)
        plotting.save_density(os.path.join(out, "density.png"),
                              lambda p: (model.exact_log_prob(p) if exact else
                                         model.log_prob(p, seed=[args.seed, 7])).numpy(),
                              limits, title=f"{args.model} on {args.data}", resolution=150)
        samples = model.sample(len(x_test), seed=args.seed).numpy()
        plotting.save_samples(os.path.join(out, "samples.png"), x_test, samples, limits)
    with io.atomic_path(os.path.join(out, "model.keras")) as tmp:
        model.save(tmp + ".keras")
        os.replace(tmp + ".keras", tmp)
    export_saved_model(model, os.path.join(out, "saved_model"))
    io.write_json(os.path.join(out, "metrics.json"), metrics)
    print(f"wrote {out}/metrics.json, model.keras, saved_model/"
          + (", density.png, samples.png" if x_train.shape[1] == 2 else ""))
    return metrics


def _load_model(path):
    import keras

    if not os.path.exists(path):
        raise ValueError(f"Model file {path!r} does not exist.")
    return keras.saving.load_model(path)


def evaluate(args):
    from tfresflow import evaluation

    model = _load_model(args.model_path)
    x_test = load_data(args.data, 1, args.n, args.seed)[1]
    exact = evaluation.use_exact_evaluation(model)
    nll, se = evaluation.nll_with_stderr(model, x_test, seed=args.seed + 1, exact=exact)
    method = evaluation.nll_method(model, exact, detail=False)
    print(f"test NLL {nll:.4f} ± {se:.4f} nats on {len(x_test)} examples of {args.data} "
          f"[{method}]")
    return {"test_nll": nll, "test_nll_stderr": se}


def sample(args):
    from tfresflow.io import atomic_path

    model = _load_model(args.model_path)
    samples = model.sample(args.n, seed=args.seed).numpy()
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, samples)
    print(f"wrote {args.n} samples to {args.out}")
    return samples


def match(args):
    from tfresflow.cli_boosted import run_match
    return run_match(args)


COMMANDS = {"train": train, "evaluate": evaluate, "sample": sample, "match": match}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ValueError, FloatingPointError) as err:
        print(f"tfresflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
