"""Relative-gradient linear flows on the 2-D toys of Gresele et al. (2020, Fig. 2, App. H.3).

Datasets as in the paper's code: a mixture of three Gaussians (centres (0, 0), (5, 5), (5, -5),
standard deviations 1, 0.5, 0.5), two half moons (noise 0.05) and a sine
(``x ~ U(-2, 2)``, ``y = sin(3 x) + 0.25 N(0, 1)``); 5,000 training and 500 test points.
Model: ``L`` square linear layers with smooth leaky ReLUs (alpha = 0.3) in between, biases,
standard normal base, relative gradients, Adam, batch 100. The paper uses L = 100 and
1,300-4,000 epochs (learning rate 1e-3, sine 5e-3); the defaults here are smaller so the
script runs in about five minutes on two CPU cores (``--layers 100 --epochs 2000`` for the paper's).

Reports the exact test log-likelihood (nats per point, mean +- 2 standard errors) next to a
full-covariance Gaussian fitted by maximum likelihood, and writes density heat-maps to
``--out`` (default ``runs/relgrad_toy``).

    python examples/relgrad_toy.py
    python examples/relgrad_toy.py --datasets sine --layers 40 --epochs 400
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfresflow as trf  # noqa: E402
from tfresflow import evaluation, io, plotting  # noqa: E402


def mixture_of_gaussians(n, rng):
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [5.0, -5.0]])
    stds = np.array([1.0, 0.5, 0.5])
    k = rng.integers(0, 3, n)
    return centres[k] + stds[k, None] * rng.normal(size=(n, 2))


def half_moons(n, rng, noise=0.05):
    t = rng.uniform(0.0, np.pi, n)
    upper = rng.uniform(size=n) < 0.5
    pts = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1),
                   np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1))
    return pts + noise * rng.normal(size=(n, 2))


def sine(n, rng):
    x = rng.uniform(-2.0, 2.0, n)
    return np.stack([x, np.sin(3.0 * x) + 0.25 * rng.normal(size=n)], 1)


DATASETS = {"mog": (mixture_of_gaussians, 1e-3), "moons": (half_moons, 1e-3),
            "sine": (sine, 5e-3)}


def train_one(name, args):
    sampler, lr = DATASETS[name]
    rng = np.random.default_rng(args.seed)
    train = sampler(args.n_train, rng).astype(np.float32)
    test = sampler(args.n_test, rng).astype(np.float32)
    keras.utils.set_random_seed(args.seed)
    model = trf.models.build_model("relgrad", 2, n_steps=args.layers, alpha=0.3,
                                   relative=not args.ordinary, seed=args.seed)
    model.compile(optimizer=keras.optimizers.Adam(args.lr or lr))
    ds = (tf.data.Dataset.from_tensor_slices(train)
          .shuffle(len(train), seed=args.seed, reshuffle_each_iteration=True)
          .repeat().batch(args.batch_size, drop_remainder=True).prefetch(2))
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.epochs * (len(train) // args.batch_size), epochs=1,
              verbose=args.verbose)
    wall = time.perf_counter() - start
    nll, se = evaluation.nll_with_stderr(model, test)
    gauss = evaluation.gaussian_baseline_nll(train, test)
    limits = plotting.plot_limits(np.concatenate([train, test]))
    path = plotting.save_density(os.path.join(args.out, f"{name}_density.png"),
                                 lambda p: model.log_prob(p).numpy(), limits,
                                 title=f"relgrad L={args.layers} on {name}")
    print(f"{name:>6}: test LL {-nll:7.3f} +- {2 * se:.3f} nats (Gaussian {-gauss:7.3f}); "
          f"fit {wall:.1f} s; {path}", flush=True)
    return dict(dataset=name, test_ll=-nll, test_ll_2se=2 * se, gaussian_test_ll=-gauss,
                fit_wall_s=wall)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mog,moons,sine")
    parser.add_argument("--layers", type=int, default=40, help="linear layers L (paper: 100)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default: the paper's per dataset)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--ordinary", action="store_true", help="ordinary gradients instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "relgrad_toy"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {sorted(DATASETS)}")
    io.ensure_writable_dir(args.out, "--out")
    return [train_one(name, args) for name in names]


if __name__ == "__main__":
    main()
