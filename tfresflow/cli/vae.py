"""VAEs on binarised images on the command line: ``tfresflow train --model vae``.

``tfresflow train --model vae --posterior none|coupling|boosted --components C
--data mnist5k|digits|tfds:binarized_mnist`` -> :func:`train_vae`: a
:class:`~tfresflow.models.FlowVAE` (gated-convolution encoder/decoder, Bernoulli decoder) with

* ``--posterior none``: the plain VAE (diagonal-Gaussian posterior);
* ``--posterior coupling`` (default): one amortised conditional-coupling flow posterior;
* ``--posterior boosted``: a gradient boosted mixture of ``--components C >= 2`` coupling
  flows, trained stage by stage (:class:`~tfresflow.models.boosted_vae.BoostedVAETrainer`;
  ``--steps`` counts optimiser steps *per stage*; GBF+ with ``--option finetune_passes=1``).

The plain and single-flow VAEs train with the same trainer (one stage). ``--n-steps`` and
``--hidden`` set the coupling steps and conditioner widths, ``--n-train`` / ``--n-test`` cap the
training images and the evaluated test images (defaults: all training images, 500 test
images). Further settings as ``--option KEY=VALUE`` (:data:`VAE_OPTIONS`): ``latent_size``
(64), ``context_size``, ``encoder_depth`` / ``decoder_depth`` (6), ``kl_warmup`` (steps of the
KL warm-up, restarted per stage; default a quarter of ``--steps``), ``finetune_passes``,
``finetune_steps``, ``regularization`` (lambda), ``floor`` (a number, default -10, or ``none``),
``shock_fix`` (``true``/``false``), ``shock_max_rate``, ``boost_encoder`` (``true``/``false``),
``nll_samples`` (importance samples, default 500; the paper's 2000 is slow on a CPU),
``rho_step_size``, ``binarization`` (``bernoulli``/``threshold``, offline sets).

Writes to ``--out`` (atomically): ``metrics.json`` (``-ELBO`` and importance-sampled NLL with
standard errors after every stage, the per-step losses), ``stage_losses.png`` (training loss and
reconstruction term through the stages with held-out ``-ELBO`` of the fixed and new
components: the decoder-shock spike at stage starts), ``reconstructions.png``, ``samples.png``,
``model.keras`` and ``saved_model/`` (endpoints ``elbo``, ``encode``, ``decode``, ``sample``),
and a checkpoint per stage under ``checkpoints/`` (``--resume RUN_DIR`` continues after the
latest). Bad combinations fail before any data is loaded or anything written.

TensorFlow is imported when the command runs, not when this module is imported.
"""
import os
import time

import numpy as np

from tfresflow.cli import runs

POSTERIORS = ("none", "coupling", "boosted")
DEFAULT_POSTERIOR = "coupling"
DEFAULT_N_TEST = 500
DEFAULT_NLL_SAMPLES = 500
MONITOR_EXAMPLES = 128


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _floor(text):
    value = str(text).strip().lower()
    if value in ("none", "nan"):
        return None
    return float(value)


#: ``--option`` keys of ``train --model vae`` -> converter.
VAE_OPTIONS = {"latent_size": int, "context_size": int, "encoder_depth": int,
               "decoder_depth": int, "kl_warmup": int, "finetune_passes": int,
               "finetune_steps": int, "regularization": float, "floor": _floor,
               "shock_fix": _bool, "shock_max_rate": float, "boost_encoder": _bool,
               "nll_samples": int,
               "rho_step_size": float, "binarization": str}
#: Options meaningful for the boosted posterior only.
BOOSTED_ONLY = ("finetune_passes", "finetune_steps", "regularization", "floor", "shock_fix",
                "shock_max_rate", "boost_encoder", "rho_step_size")


def add_vae_arguments(train_parser):
    """Adds ``--posterior`` to the ``train`` parser (the other options are shared)."""
    train_parser.add_argument("--posterior", default=None, choices=POSTERIORS,
                              help="posterior of --model vae: none (plain VAE), coupling (one "
                                   "amortised coupling flow, the default) or boosted "
                                   "(--components C >= 2 boosted coupling flows)")


def check_vae_arguments(args):
    """Checks the ``train --model vae`` settings in ``args``; returns a dict of them.

    Raises:
      ValueError: naming the option, for every bad combination (before any work).
    """
    from tfresflow.data.binarized import BINARIZATIONS, BINARIZED_DATASETS

    if args.model != "vae":
        if getattr(args, "posterior", None) is not None:
            raise ValueError(f"--posterior applies to --model vae only, not {args.model!r}.")
        return None
    posterior = args.posterior or DEFAULT_POSTERIOR
    if args.data not in BINARIZED_DATASETS:
        raise ValueError(f"--model vae needs binarised images: --data must be one of "
                         f"{sorted(BINARIZED_DATASETS)}, got {args.data!r}.")
    components = args.components
    if posterior == "boosted":
        components = 2 if components is None else components
        if components < 2:
            raise ValueError(f"--posterior boosted needs --components >= 2, got {components} "
                             "(one flow is --posterior coupling).")
    elif components not in (None, 1):
        raise ValueError(f"--components {components} needs --posterior boosted (--posterior "
                         f"{posterior} has one posterior component).")
    if posterior == "none" and (args.hidden is not None or args.n_steps is not None):
        raise ValueError("--hidden / --n-steps set the posterior flow; --posterior none has "
                         "no flow.")
    opts = dict(getattr(args, "option", None) or [])
    unknown = sorted(set(opts) - set(VAE_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown --option for --model vae: {unknown}; accepted: "
                         f"{sorted(VAE_OPTIONS)}.")
    try:
        opts = {k: VAE_OPTIONS[k](v) for k, v in opts.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"Bad --option value for --model vae: {err}") from None
    misplaced = sorted(set(opts) & set(BOOSTED_ONLY)) if posterior != "boosted" else []
    if misplaced:
        raise ValueError(f"--option {', '.join(misplaced)} applies to --posterior boosted only.")
    if "binarization" in opts and opts["binarization"] not in BINARIZATIONS:
        raise ValueError(f"--option binarization must be one of {list(BINARIZATIONS)}, got "
                         f"{opts['binarization']!r}.")
    for key in ("latent_size", "encoder_depth", "decoder_depth", "nll_samples"):
        if key in opts and opts[key] < 1:
            raise ValueError(f"--option {key} must be a positive integer, got {opts[key]}.")
    return {"posterior": posterior, "components": components or 1, **opts}


def dispatch(args):
    """Runs ``train`` when it is a VAE run (``--model vae``, or ``--resume`` of one); returns
    its metrics, or None for any other model (after checking it was given no ``--posterior``).
    """
    resume = getattr(args, "resume", None)
    if resume and (runs.recorded_settings(resume) or {}).get("model") == "vae":
        run = runs.prepare(args, resume)   # puts the recorded settings into args
        check_vae_arguments(args)
        return train_vae(args, run)
    if check_vae_arguments(args) is None:
        return None
    run = runs.prepare(args, os.path.join("runs", f"vae-{args.data.replace(':', '-')}"))
    return train_vae(args, run)


def _given(args, name):
    return name in runs.given(args)


def _load(args, settings):
    from tfresflow.data.binarized import load_binarized

    binarization = settings.get("binarization", "bernoulli")
    n_train = args.n_train if _given(args, "n_train") else None
    n_test = args.n_test if _given(args, "n_test") else DEFAULT_N_TEST
    x_train, _ = load_binarized(args.data, "train", seed=args.seed, binarization=binarization,
                                max_examples=n_train)
    x_test, _ = load_binarized(args.data, "test", seed=args.seed, binarization=binarization)
    return x_train.astype(np.float32), x_test.astype(np.float32), n_test


def build_vae(image_shape, settings, steps, hidden=None, n_steps=None, seed=0):
    """The :class:`~tfresflow.models.FlowVAE` of checked CLI ``settings``."""
    import keras

    from tfresflow.models import FlowVAE

    keras.utils.set_random_seed(seed)
    flow = None if settings["posterior"] == "none" else "coupling"
    kwargs = {k: settings[k] for k in ("latent_size", "context_size", "encoder_depth",
                                       "decoder_depth") if k in settings}
    if hidden is not None:
        kwargs["flow_hidden_units"] = tuple(hidden)
    if n_steps is not None:
        kwargs["flow_steps"] = int(n_steps)
    warmup = settings.get("kl_warmup", max(1, steps // 4))
    return FlowVAE(image_shape, num_components=settings["components"], flow=flow,
                   kl_warmup_steps=warmup, seed=seed, **kwargs)


def _trainer(model, args, settings):
    from tfresflow.models.boosted_vae import BoostedVAETrainer

    kwargs = {"regularization": settings.get("regularization", 1.0),
              "shock_fix": settings.get("shock_fix", True),
              "shock_max_rate": settings.get("shock_max_rate", 0.5),
              "boost_encoder": settings.get("boost_encoder", False),
              "rho_step_size": settings.get("rho_step_size", 0.005),
              "eval_samples": settings.get("nll_samples", DEFAULT_NLL_SAMPLES)}
    if "floor" in settings:
        kwargs["log_mixture_floor"] = settings["floor"]
    return BoostedVAETrainer(model, learning_rate=args.lr, batch_size=args.batch_size,
                             seed=args.seed, verbose=0 if args.quiet else 1, **kwargs)


def stage_figure(path, trainers, title):
    """``stage_losses.png``: per-step training loss and reconstruction term and the held-out
    ``-ELBO`` of the fixed / new components through the stages of each trainer in
    ``trainers`` (``{label: BoostedVAETrainer}``), stage starts dotted."""
    from tfresflow import plotting

    loss, recon, held = [], [], []
    boundaries = ()
    for label, t in trainers.items():
        prefix = f"{label}: " if len(trainers) > 1 else ""
        loss.append((f"{prefix}stage objective", *t.step_curve("loss")))
        recon.append((f"{prefix}-log p(x|z) of the training samples", *t.step_curve("recon")))
        if t.monitor["step"]:
            held.append((f"{prefix}fixed components", *t.monitor_curve("fixed_neg_elbo")))
            held.append((f"{prefix}new component", *t.monitor_curve("new_neg_elbo")))
        boundaries = list(t.stage_offsets().values())[1:]
    panels = [("training loss (nats)", loss), ("reconstruction (nats)", recon)]
    if held:
        panels.append(("held-out -ELBO (nats)", held))
    return plotting.save_stage_curves(path, panels, boundaries, title=title, smooth=5)


def _figures(out_dir, model, trainer, x_test, seed, title):
    from tfresflow import plotting

    stage_figure(os.path.join(out_dir, "stage_losses.png"), {"": trainer}, title)
    x = x_test[:16]
    z, _, _ = model.mixture_sample(x, 1, seed=[seed, 11])
    import tensorflow as tf
    recon = tf.sigmoid(model.decode(z[0])).numpy()
    pairs = np.stack([x, recon], 1).reshape(-1, *x.shape[1:])
    plotting.save_image_grid(os.path.join(out_dir, "reconstructions.png"), pairs,
                             title="test images (odd columns) and reconstructions", columns=8)
    plotting.save_image_grid(os.path.join(out_dir, "samples.png"),
                             model.sample(64, seed=[seed, 12]).numpy(),
                             title="samples (Bernoulli means)", columns=8)
    return ["stage_losses.png", "reconstructions.png", "samples.png"]


def train_vae(args, run):
    """Runs ``tfresflow train --model vae`` (see the module docstring); returns the metrics."""
    from tfresflow import io
    from tfresflow.cli.report import save_keras_model
    from tfresflow.export import export_vae_saved_model

    settings = check_vae_arguments(args)
    x_train, x_test, n_test = _load(args, settings)
    io.ensure_writable_dir(run.out, "--out")
    model = build_vae(x_train.shape[1:], settings, args.steps, args.hidden, args.n_steps,
                      args.seed)
    trainer = _trainer(model, args, settings)
    runs.begin(run, args)
    out_dir = run.work
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    if run.resumed:
        latest = trainer.resume(checkpoint_dir)
        if latest:
            print(f"resuming after {os.path.basename(latest)} (checkpoints in {checkpoint_dir})")
    passes = settings.get("finetune_passes", 0)
    params = int(model.count_params())
    print(f"training VAE ({settings['posterior']} posterior, {settings['components']} "
          f"component(s)) on {args.data}: {params} parameters, {len(x_train)} images, "
          f"{args.steps} steps per stage, {passes} GBF+ pass(es)")
    eval_x = x_test[:n_test]
    start = time.time()
    history = trainer.fit(x_train, steps_per_component=args.steps,
                          finetune_steps=settings.get("finetune_steps"),
                          finetune_passes=passes, eval_data=eval_x,
                          monitor_data=x_test[:MONITOR_EXAMPLES],
                          checkpoint_dir=checkpoint_dir,
                          checkpoint_every=args.checkpoint_every)
    seconds = time.time() - start
    final = history[-1]
    keys = ("negative_elbo", "negative_elbo_stderr", "negative_elbo_component",
            "negative_elbo_component_stderr", "nll", "nll_stderr", "reconstruction", "kl",
            "elbo_samples", "importance_samples")
    metrics = {"model": "vae", "posterior": settings["posterior"],
               "components": settings["components"], "data": args.data,
               "n_train": len(x_train), "n_test": len(eval_x), "steps_per_stage": args.steps,
               "finetune_passes": passes, "batch_size": args.batch_size,
               "learning_rate": args.lr, "seed": args.seed, "options": settings,
               "parameters": params, **{k: final[k] for k in keys},
               "weights": [float(w) for w in trainer.weights], "history": history,
               "steps": trainer.steps, "monitor": trainer.monitor, "train_seconds": seconds}
    print(f"test -ELBO {final['negative_elbo']:.3f} ± {final['negative_elbo_stderr']:.3f} | "
          f"NLL {final['nll']:.3f} ± {final['nll_stderr']:.3f} nats ({final['importance_samples']}"
          f" importance samples, {len(eval_x)} test images) | weights "
          f"{np.round(trainer.weights, 3).tolist()}")
    title = f"VAE, {settings['posterior']} posterior (C={settings['components']}) on {args.data}"
    written = _figures(out_dir, model, trainer, x_test, args.seed, title)
    save_keras_model(model, os.path.join(out_dir, "model.keras"))
    export_vae_saved_model(model, os.path.join(out_dir, "saved_model"))
    io.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    runs.finish(run)
    print(f"wrote {run.out}/" + ", ".join(["metrics.json", "model.keras", "saved_model/",
                                            "checkpoints/"] + written))
    return metrics
