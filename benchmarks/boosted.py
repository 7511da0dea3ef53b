"""Gradient boosted flows: wide (C x K) vs deep (1 x 8) coupling flows, and sampling cost.

Part 1 (Giaquinto & Banerjee 2020, Fig. 4): on a multimodal 2-D density (default
``8gaussians``), C components of K RealNVP coupling steps, (C, K) in {(8, 1), (4, 2), (2, 4)},
against one 8-step coupling flow. Every model has C K = 8 coupling steps with the same
conditioner (one hidden layer of 128 tanh units, as the paper), hence exactly the same
parameter count. Training budget: every component gets ``--steps`` Adam steps, and the deep
flow gets ``--steps`` too, so each model spends the same number of coupling-step evaluations
(C * K * steps = 8 * steps). The paper trains 25k iterations per model; the default here is
scaled down (2000) to keep the run to a few minutes on 2 CPU cores. Boosted models are trained
with both density objectives of ``BoostedFlowTrainer``:

* ``boosting`` - the paper/reference residual objective (weighted ML with weights ∝ 1/G);
* ``mixture``  - greedy mixture likelihood with the new weight held at 1/C;

each followed by Algorithm 1 for rho, then one GBF+ fine-tuning pass (``--steps // 4`` steps
per component, weights re-fitted). Reported: test NLL (nats, mean ± standard error over
``--n-test`` points) after the boosting pass (GBF) and after fine-tuning (GBF+).

Part 2: time to draw n samples (``--n-samples``, default 1e3, 1e4, 1e5) from the C = 8 trained
(8, 1) components (and from 8 untrained 4-step components) with ``BoostedFlow`` (one flow per
sample; list and batched form) vs ``tfd.Mixture`` over the same component distributions (every
flow for every sample), plus ``log_prob`` of n points; ``tf.function``-compiled, median of
``--repeats`` timed calls after warm-up.

    python benchmarks/boosted.py                    # default (a few minutes on 2 cores)
    python benchmarks/boosted.py --steps 300 --n-train 5000 --repeats 3   # quick look

Writes ``benchmarks/results/boosted.json`` and ``boosted_densities.png``.
"""
import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import tfresflow as trf  # noqa: E402
from tfresflow import evaluation, io, plotting  # noqa: E402
from tfresflow.distributions import BoostedFlow, stack_coupling_flows  # noqa: E402
from tfresflow.boosting import BoostedFlowTrainer  # noqa: E402
from tfresflow.models import boosted_coupling_components  # noqa: E402

tfd = tfp.distributions

CONFIGS = ((8, 1), (4, 2), (2, 4))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def train(c, k, objective, args, x, x_test):
    """Trains one model; returns (result dict, trainer)."""
    comps = boosted_coupling_components(c, 2, n_steps=k, hidden_units=args.hidden,
                                        seed=args.seed)
    trainer = BoostedFlowTrainer(comps, density_objective=objective or "boosting",
                                 learning_rate=args.lr, batch_size=args.batch_size,
                                 seed=args.seed, verbose=0)
    gbf = {}

    def on_stage_end(t, record):
        if record["stage"] == c - 1:  # end of the boosting pass
            gbf["nll"], gbf["se"] = evaluation.nll_with_stderr(t.mixture(), x_test)
            gbf["weights"] = [float(w) for w in t.weights]
    passes = 1 if c > 1 else 0
    start = time.time()
    history = trainer.fit(x, steps_per_component=args.steps, finetune_passes=passes,
                          finetune_steps=args.steps // 4, validation_data=x_test,
                          on_stage_end=on_stage_end)
    seconds = time.time() - start
    nll, se = evaluation.nll_with_stderr(trainer.mixture(), x_test)
    name = "deep coupling flow" if c == 1 else f"GBF ({objective})"
    result = dict(model=name, objective=objective, C=c, K=k,
                  parameters=int(sum(m.count_params() for m in comps)),
                  gbf_test_nll=gbf["nll"], gbf_test_nll_stderr=gbf["se"],
                  gbf_weights=gbf["weights"], test_nll=nll, test_nll_stderr=se,
                  final_weights=[float(w) for w in trainer.weights],
                  stage_test_nll=[r["val_nll"] for r in history], train_seconds=seconds)
    return result, trainer


def median_time(fn, repeats):
    fn()  # trace + warm-up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def sampling_benchmark(models, n, repeats, label):
    """Seconds to draw / evaluate ``n`` samples: BoostedFlow (list, batched) vs tfd.Mixture."""
    c = len(models)
    dists = [m.distribution() for m in models]
    weights = np.full(c, 1.0 / c, np.float32)
    boosted = BoostedFlow(dists, weights)
    batched = BoostedFlow(stack_coupling_flows(models), weights)
    mixture = tfd.Mixture(cat=tfd.Categorical(probs=weights), components=dists)
    seed = tf.constant([0, 1])
    rows = []
    for name, dist in (("BoostedFlow (list)", boosted), ("BoostedFlow (batched)", batched),
                       ("tfd.Mixture", mixture)):
        fn = tf.function(lambda d=dist: d.sample(n, seed=seed))
        med, times = median_time(lambda f=fn: f().numpy(), repeats)
        rows.append(dict(components=label, sampler=name, n=n, median_s=med, times_s=times))
    x = tf.constant(boosted.sample(n, seed=2).numpy())
    for name, dist in (("BoostedFlow (list)", boosted), ("BoostedFlow (batched)", batched),
                       ("tfd.Mixture", mixture)):
        fn = tf.function(lambda d=dist: d.log_prob(x))
        med, times = median_time(lambda f=fn: f().numpy(), repeats)
        rows.append(dict(components=label, sampler=name + " log_prob", n=n, median_s=med,
                         times_s=times))
    return rows


def plot(trainers, x_test, path):
    import matplotlib.pyplot as plt

    limits = plotting.plot_limits(x_test)
    panels = [("data", None)] + [(f"{r['model']}\n{r['C']}x{r['K']}: NLL {r['test_nll']:.3f}",
                                  t) for r, t in trainers]
    cols = 4
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 4.0 * rows))
    for ax, (title, trainer) in zip(axes.ravel(), panels):
        if trainer is None:
            ax.hist2d(x_test[:, 0], x_test[:, 1], bins=150, range=limits, cmap="magma")
        else:
            mix = trainer.mixture()
            xx, yy, dens = plotting.density_grid(lambda p: mix.log_prob(p).numpy(), limits, 150)
            ax.pcolormesh(xx, yy, dens, cmap="magma", shading="auto")
        ax.set_title(title, fontsize=8)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="8gaussians")
    parser.add_argument("--steps", type=int, default=2000,
                        help="Adam steps per component (and for the deep flow)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")),
                        default=(128,))
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--n-samples", type=lambda s: tuple(int(v) for v in s.split(",")),
                        default=(1000, 10000, 100000))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=RESULTS)
    args = parser.parse_args(argv)
    io.ensure_writable_dir(args.out_dir, "--out-dir")
    keras.utils.set_random_seed(args.seed)
    x = trf.data.sample(args.data, args.n_train, seed=args.seed)
    x_test = trf.data.sample(args.data, args.n_test, seed=args.seed + 1)

    runs = [(1, 8, None)] + [(c, k, obj) for c, k in CONFIGS for obj in ("boosting", "mixture")]
    results, trained = [], []
    for c, k, obj in runs:
        result, trainer = train(c, k, obj, args, x, x_test)
        results.append(result)
        trained.append((result, trainer))
        print(f"{result['model']:24s} C={c} K={k}: GBF {result['gbf_test_nll']:.3f} ± "
              f"{result['gbf_test_nll_stderr']:.3f} | GBF+ {result['test_nll']:.3f} ± "
              f"{result['test_nll_stderr']:.3f} nats ({result['train_seconds']:.0f} s)",
              flush=True)

    eight_by_one = next(t for r, t in trained if r["C"] == 8 and r["objective"] == "mixture")
    four_step = boosted_coupling_components(8, 2, n_steps=4, hidden_units=args.hidden,
                                            seed=args.seed + 1)
    timing = []
    for n in args.n_samples:
        timing += sampling_benchmark(eight_by_one.components, n, args.repeats,
                                     "8 x 1-step (trained)")
        timing += sampling_benchmark(four_step, n, args.repeats, "8 x 4-step (untrained)")
    speedups = {}
    for label, n in sorted({(r["components"], r["n"]) for r in timing}):
        by = {r["sampler"]: r["median_s"] for r in timing
              if r["components"] == label and r["n"] == n}
        speedups[f"{label}, n={n}"] = {
            "sample_list_vs_mixture": by["tfd.Mixture"] / by["BoostedFlow (list)"],
            "sample_batched_vs_mixture": by["tfd.Mixture"] / by["BoostedFlow (batched)"],
            "log_prob_batched_vs_list": by["BoostedFlow (list) log_prob"]
            / by["BoostedFlow (batched) log_prob"]}

    deep = results[0]
    print(f"\nDensity estimation on {args.data} ({args.n_train} train / {args.n_test} test, "
          f"{args.steps} steps per component, hidden {list(args.hidden)}); test NLL in nats "
          f"(lower is better), deep flow {deep['test_nll']:.3f} ± {deep['test_nll_stderr']:.3f}")
    print(f"{'model':24s} {'C':>2s} {'K':>2s} {'params':>7s} {'GBF NLL':>15s} {'GBF+ NLL':>15s} "
          f"{'vs deep':>8s}  weights (GBF+)")
    for r in results:
        print(f"{r['model']:24s} {r['C']:2d} {r['K']:2d} {r['parameters']:7d} "
              f"{r['gbf_test_nll']:7.3f} ± {r['gbf_test_nll_stderr']:.3f} "
              f"{r['test_nll']:7.3f} ± {r['test_nll_stderr']:.3f} "
              f"{r['test_nll'] - deep['test_nll']:+8.3f}  "
              f"{np.round(r['final_weights'], 2).tolist()}")
    print(f"\nSampling / log_prob time (median of {args.repeats})")
    print(f"{'components':24s} {'n':>7s} {'method':32s} {'seconds':>9s}")
    for r in timing:
        print(f"{r['components']:24s} {r['n']:7d} {r['sampler']:32s} {r['median_s']:9.4f}")
    for label, s in speedups.items():
        print(f"{label}: tfd.Mixture / BoostedFlow sampling time = "
              f"{s['sample_list_vs_mixture']:.1f}x (list), {s['sample_batched_vs_mixture']:.1f}x "
              f"(batched); batched log_prob speed-up over list "
              f"{s['log_prob_batched_vs_list']:.1f}x")

    report = dict(
        description=__doc__.splitlines()[0], data=args.data, steps_per_component=args.steps,
        batch_size=args.batch_size, learning_rate=args.lr, hidden_units=list(args.hidden),
        n_train=args.n_train, n_test=args.n_test, seed=args.seed,
        platform=dict(python=sys.version.split()[0], tensorflow=tf.__version__,
                      machine=platform.machine(), cpus=os.cpu_count()),
        density=results, sampling=timing, speedups=speedups)
    io.write_json(os.path.join(args.out_dir, "boosted.json"), report)
    plot(trained, x_test, os.path.join(args.out_dir, "boosted_densities.png"))
    print(f"wrote {args.out_dir}/boosted.json and boosted_densities.png")
    return report


if __name__ == "__main__":
    main()
