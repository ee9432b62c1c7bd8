"""Importance-sampled negative log-likelihood of a trained VLAE (the paper's metric).

    python -m launch.evaluate --model_dir=runs/mnist5k_cpu --num_importance_samples=4096

Rebuilds the model from model_dir/config.json and the Polyak-averaged weights the run
selected (best.weights.h5, the best validation ELBO, or model.weights.h5, the last epoch:
run.json "selection"; --select overrides), estimates -log p(x) with K importance samples per image on --split
(all of it, or a fixed random subset of --max_images images: the same subset in every run
and in launch.train's final evaluation), with a progress bar and ETA, prints nats/image and
bits/dim, and writes JSON (model_dir/eval_is.json, or --output).
"""

from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
from absl import app, flags

from launch import common
from launch.common import LaunchError

import pipelines  # noqa: E402
from vlae_tf import diagnostics, evaluation  # noqa: E402


def evaluate(model_dir: str, num_importance_samples: int = 4096,
             max_images: Optional[int] = None, split: str = "test",
             chunk_size: Optional[int] = None, batch_size: int = 10, seed: int = 0,
             dataset: Optional[str] = None, data_dir: Optional[str] = None,
             output: Optional[str] = None, progress: bool = True, log=print,
             diagnostics_images: int = 500, select: Optional[str] = None) -> dict:
    """Importance-sampled NLL (and the ELBO on the same images) -> dict, also written as JSON.

    `select`: which weights ("best_validation", "last"; None: the run's choice).

    With `diagnostics_images` > 0 also the latent diagnostics on that many of the images:
    per-dimension KL, active units and the ELBO surgery (not for IAF posteriors)."""
    if num_importance_samples < 1:
        raise LaunchError(f"--num_importance_samples: expected an int >= 1; got "
                          f"{num_importance_samples}")
    common.check_seed(seed)
    if output is not None:  # before minutes of evaluation, not when writing the result
        common.check_output_file(output, "--output")
    weights = common.selected_weights(model_dir, select)
    model, run = common.load_trained_model(model_dir, select)
    dataset = dataset or run.get("dataset")
    if dataset is None:
        raise LaunchError(f"{model_dir}/run.json names no dataset: give --dataset")
    common.check_dataset(model.config, dataset)
    images = pipelines.eval_images(dataset, split, max_images, data_dir or run.get("data_dir"),
                                   seed=seed)
    log(f"{model_dir}: -log p(x) with K={num_importance_samples} importance samples on "
        f"{len(images)} {dataset}/{split} images")
    expected = expected_seconds(model, images, num_importance_samples, batch_size,
                                chunk_size, seed)
    log(f"Expected time: about {_duration(expected)} (from a timed pass of one chunk; "
        f"fewer --num_importance_samples or --max_images to shorten)")
    start = time.time()
    result = evaluation.importance_summary(model, images, num_importance_samples,
                                           batch_size=batch_size, chunk_size=chunk_size,
                                           seed=seed, progress=progress)
    result["seconds"] = round(time.time() - start, 1)
    result["elbo"] = evaluation.elbo_summary(model, images, seed=seed)
    result.update(model_dir=model_dir, dataset=dataset, split=split, batch_size=batch_size,
                  order=pipelines.EVAL_ORDER, weights=os.path.basename(weights))
    if os.path.basename(weights) == common.BEST_WEIGHTS_FILE:
        result["selection"] = run.get("selection")
    state_path = os.path.join(model_dir, common.CHECKPOINT_DIR, "latest.json")
    try:  # informational: a damaged pointer (launch.train falls back past it) is skipped
        latest = common.read_json(state_path) if os.path.exists(state_path) else {}
    except (OSError, ValueError):
        latest = {}
    if isinstance(latest, dict) and latest:
        result.update(step=latest.get("step"), epoch=latest.get("epoch"))
    if diagnostics_images and model.config.use_latent and model.iaf is None:
        latent = diagnostics.model_diagnostics(model, images[:diagnostics_images],
                                               seed=[seed, 1])
        result["latent"] = diagnostics.json_ready(latent)
        log(f"Latent code ({min(diagnostics_images, len(images))} images): KL "
            f"{latent['average_kl']:.2f} = index-code MI {latent['mutual_information']:.2f} "
            f"(<= log N {latent['log_n']:.2f}) + marginal KL {latent['marginal_kl']:.2f} nats;"
            f" active units {latent['active_units']}/{model.config.latent_size}")
    output = output or os.path.join(model_dir, common.EVAL_IS_FILE)
    common.write_json_atomic(output, result)
    log(f"NLL (K={num_importance_samples}, {len(images)} images): "
        f"{result['nll_nats']:.2f} ± {result['nll_stderr']:.2f} nats/image = "
        f"{result['bits_per_dim']:.4f} bits/dim; -ELBO on the same images "
        f"{result['elbo']['negative_elbo_nats']:.2f} nats (KL {result['elbo']['kl_nats']:.2f})")
    log(f"Wrote {output}")
    return result


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
    flags.DEFINE_string("model_dir", None, "A directory written by launch.train.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_importance_samples", 4096, "K (paper: 4096 binary, 512 CIFAR).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_images", None, "Evaluate a fixed random N-image subset (default: all).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum("split", "test", list(pipelines.SPLITS), "Which split.",
                      flag_values=flag_values)
    flags.DEFINE_integer("chunk_size", None, "Importance samples per decoder pass (memory).",
                         lower_bound=1, flag_values=flag_values)
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
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def main(argv, flag_values=None):
    del argv
    f = flag_values or flags.FLAGS
    evaluate(f.model_dir, f.num_importance_samples, f.max_images, f.split, f.chunk_size,
             f.batch_size, f.seed, f.dataset, f.data_dir, f.output,
             diagnostics_images=f.diagnostics_images, select=f.select)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.evaluate"))
