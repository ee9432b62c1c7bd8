"""Importance-sampled NLL: throughput and peak memory for K = 64, 512, 4096.

    python bench/importance_sampling.py --preset mnist_paper --num_images 10 --chunk_size 256

Peak memory is the process's peak resident set size growth during each K (Linux
ru_maxrss), so it includes TensorFlow's allocator caching; each K runs in a fresh
subprocess so that the peaks are not shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import common  # noqa: E402

WORKER = """
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf
import vlae_tf
preset, num_images, num_samples, chunk_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
config = vlae_tf.presets.get(preset)
model = vlae_tf.VLAE(config)
images = np.random.default_rng(0).integers(0, config.max_value + 1,
                                          (num_images,) + config.image_shape).astype(np.uint8)
model.importance_log_likelihood(images[:1], num_samples=min(chunk_size, num_samples),
                                chunk_size=chunk_size)  # trace
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
log_px = model.importance_log_likelihood(images, num_samples=num_samples, chunk_size=chunk_size)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_before_mb": base / 1024, "rss_peak_mb": peak / 1024,
                  "mean_log_px_nats": float(np.mean(log_px))}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist_paper")
    parser.add_argument("--num_images", type=int, default=10)
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--samples", default="64,512,4096")
    parser.add_argument("--output", default="bench/results/importance_sampling.json")
    args = parser.parse_args()
    rows = []
    for num_samples in (int(value) for value in args.samples.split(",")):
        result = subprocess.run(
            [sys.executable, "-c", WORKER, args.preset, str(args.num_images), str(num_samples),
             str(args.chunk_size)], capture_output=True, text=True, cwd=ROOT, check=True)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        decoder_passes = args.num_images * num_samples
        rows.append({"K": num_samples, "images": args.num_images, "chunk": args.chunk_size,
                     "seconds": measured["seconds"],
                     "images_per_s": args.num_images / measured["seconds"],
                     "samples_per_s": decoder_passes / measured["seconds"],
                     "rss_peak_mb": measured["rss_peak_mb"],
                     "rss_growth_mb": measured["rss_peak_mb"] - measured["rss_before_mb"]})
        print(f"K={num_samples}: {measured['seconds']:.1f} s", flush=True)
    common.print_table(rows, ["K", "images", "chunk", "seconds", "images_per_s",
                              "samples_per_s", "rss_peak_mb", "rss_growth_mb"])
    common.write_json(args.output, {"machine": common.machine(), "args": vars(args),
                                    "rows": rows})


if __name__ == "__main__":
    main()
