"""The Residual Flows 2-D toy recipe at depth: tfresflow side by side with normflows (PyTorch).

Residual Flows (Chen et al., 2019, App. C) train 2-D toys with 100 residual blocks, each an MLP
2-128-128-128-128-2 with LipSwish, Lipschitz coefficient 0.9, the last layer initialised near
zero (weights / 1000), Russian roulette with a Geometric(0.5) number of extra terms after 2
exact ones, batch 500, Adam 1e-3. This benchmark builds that model and measures, per gradient
mode,

* ``first_step_s``: from the start of building the model to the end of the first training step
  (construction, tracing, graph optimisation and one step: what a user waits for);
* ``step_ms``: median wall-clock time of the next ``--steps`` training steps;
* ``peak_rss_mb``: the process's peak resident set size (``VmHWM``); every configuration runs
  in a fresh subprocess;
* ``tensor_peak_mb`` (tfresflow only, a second subprocess with ``TF_CPU_ALLOCATOR_USE_BFC=true``):
  the peak of live tensor memory during the timed steps;
* ``sample_s`` / ``log_prob_s``: 1,000 samples by the fixed-point inverse, and 1,000
  evaluation-mode log-densities (first call and warm call), with the round-trip error
  ``max |f^{-1}(f(z)) - z|`` of the samples.

tfresflow trains with :class:`tfresflow.optimizers.FusedAdam` (Keras' Adam in TensorFlow's fused
kernel; ``--optimizer keras`` for ``keras.optimizers.Adam``).

Gradient modes: ``backprop`` (through the roulette series), ``neumann`` (Neumann-series
gradient), ``neumann+bif`` (Neumann gradient computed in the forward pass). Lipschitz settings:
``--lipschitz default`` (the package's block power iteration) or ``reference`` (one
power-iteration vector per layer, ``block_size=1``, as the reference and normflows).

``--peer normflows`` runs the same model in normflows (``nf.flows.Residual`` wraps the
reference's ``iResBlock``; ``nf.nets.LipschitzMLP`` with ``init_zeros``) in the order A, B, A, B
per mode and prints the ratios tfresflow / normflows. normflows needs PyTorch, which is never a
dependency of tfresflow: install both into a separate, git-ignored virtualenv::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install torch==2.13.0 normflows

Usage::

    .venv/bin/python benchmarks/deep_toy.py --blocks 20 --peer normflows
    .venv/bin/python benchmarks/deep_toy.py               # 100 blocks (the paper's recipe)
    .venv/bin/python benchmarks/deep_toy.py --blocks 10 --modes backprop --no-sampling

Writes ``benchmarks/results/deep_toy_<blocks>.json``. Timings are wall-clock on a shared
machine; run it alone.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from process_memory import peak_rss_mb

MODES = ("backprop", "neumann", "neumann+bif")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
PEER_PYTHON = os.path.join(ROOT, ".bench-venv", "bin", "python")
HIDDEN = (128, 128, 128, 128)


def checkerboard(n, rng):
    """The reference's checkerboard toy (``x1 ~ U[-2, 2]``, alternating unit squares)."""
    import numpy as np
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return (np.stack([x1, x2], 1) * 2.0).astype(np.float32)


# --------------------------------------------------------------------------- tfresflow
def tfresflow_worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import tfresflow as trf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    x = checkerboard(args.batch, np.random.default_rng(0))
    estimator = trf.logdet.Unbiased(n_exact_terms=2, distribution="geometric", p=0.5,
                                    neumann_grad=args.mode != "backprop",
                                    grad_in_forward=args.mode == "neumann+bif")
    lipschitz = {"block_size": 1} if args.lipschitz == "reference" else None
    start = time.perf_counter()
    model = trf.models.build_model("resflow", 2, n_steps=args.blocks, hidden_units=HIDDEN,
                                   coeff=0.9, actnorm=False, logdet=estimator,
                                   output_init_scale=1e-3, lipschitz_kwargs=lipschitz)
    optimizer = (trf.optimizers.FusedAdam if args.optimizer == "fused"
                 else keras.optimizers.Adam)(1e-3)
    model.compile(optimizer=optimizer)
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())
            if len(ends) == 2 and os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true":
                tf.config.experimental.reset_memory_stats("CPU:0")

    data = tf.data.Dataset.from_tensors(x).repeat()
    model.fit(data, epochs=1, steps_per_epoch=args.steps + 1, verbose=0, callbacks=[Clock()])
    result = {"first_step_s": ends[0] - start,
              "step_ms": 1000.0 * statistics.median(b - a for a, b in zip(ends, ends[1:]))}
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true":
        result["tensor_peak_mb"] = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    result["peak_rss_mb"] = peak_rss_mb()
    if args.sampling:
        times = []
        for i in range(2):   # FlowModel.sample: the compiled path users get
            t0 = time.perf_counter()
            xs = model.sample(1000, seed=[1, i]).numpy()
            times.append(time.perf_counter() - t0)
        # Round trip f(f^{-1}(x)) = x of the fixed-point inverse, on fresh tensors (TFP's
        # cache would hand back x itself for the output tensor of inverse).
        z = model.bijector.inverse(tf.constant(xs)).numpy()
        x_back = model.bijector.forward(tf.constant(z)).numpy()
        result.update(sample_s=times, round_trip_error=float(np.max(np.abs(x_back - xs))))
        times = []
        for i in range(2):
            t0 = time.perf_counter()
            model.log_prob(tf.constant(xs), seed=[2, i]).numpy()
            times.append(time.perf_counter() - t0)
        result["log_prob_s"] = times
    return result


# --------------------------------------------------------------------------- normflows
def normflows_worker(args):
    import numpy as np
    import normflows as nf
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(checkerboard(args.batch, np.random.default_rng(0)))
    start = time.perf_counter()
    flows = []
    for _ in range(args.blocks):
        net = nf.nets.LipschitzMLP([2, *HIDDEN, 2], lipschitz_const=0.9, init_zeros=True)
        flow = nf.flows.Residual(net, reduce_memory=args.mode != "backprop", n_exact_terms=2,
                                 geom_p=0.5)
        flow.iresblock.grad_in_forward = args.mode == "neumann+bif"
        flows.append(flow)
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), flows)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ends = []
    for _ in range(args.steps + 1):
        optimizer.zero_grad()
        loss = model.forward_kld(x)
        loss.backward()
        optimizer.step()
        ends.append(time.perf_counter())
    result = {"first_step_s": ends[0] - start,
              "step_ms": 1000.0 * statistics.median(b - a for a, b in zip(ends, ends[1:])),
              "peak_rss_mb": peak_rss_mb()}
    if args.sampling:
        model.eval()
        times = []
        for _ in range(2):
            z = torch.randn(1000, 2)
            t0 = time.perf_counter()
            with torch.no_grad():
                xs = z
                for flow in flows:   # Residual.forward with reverse=True: fixed point
                    xs = flow.iresblock.inverse(xs)
            times.append(time.perf_counter() - t0)
        with torch.no_grad():   # round trip f(f^{-1}(x)) = x, as for tfresflow
            z_back = xs
            for flow in reversed(flows):
                z_back = flow.iresblock.forward(z_back)
            x_back = z_back
            for flow in flows:
                x_back = flow.iresblock.inverse(x_back)
        result.update(sample_s=times,
                      round_trip_error=float((x_back - xs).abs().max()))
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            model.log_prob(xs).detach()
            times.append(time.perf_counter() - t0)
        result["log_prob_s"] = times
    return result


# --------------------------------------------------------------------------- driver
def run(args, impl, mode, bfc=False):
    python = sys.executable if impl == "tfresflow" else args.peer_python
    cmd = [python, os.path.abspath(__file__), "--worker", impl, "--mode", mode,
           "--blocks", str(args.blocks), "--batch", str(args.batch), "--steps", str(args.steps),
           "--threads", str(args.threads), "--lipschitz", args.lipschitz, "--optimizer", args.optimizer] + (
               [] if args.sampling and not bfc else ["--no-sampling"])
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    if bfc:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env,
                         timeout=args.timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lipschitz", choices=("default", "reference"), default="default")
    parser.add_argument("--optimizer", choices=("fused", "keras"), default="fused",
                        help="tfresflow's optimizer: FusedAdam (default) or keras Adam")
    parser.add_argument("--peer", choices=("none", "normflows"), default="none")
    parser.add_argument("--peer-python", default=PEER_PYTHON)
    parser.add_argument("--repeats", type=int, default=2, help="A, B rounds per mode")
    parser.add_argument("--no-sampling", dest="sampling", action="store_false")
    parser.add_argument("--no-tensor-peak", dest="tensor_peak", action="store_false")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", choices=("tfresflow", "normflows"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="backprop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fn = tfresflow_worker if args.worker == "tfresflow" else normflows_worker
        print(json.dumps(fn(args)))
        return 0
    impls = ["tfresflow"] + (["normflows"] if args.peer == "normflows" else [])
    if "normflows" in impls and not os.path.exists(args.peer_python):
        parser.error(f"--peer normflows needs {args.peer_python} (see the module docstring)")
    table = []
    for mode in args.modes:
        runs = {impl: [] for impl in impls}
        for _ in range(args.repeats):        # A, B, A, B
            for impl in impls:
                runs[impl].append(run(args, impl, mode))
        row = {"mode": mode, "blocks": args.blocks, "lipschitz": args.lipschitz}
        for impl, results in runs.items():
            ok = [r for r in results if "error" not in r]
            if not ok:
                row[impl] = {"error": results[-1]["error"]}
                continue
            summary = {k: min(r[k] for r in ok) for k in ("first_step_s", "step_ms",
                                                            "peak_rss_mb")}
            if args.sampling:
                for k in ("sample_s", "log_prob_s"):
                    summary[k] = [min(r[k][i] for r in ok) for i in range(2)]
                summary["round_trip_error"] = max(r["round_trip_error"] for r in ok)
            if impl == "tfresflow" and args.tensor_peak:
                summary["tensor_peak_mb"] = run(args, impl, mode, bfc=True).get("tensor_peak_mb")
            row[impl] = summary
        if "normflows" in row and "error" not in row["normflows"] \
                and "error" not in row["tfresflow"]:
            row["ratio"] = {k: row["tfresflow"][k] / row["normflows"][k]
                            for k in ("first_step_s", "step_ms", "peak_rss_mb")}
        table.append(row)
        print(json.dumps(row), flush=True)
    path = args.out or os.path.join(RESULTS, f"deep_toy_{args.blocks}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
