"""Image flows on the command line: ``tfresflow train --data mnist5k --model resflow-image``.

``tfresflow train`` hands a run to :func:`train_image` when ``--model`` is an image model
(:data:`IMAGE_MODELS`) or ``--data`` an image dataset (``digits``, ``mnist5k``, ``tfds:mnist``,
``tfds:cifar10``, ``tfds:svhn_cropped``, ``tfds:celeb_a``; :data:`tfresflow.data.images.
IMAGE_DATASETS`); a model that does not fit the data is refused first
(:func:`check_image_run`, exit code 2), before anything is loaded or built.

**Model.** A small default configuration, :data:`SMALL_CONFIG` (3 scales x 2 blocks, 32 hidden
channels / growth 16, one fully connected block), which trains on MNIST-5k in a few minutes on
2 CPU cores; every option of the builder (:mod:`tfresflow.models.image`) is settable by
``--option KEY=VALUE``, e.g. the papers' MNIST / CIFAR-10 Residual Flow (Chen et al., 2019,
App. E), :data:`PAPER_CONFIG`. The logit transform's ``alpha`` is the dataset's (1e-5 for
MNIST and digits, 0.05 otherwise).

**Training** (the papers' recipe, Residual Flows App. E; i-DenseNets App. B): uniform
dequantisation with fresh noise every step (:func:`tfresflow.data.images.image_batches`;
random horizontal flips where the papers use them: CIFAR-10, CelebA), batch 64, Adam with
learning rate 1e-3 and decoupled weight decay 5e-4 (Loshchilov & Hutter, 2019, in Keras' form
``theta <- theta - lr * wd * theta`` outside the adaptive step), and an exponential moving
average of the weights with decay 0.999 (Polyak & Juditsky, 1992; Keras' optimizer
``use_ema``; less for runs shorter than 10,000 steps, :func:`default_ema_decay`), which
evaluation, sampling and the saved models use. Checkpoints and ``--resume``
are those of every run (:func:`tfresflow.models.checkpointing.fit_resumable`; the EMA is part of
the optimiser state).

**Results** in ``--out``: ``metrics.json`` with the test bits/dim and its standard error
(:func:`tfresflow.evaluation.image_bits_per_dim`: the evaluation-mode log-det estimator, 20
exact terms plus an unbiased tail for residual blocks, one dequantisation draw per test
image), ``samples.png`` (a grid of samples drawn by the fixed-point inverse, whose round-trip
residual :func:`tfresflow.evaluation.samples_with_inverse_residual` is in ``metrics.json``),
``model.keras`` and ``saved_model/``. ``tfresflow evaluate RUN`` scores the same test images
(:func:`run_evaluate`) and ``tfresflow sample RUN --out grid.png`` draws a grid
(:func:`run_sample`).

TensorFlow is imported when a command runs, not when this module is imported.

References:
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative
    Modeling", NeurIPS, arXiv:1906.02735 (Appendix E: architecture, optimisation, EMA).
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694 (Appendix B).
  Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", ICLR, arXiv:1711.05101.
  Polyak & Juditsky (1992), "Acceleration of stochastic approximation by averaging", SIAM J.
    Control Optim. 30(4).
"""
import functools
import inspect
import os
import time

import numpy as np

from tfresflow.cli import report, runs
from tfresflow.cli.arguments import (class_count, decay_rate, hybrid_lambda,
                                     nonnegative_float)

#: The image model builders of :data:`tfresflow.models.MODEL_BUILDERS` (``coupling-image``
#: where the installed version has it).
IMAGE_MODELS = ("resflow-image", "idensenet-image", "coupling-image")
#: Defaults of an image run where ``--steps`` / ``--batch-size`` / ... are not given.
DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 64
DEFAULT_WEIGHT_DECAY = 5e-4
DEFAULT_EMA_DECAY = 0.999
#: A run of ``steps`` steps averages over about its last ``steps / EMA_HORIZON_FRACTION`` steps
#: by default (see :func:`default_ema_decay`).
EMA_HORIZON_FRACTION = 10
#: Seed of the offline datasets' train/test split: the same test images for every ``--seed``.
SPLIT_SEED = 0
#: Samples drawn for ``samples.png`` (an 8 x 8 grid).
GRID_SAMPLES = 64

#: The command line's small default configuration per model (each key settable by --option;
#: keys a builder does not take are left out).
SMALL_CONFIG = {
    "resflow-image": dict(scales=3, blocks_per_scale=2, hidden_channels=32, fc_blocks=1,
                          fc_hidden_units=(64, 64)),
    "idensenet-image": dict(scales=3, blocks_per_scale=2, depth=3, growth=16, fc_blocks=1,
                            fc_growth=16),
    "coupling-image": dict(scales=3, blocks_per_scale=2, hidden_channels=32, fc_blocks=1,
                           fc_hidden_units=(64, 64)),
}
#: Channels of each classifier branch of ``--hybrid`` (``--option branch_channels=N``; the
#: papers': 256).
DEFAULT_BRANCH_CHANNELS = 64
#: ``--lam`` of ``--hybrid`` when not given (the papers' hybrid setting ``lambda = 1/D``).
DEFAULT_LAM = "1/D"
#: The papers' configurations (the builders' own defaults), for ``--help`` and the README.
PAPER_CONFIG = {
    "resflow-image": "scales=3 blocks_per_scale=16 hidden_channels=512 fc_blocks=4 "
                     "fc_hidden_units=(128,128)",
    "idensenet-image": "scales=3 blocks_per_scale=16 depth=3 growth=172 fc_blocks=4 "
                       "fc_growth=32",
    "coupling-image": "scales=3 blocks_per_scale=16 hidden_channels=512 fc_blocks=4 "
                      "fc_hidden_units=(128,128)",
}


def config_help():
    """The ``--help`` text of the image defaults."""
    small = "; ".join(f"{k}: " + " ".join(f"{o}={v}" for o, v in c.items())
                      for k, c in SMALL_CONFIG.items() if k in PAPER_CONFIG)
    paper = "; ".join(f"{k}: {v}" for k, v in PAPER_CONFIG.items())
    return (f"Image models ({', '.join(IMAGE_MODELS)}) on image data (digits, mnist5k, "
            f"tfds:NAME) default to a small configuration ({small}) that trains in minutes on "
            f"2 CPU cores; the papers' ({paper}) is set by --option KEY=VALUE. Image runs "
            f"default to --steps {DEFAULT_STEPS}, --batch-size {DEFAULT_BATCH_SIZE}, all "
            "images of the train and test splits (--n-train / --n-test cap them). --hybrid "
            "adds a classifier on the flow's features (HybridFlowModel, trained on "
            "lam log p(x) + log p(y|x); --lam 0, 1/D or 1, default 1/D; classifier branches of "
            f"{DEFAULT_BRANCH_CHANNELS} channels, the papers' 256 by --option "
            "branch_channels=256).")


def add_arguments(train):
    """Adds the image-only options of ``tfresflow train``."""
    train.add_argument("--weight-decay", type=nonnegative_float, default=None,
                       help="decoupled weight decay of Adam, image models only (default "
                            f"{DEFAULT_WEIGHT_DECAY:g}, the papers'; 0: none)")
    train.add_argument("--ema-decay", type=decay_rate, default=None,
                       help="decay of the moving average of the weights used for evaluation, "
                            "sampling and the saved model, image models only (default: the "
                            f"papers' {DEFAULT_EMA_DECAY:g}, or 1 - {EMA_HORIZON_FRACTION}/steps "
                            "for runs shorter than "
                            f"{int(EMA_HORIZON_FRACTION / (1 - DEFAULT_EMA_DECAY))} steps; "
                            "0: none)")
    train.add_argument("--hybrid", action="store_true",
                       help="train a hybrid model (density + classifier, image models with "
                            "labelled data only)")
    train.add_argument("--lam", type=hybrid_lambda, default=None, metavar="LAMBDA",
                       help="weight of log p(x) in the hybrid objective lam log p(x) + "
                            f"log p(y|x): a number >= 0 or 1/D (default {DEFAULT_LAM})")
    train.add_argument("--classes", type=class_count, default=None, metavar="K",
                       help="number of classes of --hybrid (default: the dataset's, 10 for "
                            "the digit sets)")


# --------------------------------------------------------------------------- validation
def _image_datasets():
    from tfresflow.data.images import IMAGE_DATASETS
    return IMAGE_DATASETS


def is_image_data(spec):
    """True when ``--data spec`` names an image dataset (or asks for a TFDS one)."""
    return spec in _image_datasets() or str(spec).startswith("tfds:")


def is_image_model(name):
    """True for the image model builders (:data:`IMAGE_MODELS`)."""
    return name in IMAGE_MODELS


def check_image_run(args):
    """Whether ``args`` is an image run; a ValueError for a model that does not fit the data.

    Checked before anything is loaded or built: an image model needs an image dataset and a
    vector model vector data (toy densities, ``.npy`` files); the image-only options need an
    image model, and the vector-model architecture options (``--hidden``, ``--n-steps``,
    ``--components``) a vector model.
    """
    datasets = sorted(_image_datasets())
    image_model, image_data = is_image_model(args.model), is_image_data(args.data)
    if image_model and not image_data:
        raise ValueError(f"--model {args.model} is an image model; --data {args.data!r} is not "
                         f"an image dataset (choose one of {datasets}).")
    if image_data and not image_model:
        raise ValueError(f"--data {args.data} is an image dataset; --model {args.model!r} is a "
                         f"vector model (choose an image model: {', '.join(_builders())}).")
    if image_data and args.data not in _image_datasets():
        raise ValueError(f"Unknown image dataset --data {args.data!r}; choose one of "
                         f"{datasets}.")
    hybrid_only = [f"--{k}" for k in ("lam", "classes") if getattr(args, k, None) is not None]
    if hybrid_only and not getattr(args, "hybrid", False):
        raise ValueError(f"{', '.join(hybrid_only)} set the hybrid model; add --hybrid.")
    if not image_model:
        given = [f"--{k.replace('_', '-')}" for k in ("weight_decay", "ema_decay", "hybrid")
                 if getattr(args, k, None) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to "
                             f"image models only, not --model {args.model}.")
        return False
    if getattr(args, "hybrid", False) and \
            getattr(_image_datasets().lookup(args.data, "--data"), "num_classes", 0) is None:
        raise ValueError(f"--hybrid needs class labels; --data {args.data} has none (choose a "
                         "labelled dataset: digits, mnist5k, tfds:mnist, tfds:cifar10, "
                         "tfds:svhn_cropped).")
    given = [f"--{k.replace('_', '-')}" for k in ("hidden", "n_steps", "components")
             if getattr(args, k, None) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} set vector models; configure --model "
                         f"{args.model} with --option KEY=VALUE (e.g. --option "
                         "blocks_per_scale=4 --option hidden_channels=64).")
    return True


def _builders():
    from tfresflow.models import MODEL_BUILDERS
    return [m for m in IMAGE_MODELS if m in MODEL_BUILDERS]


def resolve_defaults(args):
    """Fills the options an image run left unset (``None``) with the image defaults."""
    if args.steps is None:
        args.steps = DEFAULT_STEPS
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH_SIZE
    if args.weight_decay is None:
        args.weight_decay = DEFAULT_WEIGHT_DECAY
    if args.ema_decay is None:
        args.ema_decay = default_ema_decay(args.steps)
    if getattr(args, "hybrid", False) and args.lam is None:
        args.lam = DEFAULT_LAM
    return args


def default_ema_decay(steps):
    """``min(0.999, 1 - 10 / steps)``: the papers' decay 0.999, or less for short runs.

    Keras' average starts at the weights after the first step and is not bias-corrected, so
    after ``T`` steps the first weights keep the share ``m^T`` of it: for ``m = 0.999`` and the
    command line's 300 default steps that is 0.74, an average of mostly untrained weights. With
    ``m = 1 - 10 / T`` (a horizon ``1 / (1 - m)`` of a tenth of the run) it is
    ``(1 - 10/T)^T < e^-10``; from 10,000 steps on the papers' 0.999 is used.
    """
    steps = int(steps)
    return float(min(DEFAULT_EMA_DECAY, max(0.0, 1.0 - EMA_HORIZON_FRACTION / steps)))


def default_out(args):
    """``runs/MODEL-DATA`` (``runs/MODEL-hybrid-DATA`` with ``--hybrid``), the dataset's ``:``
    (``tfds:mnist``) made ``-``."""
    kind = f"{args.model}-hybrid" if getattr(args, "hybrid", False) else args.model
    return os.path.join("runs", f"{kind}-{str(args.data).replace(':', '-')}")


def model_options(args, dataset, standardization=None):
    """The builder options of the run: :data:`SMALL_CONFIG`, the dataset's logit ``alpha``,
    ``standardization`` (when given) and the run's seed, each overridden by ``--option``; only
    keys the builder takes (a key given by ``--option`` that it does not take is left in, for
    the builder to refuse)."""
    from tfresflow.models import MODEL_BUILDERS

    builder = MODEL_BUILDERS.lookup(args.model, "--model")
    takes = set(inspect.signature(builder).parameters)
    opts = {k: v for k, v in SMALL_CONFIG.get(args.model, {}).items() if k in takes}
    if "alpha" in takes:
        opts["alpha"] = dataset.alpha
    if standardization is not None and "standardization" in takes:
        opts["standardization"] = standardization
    opts["seed"] = args.seed
    opts.update({k: v for k, v in args.option if k != "branch_channels"})
    return opts


def check_model_options(args, dataset):
    """A ValueError naming the ``--option`` keys the builder of ``--model`` does not take
    (checked against its signature, before anything is loaded or built)."""
    from tfresflow.models import MODEL_BUILDERS

    builder = MODEL_BUILDERS.lookup(args.model, "--model")
    signature = inspect.signature(builder)
    try:
        signature.bind(list(dataset.shape), **model_options(args, dataset))
    except TypeError as err:
        takes = [k for k in signature.parameters if k != "event_shape"]
        raise ValueError(f"Bad option for --model {args.model}: {err}; it takes {takes}.") \
            from None


def branch_channels(args):
    """Channels of the hybrid classifier branches: ``--option branch_channels=N`` or
    :data:`DEFAULT_BRANCH_CHANNELS`."""
    from tfresflow.validation import check_positive_int

    value = dict(args.option).get("branch_channels", DEFAULT_BRANCH_CHANNELS)
    if not getattr(args, "hybrid", False) and "branch_channels" in dict(args.option):
        raise ValueError("--option branch_channels sets the classifier of --hybrid; add "
                         "--hybrid.")
    return check_positive_int(value, "--option branch_channels")


# --------------------------------------------------------------------------- data
def load_split(name, split, max_examples):
    """uint8 images (and labels) of one split of the image dataset ``name``.

    The offline sets are split with :data:`SPLIT_SEED`, whatever the run's ``--seed``.
    """
    from tfresflow.data.images import load_images

    return load_images(name, split, seed=SPLIT_SEED, max_examples=max_examples)


# --------------------------------------------------------------------------- train
def build_and_compile(args, dataset, num_classes=None, standardization=None):
    """The image model of ``args`` (``build_model`` with :func:`model_options`; wrapped in a
    :class:`~tfresflow.models.HybridFlowModel` of ``num_classes`` classes with ``--hybrid``),
    compiled with FusedAdam(``lr``, ``weight_decay``) and an EMA of decay ``ema_decay``."""
    import keras

    from tfresflow.models import build_model
    from tfresflow.optimizers import FusedAdam

    keras.utils.set_random_seed(args.seed)
    try:
        model = build_model(args.model, list(dataset.shape),
                            **model_options(args, dataset, standardization))
    except TypeError as err:
        raise ValueError(f"Bad option for --model {args.model}: {err}") from None
    if getattr(args, "hybrid", False):
        from tfresflow.models import HybridFlowModel

        model = HybridFlowModel(model, num_classes, lam=args.lam,
                                branch_channels=branch_channels(args), n_bits=dataset.n_bits,
                                seed=args.seed, name="hybrid_flow")
    ema = float(args.ema_decay)
    optimizer = FusedAdam(args.lr, weight_decay=float(args.weight_decay) or None,
                          use_ema=ema > 0, ema_momentum=ema if ema > 0 else 0.99)
    model.compile(optimizer=optimizer)
    return model


def train_image(args, run):
    """Runs ``tfresflow train`` for an image model (see the module docstring); returns the
    metrics dict."""
    from tfresflow import io
    from tfresflow.cli import progress
    from tfresflow.data.images import image_batches, labelled_image_batches
    from tfresflow.data.standardization import channel_statistics
    from tfresflow.models.checkpointing import TrainingDiverged, fit_resumable, latest_step

    resolve_defaults(args)
    dataset = _image_datasets().lookup(args.data, "--data")
    hybrid = bool(getattr(args, "hybrid", False))
    branch_channels(args)   # bad options fail before the data are loaded
    check_model_options(args, dataset)
    x_train, y_train = load_split(args.data, "train", args.n_train)
    x_test, y_test = load_split(args.data, "test", args.n_test)
    num_classes = _num_classes(args, dataset, y_train, y_test) if hybrid else None
    # the papers' hybrid preprocessing where they use it (CIFAR-10: standardisation in place of
    # the logit transform; SVHN, CIFAR-10: random crops after reflection padding)
    standardization = channel_statistics(x_train, dataset.n_bits) \
        if hybrid and dataset.hybrid_standardize else None
    crop_padding = dataset.hybrid_crop_padding if hybrid else 0
    io.ensure_writable_dir(run.out, "--out")
    model = build_and_compile(args, dataset, num_classes, standardization)
    runs.begin(run, args)
    print(f"training {args.model} on {args.data} ({len(x_train)} images "
          f"{'x'.join(map(str, dataset.shape))}): {model.count_params()} parameters, "
          f"{args.steps} steps, batch {args.batch_size}")
    if run.resumed:
        print(f"resuming from step {latest_step(run.checkpoints) or 0} (checkpoints in "
              f"{run.checkpoints})")
    if hybrid:
        batches = functools.partial(labelled_image_batches, x_train, y_train, args.batch_size,
                                    args.seed, n_bits=dataset.n_bits, flip=dataset.flip,
                                    crop_padding=crop_padding)
    else:
        batches = functools.partial(image_batches, x_train, args.batch_size, args.seed,
                                    n_bits=dataset.n_bits, flip=dataset.flip)
    start = time.time()
    try:
        _, resumed_at = fit_resumable(
            model, None, args.steps, args.batch_size, args.seed, run.checkpoints,
            args.checkpoint_every, callbacks=progress.callbacks(quiet=args.quiet), verbose=0,
            batches=batches)
    except TrainingDiverged as err:
        raise err.with_hint(runs.diverged_hint(args.lr)) from None
    train_seconds = time.time() - start
    metrics = _run_metrics(args, dataset, model, len(x_train), len(x_test))
    metrics.update(train_seconds=train_seconds, resumed_from_step=resumed_at)
    metrics.update(evaluate_images(model, x_test, dataset, args.seed))
    print(f"test {metrics['test_bits_per_dim']:.4f} ± {metrics['test_bits_per_dim_stderr']:.4f} "
          f"bits/dim on {len(x_test)} images [{metrics['bits_per_dim_method']}]")
    if hybrid:
        metrics.update(hybrid=True, lam=args.lam, lam_value=float(model.lam),
                       num_classes=int(num_classes), branch_channels=int(model.branch_channels),
                       crop_padding=int(crop_padding), standardization=None if
                       standardization is None else {"mean": list(standardization.mean),
                                                     "std": list(standardization.std)})
        metrics.update(evaluate_classifier(model, x_test, y_test, dataset, args.seed))
    metrics.update(write_sample_grid(model, os.path.join(run.work, "samples.png"), args.seed,
                                     dataset.n_bits, f"{args.model} on {args.data}"))
    written = report.report_fit(run.work, metrics, model=model)
    runs.finish(run)
    print(f"wrote {run.out}/" + ", ".join(written + ["samples.png"]))
    return metrics


def _num_classes(args, dataset, y_train, y_test):
    """``--classes``, else the dataset's number of classes (else 1 + the largest label); a
    ValueError for unlabelled data or labels outside ``0..classes-1``."""
    if y_train is None or y_test is None:
        raise ValueError(f"--hybrid needs class labels; --data {args.data} has none.")
    largest = int(max(np.max(y_train), np.max(y_test)))
    classes = args.classes or getattr(dataset, "num_classes", None) or largest + 1
    if largest >= classes:
        raise ValueError(f"--classes {classes}: the labels of --data {args.data} go up to "
                         f"{largest}.")
    if classes < 2:
        raise ValueError(f"--hybrid needs at least 2 classes; --data {args.data} has labels "
                         f"0..{largest}.")
    return classes


def evaluate_classifier(model, images, labels, dataset, seed):
    """Test accuracy and cross-entropy (nats) of a hybrid ``model`` with standard errors over
    the test images, classified as the dequantised images the bits/dim is computed on
    (:func:`tfresflow.evaluation.classification_with_stderr`); printed, and returned as a
    dict."""
    from tfresflow import evaluation

    result = evaluation.classification_with_stderr(model, images, labels,
                                                   n_bits=dataset.n_bits, seed=seed)
    print(f"test accuracy {result['test_accuracy']:.4f} ± {result['test_accuracy_stderr']:.4f} "
          f"| cross-entropy {result['test_cross_entropy']:.4f} ± "
          f"{result['test_cross_entropy_stderr']:.4f} nats")
    return result


def _run_metrics(args, dataset, model, n_train, n_test):
    return {
        "model": args.model, "data": args.data, "image_shape": list(dataset.shape),
        "n_train": n_train, "n_test": n_test, "split_seed": SPLIT_SEED, "n_bits": dataset.n_bits,
        "flip": bool(dataset.flip), "steps": args.steps, "batch_size": args.batch_size,
        "learning_rate": args.lr, "weight_decay": args.weight_decay,
        "ema_decay": args.ema_decay, "seed": args.seed,
        "model_options": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in model_options(args, dataset).items()},
        "parameters": int(model.count_params()),
        "stochastic_log_det": bool(model.has_stochastic_log_det),
    }


def evaluate_images(model, images, dataset, seed):
    """Test bits/dim (and NLL in nats) of ``model`` on uint8 ``images``, with standard errors
    (:func:`tfresflow.evaluation.image_bits_per_dim` with ``seed``)."""
    from tfresflow import evaluation

    bpd, se = evaluation.image_bits_per_dim(model, images, n_bits=dataset.n_bits, seed=seed)
    d = int(np.prod(images.shape[1:]))
    scale = d * np.log(2.0)
    return {"test_bits_per_dim": bpd, "test_bits_per_dim_stderr": se,
            "test_nll": (bpd - dataset.n_bits) * scale, "test_nll_stderr": se * scale,
            "bits_per_dim_method": _bpd_method(model)}


def _bpd_method(model):
    if not getattr(model, "has_stochastic_log_det", False):
        return "exact log-det; one dequantisation draw per image"
    return ("evaluation-mode log-det estimator (residual blocks: 20 exact series terms plus "
            "the unbiased tail); one dequantisation draw and one estimator draw per image")


def write_sample_grid(model, path, seed, n_bits, title, n=GRID_SAMPLES):
    """Draws ``n`` samples of ``model``, writes them to ``path`` as a PNG grid (quantised to
    ``n_bits``) and returns the inverse's residual (``samples_inverse_residual_*``; ``{}`` for a
    model without its flow, e.g. a SavedModel)."""
    from tfresflow import plotting
    from tfresflow.data.dequantization import quantize

    samples, residual = draw(model, n, seed)
    plotting.save_image_grid(path, quantize(samples, n_bits), title=title)
    return {f"samples_{k}": v for k, v in residual.items()}


def draw(model, n, seed):
    """``(samples, residual dict)`` of ``n`` draws (see :func:`write_sample_grid`)."""
    from tfresflow import evaluation

    flow = getattr(model, "flow", model)   # a HybridFlowModel's flow
    if hasattr(flow, "bijector") and hasattr(flow, "step_kwargs"):
        return evaluation.samples_with_inverse_residual(flow, n, seed=seed)
    return np.asarray(model.sample(n, seed=seed)), {}


# --------------------------------------------------------------------------- evaluate/sample
def is_image_model_object(model):
    """True for a loaded model of images (event shape ``[H, W, C]``)."""
    return len(getattr(model, "event_shape", ()) or ()) == 3


def run_evaluate(args, model):
    """``tfresflow evaluate`` of an image model: test bits/dim with its standard error on the
    run's test images (data set, count and seed from its ``metrics.json`` unless given)."""
    from tfresflow.cli import loading

    data, n, seed, note = loading.evaluation_split(args.model_path, args.data, args.n, args.seed)
    if not is_image_data(data) or data not in _image_datasets():
        raise ValueError(f"--data {data!r}: the model at {args.model_path!r} models images "
                         f"{list(model.event_shape)}; choose an image dataset "
                         f"({sorted(_image_datasets())}).")
    dataset = _image_datasets().lookup(data, "--data")
    if list(dataset.shape) != list(model.event_shape):
        raise ValueError(f"--data {data} holds images {list(dataset.shape)}, the model "
                         f"{args.model_path!r} models {list(model.event_shape)}.")
    images, labels = load_split(data, "test", n)
    result = evaluate_images(model, images, dataset, seed)
    print(f"test {result['test_bits_per_dim']:.4f} ± {result['test_bits_per_dim_stderr']:.4f} "
          f"bits/dim on {len(images)} images of {data} (seed {seed}"
          f"{'; ' + note if note else ''}) [{result['bits_per_dim_method']}]")
    if getattr(model, "num_classes", None) and callable(getattr(model, "classify", None)):
        if labels is None:
            raise ValueError(f"--data {data} has no labels to score the classifier of the "
                             f"hybrid model {args.model_path!r} on.")
        result.update(evaluate_classifier(model, images, labels, dataset, seed))
    return result


def run_sample(args, model):
    """``tfresflow sample`` of an image model: ``--out`` a ``.png`` grid or a ``.npy`` array
    of the samples (floats in ``[0, 1)`` scale, before quantisation)."""
    from tfresflow import plotting
    from tfresflow.cli import loading
    from tfresflow.data.dequantization import quantize
    from tfresflow.io import atomic_path

    n_bits = int((loading.run_metrics(args.model_path) or {}).get("n_bits", 8))
    samples, residual = draw(model, args.n, args.seed)
    if str(args.out).endswith(".png"):
        plotting.save_image_grid(args.out, quantize(samples, n_bits),
                                 title=f"{args.n} samples, seed {args.seed}")
    else:
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, samples)
    if residual:
        print(f"inverse round-trip residual: max |f^-1(x) - z| = "
              f"{residual['inverse_residual_max_abs']:.2e} (max |z| "
              f"{residual['latent_max_abs']:.2f})")
    print(f"wrote {args.n} samples to {args.out}")
    return samples
