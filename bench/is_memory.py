"""Importance sampling under a memory budget: peak RSS and samples/s per chunking rule.

    nice python bench/is_memory.py                      # mnist_paper and mnist_cpu, K 64/512/4096
    nice python bench/is_memory.py --presets mnist_cpu --samples 512 --output /tmp/x.json

For each preset (untrained: memory and speed do not depend on the weights), K and rule
("fixed-1024": the chunking before budgets, 1024 // batch samples per pass; "budget-default":
`estimators.default_memory_budget_gb()`; "budget-2GB"), one fresh subprocess (so the RSS peaks
do not mix) builds the model, chooses the chunk as `importance_log_likelihood` would, runs an
untimed 1-sample chunk (tracing), then times `min(K, enough whole chunks for >= 512 decoder
images)` samples on the batch: the peak of a pass depends on the chunk, not on K, so a full
K=4096 run (minutes per row here) would show the same peak. Reported: the chunk, decoder
images per pass, the process' peak RSS over its whole life (ru_maxrss: model, tracing, the
budget's probe and the timed passes), the RSS before the passes, the measured bytes per
decoder image, the peak the rule aimed at (baseline + safety x bytes x images x chunk), and
samples/s (images x samples / seconds of the timed call). The machine's load (uptime) is
recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, math, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import vlae_tf
from vlae_tf import estimators, evaluation
preset, num_images, num_samples, rule = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = vlae_tf.presets.get(preset)
model = vlae_tf.VLAE(config)
images = np.random.default_rng(0).integers(0, config.max_value + 1,
                                          (num_images,) + tuple(config.image_shape)).astype(np.uint8)
model.elbo(images[:1])  # builds the model
begin = time.perf_counter()
info = {"how": "fixed", "bytes_per_decoder_image": None, "baseline_bytes": None}
if rule == "fixed-1024":
    chunk = max(1, min(num_samples, evaluation.DECODER_IMAGES_PER_PASS // num_images))
else:
    budget = None if rule == "budget-default" else float(rule.split("-")[1].rstrip("GB"))
    info = estimators.budget_chunk_size(model, images, num_samples, budget)
    chunk = info["chunk_size"]
choose_seconds = time.perf_counter() - begin
model.importance_log_likelihood(images, 1, chunk_size=1)  # traces (reused for any chunk)
rss_before = estimators.resident_bytes()
timed_samples = min(num_samples, chunk * max(1, math.ceil(512 / (num_images * chunk))))
start = time.perf_counter()
log_px = model.importance_log_likelihood(images, timed_samples, chunk_size=chunk).numpy()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
per_image = info.get("bytes_per_decoder_image")
aimed = (info["baseline_bytes"] + estimators.MEMORY_SAFETY_FACTOR * per_image * num_images * chunk
         if per_image else None)
print(json.dumps({
    "chunk": chunk, "how": info["how"], "decoder_images_per_pass": chunk * num_images,
    "peak_rss_gb": peak / 2 ** 30, "rss_before_passes_gb": rss_before / 2 ** 30,
    "measured_mb_per_decoder_image": per_image / 2 ** 20 if per_image else None,
    "aimed_peak_gb": aimed / 2 ** 30 if aimed else None,
    "budget_gb": info.get("memory_budget_gb"), "choose_seconds": choose_seconds,
    "timed_samples": timed_samples, "seconds": seconds,
    "samples_per_second": num_images * timed_samples / seconds,
    "finite": bool(np.all(np.isfinite(log_px)))}))
"""


def uptime() -> str:
    with open("/proc/loadavg") as handle:
        return "load average " + " ".join(handle.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="mnist_paper,mnist_cpu")
    parser.add_argument("--samples", default="64,512,4096")
    parser.add_argument("--rules", default="fixed-1024,budget-default,budget-2GB")
    parser.add_argument("--num_images", type=int, default=10)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results",
                                                         "is_memory.json"))
    args = parser.parse_args()
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = {"load_before": uptime(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                time.gmtime()),
              "num_images": args.num_images, "rows": []}
    header = (f"{'preset':12} {'K':>5} {'rule':15} {'chunk':>5} {'imgs/pass':>9} "
              f"{'peak GB':>7} {'aimed GB':>8} {'MB/img':>6} {'samples/s':>9}")
    print(header)
    for preset in args.presets.split(","):
        for num_samples in (int(value) for value in args.samples.split(",")):
            for rule in args.rules.split(","):
                completed = subprocess.run(
                    [sys.executable, "-c", WORKER, preset, str(args.num_images),
                     str(num_samples), rule], capture_output=True, text=True, cwd=ROOT,
                    env=environment)
                if completed.returncode != 0:
                    raise SystemExit(f"{preset} K={num_samples} {rule}: "
                                     f"{completed.stderr[-2000:]}")
                row = {"preset": preset, "K": num_samples, "rule": rule,
                       **json.loads(completed.stdout.strip().splitlines()[-1])}
                result["rows"].append(row)
                aimed = f"{row['aimed_peak_gb']:.2f}" if row["aimed_peak_gb"] else "-"
                per_image = (f"{row['measured_mb_per_decoder_image']:.2f}"
                             if row["measured_mb_per_decoder_image"] else "-")
                print(f"{preset:12} {num_samples:>5} {rule:15} {row['chunk']:>5} "
                      f"{row['decoder_images_per_pass']:>9} {row['peak_rss_gb']:>7.2f} "
                      f"{aimed:>8} {per_image:>6} {row['samples_per_second']:>9.1f}",
                      flush=True)
    result["load_after"] = uptime()
    print(f"load: {result['load_before']} before, {result['load_after']} after "
          f"(2 CPU cores, shared)")
    with open(args.output, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
