"""Signal preservation of 1-Lipschitz activations (i-DenseNets, Perugachi-Diaz et al., 2021, §5.1).

Reproduces Table 5: for ``v, w ~ N(0, I_D)`` (100,000 independent pairs) the mean and maximum of
the distance ratio ``||phi(v) - phi(w)||_2 / ||v - w||_2`` for the sigmoid, LipSwish and
CLipSwish, at ``D = 1, 128, 1024``. A ratio near 1 means the activation preserves the signal
(little gradient-norm attenuation); the maximum approaches the Lipschitz constant. LipSwish and
CLipSwish are the package's layers at their initialisation (``beta = softplus(0.5)``, as the
reference code and the paper's Figure 6). Appendix D.1 (Table 8) repeats the experiment with
``N(0, 5)``; it is computed too, reading the 5 both as a standard deviation and as a variance.

Usage::

    python benchmarks/signal_preservation.py [--pairs 100000] [--seed 0]

Prints a table next to the paper's values and writes
``benchmarks/results/signal_preservation.json``.
"""
import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresflow import activations  # noqa: E402

DIMENSIONS = (1, 128, 1024)
# Paper values: {activation: {D: (mean, max)}}.
TABLE5 = {"sigmoid": {1: (0.22, 0.25), 128: (0.21, 0.22), 1024: (0.21, 0.21)},
          "lipswish": {1: (0.46, 1.0), 128: (0.51, 0.64), 1024: (0.51, 0.55)},
          "clipswish": {1: (0.72, 1.0), 128: (0.71, 0.77), 1024: (0.71, 0.73)},
          "identity": {1: (1.0, 1.0), 128: (1.0, 1.0), 1024: (1.0, 1.0)}}
TABLE8 = {"sigmoid": {1: (0.09, 0.25), 128: (0.08, 0.10), 1024: (0.08, 0.09)},
          "lipswish": {1: (0.47, 1.0), 128: (0.54, 0.69), 1024: (0.54, 0.59)},
          "clipswish": {1: (0.83, 1.0), 128: (0.76, 0.83), 1024: (0.76, 0.78)},
          "identity": {1: (1.0, 1.0), 128: (1.0, 1.0), 1024: (1.0, 1.0)}}
TOLERANCE = 0.02


def make_activations():
    """The activations compared in Table 5 (LipSwish/CLipSwish at the reference init)."""
    return {"sigmoid": tf.sigmoid, "lipswish": activations.LipSwish(),
            "clipswish": activations.CLipSwish(), "identity": activations.Identity()}


def distance_ratios(phi, dim, pairs, scale, seed, chunk_elements=2 ** 22):
    """All ratios ``||phi(v) - phi(w)|| / ||v - w||`` for ``pairs`` Gaussian pairs (chunked)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, chunk_elements // dim)
    out = []
    for start in range(0, pairs, chunk):
        n = min(chunk, pairs - start)
        v = tf.constant(scale * rng.standard_normal((n, dim)), tf.float32)
        w = tf.constant(scale * rng.standard_normal((n, dim)), tf.float32)
        num = tf.norm(phi(v) - phi(w), axis=-1)
        out.append((num / tf.norm(v - w, axis=-1)).numpy())
    return np.concatenate(out)


def run_table(pairs, scale, seed):
    results = {}
    for name, phi in make_activations().items():
        results[name] = {}
        for dim in DIMENSIONS:
            r = distance_ratios(phi, dim, pairs, scale, seed + dim)
            results[name][dim] = (float(r.mean()), float(r.max()))
    return results


def compare(results, paper):
    rows, worst = [], 0.0
    for name, by_dim in results.items():
        for dim, (mean, mx) in by_dim.items():
            pm, px = paper[name][dim]
            dev = max(abs(round(mean, 2) - pm), abs(round(mx, 2) - px))
            worst = max(worst, dev)
            rows.append(dict(activation=name, D=dim, mean=mean, max=mx, paper_mean=pm,
                             paper_max=px, abs_dev_rounded=dev,
                             abs_dev=max(abs(mean - pm), abs(mx - px))))
    return rows, worst


def print_rows(title, rows, worst):
    print(f"\n{title}")
    print(f"{'activation':<10} {'D':>5} | {'mean':>6} {'paper':>6} | {'max':>6} {'paper':>6}")
    for r in rows:
        print(f"{r['activation']:<10} {r['D']:>5} | {r['mean']:6.3f} {r['paper_mean']:6.2f} | "
              f"{r['max']:6.3f} {r['paper_max']:6.2f}")
    raw = max(r["abs_dev"] for r in rows)
    verdict = "matches" if worst <= TOLERANCE + 1e-9 else "does NOT match"
    print(f"largest |ours (2 d.p.) - paper| = {worst:.2f} (unrounded {raw:.3f}): {verdict} "
          f"within {TOLERANCE}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(pathlib.Path(__file__).parent / "results"
                                                / "signal_preservation.json"))
    args = parser.parse_args(argv)
    start = time.time()
    report = {"pairs": args.pairs, "seed": args.seed, "tolerance": TOLERANCE,
              "clipswish_lipschitz_constant": activations.clipswish_lipschitz_constant(),
              "beta": float(np.log1p(np.exp(0.5))), "tables": {}}
    for key, title, scale, paper in (
            ("table5_N(0,1)", "Table 5: v, w ~ N(0, 1)", 1.0, TABLE5),
            ("table8_N(0,5)_std5", "Table 8: v, w ~ N(0, 5), 5 read as std", 5.0, TABLE8),
            ("table8_N(0,5)_var5", "Table 8: v, w ~ N(0, 5), 5 read as variance",
             float(np.sqrt(5.0)), TABLE8)):
        rows, worst = compare(run_table(args.pairs, scale, args.seed), paper)
        print_rows(title, rows, worst)
        report["tables"][key] = {"rows": rows, "max_abs_dev_rounded": worst,
                                 "max_abs_dev": max(r["abs_dev"] for r in rows),
                                 "matches_within_tolerance": worst <= TOLERANCE + 1e-9}
    report["seconds"] = time.time() - start
    path = pathlib.Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    print(f"\nwrote {path} ({report['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
