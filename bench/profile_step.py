"""Op-level profile of one training step of a preset (TensorFlow's profiler, CPU).

    python bench/profile_step.py --preset mnist_paper --batch_size 64 --steps 5

Runs `fit` on random images of the preset's shape, traces `--steps` steps with
`tf.profiler.experimental`, reads the XPlane the profiler wrote and sums the time of every op
execution on the executor threads, per step:

* by op type (Conv2D, Conv2DBackpropFilter, Mul, ...), with the number of executions;
* by part of the model (encoder, prior, latent_map, pixelcnn, optimizer, ...), the second
  component of the op's name scope (gradients are counted with the part they belong to);
* `op_seconds / wall_seconds`: how busy the two cores were (2.0 = both all the time).

Thin networks are overhead-bound: many small ops, each costing a few microseconds of
executor time whatever its size. The number of op executions per step says how many.
Results: bench/results/profiles/<preset>-b<batch>.json.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vlae_tf  # noqa: E402
from bench import common  # noqa: E402

# Events of the executor threads that wrap ops rather than being ops.
_WRAPPERS = ("ExecutorState::", "ParallelFor", "ThreadpoolListener", "EagerExecute",
             "KernelAndDevice")


def random_dataset(config, batch_size, batches=4, seed=0):
    """A repeating dataset of random images of the preset's shape and value range."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, config.max_value + 1,
                                (batch_size * batches, *config.image_shape)).astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size).cache().repeat()


def read_op_events(logdir):
    """[(op name, op type, duration in seconds)] of every op execution in the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as handle:
        space.ParseFromString(handle.read())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and not line.name.startswith("tf_inter"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name.startswith(_WRAPPERS) or ":" not in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                events.append((op_name, op_type, event.duration_ps * 1e-12))
    return events


def model_part(op_name):
    """The part of the model an op belongs to: "pixelcnn", "encoder", ..., from its scope
    ("StatefulPartitionedCall/gradient_tape/pixelcnn_1/masked1_1/Conv2D" -> "pixelcnn")."""
    parts = [part for part in op_name.split("/")
             if part not in ("StatefulPartitionedCall", "gradient_tape") and
             not part.startswith("PartitionedCall")]
    if not parts:
        return "other"
    head = parts[0]
    base = head.rstrip("0123456789").rstrip("_") if head[-1:].isdigit() else head
    return base or head


def summarise(events, steps, wall_seconds, top=20):
    by_type = collections.defaultdict(lambda: [0.0, 0])
    by_part = collections.defaultdict(lambda: [0.0, 0])
    for op_name, op_type, seconds in events:
        by_type[op_type][0] += seconds
        by_type[op_type][1] += 1
        by_part[model_part(op_name)][0] += seconds
        by_part[model_part(op_name)][1] += 1
    op_seconds = sum(seconds for _, _, seconds in events)

    def rows(table, key):
        ordered = sorted(table.items(), key=lambda item: -item[1][0])[:top]
        return [{key: name, "ms_per_step": 1e3 * seconds / steps,
                 "percent": 100 * seconds / op_seconds, "ops_per_step": count / steps}
                for name, (seconds, count) in ordered]

    return {"wall_s_per_step": wall_seconds / steps, "op_s_per_step": op_seconds / steps,
            "busy_cores": op_seconds / wall_seconds, "ops_per_step": len(events) / steps,
            "by_type": rows(by_type, "op_type"), "by_part": rows(by_part, "part")}


def profile(preset, batch_size, steps, overrides=None):
    config = vlae_tf.presets.get(preset)
    if overrides:
        config = config.replace(**overrides)
    dataset = random_dataset(config, batch_size)
    model = vlae_tf.VLAE(config)
    model.compile()
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # trace, warm up
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    unprofiled = (time.perf_counter() - start) / steps
    logdir = tempfile.mkdtemp(prefix="vlae_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        summary = summarise(read_op_events(logdir), steps, wall)
    finally:
        if not os.environ.get("VLAE_KEEP_PROFILE"):
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print("profile kept in", logdir)
    summary.update(preset=preset, batch=batch_size, steps=steps,
                   unprofiled_s_per_step=unprofiled, params=model.count_params())
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist_paper", choices=vlae_tf.presets.names())
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--output", default=None,
                        help="JSON path (default bench/results/profiles/<preset>-b<batch>.json)")
    args = parser.parse_args()
    summary = profile(args.preset, args.batch_size, args.steps)
    print(f"{args.preset} batch {args.batch_size}: {summary['unprofiled_s_per_step']:.3f} s/step "
          f"unprofiled, {summary['wall_s_per_step']:.3f} profiled; op time "
          f"{summary['op_s_per_step']:.3f} s/step ({summary['busy_cores']:.2f} cores busy), "
          f"{summary['ops_per_step']:.0f} op executions per step")
    common.print_table(summary["by_part"], ["part", "ms_per_step", "percent", "ops_per_step"])
    print()
    common.print_table(summary["by_type"][:args.top],
                       ["op_type", "ms_per_step", "percent", "ops_per_step"])
    output = args.output or os.path.join(
        "bench", "results", "profiles", f"{args.preset}-b{args.batch_size}.json")
    common.write_json(output, {"machine": common.machine(), "command": " ".join(sys.argv),
                               **summary})


if __name__ == "__main__":
    main()
