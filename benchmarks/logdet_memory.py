"""Peak memory and time of one training step of a conv residual block vs the number of terms.

Residual Flows (Chen et al., 2019, Section 3.2, Table 1) claims that the Neumann-series gradient
makes training memory constant in the number ``n`` of power-series terms and that
backward-in-forward reduces it further. This benchmark measures, for ``n`` = 2, 5, 10, 20 terms
(``logdet.Truncated(n)``: exactly ``n`` vector-Jacobian products, the same chain code as the
Russian-roulette estimator) and three gradient modes:

* ``naive``: backpropagation through all ``n`` terms (``neumann_grad=False``);
* ``neumann``: the Neumann-series gradient (default);
* ``neumann+bif``: Neumann gradient computed in the forward pass (``grad_in_forward=True``).

One step = ``z = x + g(x)``, log-det, loss ``mean(|z|^2 / 2 - logdet)``, gradients, SGD update,
inside ``tf.function``; ``g`` = Conv2D 3x3 (C -> hidden) -> ELU -> Conv2D 1x1 -> ELU -> Conv2D
3x3 (hidden -> C), kernels rescaled to a contraction.

CPU TensorFlow has no allocator statistics, so each configuration runs in a fresh subprocess
and reports its peak resident set size (``VmHWM`` from ``/proc/self/status``). A ``baseline``
subprocess does the same set-up (imports, model, data) without any step; the increment over
it is the memory of the step. ``plain`` is a step of the residual block without log-det (the
path-wise memory every mode needs). Timings are wall-clock ms per step on a shared machine
(noisy).

Usage::

    .venv/bin/python benchmarks/logdet_memory.py                     # full table (~10 min)
    .venv/bin/python benchmarks/logdet_memory.py --terms 2 10 --size 16 --channels 16

Writes ``benchmarks/results/logdet_memory.json``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

MODES = {"naive": dict(neumann_grad=False), "neumann": dict(),
         "neumann+bif": dict(grad_in_forward=True)}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "logdet_memory.json")


def peak_rss_mb():
    """Peak resident set size of this process (``VmHWM``), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only).")


def worker(args):
    """One configuration in this (fresh) process; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import tfresflow as trf

    keras.utils.set_random_seed(0)
    c, h, terms = args.channels, args.hidden, args.terms[0]
    net = keras.Sequential([
        keras.Input((args.size, args.size, c)),
        keras.layers.Conv2D(h, 3, padding="same", activation="elu"),
        keras.layers.Conv2D(h, 1, padding="same", activation="elu"),
        keras.layers.Conv2D(c, 3, padding="same")])
    for layer in net.layers:
        # ||conv||_2 <= max over output channels of the kernel's absolute sum (Young): 0.85^(1/3).
        k = layer.kernel.numpy()
        layer.kernel.assign(k * 0.95 / np.abs(k).sum(axis=(0, 1, 2)).max())
    x = tf.constant(np.random.default_rng(0).normal(
        size=(args.batch, args.size, args.size, c)).astype(np.float32))
    optimizer = keras.optimizers.SGD(1e-3)
    optimizer.build(net.trainable_variables)

    if args.mode == "baseline":
        step = None
    elif args.mode == "plain":
        @tf.function
        def step(seed):
            with tf.GradientTape() as tape:
                z = x + net(x)
                loss = tf.reduce_mean(0.5 * tf.reduce_sum(z ** 2, [1, 2, 3]))
            grads = tape.gradient(loss, net.trainable_variables)
            optimizer.apply_gradients(zip(grads, net.trainable_variables))
            return loss
    else:
        block = trf.bijectors.ResidualBlock(
            net, logdet=trf.logdet.Truncated(terms, **MODES[args.mode]), event_ndims=3)

        @tf.function
        def step(seed):
            with tf.GradientTape() as tape:
                xd = tf.identity(x)
                z = block.inverse(xd, training=True, seed=seed)
                ld = block.inverse_log_det_jacobian(xd, 3, training=True, seed=seed)
                loss = tf.reduce_mean(0.5 * tf.reduce_sum(z ** 2, [1, 2, 3]) - ld)
            variables = net.trainable_variables
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip([tf.zeros_like(v) if g is None else g
                                           for g, v in zip(grads, variables)], variables))
            return loss

    ms = None
    if step is not None:
        step(tf.constant([0, 0]))   # trace + warm-up
        start = time.perf_counter()
        for i in range(args.steps):
            loss = step(tf.constant([0, i + 1]))
        float(loss)
        ms = 1000.0 * (time.perf_counter() - start) / args.steps
    print(json.dumps({"mode": args.mode, "terms": terms, "peak_rss_mb": peak_rss_mb(),
                      "ms_per_step": ms}))


def run_config(args, mode, terms):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode,
           "--terms", str(terms), "--batch", str(args.batch), "--size", str(args.size),
           "--channels", str(args.channels), "--hidden", str(args.hidden),
           "--steps", str(args.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"worker {mode} n={terms} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terms", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="height = width")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after warm-up")
    parser.add_argument("--repeats", type=int, default=1,
                        help="subprocesses per configuration (the median is reported)")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="baseline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    def measure(mode, terms):
        runs = [run_config(args, mode, terms) for _ in range(args.repeats)]
        rss = sorted(r["peak_rss_mb"] for r in runs)[len(runs) // 2]
        times = sorted(r["ms_per_step"] or 0.0 for r in runs)[len(runs) // 2]
        return rss, times

    baseline, _ = measure("baseline", 0)
    plain, plain_ms = measure("plain", 0)
    rows = []
    print(f"baseline (imports + model + data, no step): {baseline:.0f} MB peak RSS")
    print(f"plain step without log-det: {plain:.0f} MB (+{plain - baseline:.0f}), "
          f"{plain_ms:.0f} ms/step")
    print(f"{'mode':>12} {'n':>3} {'peak MB':>8} {'+MB':>6} {'ms/step':>8}")
    for mode in args.modes:
        for terms in args.terms:
            rss, ms = measure(mode, terms)
            rows.append({"mode": mode, "terms": terms, "peak_rss_mb": rss,
                         "increment_mb": rss - baseline, "ms_per_step": ms})
            print(f"{mode:>12} {terms:>3} {rss:8.0f} {rss - baseline:6.0f} {ms:8.0f}", flush=True)

    def increment(mode, terms):
        return next((r["increment_mb"] for r in rows
                     if r["mode"] == mode and r["terms"] == terms), None)

    summary = {}
    if 10 in args.terms and {"naive", "neumann+bif"} <= set(args.modes):
        ratio = increment("neumann+bif", 10) / increment("naive", 10)
        summary["bif_over_naive_increment_at_10"] = ratio
        print(f"Neumann+BIF / naive memory increment at n=10: {ratio:.2f}")
    for mode in args.modes:
        incs = [increment(mode, t) for t in args.terms]
        summary[f"{mode}_increment_range_mb"] = [min(incs), max(incs)]
    result = {"config": {k: getattr(args, k) for k in
                         ("batch", "size", "channels", "hidden", "steps", "repeats")},
              "baseline_rss_mb": baseline, "plain_step_rss_mb": plain,
              "plain_step_ms": plain_ms, "rows": rows, "summary": summary,
              "note": "peak RSS (VmHWM) of a fresh subprocess per configuration; CPU; "
                      "increment = peak - baseline (set-up without any step)"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
