"""Evaluating a trained VLAE: per-image ELBO and importance-sampled NLL with standard errors.

For code that trains with `model.fit` and wants the numbers `launch.train` / `launch.evaluate`
report, computed by the same functions:

    with vlae_tf.evaluation.polyak_weights(model):          # evaluate the averaged weights
        elbo = vlae_tf.evaluation.elbo_summary(model, test_images)
        nll = vlae_tf.evaluation.importance_summary(model, test_images[:200], num_samples=128)

Units: log-likelihoods and their bounds are in **nats per image** (a sum over the
D = H·W·C dimensions of one image); `bits_per_dim` divides by D·ln 2.

* `per_image_elbo`, `elbo_summary`: the single-sample ELBO
  log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z)) ~= log p(x|z) + log p(z) - log q(z|x),
  z ~ q(z|x); reported as -ELBO = recon + KL, recon = -log p(x|z).
* `importance_summary`: the importance-sampled (IWAE) estimate of -log p(x) with K samples,
  -log p(x) ~= -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), an upper bound in expectation
  that tightens as K grows (K = 1 is the ELBO; see `importance_batch_seed`).
* `mean_and_stderr`: mean and standard error of the mean over images, s.d. / sqrt(N).
* `polyak_weights`: a context manager that swaps the optimizer's EMA (Polyak average) into
  the model and restores the raw training weights bit for bit.

Both summaries can return their per-image values (`return_per_image=True`) so that two
models scored on the same images can be compared pairwise.

This module imports only from below `model` (`vlae_tf.inputs`); it never imports
`pipelines` or `launch`: choosing and loading the images is the caller's business
(`pipelines.eval_images` gives the fixed evaluation order the launchers use).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from vlae_tf import estimators, inputs

# The chunking before memory budgets (decoder images per importance-sampling pass,
# batch_size * chunk_size); kept as a reference point for bench/is_memory.py.
DECODER_IMAGES_PER_PASS = 1024


def bits_per_dim(nats_per_image, config) -> float:
    """nats per image -> bits per dimension: nats / (H·W·C · ln 2)."""
    return float(nats_per_image) / (config.num_dims * math.log(2.0))


def mean_and_stderr(values) -> Tuple[float, float]:
    """(mean, standard error of the mean) of per-image values, in float64.

    s.e. = s / sqrt(N) with the sample standard deviation s (ddof=1); 0.0 for one value.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("values: expected at least one value; got an empty array")
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), stderr


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1; got {value!r}")
    return int(value)


def _check_images(images):
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images: expected a non-empty batch [N, H, W, C]; got shape "
                         f"{images.shape}")
    return images


def _compiled_elbo(model):
    """One traced `model.elbo` per model, cached on it (retraced only per batch shape)."""
    function = getattr(model, "_evaluation_elbo_function", None)
    if function is None:
        function = tf.function(lambda images, seed: model.elbo(images, seed),
                               reduce_retracing=True)
        model._evaluation_elbo_function = function
    return function


def per_image_elbo(model, images, batch_size: int = 256, seed: int = 0) -> Dict[str, np.ndarray]:
    """Per-image {"elbo", "recon", "kl"} in nats, as float32 numpy arrays [N].

    elbo = -(recon + kl), recon = -log p(x|z), kl = log q(z|x) - log p(z), for one
    z ~ q(z|x) per image. Every batch of `batch_size` images uses the same seed
    (`inputs.make_seed(seed)`), so the values depend on (seed, batch_size).
    """
    images = _check_images(images)
    batch_size = _check_count("batch_size", batch_size)
    function = _compiled_elbo(model)
    seed_tensor = inputs.make_seed(int(seed))
    parts = {"elbo": [], "recon": [], "kl": []}
    for start in range(0, len(images), batch_size):
        terms = function(tf.constant(images[start:start + batch_size]), seed_tensor)
        for key in parts:
            parts[key].append(terms[key].numpy())
    return {key: np.concatenate(value) for key, value in parts.items()}


def elbo_summary(model, images, batch_size: int = 256, seed: int = 0,
                 return_per_image: bool = False):
    """Mean -ELBO (nats per image, with its standard error), recon, KL and bits/dim.

    Returns {"num_images", "negative_elbo_nats", "negative_elbo_stderr", "recon_nats",
    "kl_nats", "bits_per_dim", "seed"}; with `return_per_image=True` the pair
    (summary, per_image_elbo(...)'s arrays).
    """
    terms = per_image_elbo(model, images, batch_size, seed)
    summary = elbo_terms_summary(terms, model.config, seed)
    return (summary, terms) if return_per_image else summary


def elbo_terms_summary(terms, config, seed: int = 0) -> dict:
    """`elbo_summary`'s dict from per-image float32 {"elbo", "recon", "kl"} arrays (e.g.
    merged from shards: the same values in the same order give the same summary)."""
    terms = {key: np.asarray(terms[key], np.float32) for key in ("elbo", "recon", "kl")}
    negative_elbo, stderr = mean_and_stderr(-terms["elbo"])
    return {
        "num_images": int(len(terms["elbo"])),
        "negative_elbo_nats": negative_elbo,
        "negative_elbo_stderr": stderr,
        "recon_nats": float(np.mean(terms["recon"])),
        "kl_nats": float(np.mean(terms["kl"])),
        "bits_per_dim": bits_per_dim(negative_elbo, config),
        "seed": int(seed),
    }


def importance_batch_seed(seed: int, start: int) -> tf.Tensor:
    """The seed of the importance-sampling batch whose first image is images[start].

    Each batch draws its own noise, [seed, start], so results are reproducible for the
    same (seed, K, batch_size) and do not depend on chunk_size. `start` is the index in
    the whole evaluation order (`importance_summary`'s first_index + position), so a
    shard made of whole batches draws exactly the noise the single run draws. With K = 1 a batch's
    estimate is exactly `model.elbo(batch, seed=importance_batch_seed(seed, start))`.
    """
    return tf.constant([int(seed), int(start)], tf.int32)


def importance_summary(model, images, num_samples: int, batch_size: int = 10,
                       chunk_size: Optional[int] = None, seed: int = 0,
                       progress: bool = True, return_per_image: bool = False,
                       memory_budget_gb: Optional[float] = None, first_index: int = 0,
                       replicas: Optional[Sequence[Tuple[Optional[str], object]]] = None):
    """Importance-sampled NLL -log p(x) (nats per image, with its standard error), K samples.

    Images go `batch_size` at a time through `model.importance_log_likelihood`, whose
    samples go `chunk_size` at a time (memory ~ batch_size * chunk_size decoder images).
    chunk_size None: the largest that fits `memory_budget_gb` (GB of peak resident memory
    of the process; None: `estimators.default_memory_budget_gb()`), measured once on the
    first batch (`estimators.budget_chunk_size`). `progress`: a keras Progbar with the
    running NLL and an ETA (False: silent).

    `first_index`: the index of images[0] in the whole evaluation order; the batch starting
    at images[s] is seeded `importance_batch_seed(seed, first_index + s)`, so a shard of
    whole batches (first_index a multiple of batch_size) gives the single run's values.
    `replicas`: (device, model) pairs, e.g. one model per GPU or logical CPU; batch b goes
    to replica b mod len(replicas), each in its own thread under tf.device(device); the
    per-image values are those of one device (same batches, same seeds). The memory
    budget is shared among the replicas (host memory).

    Returns {"num_images", "num_importance_samples", "nll_nats", "nll_stderr",
    "bits_per_dim", "chunk_size", "seed", "memory_budget_gb"} (the budget None when
    chunk_size was given); with `return_per_image=True` the pair
    (summary, {"nll": float64 [N] per-image -log p(x) estimates}).
    """
    images = _check_images(images)
    num_samples = _check_count("num_samples", num_samples)
    batch_size = _check_count("batch_size", batch_size)
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)) \
            or first_index < 0:
        raise ValueError(f"first_index: expected an int >= 0; got {first_index!r}")
    budget = estimators.check_memory_budget(memory_budget_gb)
    replicas = [(None, model)] if replicas is None else list(replicas)
    if not replicas:
        raise ValueError("replicas: expected at least one (device, model) pair or None; "
                         "got an empty list")
    if chunk_size is None:
        budget = estimators.default_memory_budget_gb() if budget is None else budget
        device, first_model = replicas[0]
        with _on(device):
            chunk_size = estimators.budget_chunk_size(
                first_model, images[:batch_size], num_samples, budget / len(replicas),
                seed=importance_batch_seed(seed, first_index))["chunk_size"]
    else:
        budget = None
    chunk_size = _check_count("chunk_size", chunk_size)
    # nll_nats is stateful: we pass the running mean itself. Progbar would otherwise
    # average the values it is given (weighted by images), a mean of running means.
    progbar = keras.utils.Progbar(len(images), unit_name="image",
                                  stateful_metrics=["nll_nats"]) if progress else None
    done = {}

    def record(start, values):
        done[start] = values
        if progbar is not None:
            running = -float(np.mean(np.concatenate(list(done.values()))))
            progbar.add(len(values), values=[("nll_nats", running)])

    def batch_values(replica_model, start):
        return replica_model.importance_log_likelihood(
            images[start:start + batch_size], num_samples, chunk_size=chunk_size,
            seed=importance_batch_seed(seed, first_index + start)).numpy()

    starts = list(range(0, len(images), batch_size))
    if len(replicas) == 1:
        device, replica_model = replicas[0]
        with _on(device):
            for start in starts:
                record(start, batch_values(replica_model, start))
    else:
        _run_on_replicas(replicas, starts, batch_values, record)
    nll_values = -np.concatenate([done[start] for start in starts]).astype(np.float64)
    summary = importance_values_summary(nll_values, num_samples, model.config, chunk_size,
                                        seed)
    summary["memory_budget_gb"] = budget
    return (summary, {"nll": nll_values}) if return_per_image else summary


def importance_values_summary(nll_values, num_samples: int, config, chunk_size: int,
                              seed: int) -> dict:
    """`importance_summary`'s dict from per-image -log p(x) values (float64, image order):
    merging shards' values gives the single run's summary exactly."""
    nll_values = np.asarray(nll_values, np.float64)
    nll, stderr = mean_and_stderr(nll_values)
    return {
        "num_images": int(len(nll_values)),
        "num_importance_samples": int(num_samples),
        "nll_nats": nll,
        "nll_stderr": stderr,
        "bits_per_dim": bits_per_dim(nll, config),
        "chunk_size": int(chunk_size),
        "seed": int(seed),
    }


def _on(device):
    return tf.device(device) if device else contextlib.nullcontext()


def _run_on_replicas(replicas, starts, batch_values, record):
    """Batch starts[b] on replica b mod R, one thread per replica (TensorFlow releases
    the GIL while it computes); results are recorded in the calling thread as they come."""
    results = queue.Queue()

    def work(device, replica_model, mine):
        try:
            with _on(device):
                for start in mine:
                    results.put((start, batch_values(replica_model, start), None))
        except BaseException as error:  # handed to the caller, which re-raises it
            results.put((None, None, error))

    threads = [threading.Thread(target=work, daemon=True,
                                args=(device, replica_model, starts[index::len(replicas)]))
               for index, (device, replica_model) in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for _ in starts:
        start, values, error = results.get()
        if error is not None:
            raise error
        record(start, values)
    for thread in threads:
        thread.join()


# ----------------------------------------------------------------------- Polyak averaging
def ema_optimizer(model):
    """The optimizer holding the EMA, looking through wrappers (e.g. the LossScaleOptimizer
    that skips non-finite steps); None without an optimizer or without EMA."""
    optimizer = getattr(model, "optimizer", None)
    for _ in range(4):  # wrappers nest at most a few deep; avoids looping on a cycle
        if optimizer is None:
            return None
        if getattr(optimizer, "use_ema", False):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def training_state(model) -> Dict[str, float]:
    """Non-trainable training state worth logging (soft free bits' gamma, skipped steps) and
    the schedules' values at the last step taken (`VLAE.schedule_values`: the free-bits
    floor `free_bits_lambda` when free bits are on, the capacity `capacity_nats`, the KL
    weight `kl_weight` = beta x warm-up when not constant 1)."""
    values = {}
    for name in ("soft_kl_weight", "nonfinite_steps"):
        variable = getattr(model, name, None)
        if variable is not None and hasattr(variable, "numpy"):
            values[name] = float(variable.numpy())
    schedules = getattr(model, "schedule_values", None)
    if callable(schedules):
        values.update(schedules())
    return values


@contextlib.contextmanager
def polyak_weights(model):
    """Within the block the model holds the optimizer's EMA (Polyak-averaged) weights.

    Keras writes the averages into the model only at the end of `fit`; this evaluates
    them at any time (e.g. in a callback) without disturbing training. The raw training
    weights are copied out before and assigned back after, bit for bit, also when the
    block raises. Yields True if weights were swapped (False: no optimizer, no EMA, or no
    training step taken yet, when the averages are still the initial weights).
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
