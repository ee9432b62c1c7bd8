"""The paper's binary VLAE against the gated model it replaced, at bench.claims' budget.

    python3 -m bench.paper_vs_gated --dataset=mnist5k_binary
    python3 -m bench.paper_vs_gated --dataset=fashion_mnist_binary

Two models, each its preset with only `ema_momentum=0.99` and `seed` changed (free bits
stay the presets' own: 7.84 nats, hard, one group):
- `mnist_paper`: masked ResNet PixelCNN (1 mask-A + 5 mask-B 3x3 layers of 12 filters, 4
  1x1 blocks between them), the z path symmetric to the encoder concatenated with the
  image, an AF prior of 4 steps of 2x640 weight-normalised MADEs;
- `mnist_gated`: the gated 13x6-window decoder with z in every gate, 1x640 MADEs.

Everything else is bench.claims' (its flags, imported from it): the training call and
budget (--steps of --batch_size, --seed, Polyak momentum 0.99, the last weights), the
evaluation (ELBO on --eval_images test images of the fixed order, IS-NLL with
K=--num_importance_samples on the first --nll_images, with the model's seed), the latent
diagnostics (index-code MI, active units) and claim 5's judge CNN and linear probe.
The IS-NLL is computed here rather than by launch.train (which would not keep the
per-image values), by the same function with the same arguments, once per run (cached in
the run directory), so that the two models' per-image values, on the same images in the
same order, give the paired difference and its standard error.

Runs are resumable: --work_dir/<dataset>-<steps>steps-seed<seed>/<preset>/ (default
runs/paper_vs_gated). Results: --results_dir/<same name>.json (default
bench/results/paper_vs_gated), written after each model, and summary.md there: a section
per JSON in that directory.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from absl import app

import pipelines
from bench import claims
from bench import common as bench_common
from bench import paper_params
from launch import common
from launch import train as train_lib
from vlae_tf import evaluation

FLAGS = claims.FLAGS  # bench.claims' flags: the same budget and evaluation
PRESETS = {"mnist_paper": "the paper's model: masked ResNet PixelCNN, symmetric z path, "
                          "2x640 MADE prior",
           "mnist_gated": "the gated 13x6-window decoder, z in every gate, 1x640 MADE prior"}
CHANGES = {"ema_momentum": 0.99}  # and the seed: nothing else differs from the presets
WORK_DIR = os.path.join("runs", "paper_vs_gated")
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results", "paper_vs_gated")
DATASETS = ("mnist5k_binary", "fashion_mnist_binary")
IS_FILE = claims.IS_FILE


def run_config(preset):
    return common.make_config(preset, CHANGES, seed=FLAGS.seed)


# The paired difference and the cached per-image IS-NLL are bench.claims' (shared).
paired_difference = claims.paired_difference
importance_sampled = claims.importance_sampled


def train_and_evaluate(preset, judge):
    """Trains (or finds) one preset's run; (its row, its per-image IS-NLL)."""
    config = run_config(preset)
    # launch.train evaluates the ELBO; the IS-NLL is computed below, keeping per-image values.
    options = dataclasses.replace(claims.train_options(claims.run_dir(preset)),
                                  eval_num_images=0)
    print(f"\n=== {preset}: {PRESETS[preset]} ===", flush=True)
    started = time.time()
    summary = train_lib.train(config, options)
    model, _ = common.load_trained_model(options.model_dir)
    nll, per_image = importance_sampled(model, options, summary["step"])
    classifier, judge_real, train_set, test_set = judge
    kept = claims.class_kept(model, classifier, *test_set)
    probe = claims.linear_probe(model, *train_set, *test_set, FLAGS.seed)
    print(f"{preset}: decompressions keep the class {kept:.3f}; linear probe {probe:.3f}")
    row = {"run": preset, "description": PRESETS[preset], "decoder": config.decoder,
           "parameters": paper_params.count(model),
           "pixelcnn_parameters": paper_params.count(model.pixelcnn),
           **claims.latent_information(preset, config, model),
           **claims.evaluation_columns(summary, config, nll),
           "decompression_class_kept": kept, "linear_probe_accuracy": probe,
           "wall_minutes_this_call": (time.time() - started) / 60.0,
           "model_dir": options.model_dir}
    return row, per_image


COLUMNS = ["run", "decoder", "parameters", "pixelcnn_parameters", "negative_elbo_nats",
           "recon_nats", "kl_nats", "mutual_information_nats", "active_units", "nll_nats",
           "nll_stderr", "nll_bits_per_dim", "decompression_class_kept",
           "linear_probe_accuracy", "train_minutes"]


def markdown(rows):
    lines = ["| run | decoder | parameters (PixelCNN) | −ELBO (nats) | recon (nats) | KL (nats) "
             "| MI (nats) | active units | IS-NLL (nats) | NLL (bits/dim) | decompressions "
             "keeping the class | linear probe | train minutes |", "|---" * 13 + "|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['decoder']} | {row['parameters']:,} "
                     f"({row['pixelcnn_parameters']:,}) | "
                     f"{row['negative_elbo_nats']:.2f} | {row['recon_nats']:.2f} | "
                     f"{row['kl_nats']:.2f} | {row['mutual_information_nats']:.2f} | "
                     f"{row['active_units']} | "
                     f"{row['nll_nats']:.2f} ± {row['nll_stderr']:.2f} | "
                     f"{row['nll_bits_per_dim']:.4f} | {row['decompression_class_kept']:.1%} | "
                     f"{row['linear_probe_accuracy']:.1%} | {row['train_minutes']:.1f} |")
    return "\n".join(lines)


def difference_text(difference):
    if difference is None:
        return "Paired difference: not yet (needs both runs)."
    mean, stderr = difference["mean_nats"], difference["stderr_nats"]
    return (f"Paired difference of per-image IS-NLL, mnist_paper − mnist_gated, over the same "
            f"{difference['num_images']} images: **{mean:+.2f} ± {stderr:.2f} nats** "
            f"(s.e.; {abs(mean) / stderr if stderr else float('inf'):.1f} s.e. from 0; "
            f"negative: the paper's model is better).")


def write_results(rows, per_image, judge_real, budget):
    """<results_dir>/<variant>.json, then summary.md (every budget's JSON there)."""
    difference = (paired_difference(per_image["mnist_paper"], per_image["mnist_gated"])
                  if len(per_image) == len(PRESETS) else None)
    selected = [rows[preset] for preset in PRESETS if preset in rows]
    bench_common.print_table(selected, COLUMNS)
    print(difference_text(difference))
    bench_common.write_json(
        os.path.join(FLAGS.results_dir, f"{claims.variant()}.json"),
        {"budget": budget, "rows": selected, "judge_accuracy_real_test": judge_real,
         "paired_is_nll_difference_paper_minus_gated": difference,
         "not_finished": [preset for preset in PRESETS if preset not in rows],
         "per_image_is_nll": {preset: values.tolist() for preset, values in per_image.items()},
         "machine": bench_common.machine()})
    write_summary(FLAGS.results_dir)


def write_summary(results_dir):
    lines = ["# mnist_paper vs mnist_gated at bench.claims' budget", ""]
    def order(name):  # the DATASETS' order, then anything else by name
        dataset = name.split("-")[0]
        return (DATASETS.index(dataset) if dataset in DATASETS else len(DATASETS), name)

    for name in sorted(os.listdir(results_dir), key=order):
        if not name.endswith(".json"):
            continue
        result = common.read_json(os.path.join(results_dir, name))
        budget = result["budget"]
        lines += [f"## {budget['dataset']}", "", f"`{budget['command']}`", "",
                  f"Each model is its preset with only ema_momentum=0.99 and seed="
                  f"{budget['seed']} changed (free bits: the presets' own, "
                  f"{budget['free_bits']:g} nats, hard). {budget['steps']} steps of batch "
                  f"{budget['batch_size']} (rounded up to whole epochs), the last "
                  f"Polyak-averaged weights; ELBO on {budget['eval_images']} test images, "
                  f"IS-NLL (K={budget['num_importance_samples']}) on the first "
                  f"{budget['nll_images']}; MI and active units on the ELBO images; "
                  f"decompressions judged by claim 5's CNN (accuracy on the real test "
                  f"images: {result['judge_accuracy_real_test']:.1%}).", "",
                  markdown(result["rows"]), "",
                  difference_text(result["paired_is_nll_difference_paper_minus_gated"]), ""]
        if result["not_finished"]:
            lines += [f"Not finished: {', '.join(result['not_finished'])}.", ""]
    path = os.path.join(results_dir, "summary.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {path}")


def main(argv):
    del argv
    if FLAGS.dataset not in DATASETS:
        raise app.UsageError(f"--dataset: expected one of {', '.join(DATASETS)} (binary: the "
                             f"presets are Bernoulli); got {FLAGS.dataset}")
    if FLAGS["free_bits"].present or FLAGS["claim"].present:
        raise app.UsageError("--free_bits and --claim are bench.claims' own: here the free "
                             "bits are each preset's (7.84 nats, hard)")
    if not FLAGS["work_dir"].present:
        FLAGS.work_dir = WORK_DIR
    if not FLAGS["results_dir"].present:
        FLAGS.results_dir = RESULTS_DIR
    free_bits = {run_config(preset).free_bits for preset in PRESETS}
    budget = {"dataset": FLAGS.dataset, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
              "seed": FLAGS.seed, "eval_images": FLAGS.eval_images,
              "nll_images": FLAGS.nll_images,
              "num_importance_samples": FLAGS.num_importance_samples,
              "presets": list(PRESETS), "changes": {**CHANGES, "seed": FLAGS.seed},
              "free_bits": free_bits.pop() if len(free_bits) == 1 else sorted(free_bits),
              "command": claims.command_line(
                  ["python3 -m bench.paper_vs_gated"],
                  ("dataset", "steps", "batch_size", "seed", "eval_images", "nll_images",
                   "num_importance_samples", "probe_images"))}
    judge = claims.class_judge()
    rows, per_image = {}, {}
    for preset in PRESETS:
        rows[preset], per_image[preset] = train_and_evaluate(preset, judge)
        write_results(rows, per_image, judge[1], budget)


if __name__ == "__main__":
    app.run(main)
