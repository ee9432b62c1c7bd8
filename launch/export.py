"""Export a trained VLAE as a versioned SavedModel for TF Serving.

    python -m launch.export --model_dir=runs/mnist5k_cpu --export_dir=exports/vlae
    python -m launch.export --config_json=run/config.json --weights=run/model.weights.h5 \\
        --export_dir=exports/vlae --version=3

Writes `<export_dir>/<version>/` (by default one more than the largest existing version,
1 for a new directory): a SavedModel with the signatures elbo (= serving_default),
log_likelihood, encode, decompress and sample (see `vlae_tf/export.py` and README,
"Serving"), and prints them.

Each request is bounded by limits fixed here and stored in the SavedModel: --max_images
(images per elbo / log_likelihood / encode / decompress request), --max_num (images per
sample request), --max_num_samples (importance samples per log_likelihood request);
defaults from the decoder's memory per image (`vlae_tf.export.default_limits`). A request
over a limit gets an error naming it; the server stays up.

The model: by default the Polyak-averaged weights a `launch.train` model_dir selected
(`config.json` + `best.weights.h5` or `model.weights.h5`, see run.json "selection"; what
evaluate and sample load). `--weights` picks
another file: a `.weights.h5` (with `--config_json`, default `<model_dir>/config.json`),
a `.keras` file (no config needed), or a `tf.train.Checkpoint` prefix holding the model
under the key "model".
"""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import app, flags

from launch import common
from launch.common import LaunchError

import keras  # noqa: E402  (after launch.common, which imports vlae_tf first)
import tensorflow as tf  # noqa: E402
import vlae_tf  # noqa: E402
from vlae_tf import export as export_lib  # noqa: E402
from vlae_tf import loading  # noqa: E402


def load_model(model_dir: Optional[str] = None, config_json: Optional[str] = None,
               weights: Optional[str] = None) -> vlae_tf.VLAE:
    """The VLAE to export: model_dir's Polyak-averaged model, or the given files."""
    if weights is None:
        if model_dir is None:
            raise LaunchError("give --model_dir (a directory written by launch.train) or "
                              "--weights")
        if config_json is None:
            return common.load_trained_model(model_dir)[0]
        weights = common.selected_weights(model_dir)
    if weights.endswith(".keras"):
        if not os.path.isfile(weights):
            raise LaunchError(f"--weights: {weights} not found")
        model = keras.models.load_model(weights)
        if not isinstance(model, vlae_tf.VLAE):
            raise LaunchError(f"--weights: {weights} holds a {type(model).__name__}, not a "
                              f"vlae_tf.VLAE")
        return model
    if config_json is None:
        if model_dir is None:
            raise LaunchError("--config_json: required with --weights (except for a .keras "
                              "file), or give --model_dir")
        config_json = os.path.join(model_dir, common.CONFIG_FILE)
    if not os.path.isfile(config_json):
        raise LaunchError(f"--config_json: {config_json} not found")
    try:  # damaged JSON, weights that are damaged or do not fit: one line naming the file
        model = vlae_tf.VLAE(loading.read_config_file(config_json))
        if weights.endswith(".weights.h5"):
            if not os.path.isfile(weights):
                raise LaunchError(f"--weights: {weights} not found")
            loading.load_weights(model, weights, config_json)
            return model
    except LaunchError:
        raise
    except ValueError as error:
        raise LaunchError(str(error)) from None
    # a tf.train checkpoint prefix, e.g. .../ckpt-3
    if not tf.io.gfile.exists(weights + ".index"):
        raise LaunchError(f"--weights: expected a .weights.h5 file, a .keras file or a "
                          f"tf.train checkpoint prefix; {weights}.index not found")
    status = tf.train.Checkpoint(model=model).read(weights)
    status.expect_partial().assert_existing_objects_matched()
    return model


def export(model_dir: Optional[str] = None, export_dir: Optional[str] = None,
           config_json: Optional[str] = None, weights: Optional[str] = None,
           version: Optional[int] = None, chunk_size: Optional[int] = None,
           method: str = "auto", overwrite: bool = False, log=print,
           max_images: Optional[int] = None, max_num: Optional[int] = None,
           max_num_samples: Optional[int] = None) -> str:
    """Loads the model and writes `<export_dir>/<version>/`; returns that directory.

    max_images / max_num / max_num_samples: the per-request limits of the SavedModel
    (None: `vlae_tf.export.default_limits`)."""
    if not export_dir:
        raise LaunchError("--export_dir: required (the model base path TF Serving watches)")
    for name, value in (("max_images", max_images), ("max_num", max_num),
                        ("max_num_samples", max_num_samples)):
        if value is not None and not 1 <= value <= 2 ** 31 - 1:
            raise LaunchError(f"--{name}: expected an int in [1, 2147483647] (a per-request "
                              f"limit of the SavedModel); got {value}")
    try:  # a read-only or misplaced --export_dir: say so before loading and tracing
        export_lib.check_export_dir(export_dir)
    except export_lib.ExportDirError as error:
        raise LaunchError(f"--{error}") from None
    method = common.sample_method(method)
    if version is not None and not overwrite and os.path.exists(
            os.path.join(export_dir, str(version))):
        raise LaunchError(f"{os.path.join(export_dir, str(version))} exists: pick another "
                          f"--version, omit it to use the next one, or pass --overwrite")
    model = load_model(model_dir, config_json, weights)
    try:
        path = export_lib.export_saved_model(model, export_dir, version=version,
                                             chunk_size=chunk_size, method=method,
                                             overwrite=overwrite, max_images=max_images,
                                             max_num=max_num, max_num_samples=max_num_samples)
    except FileExistsError as error:
        raise LaunchError(f"{error} (--overwrite replaces it)") from error
    except export_lib.ExportDirError as error:
        raise LaunchError(f"--{error}") from None
    with open(os.path.join(path, "assets.extra", export_lib.EXPORT_INFO_FILE)) as handle:
        info = json.load(handle)
    log(f"SavedModel written to {path}")
    log(f"serving_default = {info['default_signature']}; sampler: {info['sampling_method']}; "
        f"log_likelihood chunk size: {info['chunk_size']}")
    limits = info["limits"]
    log(f"request limits: at most {limits['max_images']} images per elbo / log_likelihood / "
        f"encode / decompress request, {limits['max_num']} per sample request, "
        f"{limits['max_num_samples']} importance samples per log_likelihood request")
    for name, spec in info["signatures"].items():
        inputs = ", ".join(f"{key}: {dtype}{shape}" for key, (dtype, shape)
                           in spec["inputs"].items())
        outputs = ", ".join(f"{key}: {dtype}{shape}" for key, (dtype, shape)
                            in spec["outputs"].items())
        log(f"  {name}({inputs}) -> {outputs}".replace("None", "?"))
    return path


def define_flags(flag_values=flags.FLAGS) -> None:
    flags.DEFINE_string("model_dir", None, "A directory written by launch.train.",
                        flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "Model base directory; the SavedModel goes to "
                        "<export_dir>/<version>/.", flag_values=flag_values)
    flags.DEFINE_string("config_json", None, "VLAEConfig JSON (default "
                        "<model_dir>/config.json).", flag_values=flag_values)
    flags.DEFINE_string("weights", None, "A .weights.h5, .keras or tf.train checkpoint prefix "
                        "(default: the weights <model_dir> selected, run.json).", flag_values=flag_values)
    flags.DEFINE_integer("version", None, "Version number (default: largest existing + 1).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("chunk_size", None, "Importance samples per chunk in log_likelihood "
                         "(memory ~ chunk_size x batch).", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("method", "auto", "Sampler of sample/decompress (auto: the fastest "
                        "available; all give the same images).", flag_values=flag_values)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version directory.",
                         flag_values=flag_values)
    flags.DEFINE_integer("max_images", None, "Request limit: images per elbo / "
                         "log_likelihood / encode / decompress request (default: from the "
                         "decoder's memory per image, vlae_tf.export.default_limits).",
                         flag_values=flag_values)
    flags.DEFINE_integer("max_num", None, "Request limit: images per sample request "
                         "(default: as --max_images).", flag_values=flag_values)
    flags.DEFINE_integer("max_num_samples", None, "Request limit: importance samples per "
                         "log_likelihood request (default 4096).", flag_values=flag_values)
    flags.mark_flag_as_required("export_dir", flag_values=flag_values)


def main(argv, flag_values=None):
    del argv
    f = flag_values or flags.FLAGS
    export(f.model_dir, f.export_dir, f.config_json, f.weights, f.version, f.chunk_size,
           f.method, f.overwrite, max_images=f.max_images, max_num=f.max_num,
           max_num_samples=f.max_num_samples)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.export"))
