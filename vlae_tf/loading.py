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
ValueError. Each message says what to do.
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


def read_config(model_dir: str):
    """The VLAEConfig of a model_dir (FileNotFoundError if it has no config.json)."""
    from vlae_tf.config import VLAEConfig

    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the model_dir must be a directory "
                                f"written by launch.train")
    with open(path) as handle:
        return VLAEConfig.from_dict(json.load(handle))


def read_run(model_dir: str) -> Dict[str, Any]:
    """run.json of a model_dir as a dict ({} for runs that wrote none)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


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
    model.load_weights(weights)
    return model, config
