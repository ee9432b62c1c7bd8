"""Compute needed by the paper-scale runs (launch/configs/*_paper.flags): training FLOPs
counted on the traced step, times the images the flagfile trains on.

    python bench/paper_compute.py [--sustained_tflops 5] [--flagfiles cifar10_paper,...]

Per preset: GFLOP per training image (forward + backward, TensorFlow's graph profiler on a
batch of 2), the flagfile's epochs x train images, the total in PFLOP, and hours at an
*assumed* sustained rate (--sustained_tflops, default 5 TFLOP/s: roughly a third of a
V100's fp32 peak; small convolutions rarely do better) and at this CPU's fp32 peak.
Evaluation (importance sampling with K=4096 / 512) is counted separately: K forward passes
per test image, ~1/3 of a training step's FLOPs each.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vlae_tf  # noqa: E402
from bench import common  # noqa: E402
from bench.training_throughput import step_flops  # noqa: E402

# flagfile -> (preset, train images per epoch, epochs, eval images, K); from the flagfiles
# and the datasets' standard splits (train minus our validation carve-out).
RUNS = {
    "mnist_paper": ("mnist_paper", 50_000, 200, 10_000, 4096),
    "binarized_mnist_paper": ("mnist_paper", 50_000, 200, 10_000, 4096),
    "omniglot_paper": ("omniglot_paper", 18_000, 200, 13_180, 4096),
    "caltech101_paper": ("caltech101_paper", 4_100, 400, 2_307, 4096),
}
# The CIFAR-10 flagfiles: 45,000 train images, 100 epochs, K=512 on the 10,000 test images.
for _name in [name for name in vlae_tf.presets.names() if name.startswith("cifar10_paper")] \
        + ["cifar10_gated"]:
    RUNS[_name] = (_name, 45_000, 100, 10_000, 512)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sustained_tflops", type=float, default=5.0)
    parser.add_argument("--output", default="bench/results/paper_compute.json")
    parser.add_argument("--flagfiles", default=",".join(RUNS),
                        help="Comma-separated flagfile names (default: all).")
    args = parser.parse_args()
    unknown = sorted(set(args.flagfiles.split(",")) - set(RUNS))
    if unknown:
        parser.error(f"--flagfiles: unknown {unknown}; expected some of {sorted(RUNS)}")
    info = common.machine()
    rows, per_preset = [], {}
    for flagfile in args.flagfiles.split(","):
        preset, images, epochs, eval_images, samples = RUNS[flagfile]
        if preset not in per_preset:
            config = vlae_tf.presets.get(preset)
            model = vlae_tf.VLAE(config)
            batch = np.zeros((2, *config.image_shape), np.uint8)
            model.elbo(batch)  # build
            parameters = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
            per_preset[preset] = (step_flops(model, tf.constant(batch)) / 2 / 1e9, parameters)
            print(f"{preset}: {parameters:,} parameters, {per_preset[preset][0]:.3f} GFLOP "
                  f"per training image", flush=True)
        gflop_per_image, parameters = per_preset[preset]
        train_pflop = gflop_per_image * images * epochs / 1e6
        eval_pflop = gflop_per_image / 3 * samples * eval_images / 1e6
        hours = lambda pflop, tflops: pflop * 1e3 / tflops / 3600  # noqa: E731
        rows.append({
            "flagfile": flagfile, "parameters": parameters,
            "gflop_per_train_image": gflop_per_image,
            "epochs": epochs, "train_images": images, "train_pflop": train_pflop,
            "train_hours_at_assumed_rate": hours(train_pflop, args.sustained_tflops),
            "eval_pflop": eval_pflop,
            "eval_hours_at_assumed_rate": hours(eval_pflop, args.sustained_tflops),
            "train_hours_at_this_cpu_peak": (hours(train_pflop, info["fp32_peak_gflops"] / 1e3)
                                             if info["fp32_peak_gflops"] else None)})
    print(f"assumed sustained rate: {args.sustained_tflops:g} TFLOP/s; this CPU's fp32 peak: "
          f"{info['fp32_peak_gflops']:.0f} GFLOP/s ({info['peak_formula']})")
    common.print_table(rows, list(rows[0]))
    common.write_json(args.output, {"machine": info, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
