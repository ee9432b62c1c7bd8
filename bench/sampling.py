"""Sampling speed: naive (one full decoder pass per pixel) vs cached sampler, same run.

    python bench/sampling.py                       # mnist_paper and cifar10_paper, B=1,16,100
    python bench/sampling.py --presets mnist_paper --batches 1,16 --naive_budget 30

For each preset and batch size B, with freshly initialised weights (speed does not depend
on training):

* cached: `vlae_tf.sampling.sample(model, B, seed)` end to end (prior, latent map, pixel
  loop; XLA on or off as `jit_compile=None` picks it), timed on a second call after a
  warm-up call that traces/compiles; the warm-up time is reported separately.
* naive: the reference pixel loop (`method="naive"`: the model's decoder traced in
  float64, one full pass per pixel) after the same prior draw. Every naive step is the
  same full pass, so when the whole image would take longer than `--naive_budget`
  seconds, only the first N pixel steps are timed and the time is scaled by H*W/N; such
  rows are marked "extrapolated (N of H*W steps)". Otherwise the naive run is complete.
* f32 pass: what one full float32 pass of the decoder costs (the naive sampler without
  the float64 evaluation), timed over a few passes; "x f32" = H*W such passes / cached.
* identical: images whose first N pixels (all pixels for a complete run) are the same
  in both samplers, out of B (same seed, same random numbers).

Prints a table and writes JSON (default bench/results/sampling.json). Timings on a
shared CPU drift by tens of percent between runs; the speed-up compares the two samplers
in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vlae_tf  # noqa: E402
from vlae_tf import presets, sampling  # noqa: E402


def _naive_function(model):
    def run(z, num, seed, temperature, num_pixels):
        z_map = None if z is None else sampling.latent_map64(model, z)
        values = sampling.naive_pixel_loop(model, z_map, num, seed, temperature,
                                           num_pixels=num_pixels)
        return tf.cast(tf.round(values), tf.uint8)
    return tf.function(run, reduce_retracing=True)


def _float32_passes(model):
    """n full float32 decoder passes in a loop (what a float32 naive step costs)."""
    def run(z, num, passes):
        height, width, channels = model.config.image_shape
        images = tf.zeros([num, height, width, channels])
        z_map = None if z is None else model.latent_map(z)

        def body(index, total):
            scaled = model._scale(images)
            params = model.pixelcnn(scaled if z_map is None else [scaled, z_map])
            return index + 1, total + params[0, 0, 0, 0]

        return tf.while_loop(lambda index, _: index < passes, body,
                             (tf.constant(0), tf.constant(0.0)))[1]
    return tf.function(run, reduce_retracing=True)


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    if hasattr(result, "numpy"):
        result = result.numpy()
    return time.perf_counter() - start, result


def bench_one(model, naive_fn, passes_fn, batch, naive_budget, seed=1):
    config = model.config
    height, width, _ = config.image_shape
    pixels = height * width
    temperature = tf.constant(1.0)
    row = {"batch": batch}

    # Cached: warm-up (trace / XLA compile), then a timed call, end to end.
    row["cached_jit_compile"] = sampling.auto_jit_compile(model, batch)
    row["cached_warmup_s"], _ = _timed(lambda: sampling.sample(model, batch, seed=seed + 1000))
    row["cached_s"], cached = _timed(lambda: sampling.sample(model, batch, seed=seed))

    # Naive, with the z and pixel seed `sample` used above.
    latent_seed, pixel_seed = sampling._split_seed(model, seed)
    z = None
    prior_s = 0.0
    if config.use_latent:
        prior_s, z = _timed(sampling.prior_sampler(model), tf.constant(batch), latent_seed,
                            temperature)
    args = (z, tf.constant(batch), pixel_seed, temperature)
    row["naive_warmup_s"], _ = _timed(naive_fn, *args, tf.constant(1))
    probe, _ = _timed(naive_fn, *args, tf.constant(3))
    per_step = probe / 3
    steps = pixels if per_step * pixels <= naive_budget else max(
        3, min(pixels, int(naive_budget / per_step)))
    measured, naive = _timed(naive_fn, *args, tf.constant(steps))
    row["naive_steps_timed"] = steps
    row["naive_extrapolated"] = steps < pixels
    row["naive_measured_s"] = measured
    row["naive_s"] = prior_s + measured * pixels / steps

    flat_naive = naive.reshape(batch, pixels, -1)[:, :steps]
    flat_cached = cached.reshape(batch, pixels, -1)[:, :steps]
    row["identical_images"] = int(np.sum(np.all(flat_naive == flat_cached, axis=(1, 2))))

    # One float32 full pass, timed over a few passes (after a warm-up).
    z32 = None if z is None else tf.cast(z, tf.float32)
    _timed(passes_fn, z32, tf.constant(batch), tf.constant(1))
    count = max(2, min(50, int(0.2 * naive_budget / max(per_step, 1e-3))))
    elapsed, _ = _timed(passes_fn, z32, tf.constant(batch), tf.constant(count))
    row["float32_pass_s"] = elapsed / count
    row["float32_naive_estimate_s"] = prior_s + row["float32_pass_s"] * pixels

    row["naive_images_per_s"] = batch / row["naive_s"]
    row["cached_images_per_s"] = batch / row["cached_s"]
    row["speedup"] = row["naive_s"] / row["cached_s"]
    row["speedup_vs_float32_naive"] = row["float32_naive_estimate_s"] / row["cached_s"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="mnist_paper,cifar10_paper")
    parser.add_argument("--batches", default="1,16,100")
    parser.add_argument("--naive_budget", type=float, default=60.0,
                        help="seconds of naive sampling per row before extrapolating")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "results", "sampling.json"))
    args = parser.parse_args(argv)
    batches = [int(value) for value in args.batches.split(",")]
    results = {"command": " ".join(["python"] + sys.argv), "tensorflow": tf.__version__,
               "cpu_count": os.cpu_count(), "machine": platform.machine(),
               "naive_budget_s": args.naive_budget, "rows": []}
    header = (f"{'preset':<14} {'B':>4} {'naive img/s':>12} {'cached img/s':>13} "
              f"{'speed-up':>9} {'x f32':>7} {'identical':>10} {'XLA':>4} {'warm-up':>8}"
              f"  naive timing")
    print(header)
    print("-" * len(header))
    for name in args.presets.split(","):
        model = vlae_tf.VLAE(presets.get(name))
        naive_fn, passes_fn = _naive_function(model), _float32_passes(model)
        height, width, channels = model.config.image_shape
        for batch in batches:
            row = bench_one(model, naive_fn, passes_fn, batch, args.naive_budget)
            row.update(preset=name, image_shape=[height, width, channels],
                       window=model.config.window,
                       decoder_params=int(model.pixelcnn.count_params()))
            results["rows"].append(row)
            how = (f"extrapolated ({row['naive_steps_timed']} of {height * width} steps, "
                   f"{row['naive_measured_s']:.1f} s timed)" if row["naive_extrapolated"]
                   else f"complete ({row['naive_measured_s']:.1f} s)")
            print(f"{name:<14} {batch:>4} {row['naive_images_per_s']:>12.4g} "
                  f"{row['cached_images_per_s']:>13.4g} {row['speedup']:>8.0f}x "
                  f"{row['speedup_vs_float32_naive']:>6.0f}x "
                  f"{row['identical_images']:>4}/{batch:<5} "
                  f"{'on' if row['cached_jit_compile'] else 'off':>4} "
                  f"{row['cached_warmup_s']:>7.1f}s  {how}", flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwrote {args.json}")
    print("img/s: images per second of a whole sample call (prior, latent map, pixels); "
          "speed-up = naive time / cached time in this run; x f32 = (H*W float32 full "
          "decoder passes + prior) / cached time; identical: images equal on the "
          "naive-sampled pixels; warm-up: the cached sampler's first call (trace + "
          "compile), not included in img/s.")
    return results


if __name__ == "__main__":
    main()
