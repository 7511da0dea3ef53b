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
inside ``tf.function`` (``--eager``: without it); ``g`` = Conv2D 3x3 (C -> hidden) -> ELU ->
Conv2D 1x1 -> ELU -> Conv2D 3x3 (hidden -> C), kernels rescaled to a contraction;
``--blocks m`` stacks ``m`` such residual blocks (the paper's memory argument for
backward-in-forward is about many blocks: Neumann keeps every block's second-order graph until
the global backward pass, backward-in-forward keeps none).

CPU TensorFlow's default allocator has no statistics, so each configuration runs in a fresh
subprocess and reports its peak resident set size (``VmHWM`` from ``/proc/self/status``). A
``baseline`` subprocess does the same set-up (imports, model, data) without any step; the
increment over it is the memory of the step (tensors, but also graph construction and
optimisation, and allocator fragmentation). A second subprocess per configuration runs with
``TF_CPU_ALLOCATOR_USE_BFC=true``, whose allocator statistics
(``tf.config.experimental.get_memory_info("CPU:0")``, reset after the warm-up step) give the
peak of live tensor memory during the timed steps: the quantity of the paper's Table 1. ``plain`` is a step of the residual block without log-det (the
path-wise memory every mode needs). Timings are wall-clock ms per step on a shared machine
(noisy).

What to expect (2-core CPU, graph mode; snapshots in ``docs/results/logdet_memory*.json``):
Neumann and Neumann+BIF are flat in ``n``; naive grows by about 20 MB per term for one block.
The paper's Table 1 measures whole models, where backward-in-forward pays off because no
block's second-order graph is kept until the global backward pass: with ``--blocks 4`` the
Neumann+BIF tensor peak at ``n = 10`` is 0.10 of naive's (RSS increment 0.16). For a single
block the floor is the double-backward pass itself (forward activations + one recorded VJP + its
backward, about the cost of two or three naive terms): 0.25 of naive in graph mode, 0.14 with
``--eager`` (the step run op by op, as PyTorch does). Graph-mode numbers also depend on the
executor's schedule (``--inter-op-threads 1`` makes naive use 1.6x more).

Usage::

    .venv/bin/python benchmarks/logdet_memory.py                     # full table (~10 min)
    .venv/bin/python benchmarks/logdet_memory.py --terms 2 10 --size 16 --channels 16
    .venv/bin/python benchmarks/logdet_memory.py --blocks 4 --out benchmarks/results/x.json

Writes ``benchmarks/results/logdet_memory.json``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from process_memory import peak_rss_mb

MODES = {"naive": dict(neumann_grad=False), "neumann": dict(),
         "neumann+bif": dict(grad_in_forward=True)}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "logdet_memory.json")


def worker(args):
    """One configuration in this (fresh) process; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import tfresflow as trf

    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    keras.utils.set_random_seed(0)
    c, h, terms = args.channels, args.hidden, args.terms[0]
    def conv_net():
        net = keras.Sequential([
            keras.Input((args.size, args.size, c)),
            keras.layers.Conv2D(h, 3, padding="same", activation="elu"),
            keras.layers.Conv2D(h, 1, padding="same", activation="elu"),
            keras.layers.Conv2D(c, 3, padding="same")])
        for layer in net.layers:
            # Scaled down to a (roughly) contractive block; this measures memory and time.
            k = layer.kernel.numpy()
            layer.kernel.assign(k * 0.95 / np.abs(k).sum(axis=(0, 1, 2)).max())
        return net

    nets = [conv_net() for _ in range(args.blocks)]
    variables = [v for net in nets for v in net.trainable_variables]
    x = tf.constant(np.random.default_rng(0).normal(
        size=(args.batch, args.size, args.size, c)).astype(np.float32))
    optimizer = keras.optimizers.SGD(1e-3)
    optimizer.build(variables)
    if args.mode not in MODES:   # "plain" (and "baseline", which never steps)
        steps = [lambda v, seed, net=net: (v + net(v), 0.0) for net in nets]
    else:
        def residual_step(net):
            block = trf.bijectors.ResidualBlock(
                net, logdet=trf.logdet.Truncated(terms, **MODES[args.mode]),
                event_ndims=3)

            def apply(v, seed):
                v = tf.identity(v)   # one tensor: value and log-det from one cached pass
                return (block.inverse(v, training=True, seed=seed),
                        block.inverse_log_det_jacobian(v, 3, training=True, seed=seed))
            return apply
        steps = [residual_step(net) for net in nets]

    def step(x, seed):
        with tf.GradientTape() as tape:
            z, total = x, 0.0
            for i, apply in enumerate(steps):
                z, ld = apply(z, seed + i)
                total += ld
            loss = tf.reduce_mean(0.5 * tf.reduce_sum(z ** 2, [1, 2, 3]) - total)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip([tf.zeros_like(v) if g is None else g
                                       for g, v in zip(grads, variables)], variables))
        return loss

    if args.mode == "baseline":
        step = None
    elif not args.eager:
        step = tf.function(step)

    ms, tensor_peak = None, None
    bfc = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true"
    if step is not None:
        step(x, tf.constant([0, 0]))   # trace + warm-up
        if bfc:
            tf.config.experimental.reset_memory_stats("CPU:0")
        start = time.perf_counter()
        for i in range(args.steps):
            loss = step(x, tf.constant([0, i + 1]))
        float(loss)
        ms = 1000.0 * (time.perf_counter() - start) / args.steps
        if bfc:
            tensor_peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2 ** 20
    print(json.dumps({"mode": args.mode, "terms": terms, "blocks": args.blocks,
                      "eager": args.eager, "peak_rss_mb": peak_rss_mb(),
                      "tensor_peak_mb": tensor_peak, "ms_per_step": ms}))


def run_config(args, mode, terms, bfc=False):
    """One fresh worker process; ``bfc=True`` uses TensorFlow's BFC allocator on the CPU, whose
    statistics give the peak of live tensor memory during the timed steps."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode,
           "--terms", str(terms), "--batch", str(args.batch), "--size", str(args.size),
           "--channels", str(args.channels), "--hidden", str(args.hidden),
           "--steps", str(args.steps), "--blocks", str(args.blocks),
           "--inter-op-threads", str(args.inter_op_threads)] + (
               ["--eager"] if args.eager else [])
    env = dict(os.environ)
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    if bfc:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
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
    parser.add_argument("--blocks", type=int, default=1, help="stacked residual blocks")
    parser.add_argument("--eager", action="store_true",
                        help="run the step eagerly (no outer tf.function)")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after warm-up")
    parser.add_argument("--repeats", type=int, default=1,
                        help="subprocesses per configuration (the median is reported)")
    parser.add_argument("--no-tensor-peak", dest="tensor_peak", action="store_false",
                        help="skip the BFC-allocator runs measuring peak tensor memory")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="baseline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    def measure(mode, terms):
        """Median peak RSS, time, and (separate BFC-allocator runs) peak tensor memory."""
        def median(values):
            return sorted(values)[len(values) // 2]

        runs = [run_config(args, mode, terms) for _ in range(args.repeats)]
        rss = median([r["peak_rss_mb"] for r in runs])
        ms = median([r["ms_per_step"] or 0.0 for r in runs])
        tensors = None
        if args.tensor_peak and mode != "baseline":
            tensors = median([run_config(args, mode, terms, bfc=True)["tensor_peak_mb"]
                              for _ in range(args.repeats)])
        return rss, ms, tensors

    baseline, _, _ = measure("baseline", 0)
    plain, plain_ms, plain_tensors = measure("plain", 0)
    rows = []
    print(f"baseline (imports + model + data, no step): {baseline:.0f} MB peak RSS")
    print(f"plain step without log-det: {plain:.0f} MB (+{plain - baseline:.0f}), "
          f"{plain_ms:.0f} ms/step" + (f", tensor peak {plain_tensors:.0f} MB"
                                       if plain_tensors is not None else ""))
    print(f"{'mode':>12} {'n':>3} {'peak MB':>8} {'+MB':>6} {'tensor MB':>9} {'ms/step':>8}")
    for mode in args.modes:
        for terms in args.terms:
            rss, ms, tensors = measure(mode, terms)
            rows.append({"mode": mode, "terms": terms, "peak_rss_mb": rss,
                         "increment_mb": rss - baseline, "tensor_peak_mb": tensors,
                         "ms_per_step": ms})
            tensor_text = f"{tensors:9.0f}" if tensors is not None else f"{'-':>9}"
            print(f"{mode:>12} {terms:>3} {rss:8.0f} {rss - baseline:6.0f} {tensor_text} "
                  f"{ms:8.0f}", flush=True)

    def increment(mode, terms):
        return next((r["increment_mb"] for r in rows
                     if r["mode"] == mode and r["terms"] == terms), None)

    def tensor_peak(mode, terms):
        return next((r["tensor_peak_mb"] for r in rows
                     if r["mode"] == mode and r["terms"] == terms), None)

    summary = {}
    if 10 in args.terms and {"naive", "neumann+bif"} <= set(args.modes):
        for key, value in (("increment", increment), ("tensor_peak", tensor_peak)):
            if value("naive", 10):
                ratio = value("neumann+bif", 10) / value("naive", 10)
                summary[f"bif_over_naive_{key}_at_10"] = ratio
                print(f"Neumann+BIF / naive {key.replace('_', ' ')} at n=10: {ratio:.2f}")
    for mode in args.modes:
        for key, value in (("increment", increment), ("tensor_peak", tensor_peak)):
            vals = [value(mode, t) for t in args.terms]
            if None not in vals:
                summary[f"{mode}_{key}_range_mb"] = [min(vals), max(vals)]
    result = {"config": {k: getattr(args, k) for k in
                         ("batch", "size", "channels", "hidden", "blocks", "eager",
                          "inter_op_threads", "steps", "repeats")},
              "baseline_rss_mb": baseline, "plain_step_rss_mb": plain,
              "plain_step_ms": plain_ms, "plain_step_tensor_peak_mb": plain_tensors,
              "rows": rows, "summary": summary,
              "note": "peak_rss_mb: VmHWM of a fresh subprocess per configuration (default "
                      "CPU allocator); increment = peak - baseline (set-up without any step); "
                      "tensor_peak_mb: peak live tensor memory during the timed steps, from "
                      "a separate run with TF_CPU_ALLOCATOR_USE_BFC=true"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
