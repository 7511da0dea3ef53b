"""VAE posteriors at one short equal budget: plain, one coupling flow, boosted (GBF, GBF+).

The Gradient Boosted Flows paper's Table 1 experiment (Sec. 5.2) scaled down to 2 shared CPU
cores: a :class:`tfresflow.models.FlowVAE` (gated-convolution encoder/decoder, 6 layers each,
Bernoulli decoder) on statically binarised images (``--data``, default ``digits``: the 8 x 8
scikit-learn digits binarised by seeded Bernoulli draws, :mod:`tfresflow.data.binarized`;
``mnist5k`` is the issue's first choice, but one optimiser step of the paper-size model on
28 x 28 images takes about 1 s on the shared cores, so its budget would not fit the half hour
the table may take), with the posterior

* ``vae``: the diagonal-Gaussian posterior (no flow);
* ``coupling``: one amortised conditional-coupling flow (``--flow-steps`` couplings) whose
  conditioners are ``C_max`` times as wide as a boosted component's, so its flow has about as
  many parameters as the ``C = C_max`` boosted posterior (the counts are reported);
* ``gbf-C``: ``C`` boosted coupling components (each ``--flow-steps`` couplings of width
  ``--hidden``), stages of ``--steps / C`` steps (every model gets ``--steps`` optimiser steps
  before fine-tuning); ``gbf+-C``: the same run after one GBF+ pass of ``--steps / (4 C)``
  steps per component (extra steps, as the paper's extra 50 epochs per component);
* ``gbf-C (no shock fix)``: the ablation, the decoder-shock blend switched off (for the stage
  plot).

Each model: Adam (``--lr``), batch ``--batch-size``, KL warm-up over the first quarter of each
stage (restarted per stage). Scores on the first ``--n-eval`` test images: ``-ELBO`` (mean over
``3C`` posterior draws, scored with the mixture density, and with each draw's own component
density, the paper's protocol) and the importance-sampled NLL with ``--nll-samples`` samples
(the paper uses 2000; fewer here so the table runs on a CPU), each with its standard error
over images. The budget is short: the numbers compare the posteriors at this budget, they are
not converged values and not comparable with the paper's MNIST numbers.

    python benchmarks/vae_table.py                 # the table (about 30 minutes on 2 cores)
    python benchmarks/vae_table.py --tiny          # a 2-minute check of the script
    python benchmarks/vae_table.py --schedule per-component --components 2   # GBF-2 with the
                                   # paper's schedule: --steps per stage (twice the budget)

Writes ``docs/results/vae_table.json`` (after every model, so a cut-off run keeps what is
done), ``docs/results/vae_table.md`` and ``docs/results/vae_stage_losses.png`` (training
reconstruction term and held-out ``-ELBO`` of the fixed and new components through the
stages of ``gbf-2`` with and without the decoder-shock fix).
"""
import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresflow import io, plotting  # noqa: E402
from tfresflow.data.binarized import load_binarized  # noqa: E402
from tfresflow.models import FlowVAE  # noqa: E402
from tfresflow.models.boosted_vae import BoostedVAETrainer  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                       "results")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits", help="digits | mnist5k | tfds:binarized_mnist")
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps per model (GBF: "
                   "split over its stages)")
    p.add_argument("--components", type=int, nargs="+", default=[2, 4])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--depth", type=int, default=6, help="gated layers of encoder and decoder")
    p.add_argument("--flow-steps", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64, help="conditioner width of a component")
    p.add_argument("--context", type=int, default=32)
    p.add_argument("--n-eval", type=int, default=200, help="test images scored")
    p.add_argument("--nll-samples", type=int, default=200)
    p.add_argument("--monitor-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--schedule", default="equal", choices=("equal", "per-component"),
                   help="equal: --steps per model, split over a boosted model's stages; "
                        "per-component: --steps per stage (the paper's protocol, a boosted "
                        "model trains C times as long) and only the boosted runs")
    p.add_argument("--tiny", action="store_true", help="a quick check of the script")
    args = p.parse_args(argv)
    if args.tiny:
        args.steps, args.depth, args.latent, args.hidden = 24, 2, 4, 8
        args.n_eval, args.nll_samples, args.monitor_every = 16, 8, 4
        args.out = os.path.join(args.out, "tiny")
    return args


def build(args, image_shape, components=1, flow="coupling", hidden=None):
    keras.utils.set_random_seed(args.seed)
    return FlowVAE(image_shape, latent_size=args.latent, num_components=components, flow=flow,
                   flow_steps=args.flow_steps, flow_hidden_units=(hidden or args.hidden,),
                   context_size=args.context, encoder_depth=args.depth,
                   decoder_depth=args.depth, kl_warmup_steps=1, seed=args.seed)


def flow_parameters(model):
    return int(sum(np.prod(v.shape) for c in model.components for v in c.weights))


def scores(record):
    keys = ("negative_elbo", "negative_elbo_stderr", "negative_elbo_component",
            "negative_elbo_component_stderr", "nll", "nll_stderr", "reconstruction", "kl")
    return {k: record[k] for k in keys}


def run(args, name, model, x, xt, components=1, finetune=False, shock_fix=True):
    """Trains one model; returns (rows for the table, trainer)."""
    steps = args.steps if args.schedule == "per-component" else args.steps // components
    trainer = BoostedVAETrainer(model, learning_rate=args.lr, batch_size=args.batch_size,
                                kl_warmup_steps=max(1, steps // 4), shock_fix=shock_fix,
                                eval_samples=args.nll_samples,
                                monitor_every=args.monitor_every, seed=args.seed, verbose=0)
    start = time.time()
    passes = 1 if finetune else 0
    ft_steps = max(1, steps // 4) if args.schedule == "per-component" else \
        max(1, args.steps // (4 * components))
    history = trainer.fit(x, steps_per_component=steps, finetune_passes=passes,
                          finetune_steps=ft_steps, eval_data=xt[:args.n_eval],
                          monitor_data=xt[:128], eval_stages="phase_ends")
    seconds = time.time() - start
    common = {"components": components, "parameters": int(model.count_params()),
              "flow_parameters": flow_parameters(model), "shock_fix": shock_fix,
              "weights": [float(w) for w in trainer.weights], "seconds": seconds}
    gbf = history[components - 1]
    rows = [{"model": name, "steps": steps * components, **common, **scores(gbf),
             "weights": gbf["weights"]}]
    if finetune:
        rows.append({"model": name.replace("gbf", "gbf+"),
                     "steps": steps * components + components * ft_steps, **common,
                     **scores(history[-1])})
    for r in rows:
        print(f"{r['model']:>22}: -ELBO {r['negative_elbo']:.3f} ± "
              f"{r['negative_elbo_stderr']:.3f}  NLL {r['nll']:.3f} ± {r['nll_stderr']:.3f} "
              f"({seconds:.0f} s)", flush=True)
    return rows, trainer


def markdown(result):
    s = result["settings"]
    lines = [f"VAE posteriors on binarised `{s['data']}` ({s['n_train']} training images), "
             f"{s['steps']} optimiser steps per "
             f"{'model' if s.get('schedule', 'equal') == 'equal' else 'stage'} "
             f"(batch {s['batch_size']}), latent "
             f"{s['latent']}, gated-conv encoder/decoder depth {s['depth']}; scores on "
             f"{s['n_eval']} test images, NLL with {s['nll_samples']} importance samples "
             "(paper: 2000), ± standard error over images.", "",
             "| model | flow params | steps | -ELBO (mixture) | -ELBO (component, paper) | "
             "NLL | weights |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        w = ", ".join(f"{v:.2f}" for v in r["weights"])
        lines.append(f"| {r['model']} | {r['flow_parameters']} | {r['steps']} | "
                     f"{r['negative_elbo']:.2f} ± {r['negative_elbo_stderr']:.2f} | "
                     f"{r['negative_elbo_component']:.2f} ± "
                     f"{r['negative_elbo_component_stderr']:.2f} | "
                     f"{r['nll']:.2f} ± {r['nll_stderr']:.2f} | {w} |")
    return "\n".join(lines) + "\n"


def stage_plot(path, trainers):
    panels = [("training -log p(x|z) (nats)",
               [(label, *t.step_curve("recon")) for label, t in trainers.items()]),
              ("held-out -ELBO, fixed components",
               [(label, *t.monitor_curve("fixed_neg_elbo")) for label, t in trainers.items()]),
              ("held-out -ELBO, new component",
               [(label, *t.monitor_curve("new_neg_elbo")) for label, t in trainers.items()])]
    bounds = list(next(iter(trainers.values())).stage_offsets().values())[1:]
    plotting.save_stage_curves(path, panels, bounds, smooth=5,
                               title="decoder shock at stage starts: with and without the fix")


def main(argv=None):
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    x, _ = load_binarized(args.data, "train", seed=args.seed)
    xt, _ = load_binarized(args.data, "test", seed=args.seed)
    x, xt = x.astype(np.float32), xt.astype(np.float32)
    shape = x.shape[1:]
    cmax = max(args.components)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings.update(n_train=len(x), n_test=len(xt), platform=platform.platform(),
                    tensorflow=tf.__version__, python=sys.version.split()[0])
    result = {"settings": settings, "rows": []}
    stem = "vae_table" if args.schedule == "equal" else "vae_table_per_component"
    json_path = os.path.join(args.out, f"{stem}.json")
    start = time.time()

    def add(rows):
        result["rows"].extend(rows)
        result["seconds"] = time.time() - start
        io.write_json(json_path, result)

    if args.schedule == "equal":
        add(run(args, "vae", build(args, shape, flow=None), x, xt)[0])
        add(run(args, f"coupling (x{cmax} width)", build(args, shape,
                                                        hidden=cmax * args.hidden), x, xt)[0])
    trainers = {}
    for c in args.components:
        rows, trainer = run(args, f"gbf-{c}", build(args, shape, components=c), x, xt,
                            components=c, finetune=True)
        add(rows)
        if c == min(args.components):
            trainers["with the fix"] = trainer
    c = min(args.components)
    rows, trainer = run(args, f"gbf-{c} (no shock fix)", build(args, shape, components=c), x,
                        xt, components=c, shock_fix=False)
    add(rows)
    trainers["without the fix"] = trainer
    result["stage_curves"] = {label: {"steps": t.steps, "monitor": t.monitor}
                              for label, t in trainers.items()}
    io.write_json(json_path, result)
    png = "vae_stage_losses.png" if args.schedule == "equal" else \
        "vae_stage_losses_per_component.png"
    stage_plot(os.path.join(args.out, png), trainers)
    with open(os.path.join(args.out, f"{stem}.md"), "w", encoding="utf-8") as f:
        f.write(markdown(result))
    print(markdown(result))
    print(f"wrote {json_path} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
