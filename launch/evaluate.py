"""Importance-sampled negative log-likelihood of a trained VLAE (the paper's metric).

    python -m launch.evaluate --model_dir=runs/mnist5k_cpu --num_importance_samples=4096

Rebuilds the model from model_dir/config.json and the Polyak-averaged weights the run
selected (best.weights.h5, the best validation ELBO, or model.weights.h5, the last epoch:
run.json "selection"; --select overrides), estimates -log p(x) with K importance samples per image on --split
(all of it, or a fixed random subset of --max_images images: the same subset in every run
and in launch.train's final evaluation), with a progress bar and ETA, prints nats/image and
bits/dim, and writes JSON (model_dir/eval_is.json, or --output) with the per-image values.

Memory: without --chunk_size, the samples per decoder pass are chosen to keep the peak RSS
within --memory_budget_gb (default: 1/8 of physical memory; vlae_tf.estimators).

Sharded and multi-device evaluation (the per-image numbers are the single run's):

    python -m launch.evaluate --model_dir=D --num_shards=4 --shard_index=0   # ... 1, 2, 3
    python -m launch.evaluate --merge='D/eval_is.shard-*-of-00004.json' --output=D/eval_is.json
    python -m launch.evaluate --model_dir=D --strategy=mirrored     # every local GPU

A shard is a contiguous run of whole batches of the single run's image order (`shard_range`),
and each batch is seeded by the index of its first image in that order, so a shard draws
exactly the single run's noise. --strategy=mirrored deals the batches round-robin to one
model copy per device, one thread each (--cpu_devices=N: N logical CPUs, for testing).
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from typing import List, Optional, Sequence

import numpy as np
from absl import app, flags

from launch import common
from launch.common import LaunchError

import pipelines  # noqa: E402
from vlae_tf import diagnostics, distribute, estimators, evaluation  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402

STRATEGIES = ("default", "mirrored")
ELBO_BATCH_SIZE = 256  # per_image_elbo's batches; the ELBO noise depends on them
SHARD_FILE = "eval_is.shard-{index:05d}-of-{count:05d}.json"
# What every shard of one evaluation must agree on (checked by --merge).
SHARD_IDENTITY = ("weights_sha256", "config", "dataset", "split", "max_images", "order",
                  "num_importance_samples", "seed", "batch_size")


def evaluate(model_dir: str, num_importance_samples: int = 4096,
             max_images: Optional[int] = None, split: str = "test",
             chunk_size: Optional[int] = None, batch_size: int = 10, seed: int = 0,
             dataset: Optional[str] = None, data_dir: Optional[str] = None,
             output: Optional[str] = None, progress: bool = True, log=print,
             diagnostics_images: int = 500, select: Optional[str] = None,
             memory_budget_gb: Optional[float] = None, num_shards: int = 1,
             shard_index: int = 0, strategy: str = "default",
             devices: Optional[Sequence[str]] = None) -> dict:
    """Importance-sampled NLL (and the ELBO on the same images) -> dict, also written as JSON.

    `select`: which weights ("best_validation", "last"; None: the run's choice).
    `memory_budget_gb`: peak RSS target that chooses chunk_size when it is None.
    `num_shards`, `shard_index`: evaluate only shard_range(N, batch_size, ...) of the N
    images (the default output is then model_dir/eval_is.shard-<i>-of-<n>.json); `merge`
    combines the shards into this function's single-run result. `strategy`: "mirrored"
    spreads the batches over `devices` (None: the devices of tf.distribute's
    MirroredStrategy, i.e. every local GPU, or the CPU).

    With `diagnostics_images` > 0 (and in shard 0 only) also the latent diagnostics on the
    first that many images: per-dimension KL, active units and the ELBO surgery (not for
    IAF posteriors)."""
    if num_importance_samples < 1:
        raise LaunchError(f"--num_importance_samples: expected an int >= 1; got "
                          f"{num_importance_samples}")
    common.check_seed(seed)
    try:
        memory_budget_gb = estimators.check_memory_budget(memory_budget_gb)
    except ValueError:
        raise LaunchError(f"--memory_budget_gb: expected a number of GB > 0; got "
                          f"{memory_budget_gb!r}") from None
    _check_shard(num_shards, shard_index)
    if strategy not in STRATEGIES:
        raise LaunchError(f"--strategy: expected one of {', '.join(STRATEGIES)} (several "
                          f"machines: --num_shards, then --merge); got {strategy!r}")
    if output is None and num_shards > 1:
        output = os.path.join(model_dir, SHARD_FILE.format(index=shard_index, count=num_shards))
    if output is not None:  # before minutes of evaluation, not when writing the result
        common.check_output_file(output, "--output")
    weights = common.selected_weights(model_dir, select)
    replicas = _load_replicas(model_dir, select, strategy, devices)
    model = replicas[0][1]
    run = common.load_run(model_dir)
    dataset = dataset or run.get("dataset")
    if dataset is None:
        raise LaunchError(f"{model_dir}/run.json names no dataset: give --dataset")
    common.check_dataset(model.config, dataset)
    images = pipelines.eval_images(dataset, split, max_images, data_dir or run.get("data_dir"),
                                   seed=seed)
    first, last = shard_range(len(images), batch_size, num_shards, shard_index)
    mine = images[first:last]
    where = (f" (shard {shard_index} of {num_shards}: images {first}..{last - 1} of "
             f"{len(images)})" if num_shards > 1 else "")
    log(f"{model_dir}: -log p(x) with K={num_importance_samples} importance samples on "
        f"{len(mine)} {dataset}/{split} images{where}"
        + (f" on {len(replicas)} devices ({strategy})" if len(replicas) > 1 else ""))
    budget = None
    if chunk_size is None:
        budget = estimators.default_memory_budget_gb() if memory_budget_gb is None \
            else memory_budget_gb
        with evaluation._on(replicas[0][0]):
            chosen = estimators.budget_chunk_size(
                model, mine[:batch_size], num_importance_samples, budget / len(replicas),
                seed=evaluation.importance_batch_seed(seed, first))
        chunk_size = chosen["chunk_size"]
        log(_chunk_message(chosen, min(batch_size, len(mine)), len(replicas)))
    expected = expected_seconds(model, mine, num_importance_samples, batch_size,
                                chunk_size, seed) / len(replicas)
    log(f"Expected time: about {_duration(expected)} (from a timed pass of one chunk; "
        f"fewer --num_importance_samples or --max_images to shorten)")
    start = time.time()
    result, per_image = evaluation.importance_summary(
        model, mine, num_importance_samples, batch_size=batch_size, chunk_size=chunk_size,
        seed=seed, progress=progress, return_per_image=True, first_index=first,
        replicas=replicas)
    result["memory_budget_gb"] = budget
    result["seconds"] = round(time.time() - start, 1)
    terms = _shard_elbo(model, images, first, last, seed)
    result["elbo"] = evaluation.elbo_terms_summary(terms, model.config, seed)
    result["per_image"] = {
        "image_index": list(range(first, last)),
        "log_px_nats": [float(-value) for value in per_image["nll"]],
        **{f"{key}_nats": [float(value) for value in terms[key]]
           for key in ("elbo", "recon", "kl")}}
    result.update(model_dir=model_dir, dataset=dataset, split=split, batch_size=batch_size,
                  order=pipelines.EVAL_ORDER, weights=os.path.basename(weights),
                  weights_sha256=_sha256(weights), config=model.config.to_dict(),
                  max_images=max_images, strategy=strategy, replicas=len(replicas),
                  shard={"index": shard_index, "num_shards": num_shards,
                         "image_range": [first, last], "num_images_total": len(images)})
    if os.path.basename(weights) == common.BEST_WEIGHTS_FILE:
        result["selection"] = run.get("selection")
    state_path = os.path.join(model_dir, common.CHECKPOINT_DIR, "latest.json")
    try:  # informational: a damaged pointer (launch.train falls back past it) is skipped
        latest = common.read_json(state_path) if os.path.exists(state_path) else {}
    except (OSError, ValueError):
        latest = {}
    if isinstance(latest, dict) and latest:
        result.update(step=latest.get("step"), epoch=latest.get("epoch"))
    if diagnostics_images and shard_index == 0 and model.config.use_latent \
            and model.iaf is None:
        latent = diagnostics.model_diagnostics(model, images[:diagnostics_images],
                                               seed=[seed, 1])
        result["latent"] = diagnostics.json_ready(latent)
        log(f"Latent code ({min(diagnostics_images, len(images))} images): KL "
            f"{latent['average_kl']:.2f} = index-code MI {latent['mutual_information']:.2f} "
            f"(<= log N {latent['log_n']:.2f}) + marginal KL {latent['marginal_kl']:.2f} nats;"
            f" active units {latent['active_units']}/{model.config.latent_size}")
    output = output or os.path.join(model_dir, common.EVAL_IS_FILE)
    common.write_json_atomic(output, result)
    _log_result(result, log, "" if num_shards == 1 else f"shard {shard_index}/{num_shards}, ")
    log(f"Wrote {output}")
    return result


def _log_result(result, log, prefix=""):
    log(f"NLL (K={result['num_importance_samples']}, {prefix}{result['num_images']} images): "
        f"{result['nll_nats']:.2f} ± {result['nll_stderr']:.2f} nats/image = "
        f"{result['bits_per_dim']:.4f} bits/dim; -ELBO on the same images "
        f"{result['elbo']['negative_elbo_nats']:.2f} nats (KL {result['elbo']['kl_nats']:.2f})")


def _chunk_message(chosen, batch_size, replicas) -> str:
    how = {"all samples": "all K in one pass: a tiny evaluation",
           "default": "peak RSS cannot be measured here: the fixed default"}.get(chosen["how"])
    if how is None:
        how = (f"from --memory_budget_gb={chosen['memory_budget_gb'] * replicas:g}"
               + (f" shared by {replicas} devices" if replicas > 1 else "")
               + f": {chosen['bytes_per_decoder_image'] / 2 ** 20:.2f} MB measured per "
               f"decoder image, {chosen['baseline_bytes'] / 2 ** 30:.2f} GB resident before")
    return (f"Chunk size: {chosen['chunk_size']} importance samples x {batch_size} images "
            f"per decoder pass ({how}; --chunk_size overrides)")


def shard_range(num_images: int, batch_size: int, num_shards: int, shard_index: int):
    """(first, end): the images [first, end) of shard `shard_index` of `num_shards`.

    The ceil(N / batch_size) batches of the single run (in the same image order) are
    split into num_shards contiguous runs of whole batches, the first N mod num_shards
    runs one batch longer; LaunchError if a shard would be empty."""
    _check_shard(num_shards, shard_index)
    num_batches = -(-num_images // batch_size)
    if num_shards > num_batches:
        raise LaunchError(f"--num_shards: expected at most the number of batches, "
                          f"ceil({num_images} images / --batch_size={batch_size}) = "
                          f"{num_batches}; got {num_shards}")
    base, extra = divmod(num_batches, num_shards)
    first_batch = shard_index * base + min(shard_index, extra)
    end_batch = first_batch + base + (1 if shard_index < extra else 0)
    return first_batch * batch_size, min(num_images, end_batch * batch_size)


def _check_shard(num_shards, shard_index):
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) \
            or num_shards < 1:
        raise LaunchError(f"--num_shards: expected an int >= 1; got {num_shards!r}")
    if isinstance(shard_index, bool) or not isinstance(shard_index, (int, np.integer)) \
            or not 0 <= shard_index < num_shards:
        raise LaunchError(f"--shard_index: expected an int in [0, --num_shards={num_shards}"
                          f"); got {shard_index!r}")


def _shard_elbo(model, images, first, last, seed):
    """Per-image ELBO terms of images[first:last], equal to the single run's: computed on
    the single run's ELBO batches (multiples of ELBO_BATCH_SIZE) that overlap the shard,
    since each ELBO batch reuses one seed (a shard's own batches would draw other noise)."""
    low = first // ELBO_BATCH_SIZE * ELBO_BATCH_SIZE
    high = min(len(images), -(-last // ELBO_BATCH_SIZE) * ELBO_BATCH_SIZE)
    terms = evaluation.per_image_elbo(model, images[low:high], ELBO_BATCH_SIZE, seed)
    return {key: values[first - low:last - low] for key, values in terms.items()}


def _load_replicas(model_dir, select, strategy, devices):
    """[(device, model)]: [(None, model)] for "default"; for "mirrored" one copy of the
    model per device, its variables placed there."""
    if strategy == "default":
        model, _ = common.load_trained_model(model_dir, select)
        return [(None, model)]
    if devices is None:
        devices = distribute.make_strategy("mirrored").extended.worker_devices
    replicas = []
    for device in devices:
        with evaluation._on(device):
            model, _ = common.load_trained_model(model_dir, select)
        replicas.append((device, model))
    return replicas


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- merge
def merge(paths: Sequence[str], output: Optional[str] = None, log=print) -> dict:
    """Merges the shard files of one sharded evaluation into the single run's result.

    `paths`: files or glob patterns. Refuses (LaunchError) files that are not shards,
    shards of different evaluations (SHARD_IDENTITY: weights, config, data, K, seed,
    batch size), duplicate or missing shards and image ranges that are not the split's.
    The per-image values are concatenated in image order; the summaries are computed from
    them as a single run computes its own (hence equal to it). `output`: default
    eval_is.json next to the first shard."""
    files = _expand(paths)
    shards = []
    for path in files:
        try:
            shard = common.read_json(path)
        except (OSError, ValueError) as error:
            raise LaunchError(f"--merge: cannot read {path}: {error}") from None
        if not isinstance(shard, dict) or not isinstance(shard.get("shard"), dict) \
                or "per_image" not in shard:
            raise LaunchError(f"--merge: {path} is not a shard written by launch.evaluate "
                              f"(no 'shard' and 'per_image' entries)")
        shards.append((path, shard))
    reference_path, reference = shards[0]
    count = reference["shard"]["num_shards"]
    total = reference["shard"]["num_images_total"]
    for path, shard in shards[1:]:
        for key in SHARD_IDENTITY:
            if shard.get(key) != reference.get(key):
                shown = ("differ" if key in ("config",) else
                         f"{reference.get(key)!r} vs {shard.get(key)!r}")
                raise LaunchError(f"--merge: {reference_path} and {path} are shards of "
                                  f"different evaluations: {key} {shown}")
        for key, have in (("num_shards", count), ("num_images_total", total)):
            if shard["shard"].get(key) != have:
                raise LaunchError(f"--merge: {reference_path} and {path} come from different "
                                  f"splits: {key} {have} vs {shard['shard'].get(key)}")
    by_index = {}
    for path, shard in shards:
        index = shard["shard"]["index"]
        if index in by_index:
            raise LaunchError(f"--merge: shard {index} of {count} given twice: "
                              f"{by_index[index][0]} and {path}")
        by_index[index] = (path, shard)
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise LaunchError(f"--merge: missing shard(s) {', '.join(map(str, missing))} of "
                          f"{count} (got {len(by_index)} file(s))")
    ordered = [by_index[index] for index in range(count)]
    for index, (path, shard) in enumerate(ordered):
        first, last = shard_range(total, reference["batch_size"], count, index)
        if shard["per_image"]["image_index"] != list(range(first, last)):
            raise LaunchError(f"--merge: {path} (shard {index} of {count}) does not hold "
                              f"images {first}..{last - 1} of {total}")
    per_image = {key: [value for _, shard in ordered for value in shard["per_image"][key]]
                 for key in reference["per_image"]}
    config = VLAEConfig.from_dict(reference["config"])
    first_shard = ordered[0][1]
    result = {key: value for key, value in first_shard.items()
              if key not in ("per_image", "shard")}
    result.update(evaluation.importance_values_summary(
        -np.asarray(per_image["log_px_nats"], np.float64),
        reference["num_importance_samples"], config, first_shard["chunk_size"],
        reference["seed"]))
    result["elbo"] = evaluation.elbo_terms_summary(
        {key: per_image[f"{key}_nats"] for key in ("elbo", "recon", "kl")}, config,
        reference["seed"])
    result["seconds"] = round(sum(shard["seconds"] for _, shard in ordered), 1)
    result["per_image"] = per_image
    result["shard"] = {"index": 0, "num_shards": 1, "image_range": [0, total],
                       "num_images_total": total}
    result["merged_from"] = [{"file": path, "seconds": shard["seconds"],
                              "chunk_size": shard["chunk_size"]} for path, shard in ordered]
    output = output or os.path.join(os.path.dirname(files[0]), common.EVAL_IS_FILE)
    common.check_output_file(output, "--output")
    common.write_json_atomic(output, result)
    _log_result(result, log, f"{count} shards merged, ")
    log(f"Wrote {output}")
    return result


def _expand(paths: Sequence[str]) -> List[str]:
    if isinstance(paths, str):
        paths = [paths]
    files = []
    for pattern in paths:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise LaunchError(f"--merge: no file matches {pattern!r}")
        files.extend(found)
    if not files:
        raise LaunchError("--merge: expected shard files (comma-separated, globs allowed); "
                          "got none")
    return files


def expected_seconds(model, images, num_samples: int, batch_size: int,
                     chunk_size: Optional[int], seed: int = 0) -> float:
    """Extrapolated duration of `importance_summary(model, images, num_samples, ...)`.

    Times one chunk of importance samples on one batch (after an untimed call that
    traces it), then scales by the chunks per batch and the batches: a long evaluation
    (K=4096 on 500 digits is ~40 minutes on 2 cores) should say so before it starts.
    Costs two chunks, against the evaluation's ceil(K / chunk) x batches."""
    batch_size = min(batch_size, len(images))
    if chunk_size is None:  # importance_summary's own default
        chunk_size = max(1, min(num_samples, evaluation.DECODER_IMAGES_PER_PASS // batch_size))
    chunk_size = min(chunk_size, num_samples)
    batch = images[:batch_size]
    timed = None
    for _ in range(2):
        begin = time.perf_counter()
        np.asarray(model.importance_log_likelihood(batch, chunk_size, chunk_size=chunk_size,
                                                   seed=[seed, 0]))  # wait for the result
        timed = time.perf_counter() - begin
    chunks = -(-num_samples // chunk_size)
    batches = -(-len(images) // batch_size)
    return timed * chunks * batches


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def define_flags(flag_values=flags.FLAGS) -> None:
    flags.DEFINE_string("model_dir", None, "A directory written by launch.train (not with "
                        "--merge).", flag_values=flag_values)
    flags.DEFINE_integer("num_importance_samples", 4096, "K (paper: 4096 binary, 512 CIFAR).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_images", None, "Evaluate a fixed random N-image subset (default: all).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum("split", "test", list(pipelines.SPLITS), "Which split.",
                      flag_values=flag_values)
    flags.DEFINE_integer("chunk_size", None, "Importance samples per decoder pass (memory); "
                         "default: the most that fit --memory_budget_gb.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("memory_budget_gb", None, "Peak resident memory (GB) that chooses "
                       "--chunk_size when it is not given; default 1/8 of physical memory, "
                       "at least 1 GB.", flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 1, "Split the images into this many shards of whole "
                         "batches (one per machine or process), each written to its own "
                         "file; combine them with --merge.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("shard_index", 0, "Which shard to evaluate, 0 .. --num_shards - 1.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_list("merge", None, "Shard files (comma-separated; globs allowed, quoted) "
                      "to merge into one result at --output (default: eval_is.json next to "
                      "the first); evaluates nothing.", flag_values=flag_values)
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "mirrored: the batches are "
                      "dealt to all local devices (GPUs, or --cpu_devices logical CPUs), "
                      "one model copy each; per-image values as on one device.",
                      flag_values=flag_values)
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices for "
                         "--strategy=mirrored without GPUs (testing).", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 10, "Images per importance-sampling call.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the importance samples (and binarization); "
                         "an int >= 0.", flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, list(pipelines.names()),
                      "Default: the dataset the model was trained on.", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives.", flag_values=flag_values)
    flags.DEFINE_string("output", None, "JSON path (default model_dir/eval_is.json).",
                        flag_values=flag_values)
    flags.DEFINE_integer("diagnostics_images", 500, "Images for the latent diagnostics "
                         "(per-dimension KL, active units, ELBO surgery); 0 disables.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_enum("select", None, list(common.SELECTIONS), "Weights to evaluate: "
                      "best_validation or last (default: what the run selected, run.json).",
                      flag_values=flag_values)


def main(argv, flag_values=None):
    del argv
    f = flag_values or flags.FLAGS
    if f.merge:
        if f.model_dir is not None:
            raise LaunchError("--merge: takes the shard files only; got --model_dir too")
        merge(f.merge, f.output)
        return
    if f.model_dir is None:
        raise LaunchError("--model_dir: expected a directory written by launch.train (or "
                          "--merge=<shard files>); got nothing")
    devices = None
    if f.cpu_devices > 1:
        try:  # before any other TensorFlow work
            distribute.use_logical_cpus(f.cpu_devices)
        except RuntimeError:
            raise LaunchError(f"--cpu_devices={f.cpu_devices}: must be set up before other "
                              f"TensorFlow work in this process") from None
        if f.strategy == "mirrored":
            devices = [f"/cpu:{index}" for index in range(f.cpu_devices)]
    evaluate(f.model_dir, f.num_importance_samples, f.max_images, f.split, f.chunk_size,
             f.batch_size, f.seed, f.dataset, f.data_dir, f.output,
             diagnostics_images=f.diagnostics_images, select=f.select,
             memory_budget_gb=f.memory_budget_gb, num_shards=f.num_shards,
             shard_index=f.shard_index, strategy=f.strategy, devices=devices)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.evaluate"))
