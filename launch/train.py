"""Train a VLAE; re-running the same command resumes exactly where it stopped.

    python -m launch.train --flagfile=launch/configs/mnist5k_cpu.flags [--overrides]
    python -m launch.train --preset=mnist_cpu --dataset=mnist5k_binary --epochs=5 \\
        --model_dir=runs/try --window=7x4 --latent_size=16

Flags after a --flagfile override it (the last value wins). Every VLAEConfig field has a
flag (--window=7x4, --encoder_filters=16,32, --ema_momentum=none, ...): see --helpshort.

model_dir receives: config.json (the VLAEConfig), run.json (dataset, batch size, steps per
epoch, --train_on, --select and the selected epoch), metrics.jsonl (one JSON line per
--log_every steps and per epoch), tensorboard/, checkpoints/ (the exact training state at
each epoch end, written atomically), model.weights.h5 (the last epoch's Polyak-averaged
weights), best.weights.h5 (those of the epoch with the best validation ELBO) and, at the
end, eval.json (ELBO on the test split and importance-sampled NLL on a subset) of the
selected weights -- the ones evaluate / sample / export load.

The paper's protocol: tune with --train_on=train (default; each epoch's Polyak-averaged
weights are scored on the validation split and the best is selected), then retrain the
final model with --train_on=train+validation (nothing held out: the last epoch's weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import sys
import time
import warnings
from typing import Optional

from absl import app, flags

from launch import common
from launch import summaries
from launch.common import LaunchError

import keras  # noqa: E402  (after launch.common: Keras on the TensorFlow backend)
import numpy as np  # noqa: E402
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402
import vlae_tf  # noqa: E402
from vlae_tf import diagnostics, distribute, evaluation, files, images, loading  # noqa: E402

DEFAULT_EPOCHS = 10
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
# A multi-worker peer died or became unreachable: the exit code asks for a restart
# (EX_TEMPFAIL), as launch.supervise or a cluster manager's restart policy would do.
PEER_FAILURE_EXIT_CODE = 75
PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.AbortedError,
                 tf.errors.DeadlineExceededError, tf.errors.CancelledError)
METRIC_NAMES = ("loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim")
# Logged too when present: the per-layer KL of a two-layer model (config.latent_layers=2).
LAYER_METRIC_NAMES = ("kl_z1_nats", "kl_z2_nats")
# Options that fix the data stream and the step <-> epoch mapping: a resumed run must
# use the same ones, or it would not continue the same training.
RUN_KEYS = ("dataset", "batch_size", "steps_per_epoch", "max_train_examples", "train_on")
# What runs from before an option existed did, for the resume checks.
_RUN_DEFAULTS = {"train_on": "train"}
# --train_on: the train split, or train + validation (the paper's final retraining).
TRAIN_ON = ("train", pipelines.TRAIN_AND_VALIDATION)
# --select: which Polyak-averaged weights evaluate / sample / export load.
SELECT_CHOICES = ("auto",) + common.SELECTIONS


@dataclasses.dataclass
class TrainOptions:
    """How to train (the model itself is the VLAEConfig). See the --flags for meanings."""

    dataset: str
    model_dir: str
    batch_size: int = 64
    epochs: Optional[int] = None  # default DEFAULT_EPOCHS unless steps is given
    steps: Optional[int] = None  # total steps, rounded up to whole epochs
    steps_per_epoch: Optional[int] = None  # default: one pass over the train split
    data_dir: Optional[str] = None
    max_train_examples: Optional[int] = None  # use only the first N images of train_on
    train_on: str = "train"  # or "train+validation": the final retraining, nothing held out
    # Weights evaluate / sample / export load: "best_validation" (the epoch with the best
    # validation ELBO), "last", or "auto" (best_validation on train, last on train+validation).
    select: str = "auto"
    validation_max_images: Optional[int] = None  # images scoring each epoch (None: all)
    log_every: int = 50  # steps between metrics.jsonl / TensorBoard lines (0: per epoch)
    image_every: int = 0  # steps between TensorBoard image grids (0: never)
    image_num: int = 16  # prior samples per grid (and 4 images x 3 decompressions)
    diagnostics_images: int = 256  # validation images for per-epoch latent diagnostics; 0: off
    eval_split: str = "test"
    eval_max_images: Optional[int] = None  # ELBO images (None: the whole split)
    eval_num_images: int = 200  # images for the importance-sampled NLL (0: skip it)
    # (both are prefixes of one fixed random order of the split: pipelines.eval_images)
    eval_num_importance_samples: int = 256
    eval_chunk_size: Optional[int] = None
    eval_batch_size: int = 10  # images per importance-sampling call
    max_minutes: Optional[float] = None  # stop before an epoch would end past this budget
    keep_checkpoints: int = 2
    data_dependent_init: bool = True
    sample_method: str = "auto"
    verbose: str = "auto"  # Keras: "auto" (bar on a terminal, a line per epoch otherwise), 0, 1, 2
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism() (for GPUs)
    strategy: str = "default"  # vlae_tf.distribute.STRATEGIES; batch_size is the global batch
    mixed_precision: str = "none"  # or a Keras mixed policy: mixed_float16, mixed_bfloat16
    cpu_devices: int = 0  # >1: split the CPU into logical devices (mirrored without GPUs)

    def __post_init__(self):
        for name in ("batch_size", "keep_checkpoints", "eval_batch_size", "image_num"):
            _require(getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        for name in ("epochs", "steps", "steps_per_epoch", "max_train_examples",
                     "eval_max_images", "validation_max_images"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, "an int >= 1", value)
        for name in ("log_every", "image_every", "eval_num_images",
                     "eval_num_importance_samples"):
            _require(getattr(self, name) >= 0, name, "an int >= 0", getattr(self, name))
        if self.epochs is not None and self.steps is not None:
            raise LaunchError("give --epochs or --steps, not both")
        _require(self.max_minutes is None or self.max_minutes > 0, "max_minutes",
                 "a number > 0", self.max_minutes)
        _require(self.eval_split in pipelines.SPLITS, "eval_split",
                 f"one of {', '.join(pipelines.SPLITS)}", self.eval_split)
        _require(str(self.verbose) in ("auto", "0", "1", "2"), "verbose", "auto, 0, 1 or 2",
                 self.verbose)
        _require(self.train_on in TRAIN_ON, "train_on", f"one of {', '.join(TRAIN_ON)}",
                 self.train_on)
        _require(self.select in SELECT_CHOICES, "select",
                 f"one of {', '.join(SELECT_CHOICES)}", self.select)
        if self.select == "best_validation" and self.train_on != "train":
            raise LaunchError(f"--select=best_validation: expected --train_on=train (a "
                              f"held-out validation split to select on); got --train_on="
                              f"{self.train_on}, which trains on the validation images: use "
                              f"--select=last (what --select=auto does there)")
        if not self.model_dir:
            raise LaunchError("model_dir: expected a directory path")
        _require(self.strategy in distribute.STRATEGIES, "strategy",
                 f"one of {', '.join(distribute.STRATEGIES)}", self.strategy)
        _require(self.mixed_precision in PRECISIONS, "mixed_precision",
                 f"one of {', '.join(PRECISIONS)}", self.mixed_precision)
        _require(self.cpu_devices >= 0, "cpu_devices", "an int >= 0", self.cpu_devices)
        if self.strategy == "multi_worker" and self.max_minutes is not None:
            # Each worker would time itself and could stop at a different epoch, leaving
            # the others waiting in a collective forever.
            raise LaunchError("--max_minutes cannot be used with --strategy=multi_worker "
                              "(workers could disagree on when to stop): give --steps or "
                              "--epochs")


def _require(condition, name, expected, got):
    if not condition:
        raise LaunchError(f"--{name}: expected {expected}; got {got!r}")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ------------------------------------------------------------------------------ checkpoints
class Checkpoints:
    """The exact training state at epoch ends, under model_dir/checkpoints/.

    Each checkpoint is a directory `ckpt-<step>/` holding `train_state.weights.h5`
    (model weights incl. the non-trainable training state -- soft free bits' KL weight, the
    training-noise step counter -- plus every optimizer variable: step counter, Adamax
    moments, the EMA averages) and `state.json` (epoch, step, time). It is
    written as `ckpt-<step>.tmp/` and renamed when complete; `latest.json` (replaced
    atomically) then points to it. A crash at any moment leaves `latest.json` pointing at
    a complete checkpoint. A failed save (a full disk: DiskFullError) removes its
    `.tmp/` directory and leaves `latest.json` as it was; `sweep` removes the `.tmp/` of a
    save that was killed. Damage after the fact (a garbage `latest.json`, a truncated
    weights file) makes `restore_latest` fall back to the previous complete checkpoint
    (`candidates`), said in one line.
    """

    WEIGHTS = "train_state.weights.h5"
    # The only names `latest.json` may hold (it is joined into a path): what `save` writes.
    NAME = re.compile(r"ckpt-[0-9]{9}")

    def __init__(self, model_dir: str, keep: int = 2):
        self.directory = os.path.join(model_dir, common.CHECKPOINT_DIR)
        self.pointer = os.path.join(self.directory, "latest.json")
        self.keep = keep

    def latest(self) -> Optional[dict]:
        """The state (with "name") of the checkpoint to resume from, without loading it:
        what `latest.json` points to or, if that is damaged, the newest complete checkpoint
        (see `candidates`); None when there is no `latest.json` (a fresh run)."""
        candidates, problems = self.candidates()
        if candidates:
            return candidates[0]
        if problems:
            raise LaunchError(self._nothing_usable(problems))
        return None

    def candidates(self):
        """([state, ...] to try in order, [problem, ...]) for resuming.

        First the checkpoint `latest.json` names, then the older complete ones, newest
        first: when the named one turns out damaged, training falls back to the previous
        good one. A `latest.json` that is not readable (garbage, a bad name) leaves the
        complete checkpoints, newest first. A checkpoint is complete when its directory
        `ckpt-<step>` (not `.tmp`) holds the weights and a readable `state.json` of that
        step. ([], []) without a `latest.json`: nothing to resume.
        """
        if not os.path.exists(self.pointer):
            return [], []
        problems, pointed = [], None
        try:
            state = common.read_json(self.pointer)
        except (OSError, ValueError) as error:
            problems.append(f"{self.pointer} is not a readable checkpoint pointer "
                            f"({_first_line(error)})")
        else:
            name = state.get("name") if isinstance(state, dict) else None
            if not (isinstance(name, str) and self.NAME.fullmatch(name)):
                problems.append(f"{self.pointer}: expected \"name\" of the form "
                                f"ckpt-<9 digits> (what launch.train writes); got {name!r}")
            elif not os.path.exists(os.path.join(self.directory, name, self.WEIGHTS)):
                problems.append(f"{self.pointer} points to "
                                f"{os.path.join(self.directory, name, self.WEIGHTS)}, which is "
                                f"missing")
            else:
                pointed = dict(state)
        names = sorted((entry for entry in os.listdir(self.directory)
                        if self.NAME.fullmatch(entry)), reverse=True)
        if pointed is not None:  # never newer than the committed one
            names = [entry for entry in names if entry < pointed["name"]]
        candidates = [pointed] if pointed is not None else []
        for name in names:
            state, problem = self._complete(name)
            if problem:
                problems.append(problem)
            else:
                candidates.append(state)
        return candidates, problems

    def _complete(self, name):
        """(state of checkpoint `name`, None), or (None, why it cannot be used)."""
        weights = os.path.join(self.directory, name, self.WEIGHTS)
        path = os.path.join(self.directory, name, "state.json")
        if not os.path.isfile(weights):
            return None, f"{weights} is missing"
        try:
            state = common.read_json(path)
        except (OSError, ValueError) as error:
            return None, f"{path} is not readable ({_first_line(error)})"
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) \
                or f"ckpt-{state['step']:09d}" != name or not isinstance(state.get("epoch"), int):
            return None, f"{path} does not describe {name}"
        return dict(state, name=name), None

    def _nothing_usable(self, problems) -> str:
        return (f"no usable checkpoint to resume from in {self.directory}: "
                f"{'; '.join(problems)}; delete {self.directory} to restart training from "
                f"scratch")

    def restore_latest(self, model, log=print) -> Optional[dict]:
        """Restores the newest usable checkpoint (`candidates`, in order) into `model` and
        returns its state; None for a fresh run. A damaged one (its weights file truncated
        or garbage) is skipped for the previous one, said in one line; LaunchError (one
        line, naming the files) when none is usable."""
        candidates, problems = self.candidates()
        if not candidates and not problems:
            return None
        for state in candidates:
            try:
                self.restore(model, state)
            except loading.DamagedFileError as error:
                problems.append(str(error).split("; ")[0])
                continue
            if problems:
                log(f"Resuming from {state['name']} (step {state['step']}), the newest usable "
                    f"checkpoint: {'; '.join(problems)}.")
            return state
        raise LaunchError(self._nothing_usable(problems))

    def save(self, model, state: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{state['step']:09d}"
        final = os.path.join(self.directory, name)
        temporary = final + ".tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        # Space first: HDF5 running out of it mid-file printed ~830 lines of errors and
        # segfaulted. The previous checkpoint is kept until this one is complete.
        needed = common.weights_file_bytes(model)
        files.check_free_space(final, needed)
        try:
            os.makedirs(temporary)
            weights = os.path.join(temporary, self.WEIGHTS)
            model.save_weights(weights)
            with open(weights, "rb+") as handle:
                os.fsync(handle.fileno())
            common.write_json_atomic(os.path.join(temporary, "state.json"), state)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(temporary, final)
        except BaseException as error:  # incl. Ctrl-C: never leave a half checkpoint
            files.remove_quietly(temporary)
            if (isinstance(error, Exception) and not isinstance(error, files.DiskFullError)
                    and files.is_disk_full(error)):
                raise files.DiskFullError(final, needed) from error
            raise
        common.write_json_atomic(self.pointer, dict(state, name=name))
        self._prune(keep_name=name)

    def restore(self, model, state: dict) -> None:
        """Loads weights and optimizer state (the optimizer is built first so it has slots)."""
        if not getattr(model.optimizer, "built", False):  # again would add variables
            model.optimizer.build(model.trainable_variables)
        path = os.path.join(self.directory, state["name"], self.WEIGHTS)
        try:  # DamagedFileError: unreadable; a file that does not fit: one line, no fallback
            loading.load_weights(model, path)
        except loading.ConfigMismatchError as error:
            raise LaunchError(str(error)) from None

    def sweep(self) -> list:
        """Removes the `.tmp/` directories of saves that were killed; returns their paths."""
        if not os.path.isdir(self.directory):
            return []
        stale = [os.path.join(self.directory, entry) for entry in os.listdir(self.directory)
                 if entry.startswith("ckpt-") and entry.endswith(".tmp")]
        for path in stale:
            files.remove_quietly(path)
        return stale

    def _prune(self, keep_name):
        names = sorted(entry for entry in os.listdir(self.directory)
                       if entry.startswith("ckpt-"))
        complete = [entry for entry in names if not entry.endswith(".tmp")]
        stale = [entry for entry in names if entry.endswith(".tmp")]
        for entry in complete[:-self.keep] + stale:
            if entry != keep_name:
                shutil.rmtree(os.path.join(self.directory, entry), ignore_errors=True)


# ------------------------------------------------------------------------------- callbacks
class _TrainingLog(keras.callbacks.Callback):
    """metrics.jsonl + TensorBoard scalars/images, checkpoints and EMA weights per epoch,
    the validation ELBO that selects the best epoch's weights (with `validation_images`),
    and the time budget. Only the chief writes (other workers keep the same state)."""

    def __init__(self, model_dir, checkpoints, state, options, steps_per_epoch, writer,
                 originals, log, diagnostic_images=None, chief=True, validation_images=None):
        super().__init__()
        self.chief = chief
        self.diagnostic_images = diagnostic_images
        self.validation_images = validation_images
        self.steps_per_epoch = steps_per_epoch
        self.model_dir = model_dir
        self.checkpoints = checkpoints
        self.state = state  # dict: step, epoch, train_seconds (cumulative over sessions)
        self.options = options
        self.writer = writer
        self.originals = originals
        self.log = log

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = time.time()
        self.previous = (0, {})  # (batches, running means) at the last log line

    def on_train_batch_end(self, batch, logs=None):
        if not self.chief:
            return
        step = self.epoch * self.steps_per_epoch + batch + 1
        every = self.options.log_every
        if every and step % every == 0:
            running = {key: float(np.asarray(value)) for key, value in (logs or {}).items()
                       if key in METRIC_NAMES + LAYER_METRIC_NAMES}
            count, before = self.previous
            done = batch + 1  # batches of this epoch so far: running means -> interval means
            interval = {key: (done * value - count * before.get(key, 0.0)) / (done - count)
                        for key, value in running.items()}
            self.previous = (done, running)
            self._record("step", step, interval, epoch_fraction=None)
        if self.options.image_every and step % self.options.image_every == 0:
            self._images(step)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        seconds = time.time() - self.epoch_start
        # The budget's estimate of the next epoch: the last one (the first also traces).
        self.state.update(epoch=epoch + 1, step=step,
                          train_seconds=self.state.get("train_seconds", 0.0) + seconds,
                          epoch_seconds=seconds)
        values = {key: float(np.asarray(value)) for key, value in (logs or {}).items()}
        if not self.chief:
            return
        # The checkpoint is the commit point, so it goes last: a kill before it makes the
        # re-run redo this epoch (dropping its metrics lines, overwriting the weights); a
        # kill after it finds everything of this epoch written. The best weights follow it
        # (see _write_best_weights for why that order is safe).
        scores, improved = {}, False
        if self.validation_images is not None:
            summary = validation_elbo(self.model, self.validation_images,
                                      seed=self.model.config.seed)
            scores = {f"validation_{key}": summary[key]
                      for key in ("negative_elbo_nats", "recon_nats", "kl_nats")}
            best = self.state.get("selection") or {}
            value = summary["negative_elbo_nats"]
            # Strictly better: a tie keeps the earlier epoch; NaN never wins.
            improved = math.isfinite(value) and value < best.get(
                "validation_negative_elbo_nats", math.inf)
            if improved:
                self.state["selection"] = _best_selection(epoch + 1, step, summary)
        self._record("epoch", step, values, epoch_fraction=epoch + 1, seconds=seconds,
                     extra=scores)
        if self.diagnostic_images is not None:
            self._latent_diagnostics(step, epoch + 1)
        with evaluation.polyak_weights(self.model):
            common.save_weights_atomic(self.model,
                                       os.path.join(self.model_dir, common.WEIGHTS_FILE))
        self.checkpoints.save(self.model, dict(self.state, metrics=values))
        if improved:
            _write_best_weights(self.model, self.model_dir, self.state["selection"])
        budget = self.options.max_minutes
        if budget is not None and (self.state["train_seconds"] + self.state["epoch_seconds"]
                                   > 60.0 * budget):
            self.log(f"Time budget of {budget:g} min reached after epoch {epoch + 1} "
                     f"({self.state['train_seconds'] / 60:.1f} min of training): stopping.")
            self.model.stop_training = True

    def _record(self, kind, step, values, epoch_fraction=None, seconds=None, extra=None):
        line = {"kind": kind, "step": step}
        if epoch_fraction is not None:
            line["epoch"] = epoch_fraction
        line.update({key: values[key] for key in METRIC_NAMES + LAYER_METRIC_NAMES
                     if key in values})
        line.update(extra or {})
        line.update(evaluation.training_state(self.model))
        if seconds is not None:
            line["epoch_seconds"] = round(seconds, 3)
        line["time"] = round(time.time(), 3)
        _append_jsonl(os.path.join(self.model_dir, common.METRICS_FILE), line)
        prefix = "train" if kind == "step" else "epoch"
        scalars = {f"{prefix}/{key}": line[key] for key in line
                   if key not in ("kind", "step", "epoch", "time", "epoch_seconds")}
        summaries.write_scalars(self.writer, step, scalars)
        self.writer.flush()

    def _latent_diagnostics(self, step, epoch):
        """KL = index-code MI + marginal KL and active units of the Polyak-averaged model on
        fixed validation images (vlae_tf.diagnostics), as a "latent" metrics.jsonl line."""
        with evaluation.polyak_weights(self.model):
            latent = diagnostics.model_diagnostics(self.model, self.diagnostic_images,
                                                   seed=[self.model.config.seed, 1])
        line = {"kind": "latent", "step": step, "epoch": epoch,
                "kl_nats": latent["average_kl"],
                "mutual_information_nats": latent["mutual_information"],
                "marginal_kl_nats": latent["marginal_kl"],
                "active_units": latent["active_units"], "images": len(self.diagnostic_images)}
        for key, name in (("kl_z1", "kl_z1_nats"), ("kl_z2", "kl_z2_nats"),
                          ("active_units_z2", "active_units_z2")):
            if key in latent:  # two latent layers (vlae_tf.hierarchy.model_diagnostics)
                line[name] = latent[key]
        _append_jsonl(os.path.join(self.model_dir, common.METRICS_FILE), line)
        summaries.write_scalars(self.writer, step, {f"latent/{key}": line[key] for key in line
                                                    if key not in ("kind", "step", "epoch")})
        self.writer.flush()

    def _images(self, step):
        with evaluation.polyak_weights(self.model):
            samples, rows = images.samples_and_decompressions(
                self.model, self.originals, self.options.image_num, per_image=3, seed=0,
                method=self.options.sample_method)
        max_value = self.model.config.max_value
        columns = int(math.ceil(math.sqrt(len(samples))))
        summaries.write_image(self.writer, step, "samples",
                              images.image_grid(samples, columns, max_value))
        if rows is not None:
            summaries.write_image(self.writer, step, "decompressions",
                                  images.image_grid(rows, 4, max_value))
        self.writer.flush()


def validation_elbo(model, images, seed):
    """The ELBO summary (vlae_tf.evaluation.elbo_summary) of the Polyak-averaged weights on
    the validation images: what selects the best epoch. The same images and seed every
    epoch, so epochs differ only by their weights."""
    with evaluation.polyak_weights(model):
        return evaluation.elbo_summary(model, images, seed=seed)


def _best_selection(epoch, step, summary):
    return {"select": "best_validation", "weights": common.BEST_WEIGHTS_FILE,
            "epoch": int(epoch), "step": int(step),
            "validation_negative_elbo_nats": float(summary["negative_elbo_nats"]),
            "validation_images": int(summary["num_images"]), "seed": int(summary["seed"])}


def _write_best_weights(model, model_dir, selection):
    """best.weights.h5 <- the Polyak-averaged weights now in the model's EMA; run.json's
    "selection" <- selection.

    Written after the checkpoint that records the selection, never before: a kill before
    the checkpoint leaves the previous best file and record intact (the epoch is redone); a
    kill between the two leaves the checkpoint naming an epoch whose weights are not in
    best.weights.h5 yet -- but that epoch is then the checkpoint itself, whose EMA are
    those weights, and train() rewrites them on resume (_repair_best_weights).
    """
    with evaluation.polyak_weights(model):
        common.save_weights_atomic(model, os.path.join(model_dir, common.BEST_WEIGHTS_FILE))
    _record_selection(model_dir, selection)


def _record_selection(model_dir, selection):
    path = os.path.join(model_dir, common.RUN_FILE)
    common.write_json_atomic(path, dict(common.load_run(model_dir), selection=selection))


def _repair_best_weights(model, model_dir, state, chief=True):
    """After a restore: if the checkpoint is the selected epoch, (re)write its weights (a
    kill may have come between its commit and _write_best_weights); the record either way.

    Every worker calls it: under MultiWorkerMirroredStrategy, swapping in the EMA and
    reading the weights outside `fit` are collectives, which hang or abort unless all
    workers run them. Non-chief workers write to a temporary file and delete it."""
    selection = state.get("selection")
    if not chief:
        if selection and selection["step"] == state["step"]:
            import tempfile
            with tempfile.TemporaryDirectory() as scratch, evaluation.polyak_weights(model):
                model.save_weights(os.path.join(scratch, "best.weights.h5"))
        return
    if selection and selection["step"] == state["step"]:
        _write_best_weights(model, model_dir, selection)
    elif selection:
        _record_selection(model_dir, selection)


def _append_jsonl(path, line):
    """Appends `line` as one line of strict JSON: NaN and +-inf (a diverged step) are
    written as null, since JSON has no such numbers (json.dumps would write bare NaN /
    Infinity tokens, which strict parsers refuse). One write of the whole line, so a crash
    can only tear the last line (which `_truncate_metrics` drops on resume)."""
    import json
    text = json.dumps(_finite_or_none(line), sort_keys=True, allow_nan=False) + "\n"
    with open(path, "a") as handle:
        handle.write(text)


def _finite_or_none(value):
    """`value` with every non-finite float (NaN, +-inf), also numpy's, replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _truncate_metrics(path, step, log=print):
    """Drops metrics.jsonl lines written after `step` (by a run interrupted mid-epoch), and
    lines that are not JSON objects: a crash (kill -9, a full disk) while appending leaves a
    torn last line, which would otherwise break every reader; one line says so."""
    import json
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    lines = [line + "\n" for line in text.split("\n") if line.strip()]
    torn = []

    def keep(line):
        try:
            value = json.loads(line)
        except ValueError:  # torn by a kill or a full disk in the middle of an append
            value = None
        if not isinstance(value, dict):
            torn.append(line)
            return False
        return value.get("step", 0) <= step

    kept = [line for line in lines if keep(line)]
    if torn:
        where = "its last line" if torn == lines[-1:] else f"{len(torn)} line(s)"
        log(f"Dropped {where} of {path}, torn by an interrupted write (not JSON: "
            f"{torn[-1].strip()[:60]!r}).")
    # Rewritten also when only the final newline is missing: the next append would
    # otherwise continue that line.
    if len(kept) != len(lines) or (text and not text.endswith("\n")):
        common.write_text_atomic(path, "".join(kept))


def _load_last_weights(model, model_dir, state, chief=True, log=print):
    """model <- model.weights.h5 (the last epoch's Polyak-averaged weights) when nothing was
    trained in this session. A damaged file (truncated, garbage) is written anew from the
    restored checkpoint's averages -- the same weights, written just before that checkpoint
    -- and said in one line. Every worker swaps the averages in (a collective under
    multi_worker); only the chief writes the file."""
    path = os.path.join(model_dir, common.WEIGHTS_FILE)
    config_path = os.path.join(model_dir, common.CONFIG_FILE)
    try:
        loading.load_weights(model, path, config_path)
        return
    except loading.ConfigMismatchError as error:
        raise LaunchError(str(error)) from None
    except loading.DamagedFileError as error:
        if chief:
            log(f"{str(error).split('; ')[0]}: writing it again from the Polyak averages of "
                f"checkpoint {state.get('name', '')} (step {state['step']}).")
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:  # non-chief workers: a scratch copy
        target = path if chief else os.path.join(scratch, common.WEIGHTS_FILE)
        with evaluation.polyak_weights(model):
            common.save_weights_atomic(model, target)
        loading.load_weights(model, target, config_path)


# ------------------------------------------------------------------------------------ train
def _config_difference(old: dict, new: dict):
    # A field added after the run was made is missing from its config.json; new fields
    # default to what the code did before them, so a missing one counts as its default.
    defaults = _json_ready({field.name: field.default
                            for field in dataclasses.fields(vlae_tf.VLAEConfig)
                            if field.default is not dataclasses.MISSING})
    old = {**{key: defaults[key] for key in new if key not in old and key in defaults}, **old}
    keys = sorted(set(old) | set(new))
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys
            if old.get(key) != new.get(key)]


def _plan(options, run, data_steps):
    """(steps_per_epoch, epochs) from the options, a previous run and the data size."""
    steps_per_epoch = options.steps_per_epoch or run.get("steps_per_epoch")
    if options.steps is not None:
        if steps_per_epoch is None:  # epochs of at most one pass, evenly dividing steps
            chunks = math.ceil(options.steps / data_steps)
            steps_per_epoch = math.ceil(options.steps / chunks)
        return steps_per_epoch, math.ceil(options.steps / steps_per_epoch)
    return steps_per_epoch or data_steps, options.epochs or DEFAULT_EPOCHS


def _json_ready(value):
    import json
    return json.loads(json.dumps(value, default=common._json_default))


def setup_runtime(options: TrainOptions) -> tf.distribute.Strategy:
    """The tf.distribute strategy of options.strategy; call it at program start, before any
    other TensorFlow work (logical CPU devices and multi-worker collectives need that).

    --cpu_devices=N first splits the CPU into N logical devices, which a mirrored strategy
    then uses as its replicas (how the multi-device path is exercised without GPUs).
    """
    try:
        if options.cpu_devices > 1:
            distribute.use_logical_cpus(options.cpu_devices)
        devices = None
        if options.strategy == "mirrored" and options.cpu_devices > 1:
            devices = [f"/cpu:{index}" for index in range(options.cpu_devices)]
        return distribute.make_strategy(options.strategy, devices=devices)
    except RuntimeError as error:  # TensorFlow already initialised its devices
        raise LaunchError(f"--strategy={options.strategy} --cpu_devices="
                          f"{options.cpu_devices}: must be set up before other TensorFlow "
                          f"work (call launch.train.setup_runtime first): {error}") from None
    except ValueError as error:
        raise LaunchError(str(error)) from None


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Keras' global dtype policy for building the model ("none": float32), then restored.

    Layers keep their policy after construction; the model keeps its likelihood, KL and
    flow log-determinants in float32 under any policy.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if name == "none" else name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train(config: vlae_tf.VLAEConfig, options: TrainOptions, log=print,
          strategy: Optional[tf.distribute.Strategy] = None) -> dict:
    """Trains (or resumes) the run in options.model_dir, then evaluates it.

    `strategy`: from `setup_runtime(options)` (made here when not given). The global batch
    (options.batch_size) is split over its replicas; under multi_worker only the chief
    (worker 0) writes to model_dir and evaluates, and every worker restores from it.

    Resuming is exact at epoch boundaries: weights, optimizer moments and step counter,
    EMA averages, the model's non-trainable training state (soft free bits' KL weight, the
    training-noise step) and the data position (the seeded stream is skipped to the
    restored step) all continue as if the run had never stopped; bit for bit on CPU
    (tested). Work after the last completed epoch is lost and redone. Returns a summary
    dict (the content of eval.json under "eval").
    """
    info = common.check_dataset(config, options.dataset)
    if strategy is None:
        strategy = setup_runtime(options)
    chief = distribute.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise LaunchError(f"--batch_size={options.batch_size} is the global batch: expected a "
                          f"multiple of the {replicas} replicas of --strategy={options.strategy}")
    model_dir = options.model_dir
    os.makedirs(model_dir, exist_ok=True)
    checkpoints = Checkpoints(model_dir, options.keep_checkpoints)
    if chief:  # what killed writes left (kill -9 mid-write): it would take the space we need
        removed = files.sweep_temporaries(model_dir) + checkpoints.sweep()
        if removed:
            log(f"Removed {len(removed)} temporary file(s) of interrupted writes in "
                f"{model_dir}: {', '.join(os.path.relpath(path, model_dir) for path in removed)}")
    config_path = os.path.join(model_dir, common.CONFIG_FILE)
    config_dict = _json_ready(config.to_dict())
    if os.path.exists(config_path):
        try:
            previous_config = common.read_json(config_path)
        except ValueError as error:  # not JSON (UnicodeDecodeError is a ValueError too)
            previous_config = error
        if not isinstance(previous_config, dict):
            why = (_first_line(previous_config) if isinstance(previous_config, Exception)
                   else f"got a {type(previous_config).__name__}")
            raise LaunchError(f"{config_path} is damaged: expected the run's VLAEConfig as "
                              f"a JSON object ({why}); delete it and run the same command "
                              f"again (it is written from the flags; a checkpoint that does "
                              f"not fit them is refused)")
        differences = _config_difference(previous_config, config_dict)
        if differences:
            raise LaunchError(
                f"{model_dir} holds a run with a different config ({'; '.join(differences)}):"
                f" use another --model_dir, or delete {model_dir} to start over")
    previous_run = common.load_run(model_dir)
    for key in ("dataset", "batch_size", "max_train_examples", "train_on"):
        before = previous_run.get(key, _RUN_DEFAULTS.get(key))
        if previous_run and before != getattr(options, key):
            raise LaunchError(
                f"{model_dir} was trained with --{key}={before}, not "
                f"{getattr(options, key)}: resuming needs the same data stream; use another "
                f"--model_dir")
    select = _resolve_select(options, previous_run, model_dir)
    if (previous_run and options.steps_per_epoch is not None
            and options.steps_per_epoch != previous_run.get("steps_per_epoch")):
        raise LaunchError(f"{model_dir} was trained with --steps_per_epoch="
                          f"{previous_run.get('steps_per_epoch')}, not {options.steps_per_epoch}")

    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)  # initial weights; the data has its own seeds

    def train_stream():  # a fresh dataset object each time: its own shuffle/binarize state
        return training_data(options, config.seed, repeat=True)

    one_pass = training_data(options, config.seed)
    data_steps = int(one_pass.cardinality())
    if data_steps < 1:
        raise LaunchError(f"cannot tell how many batches one pass over {options.dataset} "
                          f"has; give --steps_per_epoch")
    steps_per_epoch, epochs = _plan(options, previous_run, data_steps)
    run = {key: getattr(options, key) for key in RUN_KEYS}
    run.update(steps_per_epoch=steps_per_epoch, seed=config.seed, data_dir=options.data_dir,
               train_batches_per_pass=data_steps, image_shape=list(info.image_shape),
               max_value=info.max_value)
    for key in ("strategy", "mixed_precision"):
        if previous_run and previous_run.get(key, getattr(options, key)) != getattr(options, key):
            log(f"Note: {model_dir} was trained with --{key}={previous_run[key]}; continuing "
                f"with --{key}={getattr(options, key)} (same global batch, so the same "
                f"training, up to floating-point differences).")
    run.update(strategy=options.strategy, replicas=replicas,
               mixed_precision=options.mixed_precision, select=select,
               validation_max_images=options.validation_max_images,
               selection=_last_selection(options) if select == "last" else None)
    if chief:
        common.write_json_atomic(config_path, config_dict)
        common.write_json_atomic(os.path.join(model_dir, common.RUN_FILE), run)

    with _dtype_policy(options.mixed_precision), strategy.scope():
        model = vlae_tf.VLAE(config)
        model.compile()
        state = checkpoints.restore_latest(model, log)  # falls back past damaged ones
        if state is not None:
            initial_epoch = int(state["epoch"])
            log(f"Resuming {model_dir} from its checkpoint after epoch {initial_epoch} "
                f"(step {state['step']}).")
            if select == "best_validation":  # the best so far is in the state
                _repair_best_weights(model, model_dir, state, chief=chief)
        else:
            initial_epoch, state = 0, {"epoch": 0, "step": 0, "train_seconds": 0.0}
            if options.data_dependent_init:
                model.data_dependent_init(_data_init_images(train_stream()))
    if chief:
        _truncate_metrics(os.path.join(model_dir, common.METRICS_FILE), state["step"], log)

    total = epochs * steps_per_epoch
    log(f"Training {_describe(config)} on {options.dataset} ({data_steps} batches per pass "
        f"over the {options.train_on} split): {epochs} epochs x {steps_per_epoch} steps of batch "
        f"{options.batch_size} = {total:,} steps"
        + (f" (--steps={options.steps} rounded up to whole epochs)"
           if options.steps and total != options.steps else "")
        + (f", or fewer: no epoch is started that would end past {options.max_minutes:g} min"
           f" of training" if options.max_minutes else "")
        + (f"; {replicas} replicas ({options.strategy}) of {options.batch_size // replicas} "
           f"images each" if replicas > 1 or options.strategy != "default" else "")
        + (f"; {options.mixed_precision}" if options.mixed_precision != "none" else "")
        + f"; model_dir {model_dir}" + ("" if chief else " (written by the chief only)"))
    log("Selection: " + _describe_selection(select, options))
    budget_left = (options.max_minutes is None or state.get("train_seconds", 0.0)
                   + state.get("epoch_seconds", 0.0) <= 60.0 * options.max_minutes)
    trained = False
    if initial_epoch < epochs and budget_left:
        writer = (tf.summary.create_file_writer(
            os.path.join(model_dir, common.TENSORBOARD_DIR, "train")) if chief else None)
        originals = None
        if chief and options.image_every and config.use_latent:
            originals = pipelines.showcase_images(options.dataset, options.eval_split, 4,
                                                  options.data_dir, seed=config.seed)
        diagnostic_images = None
        if (chief and options.diagnostics_images and config.use_latent
                and config.iaf_steps == 0):
            diagnostic_images = pipelines.eval_images(options.dataset, "validation",
                                                      options.diagnostics_images,
                                                      options.data_dir, seed=config.seed)
        validation_images = None
        if chief and select == "best_validation":
            validation_images = pipelines.eval_images(options.dataset, "validation",
                                                      options.validation_max_images,
                                                      options.data_dir, seed=config.seed)
        callback = _TrainingLog(model_dir, checkpoints, state, options, steps_per_epoch,
                                writer, originals, log, diagnostic_images, chief=chief,
                                validation_images=validation_images)
        data = train_stream().skip(initial_epoch * steps_per_epoch)
        if options.strategy == "multi_worker":
            data = distribute.collective_friendly(data)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            model.fit(data, epochs=epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps_per_epoch, callbacks=[callback], shuffle=False,
                      verbose=_verbose(options.verbose))
        if writer is not None:
            writer.close()
        trained = True  # fit wrote the Polyak average into the weights at its end
    elif initial_epoch >= epochs:
        log(f"{model_dir} has already trained {initial_epoch} epochs (asked: {epochs}).")
    else:
        log(f"{model_dir} has used its --max_minutes={options.max_minutes:g} budget.")
    if not trained and state["step"] > 0:
        _load_last_weights(model, model_dir, state, chief, log)
    if not chief:  # the chief evaluates and writes eval.json
        return {"model_dir": model_dir, "epochs": state["epoch"], "step": state["step"],
                "train_seconds": state.get("train_seconds", 0.0),
                "train_metrics": state.get("metrics", {}), "eval": None}
    if trained:  # the checkpoint the run just committed (not trained: the restored one)
        state = checkpoints.latest() or state
    selection = common.load_run(model_dir).get("selection")
    if select == "best_validation" and state["step"] > 0:
        # Evaluate what evaluate / sample / export will load (the model holds the last
        # epoch's average).
        try:
            loading.load_weights(model, common.selected_weights(model_dir), config_path)
        except ValueError as error:  # DamagedFileError, ConfigMismatchError: one line
            raise LaunchError(str(error)) from None
        log(f"Evaluating the selected weights: epoch {selection['epoch']} (step "
            f"{selection['step']}), the best validation -ELBO "
            f"{selection['validation_negative_elbo_nats']:.2f} nats over "
            f"{selection['validation_images']} images.")
    final_eval = final_evaluation(model, options, state, log, selection=selection)
    return {"model_dir": model_dir, "epochs": state["epoch"], "step": state["step"],
            "train_seconds": state.get("train_seconds", 0.0),
            "train_metrics": state.get("metrics", {}), "eval": final_eval,
            "selection": selection}


# Images for the weight-norm data-dependent init. Dense layers take their statistics over
# the batch axis alone, so one image (variance 0) would scale them by 1/sqrt(1e-6) = 1000:
# at --batch_size=1 the KL was ~1e10 nats after 3 steps. Smaller batches are therefore
# concatenated up to this many images (from a fresh stream, not the training iterator, so
# the data order is unchanged); a batch at least this large is used alone, as before.
DATA_INIT_IMAGES = 32


def _data_init_images(stream) -> tf.Tensor:
    batches, count = [], 0
    for batch in stream:
        batches.append(batch)
        count += int(batch.shape[0])
        if count >= DATA_INIT_IMAGES:
            break
    return tf.concat(batches, axis=0)


def training_data(options: TrainOptions, seed: int, repeat: bool = False) -> tf.data.Dataset:
    """The training stream: batches of options.train_on ("train", or "train+validation" --
    the validation images rejoin train), its first max_train_examples images if given."""
    return pipelines.load(options.dataset, options.train_on, options.batch_size, seed=seed,
                          data_dir=options.data_dir, repeat=repeat,
                          max_examples=options.max_train_examples)


def _resolve_select(options: TrainOptions, previous_run: dict, model_dir: str) -> str:
    """--select -> "best_validation" or "last". "auto": best_validation when training on
    train, last on train+validation (nothing is held out). A resumed run keeps its choice
    (runs from before selection existed: last), since the epochs it has already trained
    were scored, or not, under it."""
    if options.train_on != "train":
        return "last"  # TrainOptions refuses best_validation there
    before = previous_run.get("select", "last") if previous_run else None
    select = (before or "best_validation") if options.select == "auto" else options.select
    if before is not None and select != before:
        raise LaunchError(f"{model_dir} was trained with --select={before}, not "
                          f"{options.select}: its earlier epochs were scored under it; "
                          f"use another --model_dir")
    if (before == "best_validation"
            and previous_run.get("validation_max_images") != options.validation_max_images):
        raise LaunchError(f"{model_dir} was trained with --validation_max_images="
                          f"{previous_run.get('validation_max_images')}, not "
                          f"{options.validation_max_images}: its best epoch was scored on "
                          f"those images; use another --model_dir")
    return select


def _last_selection(options: TrainOptions) -> dict:
    reason = ("--train_on=train+validation: no held-out images to select on"
              if options.train_on != "train" else "--select=last")
    return {"select": "last", "weights": common.WEIGHTS_FILE, "reason": reason}


def _describe_selection(select, options):
    if select == "last":
        return (f"evaluate / sample / export load the last epoch's weights "
                f"({common.WEIGHTS_FILE}; {_last_selection(options)['reason']}).")
    count = options.validation_max_images or "all"
    return (f"evaluate / sample / export load the epoch with the best validation ELBO "
            f"({common.BEST_WEIGHTS_FILE}; {count} validation images scored at each epoch "
            f"end).")


def _describe(config):
    window = "global" if config.window is None else f"{config.window[0]}x{config.window[1]}"
    return (f"a VLAE (window {window}, latent {config.latent_size if config.use_latent else 0}, "
            f"{config.prior} prior, {config.likelihood})")


def _verbose(value):
    value = str(value)
    if value == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(value)


def final_evaluation(model, options: TrainOptions, state: dict, log=print,
                     selection: Optional[dict] = None) -> dict:
    """ELBO on the eval split and importance-sampled NLL on a subset of it -> eval.json.

    `model` holds the weights to evaluate; `selection` (run.json's record of which ones:
    the best-validation epoch or the last) is stored with the result and is part of the
    settings, so a new best epoch is evaluated anew.

    Both use `pipelines.eval_images`' fixed random order: the ELBO its first eval_max_images
    (None: the whole split), the NLL the first eval_num_images of those.

    Reuses eval.json if it was computed for the same step with the same settings.
    """
    settings = {"split": options.eval_split, "max_images": options.eval_max_images,
                "is_num_images": options.eval_num_images,
                "num_importance_samples": options.eval_num_importance_samples,
                "seed": model.config.seed, "step": state["step"],
                "batch_size": options.eval_batch_size, "order": pipelines.EVAL_ORDER,
                "weights": (selection or {}).get("weights", common.WEIGHTS_FILE),
                "selected_step": (selection or {}).get("step", state["step"])}
    path = os.path.join(options.model_dir, common.EVAL_FILE)
    if os.path.exists(path):
        previous = common.read_json(path)
        if previous.get("settings") == settings:
            log(f"Evaluation of step {state['step']} already in {path}.")
            _print_evaluation(previous, log)
            return previous
    test_images = pipelines.eval_images(options.dataset, options.eval_split,
                                        options.eval_max_images, options.data_dir,
                                        seed=model.config.seed)
    log(f"Evaluating the Polyak-averaged model on {len(test_images)} {options.eval_split} "
        f"images...")
    result = {"settings": settings, "dataset": options.dataset, "epoch": state["epoch"],
              "weights": "polyak_average" if model.config.ema_momentum else "raw",
              "selection": selection,
              "elbo": evaluation.elbo_summary(model, test_images, seed=model.config.seed)}
    count = min(options.eval_num_images, len(test_images))
    if count and options.eval_num_importance_samples:
        log(f"Importance-sampled NLL with K={options.eval_num_importance_samples} on {count} of "
            f"those images:")
        result["importance_sampled"] = evaluation.importance_summary(
            model, test_images[:count], options.eval_num_importance_samples,
            batch_size=options.eval_batch_size, chunk_size=options.eval_chunk_size,
            seed=model.config.seed, progress=_verbose(options.verbose) != 0)
        result["importance_sampled"]["elbo_same_images"] = evaluation.elbo_summary(
            model, test_images[:count], seed=model.config.seed)["negative_elbo_nats"]
    common.write_json_atomic(path, result)
    writer = tf.summary.create_file_writer(
        os.path.join(options.model_dir, common.TENSORBOARD_DIR, "eval"))
    scalars = {f"eval/{key}": result["elbo"][key]
               for key in ("negative_elbo_nats", "bits_per_dim", "kl_nats", "recon_nats")}
    if "importance_sampled" in result:
        scalars["eval/is_nll_nats"] = result["importance_sampled"]["nll_nats"]
    summaries.write_scalars(writer, state["step"], scalars)
    writer.close()
    _print_evaluation(result, log)
    return result


def _print_evaluation(result, log=print):
    elbo = result["elbo"]
    log(f"{result['settings']['split']} ELBO over {elbo['num_images']} images: "
        f"-ELBO {elbo['negative_elbo_nats']:.2f} ± {elbo['negative_elbo_stderr']:.2f} nats "
        f"({elbo['bits_per_dim']:.4f} bits/dim), recon {elbo['recon_nats']:.2f}, "
        f"KL {elbo['kl_nats']:.2f} nats")
    if "importance_sampled" in result:
        nll = result["importance_sampled"]
        log(f"Importance-sampled NLL (K={nll['num_importance_samples']}, "
            f"{nll['num_images']} images): {nll['nll_nats']:.2f} ± {nll['nll_stderr']:.2f} nats "
            f"({nll['bits_per_dim']:.4f} bits/dim); -ELBO on the same images "
            f"{nll['elbo_same_images']:.2f}")


# ------------------------------------------------------------------------------------ flags
def define_flags(flag_values=flags.FLAGS) -> None:
    """Defines launch.train's flags (on absl's global FLAGS unless told otherwise)."""
    import vlae_tf.presets as presets
    names = presets.names()
    flags.DEFINE_enum("preset", None, names, "Named VLAEConfig (vlae_tf.presets).",
                      flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, list(pipelines.names()),
                      "Training data (default: the preset's usual dataset).",
                      flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "Where the run lives (default runs/<preset>). "
                        "Re-running with the same model_dir resumes.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 64, "Training batch size.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("epochs", None, f"Epochs to train (default {DEFAULT_EPOCHS}).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("steps", None, "Total training steps instead of --epochs (rounded up "
                         "to whole epochs).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("steps_per_epoch", None, "Steps between checkpoints (default: one "
                         "pass over the train split).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", None, "Seed of the model (VLAEConfig.seed) and of the data "
                         "order and binarization (default: the preset's, 0).",
                         flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: the source's).",
                        flag_values=flag_values)
    flags.DEFINE_integer("max_train_examples", None, "Use only the first N images of "
                         "--train_on (for train+validation: of the union, in source order).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum("train_on", "train", list(TRAIN_ON), "train: the train split (its "
                      "validation split held out); train+validation: both (the paper's final "
                      "retraining; nothing is held out, so --select=auto means last).",
                      flag_values=flag_values)
    flags.DEFINE_enum("select", "auto", list(SELECT_CHOICES), "Weights evaluate / sample / "
                      "export load: best_validation (the epoch whose Polyak-averaged weights "
                      "have the best validation ELBO, scored at each epoch end, kept as "
                      "best.weights.h5), last (model.weights.h5), auto (best_validation with "
                      "--train_on=train, last with train+validation; a resumed run keeps its "
                      "choice).", flag_values=flag_values)
    flags.DEFINE_integer("validation_max_images", None, "Validation images scoring each epoch "
                         "for --select=best_validation (a fixed random subset; default: all).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("log_every", 50, "Steps between metrics.jsonl/TensorBoard lines "
                         "(0: per epoch only).", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("image_every", 0, "Steps between TensorBoard grids of samples and "
                         "decompressions (0: never; each grid costs a full sampling run).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("image_num", 16, "Prior samples per TensorBoard grid.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("eval_split", "test", list(pipelines.SPLITS), "Split of the final "
                      "evaluation.", flag_values=flag_values)
    flags.DEFINE_integer("eval_max_images", None, "Images for the final ELBO (a fixed random subset; default: all).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("eval_num_images", 200, "Images for the final importance-sampled "
                         "NLL (the first of the ELBO's images; 0: skip).", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("eval_num_importance_samples", 256, "K of the final importance-"
                         "sampled NLL (paper: 4096 binary, 512 CIFAR).", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_integer("eval_chunk_size", None, "Importance samples per decoder pass.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("eval_batch_size", 10, "Images per importance-sampling call.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("max_minutes", None, "Training time budget: stop at the first epoch end"
                       " where one more epoch (as long as the last) would exceed it; counted "
                       "over resumptions.",
                       flag_values=flag_values)
    flags.DEFINE_integer("keep_checkpoints", 2, "Checkpoints kept in model_dir/checkpoints.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_boolean("data_dependent_init", True, "Weight-norm data-dependent init from "
                         "the first batch.", flag_values=flag_values)
    flags.DEFINE_integer("diagnostics_images", 256, "Validation images for the per-epoch "
                         "latent diagnostics (KL = MI + marginal KL, active units) in "
                         "metrics.jsonl; 0 disables (IAF posteriors: off).", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_string("sample_method", "auto", "Sampler for --image_every grids.",
                        flag_values=flag_values)
    flags.DEFINE_boolean("deterministic", False, "Deterministic TensorFlow ops (slower; makes "
                         "resumed GPU runs bit-identical too; CPU runs already are).",
                         flag_values=flag_values)
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras progress output.",
                      flag_values=flag_values)
    flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                      "default: one device; mirrored: all local GPUs (or --cpu_devices); "
                      "multi_worker: one process per machine, cluster from TF_CONFIG. "
                      "--batch_size stays the global batch.", flag_values=flag_values)
    flags.DEFINE_enum("mixed_precision", "none", list(PRECISIONS),
                      "Keras mixed-precision policy (likelihood, KL and flow log-dets stay "
                      "float32); mixed_float16 adds dynamic loss scaling.",
                      flag_values=flag_values)
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (replicas "
                         "of --strategy=mirrored without GPUs; for testing).", lower_bound=0,
                         flag_values=flag_values)
    common.define_config_flags(flag_values)
    flags.mark_flag_as_required("preset", flag_values=flag_values)


def config_and_options(flag_values=flags.FLAGS):
    """(VLAEConfig, TrainOptions) from parsed flags; LaunchError on bad combinations."""
    preset = flag_values.preset
    if flag_values.seed is not None:  # the data pipelines take no negative seed
        common.check_seed(flag_values.seed)
    config = common.make_config(preset, common.config_overrides(flag_values),
                                seed=flag_values.seed)
    dataset = flag_values.dataset or vlae_tf.presets.default_dataset(preset)
    if dataset is None:
        raise LaunchError(f"preset {preset!r} has no default dataset: give --dataset")
    fields = {field.name for field in dataclasses.fields(TrainOptions)} - {"dataset",
                                                                            "model_dir"}
    model_dir = flag_values.model_dir
    if model_dir is None:
        model_dir = os.path.join("runs", preset)
    elif not model_dir.strip():  # `--model_dir=` (an unset variable?) must not mean the default
        raise LaunchError(f"--model_dir: expected a directory path (or no --model_dir for "
                          f"runs/{preset}); got {model_dir!r}")
    options = TrainOptions(
        dataset=dataset, model_dir=model_dir,
        **{name: flag_values[name].value for name in fields})
    return config, options


def parse(argv, flag_values=None):
    """Parses a command line (argv[0] is the program) into (config, options); for tests."""
    if flag_values is None:
        flag_values = flags.FlagValues()
        define_flags(flag_values)
    flag_values(argv)
    return config_and_options(flag_values)


def main(argv, flag_values=None):
    del argv
    config, options = config_and_options(flag_values or flags.FLAGS)
    tf.get_logger().setLevel("WARNING")  # tf.distribute logs every all-reduce at INFO
    strategy = setup_runtime(options)  # before any other TensorFlow work
    common.sample_method(options.sample_method)
    try:
        train(config, options, strategy=strategy)
    except PEER_FAILURES as error:
        if options.strategy != "multi_worker":
            raise
        # The collectives are aborted for good in this process: only a restart of every
        # worker (same command) resumes, from the chief's last complete checkpoint.
        print(f"launch.train: error: lost contact with another worker "
              f"({type(error).__name__}: {str(error).splitlines()[0][:300]}). The last "
              f"checkpoint in {options.model_dir} is intact: restart every worker with the "
              f"same command (launch.supervise does this) and training resumes from it.",
              file=sys.stderr)
        sys.exit(PEER_FAILURE_EXIT_CODE)


if __name__ == "__main__":
    define_flags()
    app.run(common.run_main(main, "launch.train"))
