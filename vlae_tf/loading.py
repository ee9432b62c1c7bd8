"""Loading a trained model from a model_dir written by `launch.train`.

    model, config = vlae_tf.load("runs/quickstart")                 # the run's selected weights
    model, config = vlae_tf.load("runs/quickstart", select="last")  # the last epoch's

A model_dir holds `config.json` (the VLAEConfig), `run.json` (how the data was fed and
which weights the run selected), `model.weights.h5` (the last epoch's Polyak-averaged
weights) and, when training held out validation images, `best.weights.h5` (the epoch with
the best validation ELBO). The file names live here, not in `launch`, so that the library
and the command-line tools share one description of the directory (launch.common imports
them).

Errors: a directory that is not a model_dir, or whose selected weights are missing, raises
FileNotFoundError; a bad `select`, or "best_validation" for a run that has none, raises
ValueError; a config.json, run.json or weights file that cannot be read (truncated,
garbage) raises DamagedFileError, and weights that do not fit the model of config.json
(config.json edited, or weights of another run) ConfigMismatchError, both ValueErrors
whose one-line message names the file(s). Each message says what to do.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"  # how the data was fed (dataset, batch size, steps per epoch, ...)
WEIGHTS_FILE = "model.weights.h5"  # Polyak-averaged weights of the last epoch
# Polyak-averaged weights of the epoch with the best validation ELBO (launch.train --select)
BEST_WEIGHTS_FILE = "best.weights.h5"
# Which weights a loader may pick (run.json "select"; see selected_weights).
SELECTIONS = ("best_validation", "last")
# run.json "train_on" of a run that held nothing out. Equal to pipelines.TRAIN_AND_VALIDATION
# (tests/test_loading.py checks it): the library does not import pipelines.
TRAIN_AND_VALIDATION = "train+validation"


class DamagedFileError(ValueError):
    """A file of a model_dir exists but cannot be read: truncated, garbage, not HDF5 or not
    JSON. The message names the file and what was wrong with it, in one line."""


class ConfigMismatchError(ValueError):
    """The weights file does not fit the model its config describes (e.g. config.json was
    edited after training). The message names both files, in one line."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _read_json(path: str, what: str):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise DamagedFileError(f"{path} is damaged: expected {what} as JSON; "
                               f"{_first_line(error)}") from None


def load_weights(model, weights: str, config_path: Optional[str] = None) -> None:
    """`model.load_weights(weights)` with one-line errors: DamagedFileError when the file
    cannot be read as a Keras weights file (truncated, garbage: h5py's OSError), and
    ConfigMismatchError (naming `config_path`, the config the model was built from) when
    its variables do not fit the model (Keras' ValueError, or a partial load that Keras
    only warns about)."""
    import warnings

    source = f"the model of {config_path}" if config_path else "this model"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(weights)
        except OSError as error:  # h5py: truncated file, file signature not found, ...
            raise DamagedFileError(
                f"{weights} is damaged: not a readable Keras weights file "
                f"({_first_line(error)}); {_damaged_weights_hint(weights)}") from None
        except ValueError as error:  # variables missing or of other shapes
            detail = [line.strip() for line in str(error).splitlines()
                      if line.strip().startswith("Layer ")]
            raise ConfigMismatchError(
                f"{weights} does not fit {source}: {_first_line(error)}"
                + (f" ({detail[0]})" if detail else "")
                + (f"; was {config_path} edited after training, or are the weights "
                   f"another run's?" if config_path else "")) from None
    skipped = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    if skipped:  # Keras only warns; a partially loaded model would give wrong numbers
        raise ConfigMismatchError(f"{weights} does not fit {source}: {_first_line(skipped[0])}"
                                  + (f"; was {config_path} edited after training?"
                                     if config_path else ""))


def _damaged_weights_hint(weights: str) -> str:
    name = os.path.basename(weights)
    if name == WEIGHTS_FILE:
        return (f"re-running the launch.train command of its model_dir rewrites {name} from "
                f"the last checkpoint")
    if name == BEST_WEIGHTS_FILE:
        return ("use select='last' (--select=last) for the last epoch's weights, or "
                "restore the file from a copy")
    return "restore the file from a copy, or write it again"


def read_config(model_dir: str):
    """The VLAEConfig of a model_dir (FileNotFoundError if it has no config.json)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the model_dir must be a directory "
                                f"written by launch.train")
    return read_config_file(path)


def read_config_file(path: str):
    """The VLAEConfig in a JSON file: DamagedFileError if it is not JSON, ValueError
    (prefixed with the path) if its values are refused."""
    from vlae_tf.config import VLAEConfig

    values = _read_json(path, "a VLAEConfig")
    if not isinstance(values, dict):
        raise DamagedFileError(f"{path} is damaged: expected a VLAEConfig as a JSON object; "
                               f"got {type(values).__name__}")
    try:
        return VLAEConfig.from_dict(values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {_first_line(error)}") from None


def read_run(model_dir: str) -> Dict[str, Any]:
    """run.json of a model_dir as a dict ({} for runs that wrote none)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.exists(path):
        return {}
    run = _read_json(path, "the run's record")
    if not isinstance(run, dict):
        raise DamagedFileError(f"{path} is damaged: expected a JSON object; got "
                               f"{type(run).__name__}")
    return run


def selected_weights(model_dir: str, select: Optional[str] = None) -> str:
    """Path of the Polyak-averaged weights `select` names in a launch.train model_dir.

    None: the run's own choice (run.json "select"; runs from before selection existed:
    "last"). "best_validation": best.weights.h5, the epoch with the best validation ELBO
    (run.json "selection" says which); "last": model.weights.h5, the last epoch.
    """
    if select is not None and select not in SELECTIONS:
        raise ValueError(f"select: expected one of {', '.join(SELECTIONS)} (or nothing: "
                         f"the run's choice); got {select!r}")
    read_config(model_dir)  # not a launch.train model_dir at all: say that first
    run = read_run(model_dir)
    select = select or run.get("select", "last")
    if select == "last":
        path = os.path.join(model_dir, WEIGHTS_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: training has not finished an "
                                    f"epoch yet")
        return path
    selection = run.get("selection") or {}
    if selection.get("select") != "best_validation":
        why = ("it trained on train+validation, so no images were held out"
               if run.get("train_on") == TRAIN_AND_VALIDATION else
               "no epoch has finished with a finite validation ELBO (or the run used "
               "--select=last)")
        raise ValueError(f"{model_dir} has no best-validation weights: {why}; "
                         f"use select='last' (--select=last) for the last epoch's weights")
    path = os.path.join(model_dir, BEST_WEIGHTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found, though {RUN_FILE} selects epoch {selection.get('epoch')}: "
            f"re-run the training command to rewrite it, or use select='last' "
            f"(--select=last)")
    return path


def load(model_dir: str, select: Optional[str] = None) -> Tuple[Any, Any]:
    """(VLAE with the selected Polyak-averaged weights of model_dir, its VLAEConfig).

    `select`: None (what the run selected: run.json), "best_validation" or "last"; see
    `selected_weights`. The model is not compiled: `model.compile()` before training on.
    """
    from vlae_tf.model import VLAE  # here: vlae_tf/__init__ imports this module first

    config = read_config(model_dir)
    weights = selected_weights(model_dir, select)
    model = VLAE(config)
    load_weights(model, weights, os.path.join(model_dir, CONFIG_FILE))
    return model, config
