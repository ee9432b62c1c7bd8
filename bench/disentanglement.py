"""Disentanglement on the generated dSprites: factorised-decoder VAEs against a VLAE.

    python3 -m bench.disentanglement                                   # every model
    python3 -m bench.disentanglement --models=vae,vlae_3x2 --steps=600

Models (each is the base below with the one change it names; `MODELS`):
  vae       factorised decoder p(x|z) = prod_i p(x_i|z) (window 1x0), beta = 1
  beta_vae  the same with beta = 4 (Higgins et al. 2017): kl_weight=4
  capacity  the same with the capacity objective of Burgess et al. 2018,
            loss = recon + gamma |KL - C(t)|, C from 0 to --capacity_end nats over the run
            (VLAEConfig.capacity_*; left out, with a note, if this VLAEConfig has no such
            fields)
  vlae_3x2  the VLAE: a windowed gated PixelCNN decoder with the small 3x2 window, beta = 1

Base (one for all, so the table compares decoders and objectives, not architectures): 64x64
binary images, Bernoulli likelihood, 10 latent units, N(0, I) prior (the beta-VAE family's;
the AF prior would reward no particular axes), encoder (8, 16, 32) + 128, a 2-layer gated
decoder of 8 filters with z maps of 8 channels, free bits off, Adamax 2e-3, Polyak momentum
0.99 (`BASE`, on top of the `mnist_cpu` preset). Training is `launch.train.train` on
`pipelines.load("dsprites", "train")` (717,280 generated images, shuffled per epoch) for
--steps of --batch_size, seed --seed, the last Polyak-averaged weights.

Per model, on held-out material:
  * the ELBO, reconstruction and KL (nats per image) on the first --eval_images images of
    the dsprites test split (the fixed evaluation order), active units and per-unit KL;
  * the MIG (Chen et al. 2018; `vlae_tf.disentanglement.mutual_information_gap`, 50 bins)
    of the posterior means of --mig_samples images drawn uniformly from the factor grid;
  * the beta-VAE metric (Higgins et al. 2017; `beta_vae_metric`): a logistic regression on
    mean |E[z|x_a] - E[z|x_b]| over --beta_vae_pairs pairs sharing one factor,
    --beta_vae_train points to train it and --beta_vae_eval points for its accuracy;
  * a latent traversal picture (one row per latent unit, ordered by its KL, largest first;
    --traversal_steps values from -R to +R, R = --traversal_range, in place of that unit of
    one reference image's posterior mean). Factorised decoders show the mean p(x_i = 1|z);
    the VLAE's decoder has no closed-form mean, so its rows are samples x ~ p(x|z)
    (temperature 1, one pixel seed for the whole picture).
Two reference rows calibrate the metrics: the true factor indices as the code (the ceiling)
and codes of independent noise (chance), with the same samples and seeds.

Resumable: training resumes from the model_dir's last checkpoint (`launch.train`; one every
<= 500 steps), and a model whose results file exists for the same settings is not redone.
Results:
--results_dir/<variant>/<model>.json, <model>_traversal.png, and summary.{md,json} over
the finished models of the variant, with the command that made them. <variant> is
dsprites-<steps>steps-batch<batch>-seed<seed>[-first<N>][-tiny].
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time

from launch import common
from launch import train as train_lib

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import pipelines  # noqa: E402
from pipelines import dsprites  # noqa: E402

from bench import common as bench_common  # noqa: E402
from vlae_tf import diagnostics, images, sampling  # noqa: E402
from vlae_tf import disentanglement as metrics  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402

DATASET = "dsprites"
BASE_PRESET = "mnist_cpu"
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results", "disentanglement")
WORK_DIR = os.path.join("runs", "disentanglement")
BASE = dict(
    image_shape=dsprites.IMAGE_SHAPE, likelihood="bernoulli", latent_size=10,
    encoder_filters=(8, 16, 32), encoder_hidden=128, prior="standard_normal",
    decoder_layers=2, decoder_filters=8, decoder_residual_blocks=0, z_map_channels=8,
    free_bits=0.0, free_bits_mode="none", kl_weight=1.0, ema_momentum=0.99)
# --tiny (tests of the plumbing only): the smallest model that runs.
TINY = dict(latent_size=3, encoder_filters=(4,), encoder_hidden=8, decoder_layers=1,
            decoder_filters=2, z_map_channels=2)
HAS_CAPACITY = "capacity_gamma" in {field.name for field in dataclasses.fields(VLAEConfig)}


def _models(options=None):
    """name -> (description, changes to the base). Capacity only when the config has it."""
    models = {
        "vae": ("factorised decoder (window 1x0), beta = 1", {"window": (1, 0)}),
        "beta_vae": ("factorised decoder, beta = 4", {"window": (1, 0), "kl_weight": 4.0}),
    }
    if HAS_CAPACITY:
        gamma = options.capacity_gamma if options else 100.0
        end = options.capacity_end if options else 25.0
        steps = options.steps if options else 1
        models["capacity"] = (
            f"factorised decoder, capacity objective: recon + {gamma:g} |KL - C|, C 0 -> "
            f"{end:g} nats over {steps} steps",
            {"window": (1, 0), "capacity_gamma": float(gamma), "capacity_start": 0.0,
             "capacity_end": float(end), "capacity_steps": int(steps)})
    models["vlae_3x2"] = ("VLAE: windowed gated PixelCNN decoder, window 3x2, beta = 1",
                          {"window": (3, 2)})
    return models


MODELS = _models()


# ---------------------------------------------------------------------------- options
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"Comma-separated subset of {', '.join(MODELS)}.")
    parser.add_argument("--steps", type=int, default=2000, help="Training steps per model.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="Model, data and metric seed.")
    parser.add_argument("--max_train_examples", type=int, default=None,
                        help="Train on the first N images of the train split only.")
    parser.add_argument("--capacity_gamma", type=float, default=100.0)
    parser.add_argument("--capacity_end", type=float, default=25.0,
                        help="C at the end of the run, nats (Burgess et al.: 25).")
    parser.add_argument("--eval_images", type=int, default=500,
                        help="Test images for the ELBO, KL and active units.")
    parser.add_argument("--nll_images", type=int, default=0,
                        help="Test images for an importance-sampled NLL (0: none).")
    parser.add_argument("--num_importance_samples", type=int, default=128)
    parser.add_argument("--mig_samples", type=int, default=5000)
    parser.add_argument("--beta_vae_train", type=int, default=500)
    parser.add_argument("--beta_vae_eval", type=int, default=300)
    parser.add_argument("--beta_vae_pairs", type=int, default=32)
    parser.add_argument("--traversal_range", type=float, default=2.5)
    parser.add_argument("--traversal_steps", type=int, default=9)
    parser.add_argument("--tiny", action="store_true",
                        help="A minimal architecture (tests of the plumbing only).")
    parser.add_argument("--work_dir", default=WORK_DIR, help="Where the runs live.")
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    options = parser.parse_args(argv)
    names = [name for name in options.models.split(",") if name]
    available = _models(options)
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        hint = "" if HAS_CAPACITY else " (capacity: this VLAEConfig has no capacity_* fields)"
        parser.error(f"--models: unknown {unknown or names}; expected some of "
                     f"{', '.join(available)}{hint}")
    for name in ("steps", "batch_size", "eval_images", "mig_samples", "beta_vae_train",
                 "beta_vae_eval", "beta_vae_pairs", "traversal_steps"):
        if getattr(options, name) < 1:
            parser.error(f"--{name}: expected an int >= 1, got {getattr(options, name)}")
    if options.traversal_range <= 0:
        parser.error(f"--traversal_range: expected > 0, got {options.traversal_range}")
    options.model_names = names
    options.command = "python3 -m bench.disentanglement " + " ".join(
        shlex.quote(arg) for arg in (sys.argv[1:] if argv is None else argv))
    return options


def variant(options) -> str:
    name = f"{DATASET}-{options.steps}steps-batch{options.batch_size}-seed{options.seed}"
    if options.max_train_examples:
        name += f"-first{options.max_train_examples}"
    return name + ("-tiny" if options.tiny else "")


def run_dir(options, name) -> str:
    return os.path.join(options.work_dir, variant(options), name)


def results_dir(options) -> str:
    return os.path.join(options.results_dir, variant(options))


def model_config(options, name) -> VLAEConfig:
    changes = dict(BASE, **(TINY if options.tiny else {}), **_models(options)[name][1])
    return common.make_config(BASE_PRESET, changes, seed=options.seed)


# One pass over train is 22,415 batches of 32, so a run is a fraction of one epoch: without
# this, launch.train would checkpoint (and resume) only at its end.
CHECKPOINT_EVERY = 500


def train_options(options, name) -> train_lib.TrainOptions:
    """launch.train's options: --steps in epochs of at most CHECKPOINT_EVERY steps (rounded
    up to whole epochs as launch.train rounds --steps), the last weights, no IS-NLL unless
    --nll_images."""
    chunks = math.ceil(options.steps / CHECKPOINT_EVERY)
    return train_lib.TrainOptions(
        dataset=DATASET, model_dir=run_dir(options, name), batch_size=options.batch_size,
        steps=options.steps, steps_per_epoch=math.ceil(options.steps / chunks),
        max_train_examples=options.max_train_examples,
        eval_max_images=options.eval_images, eval_num_images=options.nll_images,
        eval_num_importance_samples=options.num_importance_samples, log_every=100,
        diagnostics_images=0, verbose="2", select="last")


def metric_settings(options) -> dict:
    """What a results file must have been computed with to be reused."""
    keys = ("steps", "batch_size", "seed", "max_train_examples", "tiny", "eval_images",
            "nll_images", "num_importance_samples", "mig_samples", "beta_vae_train",
            "beta_vae_eval", "beta_vae_pairs", "traversal_range", "traversal_steps")
    settings = {key: getattr(options, key) for key in keys}
    if HAS_CAPACITY:
        settings.update(capacity_gamma=options.capacity_gamma, capacity_end=options.capacity_end)
    return settings


# ---------------------------------------------------------------------------- metrics
ENCODE_BATCH = 256


def representation(model):
    """factor indices [M, 5] -> posterior means [M, D]: render, then encode."""
    encode = tf.function(lambda batch: model.encode(batch)[0])

    def codes(factor_indices):
        rendered = dsprites.render_indices(factor_indices)
        return np.concatenate([encode(tf.constant(rendered[start:start + ENCODE_BATCH])).numpy()
                               for start in range(0, len(rendered), ENCODE_BATCH)])

    return codes


def disentanglement_scores(codes_of, options) -> dict:
    """MIG and beta-VAE metric of a representation (factor indices -> codes)."""
    codes, factors = metrics.sample_codes(codes_of, dsprites.FACTOR_SIZES, options.mig_samples,
                                          seed=options.seed, batch_size=1024)
    mig = metrics.mutual_information_gap(codes, factors, return_details=True)
    beta_vae = metrics.beta_vae_metric(
        codes_of, dsprites.FACTOR_SIZES, num_train=options.beta_vae_train,
        num_eval=options.beta_vae_eval, pairs_per_point=options.beta_vae_pairs,
        seed=options.seed, batch_size=1024, return_details=True)
    return {"mig": mig["mig"],
            "mig_per_factor": dict(zip(dsprites.FACTOR_NAMES, mig["per_factor"].tolist())),
            "mig_best_unit": dict(zip(dsprites.FACTOR_NAMES, mig["best_unit"].tolist())),
            "mig_num_bins": mig["num_bins"],
            "beta_vae_accuracy": beta_vae["accuracy"],
            "beta_vae_train_accuracy": beta_vae["train_accuracy"]}


def reference_rows(options) -> list:
    """The true factors as codes (ceiling) and independent noise (chance)."""
    rng = np.random.default_rng(options.seed + 1)

    def noise(factor_indices):
        return rng.normal(size=(len(factor_indices), dsprites.NUM_FACTORS))

    rows = []
    for name, description, codes_of in (
            ("true_factors", "reference: the true factor indices as the code",
             lambda factor_indices: factor_indices.astype(np.float64)),
            ("random_codes", "reference: independent N(0, 1) noise as the code", noise)):
        rows.append({"model": name, "description": description,
                     **disentanglement_scores(codes_of, options)})
    return rows


REFERENCE_FACTORS = [[2, 3, 10, 16, 16]]  # a heart, scale 0.8, orientation 10/39, centred


def traversal(model, config, options, per_unit_kl):
    """Image [rows, columns] uint8: one row per latent unit, largest KL first."""
    reference = dsprites.render_indices(REFERENCE_FACTORS)
    mean = model.encode(reference)[0].numpy()[0]
    order = np.argsort(-np.asarray(per_unit_kl), kind="stable")
    values = np.linspace(-options.traversal_range, options.traversal_range,
                         options.traversal_steps)
    z = np.repeat(mean[None], len(order) * len(values), axis=0).reshape(
        len(order), len(values), -1)
    for row, unit in enumerate(order):
        z[row, :, unit] = values
    z = tf.constant(z.reshape(-1, config.latent_size), tf.float32)
    if config.window == (1, 0):  # factorised: the mean p(x_i = 1 | z)
        blank = tf.zeros((len(z),) + tuple(config.image_shape), tf.float32)
        pictures = tf.sigmoid(model.decoder_params(blank, z)).numpy() * 255.0
    else:  # autoregressive: samples (the same pixel seed for every row)
        generate = tf.function(lambda z, seed: sampling.generate_values(
            model, z, tf.shape(z)[0], seed, tf.constant(1.0)))
        pictures = generate(z, tf.constant([options.seed, 7], tf.int32)).numpy() * 255.0
    grid = images.image_grid(np.round(pictures).astype(np.uint8), columns=len(values),
                             max_value=255)
    return grid, [int(unit) for unit in order]


def evaluation_images(count: int) -> np.ndarray:
    """`pipelines.eval_images("dsprites", "test", count)` (launch.train's ELBO images),
    rendering only those `count` rather than the whole 10,000-image split."""
    test = dsprites.split("test")
    order = np.random.default_rng(pipelines.SPLIT_SEED).permutation(len(test))[:count]
    return dsprites.render_flat(test[order])


def evaluate_model(model, config, options) -> dict:
    test_images = evaluation_images(options.eval_images)
    latent = diagnostics.model_diagnostics(model, test_images, seed=[options.seed, 1])
    per_unit_kl = np.asarray(latent["per_dimension_kl"], np.float64)
    started = time.time()
    scores = disentanglement_scores(representation(model), options)
    grid, order = traversal(model, config, options, per_unit_kl)
    return {**scores, "active_units": int(latent["active_units"]),
            "per_unit_kl_nats": per_unit_kl.tolist(), "traversal_rows": order,
            "metric_minutes": (time.time() - started) / 60.0}, grid


# ---------------------------------------------------------------------------- running
def run_model(options, name) -> dict:
    path = os.path.join(results_dir(options), f"{name}.json")
    settings = metric_settings(options)
    if os.path.exists(path):
        with open(path) as handle:
            row = json.load(handle)
        if row.get("settings") == settings:
            print(f"{name}: results in {path}, not redone", flush=True)
            return row
    description = _models(options)[name][0]
    config = model_config(options, name)
    print(f"\n=== {name}: {description} ===", flush=True)
    started = time.time()
    summary = train_lib.train(config, train_options(options, name))
    model, _ = common.load_trained_model(run_dir(options, name), select="last")
    scores, grid = evaluate_model(model, config, options)
    elbo = summary["eval"]["elbo"]
    nll = summary["eval"].get("importance_sampled") or {}
    picture = os.path.join(results_dir(options), f"{name}_traversal.png")
    os.makedirs(results_dir(options), exist_ok=True)
    images.write_png(picture, grid)
    row = {"model": name, "description": description, "settings": settings,
           "config_changes": _jsonable(_models(options)[name][1]),
           "negative_elbo_nats": elbo["negative_elbo_nats"], "recon_nats": elbo["recon_nats"],
           "kl_nats": elbo["kl_nats"], "bits_per_dim": elbo.get("bits_per_dim"),
           "nll_nats": nll.get("nll_nats"), "nll_stderr": nll.get("nll_stderr"),
           **scores, "train_steps": summary["step"],
           "train_minutes": summary["train_seconds"] / 60.0,
           "wall_minutes_this_call": (time.time() - started) / 60.0,
           "traversal_png": os.path.basename(picture), "model_dir": run_dir(options, name)}
    bench_common.write_json(path, row)
    return row


def _jsonable(value):
    return json.loads(json.dumps(value, default=list))


COLUMNS = ("model", "negative_elbo_nats", "recon_nats", "kl_nats", "active_units", "mig",
           "beta_vae_accuracy", "train_steps", "train_minutes")


def markdown(rows, references, options) -> str:
    lines = [f"# Disentanglement on generated dSprites ({variant(options)})", "",
             f"Command: `{options.command}`", "",
             "| model | −ELBO (nats) | recon (nats) | KL (nats) | active units | MIG | "
             "β-VAE metric | steps | train min |", "|---" * 9 + "|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['negative_elbo_nats']:.2f} | "
                     f"{row['recon_nats']:.2f} | {row['kl_nats']:.2f} | {row['active_units']} | "
                     f"{row['mig']:.3f} | {row['beta_vae_accuracy']:.3f} | {row['train_steps']} | "
                     f"{row['train_minutes']:.1f} |")
    for row in references:
        lines.append(f"| *{row['model']}* | – | – | – | – | {row['mig']:.3f} | "
                     f"{row['beta_vae_accuracy']:.3f} | – | – |")
    lines += ["", "MIG per factor (best unit):", "",
              "| model | " + " | ".join(dsprites.FACTOR_NAMES) + " |",
              "|---" * (1 + dsprites.NUM_FACTORS) + "|"]
    for row in rows + references:
        cells = [f"{row['mig_per_factor'][factor]:.3f} ({row['mig_best_unit'][factor]})"
                 for factor in dsprites.FACTOR_NAMES]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Per-unit KL (nats, unit order; traversal rows are in decreasing KL):", ""]
    for row in rows:
        lines.append(f"- {row['model']}: " + ", ".join(f"{kl:.2f}"
                                                        for kl in row["per_unit_kl_nats"])
                     + f" — ![{row['model']}]({row['traversal_png']})")
    return "\n".join(lines) + "\n"


def main(argv=None):
    options = parse_args(argv)
    if not HAS_CAPACITY:
        print("Note: this VLAEConfig has no capacity_* fields: the capacity model is left out.")
    rows = [run_model(options, name) for name in options.model_names]
    # The summary covers every finished model of the variant, in MODELS order.
    finished = {row["model"]: row for row in rows}
    for name in _models(options):
        path = os.path.join(results_dir(options), f"{name}.json")
        if name not in finished and os.path.exists(path):
            with open(path) as handle:
                candidate = json.load(handle)
            if candidate.get("settings") == metric_settings(options):
                finished[name] = candidate
    ordered = [finished[name] for name in _models(options) if name in finished]
    references = reference_rows(options)
    bench_common.print_table(ordered + references, COLUMNS)
    out = results_dir(options)
    bench_common.write_json(os.path.join(out, "summary.json"),
                            {"command": options.command, "variant": variant(options),
                             "machine": bench_common.machine(), "base_config": _jsonable(BASE),
                             "models": ordered, "references": references})
    with open(os.path.join(out, "summary.md"), "w") as handle:
        handle.write(markdown(ordered, references, options))
    print(f"wrote {os.path.join(out, 'summary.md')}")
    return ordered, references


if __name__ == "__main__":
    main()
