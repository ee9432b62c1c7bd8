"""Importance-sampled marginal log-likelihood, in chunks with bounded memory.

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)   (Burda et al. 2016)

The estimate is a stochastic lower bound on log p(x) that tightens as K grows; K = 1 is the
single-sample ELBO (the same draw as `VLAE.elbo` with the same seed). Samples are processed
`chunk_size` at a time and folded into a running logsumexp, so memory is
O(chunk_size * batch) whatever K is. Sample k's noise depends only on (seed, k), so the
result does not depend on chunk_size.

Without an explicit chunk_size, the chunk is derived from a memory budget
(`budget_chunk_size`): the peak resident memory (RSS) of one small measured chunk gives the
bytes per decoder image (one image x one sample), and the chunk is the largest that keeps
baseline RSS + safety x bytes x batch x chunk within the budget (default: 1/8 of the
machine's physical memory, at least 1 GB; `default_memory_budget_gb`).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from vlae_tf import inputs

DEFAULT_CHUNK_SIZE = 64  # fallback where peak RSS cannot be measured (no /proc)

# The default memory budget: this fraction of physical memory (at least 1 GB). A CPU pass
# gets no faster beyond ~1000 decoder images (bench/is_memory.py), and machines are shared.
DEFAULT_MEMORY_FRACTION = 0.125
# Peak RSS grows with the chunk about linearly, but allocator reuse makes the measured
# probe an underestimate by up to ~1/3 (bench/results/is_memory.json): a margin.
MEMORY_SAFETY_FACTOR = 1.5
# The measuring probe runs about this many decoder images (at least one sample); with
# K x batch at most this many, all K samples go in one pass without measuring. A probe
# whose peak rose by less than PROBE_MIN_BYTES (allocator noise is a few MB) is repeated
# 4x larger, up to PROBE_MAX_DECODER_IMAGES decoder images.
PROBE_DECODER_IMAGES = 64
PROBE_MIN_BYTES = 64 * 2 ** 20
PROBE_MAX_DECODER_IMAGES = 1024


def sample_noise(seed, sample_index, shape):
    """The noise of importance sample k depends only on (seed, k): results do not depend
    on chunk_size, and sample 0 is the draw `VLAE.elbo(x, seed)` uses."""
    sample_seed = tf.cond(
        sample_index > 0,
        lambda: tf.random.experimental.stateless_fold_in(seed, sample_index),
        lambda: seed)
    return tf.random.stateless_normal(shape, sample_seed)


def _chunk_log_weights(model, images, posterior, seed, start, num_in_chunk):
    """log w = log p(x|z) + log p(z) - log q(z|x) for samples start..start+k-1: [k, B]."""
    batch = tf.shape(images)[0]
    noise_size = model.noise_size  # latent_size (+ top_latent_size with two layers)
    eps = tf.map_fn(lambda index: sample_noise(seed, index, tf.stack([batch, noise_size])),
                    tf.range(start, start + num_in_chunk),
                    fn_output_signature=tf.TensorSpec([None, noise_size], tf.float32))
    eps = tf.reshape(eps, [-1, noise_size])

    def tile(tensor):  # [B, ...] -> [k*B, ...], sample-major to match eps
        return tf.reshape(tf.tile(tensor[None], [num_in_chunk] + [1] * tensor.shape.rank),
                          [-1] + tensor.shape[1:].as_list())

    # z ~ q(z|x) (+ IAF) and log p(z); two layers: z1, z2 ~ q and log p(z1, z2).
    z, log_q, log_p_z, _ = model._latent_log_densities(
        [tile(tensor) for tensor in posterior], eps)
    values = tile(tf.cast(images, tf.float32))
    params = model.pixelcnn([inputs.scale(model.config, values), model.latent_map(z)])
    log_p_x_given_z = tf.reduce_sum(model.likelihood.log_prob(params, values), axis=[1, 2])
    return tf.reshape(log_p_x_given_z + log_p_z - log_q, [num_in_chunk, batch])


def importance_log_likelihood(model, images, num_samples, chunk_size=None, seed=None,
                              memory_budget_gb=None):
    """Per-image log p(x) estimate in nats, [B] float32. See the module docstring.

    `chunk_size`: samples per decoder pass; None: `budget_chunk_size` with
    `memory_budget_gb` (None: `default_memory_budget_gb()`). An explicit chunk_size wins.
    """
    if not _is_count(num_samples):  # numpy integers count; bools do not
        raise ValueError(f"num_samples: expected an int >= 1; got {num_samples!r}")
    num_samples = int(num_samples)
    if chunk_size is not None and not _is_count(chunk_size):
        raise ValueError(f"chunk_size: expected an int >= 1 or None; got {chunk_size!r}")
    memory_budget_gb = check_memory_budget(memory_budget_gb)
    images = inputs.check_images(model.config, images)
    seed = inputs.make_seed(model.config.seed if seed is None else seed)
    if not model.config.use_latent:  # no latent: the likelihood is exact
        return model.elbo(images)["elbo"]
    if chunk_size is None:
        chunk_size = budget_chunk_size(model, images, num_samples, memory_budget_gb)["chunk_size"]
    chunk_size = min(int(chunk_size), num_samples)

    function = _compiled_chunk(model)
    posterior = model.encoder(inputs.scale(model.config, images))
    total = None
    for start in range(0, num_samples, chunk_size):
        num_in_chunk = min(chunk_size, num_samples - start)
        log_weights = function(images, posterior, seed, tf.constant(start),
                               tf.constant(num_in_chunk))
        chunk_total = tf.reduce_logsumexp(log_weights, axis=0)
        total = chunk_total if total is None else tf.reduce_logsumexp(
            tf.stack([total, chunk_total]), axis=0)
    return total - math.log(num_samples)


def _is_count(value) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and value >= 1)


def _compiled_chunk(model):
    """One tf.function per model (retraced only per chunk length)."""
    function = getattr(model, "_importance_chunk_function", None)
    if function is None:
        function = tf.function(
            lambda images, posterior, seed, start, num: _chunk_log_weights(
                model, images, posterior, seed, start, num),
            reduce_retracing=True)
        model._importance_chunk_function = function
    return function


# --------------------------------------------------------------------- the memory budget
def check_memory_budget(memory_budget_gb):
    """None or a positive finite number of GB (ValueError otherwise)."""
    if memory_budget_gb is None:
        return None
    if isinstance(memory_budget_gb, (bool, np.bool_)) or not isinstance(
            memory_budget_gb, numbers.Real) or not 0 < float(memory_budget_gb) < math.inf:
        raise ValueError(f"memory_budget_gb: expected a number of GB > 0 or None; got "
                         f"{memory_budget_gb!r}")
    return float(memory_budget_gb)


def physical_memory_bytes() -> Optional[int]:
    """The machine's physical memory (os.sysconf), None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget_gb() -> float:
    """DEFAULT_MEMORY_FRACTION (1/8) of physical memory, at least 1 GB (4 GB if unknown)."""
    physical = physical_memory_bytes()
    if not physical:
        return 4.0
    return max(1.0, round(DEFAULT_MEMORY_FRACTION * physical / 2 ** 30, 1))


def _status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_bytes() -> Optional[int]:
    """This process' resident memory now (Linux /proc/self/status VmRSS), else None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_increase(function) -> Optional[int]:
    """Runs function(); returns how far its peak RSS rose above the RSS before it, in
    bytes. Linux: writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the
    current RSS, so the peak of this call alone is read (TF reports no allocator
    statistics for the CPU). None where that is unavailable (function() still runs)."""
    before = resident_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        before = None
    function()
    peak = _status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak * 1024 - before)


def chunk_size_for_budget(budget_bytes: float, baseline_bytes: float,
                          bytes_per_decoder_image: float, batch_size: int,
                          num_samples: int) -> int:
    """The largest chunk c in [1, num_samples] with
    baseline + MEMORY_SAFETY_FACTOR * bytes_per_decoder_image * batch_size * c <= budget
    (1 when not even one sample fits: the budget is a target, not a guarantee)."""
    per_sample = MEMORY_SAFETY_FACTOR * max(1.0, float(bytes_per_decoder_image)) * batch_size
    chunk = int((float(budget_bytes) - float(baseline_bytes)) // per_sample)
    return max(1, min(int(num_samples), chunk))


def decoder_image_bytes(model, images, seed=0) -> Optional[float]:
    """Measured peak RSS per decoder image (one image x one importance sample) of the
    compiled chunk on this batch, in bytes; cached on the model per batch shape (the
    memory does not depend on the weights). A warm-up chunk of one sample traces the
    function; the measured chunk has about PROBE_DECODER_IMAGES decoder images, more for
    models too small to measure that way (PROBE_MIN_BYTES). None where peak RSS cannot be
    measured."""
    images = inputs.check_images(model.config, images)
    cache = model.__dict__.setdefault("_importance_image_bytes", {})
    key = tuple(images.shape)
    if key not in cache:
        batch = int(images.shape[0])
        probe = max(1, PROBE_DECODER_IMAGES // batch)
        function = _compiled_chunk(model)
        posterior = model.encoder(inputs.scale(model.config, images))
        seed = inputs.make_seed(seed)

        def run(num):
            np.asarray(function(images, posterior, seed, tf.constant(0), tf.constant(num)))
        run(1)  # traces; the graph's own memory is not the chunk's
        while True:
            increase = peak_rss_increase(lambda: run(probe))
            larger = min(4 * probe, max(1, PROBE_MAX_DECODER_IMAGES // batch))
            if increase is None or increase >= PROBE_MIN_BYTES or larger <= probe:
                break
            probe = larger  # too little to tell from the allocator's noise: measure more
        cache[key] = None if not increase else increase / (probe * batch)
    return cache[key]


def budget_chunk_size(model, images, num_samples: int, memory_budget_gb=None,
                      seed=0) -> dict:
    """The chunk size `importance_log_likelihood` uses for this batch without an explicit
    one: {"chunk_size", "memory_budget_gb", "bytes_per_decoder_image", "baseline_bytes",
    "how"}. See the module docstring; "how" says which rule chose it ("all samples": K x
    batch <= PROBE_DECODER_IMAGES; "budget"; "default" where RSS cannot be measured)."""
    num_samples = int(num_samples)
    budget = check_memory_budget(memory_budget_gb)
    budget = default_memory_budget_gb() if budget is None else budget
    images = inputs.check_images(model.config, images)
    batch = int(images.shape[0])
    info = {"memory_budget_gb": budget, "bytes_per_decoder_image": None,
            "baseline_bytes": None}
    if num_samples * batch <= PROBE_DECODER_IMAGES:
        info.update(chunk_size=num_samples, how="all samples")
    else:
        per_image = decoder_image_bytes(model, images, seed)
        baseline = resident_bytes()
        if per_image is None or baseline is None:
            info.update(chunk_size=min(num_samples, DEFAULT_CHUNK_SIZE), how="default")
        else:
            chunk = chunk_size_for_budget(budget * 2 ** 30, baseline, per_image, batch,
                                          num_samples)
            info.update(chunk_size=chunk, how="budget", bytes_per_decoder_image=per_image,
                        baseline_bytes=baseline)
    logging.info("importance sampling: chunk_size=%d for %d images (%s; budget %.2f GB, "
                 "%s bytes per decoder image)", info["chunk_size"], batch, info["how"],
                 budget, info["bytes_per_decoder_image"])
    return info
