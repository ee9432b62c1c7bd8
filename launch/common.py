"""Helpers shared by the launch/ entry points.

* `define_config_flags` / `config_overrides` / `make_config`: one command-line flag per
  `VLAEConfig` field (generated from the dataclass), parsed into a validated config.
* `check_dataset`: the config's image shape and likelihood must fit the dataset.
* Files in a model_dir: atomic JSON and weight writes, `load_trained_model`.
* `polyak_weights`: temporarily swap the optimizer's EMA (Polyak average) into the model.
* Evaluation (`elbo_summary`, `importance_summary`) and PNG grids (`image_grid`,
  `write_png`), used by train (final evaluation), evaluate, sample and quickstart.

User mistakes raise `LaunchError` (a ValueError); `run_main` prints them as one line on
stderr and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import typing
from typing import Any, Dict, Optional, Sequence

import numpy as np

import vlae_tf  # noqa: F401  (sets KERAS_BACKEND=tensorflow before keras is imported)
import keras  # noqa: E402
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402
from vlae_tf import config as config_lib  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"  # how the data was fed (dataset, batch size, steps per epoch, ...)
WEIGHTS_FILE = "model.weights.h5"  # Polyak-averaged weights: what evaluate / sample load
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
EVAL_IS_FILE = "eval_is.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_ORDER = "random order of the split, seed pipelines.SPLIT_SEED"  # see eval_images
TENSORBOARD_DIR = "tensorboard"

# The dataset a preset is meant for; `--dataset` overrides it.
DEFAULT_DATASETS = {
    "mnist_paper": "mnist",
    "omniglot_paper": "omniglot",
    "caltech101_paper": "caltech101_silhouettes",
    "cifar10_paper": "cifar10",
    "cifar10_paper_4x2": "cifar10",
    "cifar10_paper_5x3": "cifar10",
    "cifar10_paper_7x4": "cifar10",
    "cifar10_paper_7x4_gray": "cifar10",
    "mnist_cpu": "mnist5k_binary",
    "fashion_mnist_cpu": "fashion_mnist",
    "cifar10_cpu": "cifar10",
    "factorized_vae_cpu": "mnist5k_binary",
    "unconditional_cpu": "mnist5k_binary",
    "global_cpu": "mnist5k_binary",
    "standard_normal_prior_cpu": "mnist5k_binary",
    "iaf_posterior_cpu": "mnist5k_binary",
}

# String fields of VLAEConfig with a fixed set of values (become enum flags).
_CONFIG_CHOICES = {
    "likelihood": config_lib.LIKELIHOODS,
    "prior": config_lib.PRIORS,
    "z_conditioning": config_lib.Z_CONDITIONING,
    "free_bits_mode": config_lib.FREE_BITS_MODES,
}
# Fields that the launchers set themselves (`--seed` drives the model and the data).
_CONFIG_FIELDS_NOT_FLAGS = ("seed",)


class LaunchError(ValueError):
    """A user mistake (bad flag combination, mismatched data, wrong model_dir): one line."""


def run_main(main, program: str):
    """Wraps an absl `main(argv)`: LaunchError / missing data -> one line on stderr, exit 2."""
    def wrapped(argv):
        if len(argv) > 1:
            fail(program, f"unexpected positional arguments {argv[1:]}; options are --flags")
        try:
            return main(argv)
        except (LaunchError, pipelines.DatasetNotFoundError) as error:
            fail(program, str(error))
    return wrapped


def fail(program: str, message: str):
    """Prints `program: error: message` (one line) on stderr and exits with status 2."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------- config flags
@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    kind: type  # int, float, bool, str or tuple
    optional: bool  # 'none' is accepted
    element: Optional[type] = None  # element type of tuple fields
    length: Optional[int] = None  # fixed tuple length, None for Tuple[x, ...]
    choices: Optional[Sequence[str]] = None


def config_field_specs() -> list:
    """One _FieldSpec per VLAEConfig field that has a flag, from the dataclass' type hints."""
    hints = typing.get_type_hints(VLAEConfig)
    specs = []
    for field in dataclasses.fields(VLAEConfig):
        if field.name in _CONFIG_FIELDS_NOT_FLAGS:
            continue
        annotation = hints[field.name]
        optional = False
        if typing.get_origin(annotation) is typing.Union:
            arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional, annotation = True, arguments[0]
        if typing.get_origin(annotation) is tuple:
            arguments = typing.get_args(annotation)
            variadic = len(arguments) == 2 and arguments[1] is Ellipsis
            specs.append(_FieldSpec(field.name, tuple, optional, element=arguments[0],
                                    length=None if variadic else len(arguments)))
        elif annotation in (int, float, bool, str):
            specs.append(_FieldSpec(field.name, annotation, optional,
                                    choices=_CONFIG_CHOICES.get(field.name)))
        else:  # a new field type: fail loudly here rather than silently lack a flag
            raise TypeError(f"VLAEConfig.{field.name}: no flag parser for type {annotation}")
    return specs


def _parse_scalar(text, kind, name):
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false for {name}")
    return text


def parse_field_value(spec: _FieldSpec, text: str):
    """Command-line text -> the Python value of one VLAEConfig field (ValueError if bad).

    Tuples are comma lists ("16,32"); the window is "AxB" (or "A,B"); fields that may be
    None take "none" (window also "global").
    """
    text = text.strip()
    if spec.optional and text.lower() in ("none", "null") + (
            ("global",) if spec.name == "window" else ()):
        return None
    if spec.kind is tuple:
        separator = "x" if spec.name == "window" and "x" in text.lower() else ","
        parts = [part for part in text.lower().split(separator) if part.strip()]
        try:
            values = tuple(_parse_scalar(part.strip(), spec.element, spec.name) for part in parts)
        except ValueError:
            values = ()
        if not values or (spec.length is not None and len(values) != spec.length):
            shape = (f"{spec.length} comma-separated {spec.element.__name__}s"
                     if spec.length else f"a comma-separated list of {spec.element.__name__}s")
            if spec.name == "window":
                shape = "'AxB' (e.g. 7x4) or 'none' (global receptive field)"
            raise ValueError(f"expected {shape}; got {text!r}")
        return values
    try:
        return _parse_scalar(text, spec.kind, spec.name)
    except ValueError:
        raise ValueError(f"expected {'none or ' if spec.optional else ''}"
                         f"a {spec.kind.__name__}; got {text!r}") from None


def _absl_parser(spec):
    from absl import flags

    class FieldParser(flags.ArgumentParser):
        def parse(self, argument):
            if argument is None or not isinstance(argument, str):
                return argument
            return parse_field_value(spec, argument)

        def flag_type(self):
            return spec.kind.__name__

    return FieldParser()


def define_config_flags(flag_values) -> None:
    """Defines one override flag per VLAEConfig field (default None: keep the preset's).

    They are attributed to the calling module, so `--helpshort` of launch.train lists them.
    """
    from absl import flags

    flags.disclaim_key_flags()  # flags DEFINEd here belong to the module that called us

    for spec in config_field_specs():
        help_text = f"Override VLAEConfig.{spec.name} (default: the preset's value)"
        if spec.choices:
            flags.DEFINE_enum(spec.name, None, list(spec.choices), help_text,
                              flag_values=flag_values)
        elif spec.kind is bool and not spec.optional:
            flags.DEFINE_boolean(spec.name, None, help_text, flag_values=flag_values)
        elif spec.kind is int and not spec.optional:
            flags.DEFINE_integer(spec.name, None, help_text, flag_values=flag_values)
        elif spec.kind is float and not spec.optional:
            flags.DEFINE_float(spec.name, None, help_text, flag_values=flag_values)
        else:
            if spec.name == "window":
                how = "; 'AxB' e.g. 7x4, or 'none' for a global receptive field"
            elif spec.kind is tuple:
                how = "; a comma-separated list, e.g. 16,32"
            else:
                how = "; 'none' or a value"
            flags.DEFINE(_absl_parser(spec), spec.name, None, help_text + how,
                         flag_values=flag_values)


def config_overrides(flag_values) -> Dict[str, Any]:
    """The VLAEConfig fields set on the command line or in a flagfile."""
    overrides = {}
    for spec in config_field_specs():
        value = flag_values[spec.name].value
        if value is not None:
            overrides[spec.name] = value
        elif flag_values[spec.name].present and spec.optional:
            overrides[spec.name] = None  # explicit --window=none
    return overrides


def make_config(preset: str, overrides: Optional[Dict[str, Any]] = None,
                seed: Optional[int] = None) -> VLAEConfig:
    """presets.get(preset).replace(**overrides[, seed=seed]); LaunchError on bad values."""
    try:
        config = vlae_tf.presets.get(preset)
        changes = dict(overrides or {})
        if seed is not None:
            changes["seed"] = int(seed)
        return config.replace(**changes) if changes else config
    except ValueError as error:
        raise LaunchError(str(error)) from None


def default_dataset(preset: str) -> Optional[str]:
    return DEFAULT_DATASETS.get(preset)


def check_dataset(config: VLAEConfig, dataset: str):
    """The dataset's DatasetInfo; LaunchError when it does not fit the config."""
    try:
        info = pipelines.info(dataset)
    except ValueError:
        raise LaunchError(f"unknown dataset {dataset!r}; valid datasets: "
                          f"{', '.join(pipelines.names())}") from None
    problems = []
    if tuple(info.image_shape) != tuple(config.image_shape):
        problems.append(f"images are {_shape_text(info.image_shape)} but config.image_shape "
                        f"is {_shape_text(config.image_shape)} (set --image_shape="
                        f"{','.join(str(v) for v in info.image_shape)} or pick another preset)")
    if info.max_value != config.max_value:
        data_kind = "binary (0/1)" if info.max_value == 1 else f"8-bit (0..{info.max_value})"
        wanted = "bernoulli" if info.max_value == 1 else "logistic_mixture"
        problems.append(f"pixels are {data_kind} but config.likelihood is "
                        f"{config.likelihood!r} (use --likelihood={wanted}, or a "
                        f"{'binarized' if info.max_value != 1 else 'non-binarized'} dataset)")
    if problems:
        raise LaunchError(f"config does not match dataset {dataset!r}: " + "; ".join(problems))
    return info


def _shape_text(shape):
    return "x".join(str(v) for v in shape)


# ---------------------------------------------------------------------------------- files
def write_json_atomic(path: str, value) -> None:
    """Writes JSON to a temporary file in the same directory, then os.replace()s it."""
    text = json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: str, text: str) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str):
    with open(path) as handle:
        return json.load(handle)


def save_weights_atomic(model, path: str) -> None:
    """model.save_weights to a temporary `.weights.h5` next to `path`, then os.replace."""
    suffix = ".weights.h5"
    if not path.endswith(suffix):
        raise ValueError(f"{path}: Keras weight files must end in {suffix}")
    temporary = f"{path[:-len(suffix)]}.tmp{os.getpid()}{suffix}"
    model.save_weights(temporary)
    os.replace(temporary, path)


def load_config(model_dir: str) -> VLAEConfig:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise LaunchError(f"{path} not found: --model_dir must be a directory written by "
                          f"launch.train")
    return VLAEConfig.from_dict(read_json(path))


def load_run(model_dir: str) -> Dict[str, Any]:
    path = os.path.join(model_dir, RUN_FILE)
    return read_json(path) if os.path.exists(path) else {}


def load_trained_model(model_dir: str):
    """(model with the Polyak-averaged weights of model_dir, run info dict)."""
    config = load_config(model_dir)
    weights = os.path.join(model_dir, WEIGHTS_FILE)
    if not os.path.exists(weights):
        raise LaunchError(f"{weights} not found: training has not finished an epoch yet")
    model = vlae_tf.VLAE(config)
    model.load_weights(weights)
    return model, load_run(model_dir)


# ----------------------------------------------------------------------- Polyak averaging
def ema_optimizer(model):
    """The optimizer holding the EMA, looking through wrappers (e.g. a LossScaleOptimizer
    that skips non-finite steps); None without an optimizer or without EMA."""
    optimizer = getattr(model, "optimizer", None)
    for _ in range(4):
        if optimizer is None:
            return None
        if getattr(optimizer, "use_ema", False):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def training_state(model) -> Dict[str, float]:
    """Non-trainable training state worth logging (soft free bits' gamma, skipped steps)."""
    values = {}
    for name in ("soft_kl_weight", "kl_weight", "nonfinite_steps"):
        variable = getattr(model, name, None)
        if variable is not None and hasattr(variable, "numpy"):
            values[name] = float(variable.numpy())
    return values


@contextlib.contextmanager
def polyak_weights(model):
    """Within the block the model holds the optimizer's EMA (Polyak-averaged) weights.

    The raw training weights are copied out before and assigned back after, bit for bit,
    so training continues exactly as if nothing happened. Yields True if weights were
    swapped (False: no optimizer, no EMA, or no training step taken yet).
    """
    optimizer = ema_optimizer(model)
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if optimizer is None or not averages or int(optimizer.iterations.numpy()) == 0:
        yield False
        return
    variables = model.trainable_weights
    if len(variables) != len(averages):
        raise RuntimeError(f"EMA has {len(averages)} variables, model {len(variables)}")
    raw = [variable.numpy() for variable in variables]
    try:
        for variable, average in zip(variables, averages):
            if average is not None:
                variable.assign(average)
        yield True
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


# ------------------------------------------------------------------------------ evaluation
def bits_per_dim(nats_per_image, config: VLAEConfig) -> float:
    return float(nats_per_image) / (config.num_dims * math.log(2.0))


def eval_images(dataset: str, split: str, max_images: Optional[int], data_dir=None,
                seed: int = 0, with_labels: bool = False):
    """A split's images in a fixed random order, cut to `max_images` (None: all).

    The order comes from `pipelines.SPLIT_SEED`, not `seed`, so every run and every entry
    point evaluates the same subset, and the first N images of a larger subset are the
    N-image subset. A random subset rather than the first N in file order: some files are
    sorted by class (mnist5k's test split starts with its 50 zeros). `seed` only draws the
    binarization of dynamically binarized data. `with_labels`: (images, labels).
    """
    images, labels = pipelines.load_arrays(dataset, split, data_dir=data_dir, seed=int(seed))
    order = np.random.default_rng(pipelines.SPLIT_SEED).permutation(len(images))
    selected = order[:max_images] if max_images else order
    return (images[selected], labels[selected]) if with_labels else images[selected]


def showcase_images(dataset: str, split: str, count: int, data_dir=None,
                    seed: int = 0) -> np.ndarray:
    """`count` images of a split for pictures: one per class in turn (the first of each
    class in file order, then the second, ...), so a grid shows every class even when the
    file is sorted by label. Unlabeled data: the first `count` images."""
    images, labels = pipelines.load_arrays(dataset, split, data_dir=data_dir, seed=int(seed))
    return images[showcase_order(labels, count)]


def showcase_order(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices: the first example of each class (in class order), then the second, ..."""
    labels = np.asarray(labels)
    if (labels < 0).all():
        return np.arange(min(count, len(labels)))
    rank = np.empty(len(labels), np.int64)  # position of each example within its class
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))[:count]


def _compiled_elbo(model):
    function = getattr(model, "_launch_elbo_function", None)
    if function is None:
        function = tf.function(lambda images, seed: model.elbo(images, seed),
                               reduce_retracing=True)
        model._launch_elbo_function = function
    return function


def per_image_elbo(model, images: np.ndarray, batch_size: int = 256, seed: int = 0):
    """Per-image {"elbo", "recon", "kl"} (nats) as numpy arrays, in batches."""
    from vlae_tf.model import make_seed

    function = _compiled_elbo(model)
    seed_tensor = make_seed(int(seed))
    parts = {"elbo": [], "recon": [], "kl": []}
    for start in range(0, len(images), batch_size):
        terms = function(tf.constant(images[start:start + batch_size]), seed_tensor)
        for key in parts:
            parts[key].append(terms[key].numpy())
    return {key: np.concatenate(value) for key, value in parts.items()}


def _mean_and_stderr(values):
    values = np.asarray(values, np.float64)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), stderr


def elbo_summary(model, images: np.ndarray, batch_size: int = 256, seed: int = 0) -> dict:
    """Mean negative ELBO, reconstruction and KL (nats per image) and bits/dim."""
    terms = per_image_elbo(model, images, batch_size, seed)
    negative_elbo, stderr = _mean_and_stderr(-terms["elbo"])
    return {
        "num_images": int(len(images)),
        "negative_elbo_nats": negative_elbo,
        "negative_elbo_stderr": stderr,
        "recon_nats": float(np.mean(terms["recon"])),
        "kl_nats": float(np.mean(terms["kl"])),
        "bits_per_dim": bits_per_dim(negative_elbo, model.config),
        "seed": int(seed),
    }


def importance_summary(model, images: np.ndarray, num_samples: int, batch_size: int = 10,
                       chunk_size: Optional[int] = None, seed: int = 0,
                       progress: bool = True) -> dict:
    """Importance-sampled NLL -log p(x) with K=num_samples, with a progress bar and ETA.

    Images go `batch_size` at a time through `model.importance_log_likelihood`, whose
    samples go `chunk_size` at a time (memory ~ batch_size * chunk_size decoder passes).
    Each batch draws its own noise (seed [seed, index of its first image]), so the result
    is reproducible for the same (seed, K, batch_size) and does not depend on chunk_size.
    """
    if chunk_size is None:  # ~1,024 decoder images per pass keeps memory modest
        chunk_size = max(1, min(num_samples, 1024 // max(1, batch_size)))
    progbar = keras.utils.Progbar(len(images), unit_name="image") if progress else None
    log_px = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        batch_seed = tf.constant([int(seed), start], tf.int32)
        values = model.importance_log_likelihood(batch, num_samples, chunk_size=chunk_size,
                                                 seed=batch_seed).numpy()
        log_px.append(values)
        if progbar is not None:
            running = -float(np.mean(np.concatenate(log_px)))
            progbar.add(len(batch), values=[("nll_nats", running)])
    nll, stderr = _mean_and_stderr(-np.concatenate(log_px))
    return {
        "num_images": int(len(images)),
        "num_importance_samples": int(num_samples),
        "nll_nats": nll,
        "nll_stderr": stderr,
        "bits_per_dim": bits_per_dim(nll, model.config),
        "chunk_size": int(chunk_size),
        "seed": int(seed),
    }


# ----------------------------------------------------------------------------- TensorBoard
# Written as raw Summary protos with TensorFlow's own writer: tf.summary.scalar/image live
# in the `tensorboard` package, which TensorFlow 2.21 does not install. TensorBoard reads
# these (simple_value scalars, PNG images) like its own; `pip install tensorboard` to view.
def write_scalars(writer, step: int, values: Dict[str, float]) -> None:
    from tensorflow.core.framework import summary_pb2

    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()])
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))


def write_image(writer, step: int, tag: str, image: np.ndarray) -> None:
    """One uint8 [H, W, C] image as a PNG image summary."""
    from tensorflow.core.framework import summary_pb2

    height, width, channels = image.shape
    png = tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, image=summary_pb2.Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png))])
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))


def read_summaries(directory: str):
    """[(step, tag, kind)] of every summary under `directory` (for tests and checks)."""
    import glob

    from tensorflow.core.util import event_pb2

    found = []
    for path in sorted(glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.append((int(event.step), value.tag, value.WhichOneof("value"),
                              value.simple_value))
    return found


# ---------------------------------------------------------------------------------- images
def sample_method(requested: str = "auto") -> str:
    """'auto' -> the fastest sampler vlae_tf.sampling offers (identical draws by design)."""
    from vlae_tf import sampling

    methods = tuple(getattr(sampling, "METHODS", ("naive",)))
    if requested == "auto":
        return "cached" if "cached" in methods else methods[0]
    if requested not in methods:
        raise LaunchError(f"unknown sampling method {requested!r}; valid: "
                          f"auto, {', '.join(methods)}")
    return requested


def image_grid(images, columns: int, max_value: int = 255, pad: int = 2,
               zoom: int = 1, pad_value: int = 128) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, ..., C] image (0..255).

    Binary images (max_value 1) are scaled to 0/255; `zoom` repeats pixels.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, H, W, C]; got shape {images.shape}")
    images = images.astype(np.float32) * (255.0 / max_value)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    if zoom > 1:
        images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
    count, height, width, channels = images.shape
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels),
                   pad_value, np.uint8)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def write_png(path: str, image: np.ndarray) -> str:
    """Writes a uint8 [H, W, C] image with tf.io.encode_png (atomically)."""
    data = tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
    return path


def decompression_rows(originals, decompressions, per_image: int):
    """[n images] + [n*per_image decompressions, image-major] -> rows: original, d1..dk."""
    rows = []
    for index in range(len(originals)):
        rows.append(originals[index:index + 1])
        rows.append(decompressions[index * per_image:(index + 1) * per_image])
    return np.concatenate(rows)


def samples_and_decompressions(model, originals, num_samples: int, per_image: int,
                               seed: int = 0, temperature: float = 1.0,
                               method: str = "auto"):
    """(prior samples [num_samples], decompression rows [n*(1+per_image)]) as uint8 arrays.

    Decompressions of each original are drawn in one batch (the image repeated per_image
    times), so every copy gets its own z ~ q(z|x) and its own pixel noise.
    """
    method = sample_method(method)
    samples = model.sample(int(num_samples), seed=int(seed), temperature=float(temperature),
                           method=method).numpy()
    rows = None
    if model.config.use_latent and originals is not None and len(originals):
        repeated = np.repeat(np.asarray(originals), per_image, axis=0)
        lossy = model.decompress(repeated, seed=int(seed) + 1, temperature=float(temperature),
                                 method=method).numpy()
        rows = decompression_rows(np.asarray(originals), lossy, per_image)
    return samples, rows
