"""Training throughput of presets (images/s), optionally against another tree of the code.

    python bench/training_throughput.py --presets mnist_paper,mnist_cpu --batch_size 64
    python bench/training_throughput.py --presets mnist_paper --baseline_tree /tmp/base \\
        --rounds 5                       # this tree vs a worktree of an older commit
    python bench/training_throughput.py --presets mnist_paper --xla   # also jit_compile=True

Each measurement is a fresh process (`--worker`) that builds the preset's model, trains
`--warmup` steps (tracing), then times `--steps` steps of `fit` on random images of the
preset's shape, and reports the median seconds per step over its steps (a per-batch
callback). With `--baseline_tree` the processes alternate between the trees (this tree,
then the baseline, per preset, `--rounds` times), so that both see the same machine load;
the speed-up is the ratio of the medians over rounds. FLOPs of one step (forward +
backward) are TensorFlow's graph-profiler count on the traced step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import common  # noqa: E402


def step_flops(model, images):
    """FLOPs of one forward+backward pass, from the profiler on the traced graph."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    import vlae_tf

    @tf.function
    def forward_backward(batch):
        with tf.GradientTape() as tape:
            terms = model._elbo_terms(batch, vlae_tf.model.make_seed(0))
            loss = -tf.reduce_mean(terms["elbo"])
        return tape.gradient(loss, model.trainable_weights)

    graph = forward_backward.get_concrete_function(images).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, options=options).total_float_ops


def measure(preset, batch_size, steps, warmup, jit_compile, flops=True):
    """One measurement in this process (the tree on sys.path)."""
    import vlae_tf  # first: it sets TensorFlow's defaults before TensorFlow loads
    import keras
    import numpy as np
    import tensorflow as tf

    config = vlae_tf.presets.get(preset)
    generator = np.random.default_rng(0)
    images = generator.integers(0, config.max_value + 1,
                                (batch_size * 4, *config.image_shape)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).cache().repeat()
    model = vlae_tf.VLAE(config)
    model.compile(jit_compile=jit_compile)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
    first_call = time.perf_counter() - start
    stamps = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    stamps.append(time.perf_counter())
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Stamp()])
    seconds = float(np.median(np.diff(stamps)))
    from tensorflow.python.util import _pywrap_util_port

    row = {"preset": preset, "batch": batch_size, "jit_compile": jit_compile,
           "onednn": bool(_pywrap_util_port.IsMklEnabled()),
           "params": int(model.count_params()), "first_call_s": first_call,
           "s_per_step": seconds, "images_per_s": batch_size / seconds}
    if flops:
        gflop = step_flops(model, tf.constant(images[:batch_size])) / 1e9
        row.update(gflop_per_step=gflop, gflop_per_s=gflop / seconds)
    return row


def run_worker(tree, preset, args, jit_compile, flops):
    """A measurement in a fresh process with `tree` first on its path."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--presets", preset,
               "--batch_size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    command += ["--xla"] if jit_compile else []
    command += [] if flops else ["--no_flops"]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, ROOT]),
                       VLAE_BENCH_TREE=tree)
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"measurement of {preset} in {tree} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="mnist_paper",
                        help="comma-separated preset names")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measurements per preset and tree (alternating trees)")
    parser.add_argument("--baseline_tree", default=None,
                        help="another checkout of the code (e.g. `git worktree add /tmp/base "
                             "<commit>`), measured alternately with this one")
    parser.add_argument("--xla", action="store_true", help="also measure jit_compile=True")
    parser.add_argument("--no_flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="bench/results/training_throughput.json")
    args = parser.parse_args()
    presets = [name for name in args.presets.split(",") if name]
    if args.worker:
        if os.environ.get("VLAE_BENCH_TREE"):
            sys.path.insert(0, os.environ["VLAE_BENCH_TREE"])
        print(json.dumps(measure(presets[0], args.batch_size, args.steps, args.warmup,
                                 jit_compile=args.xla, flops=not args.no_flops)))
        return
    if args.baseline_tree and not os.path.isdir(os.path.join(args.baseline_tree, "vlae_tf")):
        parser.error(f"--baseline_tree: expected a checkout with a vlae_tf/ directory; got "
                     f"{args.baseline_tree!r}")
    trees = [("this", ROOT)] + ([("baseline", os.path.abspath(args.baseline_tree))]
                                if args.baseline_tree else [])
    modes = (False, True) if args.xla else (False,)
    rows = []
    for preset in presets:
        for jit_compile in modes:
            per_tree = {label: [] for label, _ in trees}
            for round_index in range(args.rounds):
                for label, tree in trees:
                    row = run_worker(tree, preset, args, jit_compile,
                                     flops=not args.no_flops and round_index == 0)
                    per_tree[label].append(row)
                    print(f"{preset} jit_compile={jit_compile} round {round_index + 1}/"
                          f"{args.rounds} {label}: {row['s_per_step']:.3f} s/step, "
                          f"{row['images_per_s']:.0f} images/s", flush=True)
            for label, measured in per_tree.items():
                median = float(statistics.median([row["s_per_step"] for row in measured]))
                summary = dict(measured[0], tree=label, s_per_step=median,
                               images_per_s=args.batch_size / median,
                               s_per_step_rounds=[row["s_per_step"] for row in measured])
                if "gflop_per_step" in summary:
                    summary["gflop_per_s"] = summary["gflop_per_step"] / median
                rows.append(summary)
            if args.baseline_tree:
                this, baseline = rows[-2], rows[-1]
                this["speedup_vs_baseline"] = baseline["s_per_step"] / this["s_per_step"]
    columns = ["preset", "tree", "batch", "jit_compile", "params", "s_per_step",
               "images_per_s", "gflop_per_step", "gflop_per_s", "speedup_vs_baseline"]
    common.print_table(rows, columns)
    common.write_json(args.output, {"machine": common.machine(), "command": " ".join(sys.argv),
                                    "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
