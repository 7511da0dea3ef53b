"""Residual Flow vs i-DenseNet (with and without learnable concatenation) on 2-D toys.

The i-DenseNet paper's Table 1 setting (2 circles, checkerboard, 2 moons) scaled to 2 CPU cores:
every model gets the same number of blocks, optimiser steps, batch size and data, and the
i-DenseNet growth is chosen so its parameter count matches the Residual Flow's as closely as
possible. Test NLL (nats) uses the evaluation-time unbiased estimator (20 exact terms + roulette)
and is reported with its standard error over test examples.

    python benchmarks/toy_compare.py --steps 1500 --blocks 4
"""
import argparse
import json
import os
import time

import keras

import tfresflow as trf
from tfresflow import evaluation, io, plotting

DATASETS = ("circles", "checkerboard", "moons")


def matched_growth(event_size, target_params, n_steps, depth, activation):
    """The even growth whose i-DenseNet parameter count is closest to ``target_params``."""
    best = None
    for growth in range(4, 400, 2):
        n = trf.models.build_model("idensenet", event_size, n_steps=n_steps, depth=depth,
                                   growth=growth, activation=activation).count_params()
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (growth, n)
        if n > target_params:
            break
    return best[0]


def configurations(blocks, hidden, depth):
    resflow = dict(kind="resflow", n_steps=blocks, hidden_units=hidden)
    target = trf.models.build_model(**{**resflow, "event_size": 2}).count_params()
    growth = matched_growth(2, target, blocks, depth, "clipswish")
    dense = dict(kind="idensenet", n_steps=blocks, depth=depth, growth=growth,
                 activation="clipswish")
    return {"Residual Flow": resflow,
            "i-DenseNet": {**dense, "learnable_concat": False},
            "i-DenseNet+LC": {**dense, "learnable_concat": True}}


def run(name, config, data, args, out):
    x_test = trf.data.sample(data, args.n_test, seed=args.seed + 1)
    keras.utils.set_random_seed(args.seed)
    config = dict(config)
    model = trf.models.build_model(config.pop("kind"), 2, seed=args.seed, **config)
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    ds = trf.data.dataset(data, args.n_train, batch_size=args.batch_size, seed=args.seed,
                          repeat=True)
    start = time.time()
    model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
    seconds = time.time() - start
    nll, se = evaluation.nll_with_stderr(model, x_test, seed=args.seed)
    slug = name.lower().replace(" ", "_").replace("+", "_")
    plotting.save_density(os.path.join(out, f"{data}_{slug}.png"),
                          lambda p: model.log_prob(p, seed=[0, 1]).numpy(),
                          plotting.plot_limits(x_test), title=f"{name}: {data}",
                          resolution=120)
    return {"test_nll": nll, "test_nll_stderr": se, "parameters": int(model.count_params()),
            "train_seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--out", default="benchmarks/results/toy_compare")
    args = parser.parse_args()
    io.ensure_writable_dir(args.out, "--out")
    configs = configurations(args.blocks, (args.hidden, args.hidden), args.depth)
    results = {}
    for data in args.datasets.split(","):
        results[data] = {}
        for name, config in configs.items():
            results[data][name] = run(name, config, data, args, args.out)
            r = results[data][name]
            print(f"{data:13s} {name:14s} params {r['parameters']:6d}  test NLL "
                  f"{r['test_nll']:.3f} ± {r['test_nll_stderr']:.3f}  ({r['train_seconds']:.0f} s)",
                  flush=True)
    ordering = {data: (r["i-DenseNet+LC"]["test_nll"] <= r["i-DenseNet"]["test_nll"]
                       <= r["Residual Flow"]["test_nll"]) for data, r in results.items()}
    summary = {"settings": vars(args), "configs": configs, "results": results,
               "paper_ordering_holds": ordering}
    io.write_json(os.path.join(args.out, "toy_compare.json"), summary)
    print("paper ordering (i-DenseNet+LC <= i-DenseNet <= Residual Flow):", ordering)


if __name__ == "__main__":
    main()
