"""Training throughput of a preset: images/s and achieved GFLOP/s vs the CPU's fp32 peak,
with and without XLA (`jit_compile`), measured in the same run.

    python bench/training_throughput.py --preset mnist_paper --batch_size 64 --steps 20

FLOPs of one training step (forward + backward) are counted by TensorFlow's graph profiler
on the traced step (convolutions and matmuls dominate; element-wise ops are included).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vlae_tf  # noqa: E402
from bench import common  # noqa: E402


def step_flops(model, images):
    """FLOPs of one forward+backward pass, from the profiler on the traced graph."""
    from tensorflow.python.profiler import model_analyzer, option_builder

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


def measure(preset, batch_size, steps, jit_compile):
    config = vlae_tf.presets.get(preset)
    height, width, channels = config.image_shape
    generator = np.random.default_rng(0)
    images = generator.integers(0, config.max_value + 1,
                                (batch_size * steps, height, width, channels)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).cache().repeat()
    model = vlae_tf.VLAE(config)
    model.compile(jit_compile=jit_compile)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # trace / compile
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds_per_step = (time.perf_counter() - start) / steps
    flops = step_flops(model, tf.constant(images[:batch_size]))
    return {"preset": preset, "batch": batch_size, "jit_compile": jit_compile,
            "params": model.count_params(), "first_call_s": compile_seconds,
            "s_per_step": seconds_per_step, "images_per_s": batch_size / seconds_per_step,
            "gflop_per_step": flops / 1e9, "gflop_per_s": flops / 1e9 / seconds_per_step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist_paper", choices=vlae_tf.presets.names())
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default="bench/results/training_throughput.json")
    args = parser.parse_args()
    info = common.machine()
    rows = []
    for jit_compile in (False, True):
        row = measure(args.preset, args.batch_size, args.steps, jit_compile)
        if info["fp32_peak_gflops"]:
            row["percent_of_peak"] = 100 * row["gflop_per_s"] / info["fp32_peak_gflops"]
        rows.append(row)
    print(f"fp32 peak: {info['fp32_peak_gflops']:.0f} GFLOP/s = {info['peak_formula']}")
    common.print_table(rows, ["preset", "batch", "jit_compile", "params", "first_call_s",
                              "s_per_step", "images_per_s", "gflop_per_step", "gflop_per_s",
                              "percent_of_peak"])
    faster = min(rows, key=lambda row: row["s_per_step"])
    print(f"faster: jit_compile={faster['jit_compile']}")
    common.write_json(args.output, {"machine": info, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
