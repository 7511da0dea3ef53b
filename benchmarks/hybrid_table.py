"""Hybrid models: residual vs coupling blocks for lambda = 0, 1/D, 1 (Residual Flows, Table 4).

The Residual Flows hybrid experiment (Chen et al., 2019, Section 5.3, Table 4; i-DenseNets,
Section 4.3, Table 4) scaled to 2 CPU cores: a small multi-scale image flow (``resflow-image``
or ``coupling-image``, no FC blocks, the logit transform of the density models as for MNIST in
the paper) with the classifier branches of :class:`tfresflow.models.HybridFlowModel`, trained
on ``-(lambda log p(x) + log p(y|x))`` for ``lambda = 0, 1/D, 1``, every run with the same number
of optimiser steps, batch size, learning rate, data and seed. The coupling model's hidden width
is chosen so its parameter count matches the residual model's as closely as possible.

Reported on the held-out test split: accuracy and bits/dim (of the discrete 8-bit data,
:func:`tfresflow.evaluation.image_bits_per_dim`; the residual model's log-det is the unbiased
estimator, evaluation mode), each with its standard error over test examples
(:func:`tfresflow.evaluation.mean_and_stderr`; the images are dequantised once with a fixed
seed). The issue's criterion: lambda = 1/D keeps the residual model's accuracy within 3 points
of lambda = 0.

    python benchmarks/hybrid_table.py --data mnist5k --steps 300 --coupling-hidden 38

(``--coupling-hidden 38`` is what the parameter match finds for the default residual model;
without it the script searches.) Results: ``docs/results/hybrid_table.json``.
"""
import argparse
import json
import os
import time

import keras

import tfresflow as trf
from tfresflow import evaluation, io
from tfresflow import random as trf_random
from tfresflow.data import dequantization
from tfresflow.data.images import IMAGE_DATASETS, labelled_image_batches, load_images
from tfresflow.models import HybridFlowModel, build_model, count_parameters

LAMBDAS = ("0", "1/D", "1")


def parse_lambda(text):
    return "1/D" if text.strip().upper() == "1/D" else float(text)


def residual_options(args, alpha):
    return dict(scales=args.scales, blocks_per_scale=args.blocks, hidden_channels=args.hidden,
                fc_blocks=0, alpha=alpha,
                logdet=trf.logdet.Unbiased(n_eval_exact_terms=args.eval_terms))


def coupling_options(args, alpha, hidden):
    return dict(scales=args.scales, blocks_per_scale=args.blocks, hidden_channels=hidden,
                fc_blocks=0, alpha=alpha)


def make_hybrid(kind, shape, options, lam, args):
    keras.utils.set_random_seed(args.seed)
    flow = build_model(kind, shape, seed=args.seed, **options)
    return HybridFlowModel(flow, num_classes=args.num_classes, lam=lam, branch_channels=args.branch_channels,
                           seed=args.seed)


def matched_coupling_hidden(shape, target, args, alpha):
    """The coupling hidden width whose hybrid parameter count is closest to ``target``."""
    best = None
    for hidden in range(4, 257, 2):
        n = count_parameters(make_hybrid("coupling-image", shape,
                                         coupling_options(args, alpha, hidden), 0.0, args))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (hidden, n)
        if n > target:
            break
    return best


def run(name, kind, options, lam, data, args):
    (train_x, train_y), (test_x, test_y), shape = data
    model = make_hybrid(kind, shape, options, lam, args)
    params = count_parameters(model)
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    ds = labelled_image_batches(train_x, train_y, args.batch_size, args.seed,
                                stop_step=args.steps)
    start = time.time()
    history = model.fit(ds, epochs=1, steps_per_epoch=args.steps, shuffle=False, verbose=0)
    train_seconds = time.time() - start
    start = time.time()
    x_eval = dequantization.dequantize(
        test_x, trf_random.fold_in_tag(args.seed, "eval/dequantize")).numpy()
    probs = model.predict_proba(x_eval, batch_size=args.eval_batch_size)
    acc, acc_se = evaluation.mean_and_stderr(probs.argmax(1) == test_y)
    bpd, bpd_se = evaluation.image_bits_per_dim(model, test_x, seed=args.seed,
                                                batch_size=args.eval_batch_size)
    eval_seconds = time.time() - start
    last = {k: float(v[-1]) for k, v in history.history.items()}
    result = {"model": name, "lambda": str(lam), "lambda_value": float(model.lam),
              "parameters": params, "test_accuracy": acc, "test_accuracy_stderr": acc_se,
              "test_bits_per_dim": bpd, "test_bits_per_dim_stderr": bpd_se,
              "final_train_metrics": last, "train_seconds": train_seconds,
              "eval_seconds": eval_seconds, "seconds_per_step": train_seconds / args.steps}
    print(f"{name:9s} lambda={str(lam):4s} params {params:7,d}  test acc {100 * acc:6.2f} ± "
          f"{100 * acc_se:.2f} %  test bpd {bpd:.3f} ± {bpd_se:.3f}  "
          f"(train {train_seconds:.0f} s, eval {eval_seconds:.0f} s)", flush=True)
    return result


def markdown(results):
    lines = ["| model | lambda | params | test accuracy (%) | test bits/dim |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['lambda']} | {r['parameters']:,} | "
                     f"{100 * r['test_accuracy']:.2f} ± {100 * r['test_accuracy_stderr']:.2f} | "
                     f"{r['test_bits_per_dim']:.3f} ± {r['test_bits_per_dim_stderr']:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k", choices=["mnist5k", "digits"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--scales", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=1, help="blocks per scale")
    parser.add_argument("--hidden", type=int, default=32, help="residual hidden channels")
    parser.add_argument("--coupling-hidden", type=int, default=None,
                        help="coupling hidden channels (default: matched parameter count)")
    parser.add_argument("--branch-channels", type=int, default=64)
    parser.add_argument("--eval-terms", type=int, default=5,
                        help="exact terms of the unbiased log-det at evaluation")
    parser.add_argument("--eval-batch-size", type=int, default=250)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--lambdas", default=",".join(LAMBDAS))
    parser.add_argument("--models", default="residual,coupling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/results/hybrid_table.json")
    args = parser.parse_args()
    io.check_output_file(args.out, "--out")
    spec = IMAGE_DATASETS.lookup(args.data, "--data")
    args.num_classes = spec.num_classes
    train = load_images(args.data, "train", seed=args.seed)
    test = load_images(args.data, "test", seed=args.seed, max_examples=args.max_test)
    shape = list(train[0].shape[1:])
    data = (train, test, shape)
    configs = {}
    models = args.models.split(",")
    if "residual" in models:
        configs["residual"] = ("resflow-image", residual_options(args, spec.alpha))
    if "coupling" in models:
        if "coupling-image" not in trf.models.MODEL_BUILDERS:
            print("coupling-image builder missing: the coupling rows are left out", flush=True)
        else:
            target = count_parameters(make_hybrid(
                "resflow-image", shape, residual_options(args, spec.alpha), 0.0, args))
            if args.coupling_hidden is None:
                hidden, n = matched_coupling_hidden(shape, target, args, spec.alpha)
            else:
                hidden = args.coupling_hidden
                n = count_parameters(make_hybrid("coupling-image", shape, coupling_options(
                    args, spec.alpha, hidden), 0.0, args))
            print(f"coupling hidden channels {hidden}: {n:,} parameters vs residual {target:,}",
                  flush=True)
            configs["coupling"] = ("coupling-image", coupling_options(args, spec.alpha, hidden))
    settings = {k: v for k, v in vars(args).items()}
    settings.update(dataset_shape=shape, n_train=int(len(train[0])), n_test=int(len(test[0])),
                    alpha=spec.alpha, cpu_threads=os.cpu_count(),
                    configs={k: {"builder": v[0], **{o: (repr(w) if o == "logdet" else w)
                                                     for o, w in v[1].items()}}
                             for k, v in configs.items()})
    # The residual lambda = 0 and 1/D runs (the criterion) first, then alternating, so a run
    # cut short has the most informative rows; the JSON is rewritten after every run.
    lams = [parse_lambda(t) for t in args.lambdas.split(",")]
    order = [(name, lam) for lam in lams for name in configs]
    order.sort(key=lambda item: (str(item[1]) == "1.0", item[0] != "residual"))
    results = []
    for name, lam in order:
        kind, options = configs[name]
        results.append(run(name, kind, options, lam, data, args))
        write(args.out, settings, results, len(order))


def write(path, settings, results, n_runs):
    """Writes the JSON (results so far, the criterion, the markdown table); returns the table."""
    by = {(r["model"], r["lambda"]): r for r in results}
    criterion = None
    if ("residual", "0.0") in by and ("residual", "1/D") in by:
        gap = by[("residual", "0.0")]["test_accuracy"] - by[("residual", "1/D")]["test_accuracy"]
        criterion = {"accuracy_drop_points_1_over_D_vs_0": 100 * gap,
                     "within_3_points": bool(100 * gap <= 3.0)}
    rows = sorted(results, key=lambda r: (r["model"] != "residual", r["lambda_value"]))
    table = markdown(rows)
    io.write_json(path, {"settings": settings, "results": rows, "complete": len(rows) == n_runs,
                         "criterion_residual": criterion, "markdown": table})
    if len(rows) == n_runs:
        print(table)
        print("criterion (residual, lambda = 1/D within 3 points of lambda = 0):",
              json.dumps(criterion), flush=True)
    return table

if __name__ == "__main__":
    main()
