"""Where the first training step of a deep residual flow goes: trace, first run, warm step.

For ``build_model("resflow", 2, n_steps=N, hidden_units=(128,)*4, coeff=0.9)`` (the Residual
Flows toy recipe) and batch 500 of checkerboard data, one ``tf.function`` train step (Keras'
``train_step``: forward, NLL, gradients, Adam) is timed as

* trace: ``step.get_concrete_function(x)`` (Python tracing + graph building);
* first run: the first call after that (Grappler, executor set-up, one execution);
* warm: median of the next calls;

and the graph size is the number of nodes of the concrete function's graph plus every function
in its library. Prints one JSON line per depth; ``--out`` saves the list (snapshot: ``docs/results/deep_trace.json``).

    python benchmarks/deep_trace.py --steps 5 10 20 [--no-shared] [--out file.json]
"""
import argparse
import json
import time

import numpy as np


def graph_nodes(concrete):
    gd = concrete.graph.as_graph_def()
    return len(gd.node) + sum(len(f.node_def) for f in gd.library.function), \
        len(gd.library.function)


def measure(n_steps, batch, warm_steps, shared, inline=False, optimizer=True):
    import keras
    import tensorflow as tf
    from tfresflow import data
    from tfresflow.models.builders import build_model
    try:
        from tfresflow.bijectors import shared_call
        shared_call.set_enabled(shared)
        shared_call.set_inline(inline)
    except ImportError:
        shared = False
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    model = build_model("resflow", 2, n_steps=n_steps, hidden_units=(128, 128, 128, 128),
                        coeff=0.9)
    build_s = time.perf_counter() - t0
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    x = tf.constant(np.asarray(data.sample("checkerboard", batch, seed=0), np.float32))

    if optimizer:
        step = tf.function(lambda x: model.train_step((x,)))
    else:
        @tf.function
        def step(x):  # forward and gradients only, without the optimizer's update
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            return {"loss": loss + 0.0 * tf.add_n([tf.reduce_sum(g) for g in grads
                                                   if g is not None])}
    t0 = time.perf_counter()
    concrete = step.get_concrete_function(x)
    trace_s = time.perf_counter() - t0
    nodes, functions = graph_nodes(concrete)
    t0 = time.perf_counter()
    out = step(x)
    float(out["loss"])
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(warm_steps):
        t0 = time.perf_counter()
        float(step(x)["loss"])
        times.append(time.perf_counter() - t0)
    return dict(n_steps=n_steps, shared=shared, inline=inline, optimizer=optimizer, batch=batch, build_s=round(build_s, 2),
                trace_s=round(trace_s, 2), first_run_s=round(first_s, 2),
                warm_step_s=round(float(np.median(times)), 3), graph_nodes=nodes,
                library_functions=functions, loss=float(out["loss"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--warm-steps", type=int, default=5)
    parser.add_argument("--no-shared", action="store_true",
                        help="inline every block (the path without the shared block function)")
    parser.add_argument("--inline", action="store_true",
                        help="let Grappler inline the shared block function (no _noinline)")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="time forward + gradients only (no Adam update)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for n in args.steps:
        row = measure(n, args.batch, args.warm_steps, not args.no_shared, args.inline,
                      not args.no_optimizer)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
