"""Cost of one log-likelihood gradient of a square linear flow (Gresele et al., 2020, Fig. 1).

Model: ``L`` square ``D x D`` affine layers with smooth leaky ReLUs in between (default
``L = 2``: ``x -> linear -> s -> linear -> z``), standard normal base, batch ``B = 100``,
float32. One gradient evaluation = ``tape.gradient(-mean log p(x), weights)`` in a
``tf.function`` for three methods:

* ``relative``          relative gradient (``relative=True, training=True``): no determinant,
                        no inverse, every product with the batch dimension inside;
* ``ordinary_inverse``  Euclidean gradient with the explicit inverse ``W^{-T}`` for the
                        log-det term (``relative=False, training=True``);
* ``autodiff_slogdet``  autodiff through ``tf.linalg.slogdet(W)`` (``relative=False,
                        training=False``; the exact loss value is computed too).

FLOP model (multiply-adds count 2; LU ``2/3 D^3``, inverse from LU ``+4/3 D^3``; for
``B > D`` the relative gradient uses the order ``W (u^T d)``: ``(6 L - 2) B D^2 + 2 L D^3``):

    relative          (8 L - 2) B D^2
    ordinary_inverse  (6 L - 2) B D^2 + 2 L D^3
    autodiff_slogdet  (6 L - 2) B D^2 + 8/3 L D^3   (LU for the value, inverse in its gradient)

Timing: median over repeats after a trace + warm-up call. Memory: peak of TensorFlow's CPU
allocator during one call minus what was allocated before it (weights and inputs excluded,
returned gradients included); the allocator statistics register nothing for small problems
(D <= 128 here), shown as ``n/a``.
Fitted exponents are least-squares slopes of ``log time`` vs ``log D`` over ``D`` in
``[256, 4096]``. Writes ``benchmarks/results/relative_gradient.{json,png}``.

    python benchmarks/relative_gradient.py               # full sweep (a few minutes, 2 cores)
    python benchmarks/relative_gradient.py --dims 64,128 --repeats 3   # quick look
"""
import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfresflow as trf  # noqa: E402
from tfresflow import io  # noqa: E402

METHODS = {
    "relative": dict(relative=True, training=True),
    "ordinary_inverse": dict(relative=False, training=True),
    "autodiff_slogdet": dict(relative=False, training=False),
}
DEFAULT_DIMS = (64, 128, 256, 512, 1024, 2048, 4096)
FIT_RANGE = (256, 4096)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def flop_count(method, d, batch, layers):
    """Floating-point operations of one gradient evaluation (see the module docstring)."""
    gemm = 2.0 * batch * d * d
    if method == "relative":  # (W u^T) d for B <= D, W (u^T d) for B > D
        return (2 * layers - 1) * gemm + layers * min(2 * gemm, gemm + 2.0 * d ** 3)
    if method == "ordinary_inverse":
        return (3 * layers - 1) * gemm + 2.0 * layers * d ** 3
    return (3 * layers - 1) * gemm + (8.0 / 3.0) * layers * d ** 3


def make_step(d, layers, relative, training):
    model = trf.models.build_model("relgrad", d, n_steps=layers, relative=relative, seed=0)
    seed = tf.constant([0, 0], tf.int32)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x, seed=seed, training=training))
        return tape.gradient(loss, model.trainable_variables)

    return model, step


def _allocator_bytes(key):
    try:
        return tf.config.experimental.get_memory_info("CPU:0")[key]
    except (ValueError, tf.errors.OpError):  # allocator statistics unavailable
        return None


def time_and_memory(step, x, repeats, budget_s):
    """Median-ready call times and the peak allocator bytes of the first timed call.

    The first (tracing) call doubles as warm-up when it is slow; otherwise one more warm-up
    call runs. Memory: peak of TF's CPU allocator during the call minus the bytes live before
    it (weights and inputs are excluded, the returned gradients included).
    """
    t0 = time.perf_counter()
    step(x)  # trace (and warm-up)
    if time.perf_counter() - t0 < 1.0:
        step(x)
    times, peak = [], None
    start = time.perf_counter()
    while len(times) < repeats:
        first = not times
        if first:
            try:
                tf.config.experimental.reset_memory_stats("CPU:0")
                before = _allocator_bytes("current")
            except (ValueError, tf.errors.OpError):
                before = None
        t0 = time.perf_counter()
        out = step(x)
        times.append(time.perf_counter() - t0)
        if first and before is not None:
            peak = int(_allocator_bytes("peak") - before)
        del out
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return times, peak


def fitted_slope(dims, values, lo, hi):
    pts = [(np.log(d), np.log(v)) for d, v in zip(dims, values) if lo <= d <= hi and v]
    if len(pts) < 2:
        return None
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def plot(results, dims, path, batch, layers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.3))
    for method in METHODS:
        rows = [r for r in results if r["method"] == method]
        ds = [r["D"] for r in rows]
        slope = fitted_slope(ds, [r["median_s"] for r in rows], *FIT_RANGE)
        label = method + (f" (slope {slope:.2f})" if slope is not None else "")
        ax_t.loglog(ds, [r["median_s"] for r in rows], "o-", label=label)
        mem = [(r["D"], r["peak_bytes"]) for r in rows if r["peak_bytes"]]
        if mem:
            ax_m.loglog([m[0] for m in mem], [m[1] / 2 ** 20 for m in mem], "o-", label=method)
    ax_t.set_xlabel("dimension D")
    ax_t.set_ylabel("seconds per gradient evaluation")
    ax_t.set_title(f"time (batch {batch}, L = {layers}, {os.cpu_count()} CPUs)")
    ax_m.set_xlabel("dimension D")
    ax_m.set_ylabel("peak MiB (TF CPU allocator)")
    ax_m.set_title("peak memory of one evaluation")
    for ax in (ax_t, ax_m):
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default=",".join(map(str, DEFAULT_DIMS)),
                        help="comma-separated dimensions D")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--layers", type=int, default=2, help="linear layers L")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls (median)")
    parser.add_argument("--budget", type=float, default=12.0,
                        help="seconds per (method, D) after which at least 3 repeats suffice")
    parser.add_argument("--out-dir", default=RESULTS)
    args = parser.parse_args(argv)
    dims = [int(v) for v in args.dims.split(",") if v.strip()]
    if not dims or min(dims) < 1 or args.batch < 1 or args.layers < 1 or args.repeats < 1:
        parser.error("--dims, --batch, --layers and --repeats must be positive")
    io.ensure_writable_dir(args.out_dir, "--out-dir")

    load_before = os.getloadavg()
    results = []
    header = (f"{'D':>6} {'method':>18} {'median s':>10} {'min s':>10} {'GFLOP':>9} "
              f"{'GFLOP/s':>8} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    for d in dims:
        x = tf.constant(np.random.default_rng(d).normal(size=(args.batch, d)), tf.float32)
        for method, opts in METHODS.items():
            model, step = make_step(d, args.layers, **opts)
            times, mem = time_and_memory(step, x, args.repeats, args.budget)
            flops = flop_count(method, d, args.batch, args.layers)
            med = statistics.median(times)
            results.append(dict(method=method, D=d, median_s=med, times_s=times,
                                peak_bytes=mem, flops=flops))
            mem_txt = f"{mem / 2 ** 20:9.1f}" if mem else f"{'n/a':>9}"
            print(f"{d:>6} {method:>18} {med:10.5f} {min(times):10.5f} {flops / 1e9:9.3f} "
                  f"{flops / med / 1e9:8.1f} {mem_txt}", flush=True)
            del model, step

    # Medians are the headline; minima are reported too because on a shared machine other
    # processes only ever add time (the minimum is the less contaminated estimate).
    stats = {"median": lambda r: r["median_s"], "min": lambda r: min(r["times_s"])}
    slopes = {stat: {m: fitted_slope([r["D"] for r in results if r["method"] == m],
                                     [get(r) for r in results if r["method"] == m], *FIT_RANGE)
                     for m in METHODS}
              for stat, get in stats.items()}
    speedups = {}
    for d in dims:
        by = {r["method"]: r for r in results if r["D"] == d}
        rel = by["relative"]
        speedups[str(d)] = {
            f"{m}_over_relative": {"time_median": by[m]["median_s"] / rel["median_s"],
                                   "time_min": min(by[m]["times_s"]) / min(rel["times_s"]),
                                   "flops": by[m]["flops"] / rel["flops"]}
            for m in METHODS if m != "relative"}
    for stat in stats:
        print(f"\nfitted time exponents ({stat} times) over D in {list(FIT_RANGE)}: "
              + ", ".join(f"{m} {v:.2f}" if v is not None else f"{m} n/a"
                          for m, v in slopes[stat].items()))
    print("speed-up of relative (median time ratio; min time ratio; FLOP ratio):")
    for d, s in speedups.items():
        print(f"  D={d:>5}: " + ", ".join(
            f"{k.replace('_over_relative', '')} {v['time_median']:.1f}x; "
            f"{v['time_min']:.1f}x; {v['flops']:.1f}x" for k, v in s.items()))
    load_after = os.getloadavg()
    print(f"load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs; other processes inflate times)")

    report = dict(
        description=("one gradient evaluation of -mean log p(x) for a square linear flow "
                     "(L linear layers, smooth leaky ReLU between), float32"),
        config=dict(batch=args.batch, layers=args.layers, dims=dims, repeats=args.repeats,
                    fit_range=list(FIT_RANGE)),
        flop_model={"relative": "(8L-2) B D^2",
                    "ordinary_inverse": "(6L-2) B D^2 + 2 L D^3",
                    "autodiff_slogdet": "(6L-2) B D^2 + 8/3 L D^3"},
        machine=dict(cpus=os.cpu_count(), platform=platform.platform(),
                     python=sys.version.split()[0], tensorflow=tf.__version__,
                     load_average_before=load_before, load_average_after=load_after),
        results=results, fitted_time_exponents=slopes, speedups=speedups)
    json_path = os.path.join(args.out_dir, "relative_gradient.json")
    png_path = os.path.join(args.out_dir, "relative_gradient.png")
    io.write_json(json_path, report)
    plot(results, dims, png_path, args.batch, args.layers)
    print(f"wrote {json_path} and {png_path}")
    return report


if __name__ == "__main__":
    main()
