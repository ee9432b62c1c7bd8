"""Helpers shared by the launch/ entry points.

* `define_config_flags` / `config_overrides` / `make_config`: one command-line flag per
  `VLAEConfig` field (generated from the dataclass), parsed into a validated config.
* `check_dataset`: the config's image shape and likelihood must fit the dataset.
* Files in a model_dir: atomic JSON and weight writes, `load_trained_model` (the weights
  the run selected: best validation ELBO or last epoch, `selected_weights`).
* `sample_method`: the --sample_method flag, checked.

Evaluation, EMA swapping and pictures are library code shared with users of `model.fit`
(`vlae_tf.evaluation`, `vlae_tf.images`); the fixed evaluation and showcase subsets are
`pipelines.eval_images` / `pipelines.showcase_images`; TensorBoard files `launch.summaries`.

User mistakes raise `LaunchError` (a ValueError); `run_main` prints them as one line on
stderr and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import typing
from typing import Any, Dict, Optional, Sequence

import numpy as np

import vlae_tf  # noqa: F401  (sets KERAS_BACKEND=tensorflow before keras is imported)
import pipelines  # noqa: E402
from vlae_tf import config as config_lib  # noqa: E402
from vlae_tf import files  # noqa: E402
from vlae_tf import images  # noqa: E402
from vlae_tf import loading  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402

# The files a model_dir holds, and which weights evaluate / sample / export load, are the
# library's (vlae_tf.loading, also behind vlae_tf.load): one description for both.
from vlae_tf.loading import (  # noqa: E402
    BEST_WEIGHTS_FILE, CONFIG_FILE, RUN_FILE, SELECTIONS, WEIGHTS_FILE)
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
EVAL_IS_FILE = "eval_is.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"

# String fields of VLAEConfig with a fixed set of values (become enum flags).
_CONFIG_CHOICES = {
    "likelihood": config_lib.LIKELIHOODS,
    "prior": config_lib.PRIORS,
    "z_conditioning": config_lib.Z_CONDITIONING,
    "free_bits_mode": config_lib.FREE_BITS_MODES,
    "free_bits_grouping": config_lib.FREE_BITS_GROUPINGS,
    "decoder": config_lib.DECODERS,
    "encoder": config_lib.ENCODERS,
    "prior_network": config_lib.PRIOR_NETWORKS,
    "latent_map": config_lib.LATENT_MAPS,
    "residual_placement": config_lib.RESIDUAL_PLACEMENTS,
    "z_concat_mask": config_lib.Z_CONCAT_MASKS,
}
# Fields that the launchers set themselves (`--seed` drives the model and the data).
_CONFIG_FIELDS_NOT_FLAGS = ("seed",)


class LaunchError(ValueError):
    """A user mistake (bad flag combination, mismatched data, wrong model_dir): one line."""


def run_main(main, program: str):
    """Wraps an absl `main(argv)`: LaunchError / missing data -> one line on stderr, exit 2."""
    def wrapped(argv):
        _quiet_absl_logging()
        if len(argv) > 1:
            fail(program, f"unexpected positional arguments {argv[1:]}; options are --flags")
        try:
            return main(argv)
        except (LaunchError, pipelines.DatasetNotFoundError) as error:
            fail(program, str(error))
        except Exception as error:  # a full disk, wherever it struck: one line, not a trace
            if not files.is_disk_full(error):
                raise
            fail(program, disk_full_message(error))
    return wrapped


def _quiet_absl_logging():
    """absl's logger at WARNING (TensorFlow's SavedModel writer logs multi-kilobyte INFO
    lines through it), unless --verbosity was given or TF_CPP_MIN_LOG_LEVEL=0 (the switch
    that brings every log line back; README "Quiet start"). Runs inside app.run: its flag
    parsing sets that logger's level from --verbosity, so doing it earlier does nothing."""
    from absl import flags as absl_flags, logging as absl_logging

    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    verbosity = absl_flags.FLAGS["verbosity"] if "verbosity" in absl_flags.FLAGS else None
    if verbosity is None or not verbosity.present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def disk_full_message(error: BaseException) -> str:
    """One line for ENOSPC: the path and the space needed (DiskFullError) or left."""
    if not isinstance(error, files.DiskFullError):
        path = files.disk_full_path(error)
        lines = str(error).strip().splitlines() or [type(error).__name__]
        error = files.DiskFullError(path) if path else f"no space left on device: {lines[0]}"
    return (f"{error}; free some space and run the same command again (a training run "
            f"resumes from its last complete checkpoint)")


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
    """`vlae_tf.files.write_bytes_atomic` of UTF-8 text: the temporary is removed on any
    failure (it was left as a 0-byte `config.json.tmp<pid>` on a full disk)."""
    files.write_bytes_atomic(path, text.encode("utf-8"))


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
    """model.save_weights to a temporary `.weights.h5` next to `path`, then os.replace.

    The free space is checked first (DiskFullError: Keras' HDF5 writer running out of
    space mid-file printed hundreds of lines of HDF5 errors, then segfaulted); the
    temporary is removed if the write fails anyway."""
    suffix = files.WEIGHTS_SUFFIX
    if not path.endswith(suffix):
        raise ValueError(f"{path}: Keras weight files must end in {suffix}")
    needed = weights_file_bytes(model)
    files.check_free_space(path, needed)
    with files.atomic_write(path, needed) as temporary:
        model.save_weights(temporary)


def weights_file_bytes(model) -> int:
    """A generous estimate of `model.save_weights`' file size: every variable of the model
    and of its optimizer (Keras saves both), plus HDF5's per-dataset and per-file overhead."""
    variables = {id(variable): variable for variable in model.weights}
    optimizer = getattr(model, "optimizer", None)
    for variable in getattr(optimizer, "variables", None) or ():
        variables.setdefault(id(variable), variable)
    data = 0
    for variable in variables.values():
        try:
            itemsize = np.dtype(str(variable.dtype)).itemsize
        except TypeError:  # e.g. bfloat16, which numpy does not name
            itemsize = 4
        data += int(np.prod(variable.shape)) * itemsize
    return int(1.1 * data) + 4096 * len(variables) + (1 << 20)


def load_config(model_dir: str) -> VLAEConfig:
    """model_dir/config.json; LaunchError (one line) if model_dir is not a run's."""
    with _launch_errors():
        return loading.read_config(model_dir)


def load_run(model_dir: str) -> Dict[str, Any]:
    """model_dir/run.json ({} if there is none); LaunchError (one line) if it is damaged."""
    with _launch_errors():
        return loading.read_run(model_dir)


def selected_weights(model_dir: str, select: Optional[str] = None) -> str:
    """`vlae_tf.loading.selected_weights` (the Polyak-averaged weights `select` names:
    None = the run's choice), its errors as one-line LaunchErrors."""
    if select is not None and select not in SELECTIONS:  # named as the flag it came from
        raise LaunchError(f"--select: expected one of {', '.join(SELECTIONS)} (or nothing: "
                          f"the run's choice); got {select!r}")
    with _launch_errors():
        return loading.selected_weights(model_dir, select)


def load_trained_model(model_dir: str, select: Optional[str] = None):
    """(model with the selected Polyak-averaged weights of model_dir, run info dict):
    `vlae_tf.load`, with its errors as LaunchErrors. `select`: see `selected_weights`."""
    selected_weights(model_dir, select)  # a bad --select or model_dir: one line, first
    with _launch_errors():
        model, _ = loading.load(model_dir, select)
    return model, load_run(model_dir)


@contextlib.contextmanager
def _launch_errors():
    """The library's ValueError / FileNotFoundError about a model_dir -> LaunchError, so
    the command line prints them as one line (LaunchError is itself a ValueError: kept)."""
    try:
        yield
    except LaunchError:
        raise
    except (ValueError, FileNotFoundError) as error:
        raise LaunchError(str(error)) from None


# -------------------------------------------------------------------------- sampler flag
def sample_method(requested: str = "auto") -> str:
    """--sample_method / --method -> a sampler name (`vlae_tf.images.resolve_sample_method`);
    a bad name is a LaunchError (one line on stderr), not a traceback."""
    try:
        return images.resolve_sample_method(requested)
    except ValueError as error:
        raise LaunchError(str(error)) from None


# ------------------------------------------------------------------------ other arguments
def check_seed(seed, name: str = "--seed") -> int:
    """A --seed: an int in [0, 2**31 - 1] (it seeds the data pipelines too, which take
    no negative seeds, and stateless int32 draws); LaunchError (one line) otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed <= config_lib.INT32_MAX:
        raise LaunchError(f"{name}: expected an int in [0, {config_lib.INT32_MAX}]; "
                          f"got {seed!r}")
    return int(seed)


def check_output_file(path: str, name: str) -> None:
    """A file path the command will write: its directory must exist (LaunchError now, not
    a traceback after the work is done), and it must not be a directory itself."""
    if os.path.isdir(path):
        raise LaunchError(f"{name}: expected a file path; {path} is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise LaunchError(f"{name}: expected a path in an existing directory; {directory} "
                          f"{what} (create it first)")
