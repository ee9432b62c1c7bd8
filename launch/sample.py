"""PNG grids from a trained VLAE: prior samples and lossy decompressions.

    python -m launch.sample --model_dir=runs/mnist5k_cpu --num=64 --seed=0 --temperature=1.0

Writes to --out_dir (default model_dir/samples):
  samples.png         --num images x ~ p(x): z from the prior, then x pixel by pixel.
  decompressions.png  one row per test image: the image, then --decompressions draws of
                      x' ~ p(x|z), z ~ q(z|x) (the paper's Figure 1: global shape kept,
                      local detail redrawn). Not written for models without a latent code.
Same seed, same images (within one compile mode).
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional

from absl import app, flags

from launch import common
from launch.common import LaunchError

import pipelines  # noqa: E402
from vlae_tf import images  # noqa: E402


def write_pngs(model, out_dir: str, originals=None, num: int = 64, decompressions: int = 7,
               seed: int = 0, temperature: float = 1.0, method: str = "auto",
               zoom: int = 2, log=print) -> dict:
    """Samples and decompressions of `originals` -> PNGs in out_dir; returns their paths."""
    if num < 1 or decompressions < 1:
        raise LaunchError(f"--num and --decompressions: expected ints >= 1; got {num}, "
                          f"{decompressions}")
    if not math.isfinite(temperature) or temperature <= 0:  # nan/inf draw all-zero images
        raise LaunchError(f"--temperature: expected a finite number > 0; got {temperature}")
    common.check_seed(seed)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:  # a file in the way, no permission, a read-only disk
        raise LaunchError(f"--out_dir: expected a directory it can write the PNGs to; "
                          f"{out_dir!r}: {error.strerror or error}") from None
    method = common.sample_method(method)
    start = time.time()
    samples, rows = images.samples_and_decompressions(
        model, originals, num, decompressions, seed=seed, temperature=temperature,
        method=method)
    max_value = model.config.max_value
    paths = {"samples": images.write_png(
        os.path.join(out_dir, "samples.png"),
        images.image_grid(samples, int(math.ceil(math.sqrt(num))), max_value, zoom=zoom))}
    if rows is not None:
        paths["decompressions"] = images.write_png(
            os.path.join(out_dir, "decompressions.png"),
            images.image_grid(rows, 1 + decompressions, max_value, zoom=zoom))
    elif originals is not None:
        log("No decompressions: this model has no latent code (use_latent=False).")
    log(f"Wrote {', '.join(paths.values())} ({method} sampler, {time.time() - start:.0f} s)")
    return paths


def sample(model_dir: str, num: int = 64, seed: int = 0, temperature: float = 1.0,
           out_dir: Optional[str] = None, num_images: int = 8, decompressions: int = 7,
           split: str = "test", method: str = "auto", zoom: int = 2,
           dataset: Optional[str] = None, data_dir: Optional[str] = None, log=print) -> dict:
    """Loads model_dir's Polyak-averaged model and writes samples.png / decompressions.png."""
    common.check_seed(seed)
    if out_dir is not None and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise LaunchError(f"--out_dir: expected a directory for samples.png and "
                          f"decompressions.png; {out_dir} is a file")
    model, run = common.load_trained_model(model_dir)
    originals = None
    if num_images and model.config.use_latent:
        dataset = dataset or run.get("dataset")
        if dataset is None:
            raise LaunchError(f"{model_dir}/run.json names no dataset: give --dataset")
        common.check_dataset(model.config, dataset)
        originals = pipelines.showcase_images(dataset, split, num_images,
                                              data_dir or run.get("data_dir"), seed=seed)
    return write_pngs(model, out_dir or os.path.join(model_dir, "samples"), originals, num,
                      decompressions, seed, temperature, method, zoom, log)


def define_flags(flag_values=flags.FLAGS) -> None:
    flags.DEFINE_string("model_dir", None, "A directory written by launch.train.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num", 64, "Prior samples.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the draws (an int >= 0).", flag_values=flag_values)
    flags.DEFINE_float("temperature", 1.0, "Scales prior and pixel noise (> 0).",
                       flag_values=flag_values)
    flags.DEFINE_string("out_dir", None, "Default model_dir/samples.", flag_values=flag_values)
    flags.DEFINE_integer("num_images", 8, "Test images to decompress (0: none).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("decompressions", 7, "Decompressions per image.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("split", "test", list(pipelines.SPLITS), "Split of the images.",
                      flag_values=flag_values)
    flags.DEFINE_string("method", "auto", "Sampler (auto: the fastest available).",
                        flag_values=flag_values)
    flags.DEFINE_integer("zoom", 2, "Pixel repetition in the PNGs.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, list(pipelines.names()),
                      "Default: the dataset the model was trained on.", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives.", flag_values=flag_values)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def main(argv, flag_values=None):
    del argv
    f = flag_values or flags.FLAGS
    sample(f.model_dir, f.num, f.seed, f.temperature, f.out_dir, f.num_images,
           f.decompressions, f.split, f.method, f.zoom, f.dataset, f.data_dir)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.sample"))
