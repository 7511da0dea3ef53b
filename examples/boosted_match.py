"""Density matching of the Rezende & Mohamed energies U1-U4 with gradient boosted flows.

Giaquinto & Banerjee (2020), Fig. 5: C = 2 RealNVP components of K = 4 coupling steps, each
fitted by reverse KL to ``p~ = exp(-U)``; the second component minimises
``E_g[log G(z) - log p~(z) + lambda log g(z)]`` against the first (``G`` evaluated through the
first component's inverse, floored at -10), then its weight is fitted by Algorithm 1.
U2-U4 are not integrable over the plane, so a soft box ``(z1/4)^8`` is added to every U
(see :mod:`tfresflow.data.energies`). ``KL(G || p)`` uses a grid estimate of ``log Z``.

Writes ``<out>/<U>_stages.png`` (target | density after each stage) and
``<out>/summary.png`` (all energies), and prints the per-stage KL.

    python examples/boosted_match.py                      # U1-U4, 2 x 4 steps, a few minutes
    python examples/boosted_match.py --energies U1 --steps 500 --finetune-passes 1
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tfresflow as trf  # noqa: E402
from tfresflow import io, plotting  # noqa: E402

LIMITS = [(-4.0, 4.0), (-4.0, 4.0)]
BOX = 4.0


def fit_energy(name, components=2, n_steps=4, steps=2000, finetune_passes=0,
               regularization=1.0, seed=0, verbose=0):
    """Trains a boosted flow on energy ``name``; returns (records, density grids, titles)."""
    target = trf.data.log_density(name, box=BOX)
    log_z = trf.data.log_normalizer(name, box=BOX)
    comps = trf.models.boosted_coupling_components(components, 2, n_steps=n_steps,
                                                   hidden_units=(64, 64), seed=seed)
    trainer = trf.boosting.BoostedFlowTrainer(
        comps, objective="matching", target_log_prob=target, regularization=regularization,
        learning_rate=1e-3, batch_size=256, log_mixture_floor=-10.0, seed=seed,
        verbose=verbose)
    grids = [plotting.density_grid(lambda p: target(p).numpy(), LIMITS, 150)[2]]
    titles = [f"target exp(-{name})"]

    def on_stage_end(t, record):
        record["reverse_kl"] = record["kl_minus_log_z"] + log_z
        mix = t.mixture()
        grids.append(plotting.density_grid(lambda p: mix.log_prob(p).numpy(), LIMITS, 150)[2])
        titles.append(f"{record['phase']} {record['component'] + 1}: KL {record['reverse_kl']:.3f}"
                      f"\nrho={record['rho']:.2f}")
        print(f"{name} stage {record['stage']} ({record['phase']} {record['component'] + 1}): "
              f"KL(G||p) {record['reverse_kl']:.4f} nats, ESS {record['ess_fraction']:.2f}, "
              f"weights {np.round(t.weights, 3).tolist()}", flush=True)
    records = trainer.fit(steps_per_component=steps, finetune_passes=finetune_passes,
                          on_stage_end=on_stage_end)
    return records, grids, titles


def save_grid(path, rows):
    cols = max(len(g) for g, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.8 * cols, 2.9 * len(rows)),
                             squeeze=False)
    for (grids, titles), ax_row in zip(rows, axes):
        for ax, grid, title in zip(ax_row, grids, titles):
            ax.imshow(grid, origin="lower", extent=[*LIMITS[0], *LIMITS[1]], cmap="magma")
            ax.set_title(title, fontsize=8)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in ax_row[len(grids):]:
            ax.axis("off")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def main(energies=("U1", "U2", "U3", "U4"), components=2, n_steps=4, steps=2000,
         finetune_passes=0, regularization=1.0, out="runs/boosted_match", seed=0):
    io.ensure_writable_dir(out, "--out")
    rows, summary = [], {}
    for name in energies:
        records, grids, titles = fit_energy(name, components, n_steps, steps,
                                            finetune_passes, regularization, seed)
        save_grid(os.path.join(out, f"{name}_stages.png"), [(grids, titles)])
        rows.append((grids, titles))
        summary[name] = [{k: r[k] for k in ("stage", "phase", "component", "rho", "weights",
                                             "reverse_kl", "ess_fraction")} for r in records]
    save_grid(os.path.join(out, "summary.png"), rows)
    io.write_json(os.path.join(out, "summary.json"), summary)
    print(f"wrote {out}/summary.png, summary.json and <U>_stages.png")
    print(json.dumps({k: [round(r["reverse_kl"], 4) for r in v] for k, v in summary.items()}))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energies", default="U1,U2,U3,U4")
    parser.add_argument("--components", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps per stage")
    parser.add_argument("--finetune-passes", type=int, default=0)
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--out", default="runs/boosted_match")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    main(tuple(a.energies.split(",")), a.components, a.n_steps, a.steps, a.finetune_passes,
         a.regularization, a.out, a.seed)
