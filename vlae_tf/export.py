"""SavedModel export with serving signatures, for TF Serving and `tf.saved_model.load`.

    version_dir = vlae_tf.export.export_saved_model(model, "exports/vlae")  # exports/vlae/1

Layout, as TF Serving expects: `<export_dir>/<version>/` (version = an integer; by default
one more than the largest existing version, 1 for a new directory) holding
`saved_model.pb`, `variables/` and `assets.extra/vlae_export.json` (the model config and the
signature table; TF Serving ignores `assets.extra`). A version is written to a hidden
temporary directory and renamed into place, so a server polling `<export_dir>` never sees a
half-written version.

Signatures (all inputs are batch-major, so TF Serving's REST "instances" row format works;
the model's image shape is (H, W, C) and its latent size D):

| name | inputs | outputs |
|---|---|---|
| `elbo` (= `serving_default`) | images uint8 [B,H,W,C] | elbo, recon, kl float32 [B] (nats) |
| `log_likelihood` | images, num_samples int32 [B] | log_likelihood float32 [B] (nats) |
| `encode` | images | mean, scale float32 [B,D] (+ mean_map, scale_map [B,h,w,c] with a latent_shape) |
| `decompress` | images, seed int32 [B,2], temperature float32 [B] | images uint8 [B,H,W,C] |
| `sample` | num int32 [N], seed int32 [N,2], temperature float32 [N] | images uint8 [num,H,W,C] |

With two latent layers (config.latent_layers=2) `encode` also returns top_mean, top_scale
[B, top_latent_size]: q(z2 | z1) at z1 = the mean of q(z1|x) (`vlae_tf.hierarchy.encode_layers`);
mean/scale are q(z1|x), D = latent_size is z1's size, and `sample` draws z2 ~ p(z2), z1 ~ p(z1|z2).

`serving_default` is `elbo`: what `model(images)` computes, one cheap deterministic pass.

The per-request parameters (num_samples, seed, temperature, num) are passed once per
instance so that the row format can carry them; a request is evaluated with one value of
each, so every instance must carry the same value. A request may also pass a single value
(shape [1] instead of [B]), e.g. with the columnar "inputs" format or gRPC. The numbers are the Keras
model's for the same arguments: `elbo` = `model.elbo(images)`, `log_likelihood` =
`model.importance_log_likelihood(images, K, chunk_size)` (the default seed), `encode` =
`model.encode(images)` (all three within float rounding, ~1e-6 relative: the library runs
eagerly, the SavedModel as an optimised graph), `sample` = `model.sample(num, seed,
temperature, method="naive")` and `decompress` = `model.decompress(images, seed,
temperature, method="naive")`, where an int seed `s` of the library is the int32[2] seed
`[s, 24301]` (`vlae_tf.inputs.make_seed`). The draws are the reference sampler's (the
cached sampler with `exact=True`, without XLA, draws the same bits faster), so they are
the same images as long as float rounding does not decide a draw: bit-identical in the
tests for Bernoulli models; a logistic mixture's continuous draws are rounded to 8-bit
bins, so a 1e-7 difference (e.g. the library's eager encoder against the SavedModel's
graph) can move one across a bin edge, and the autoregressive draws after it diverge. One
export always gives the same images for the same seed, in every process.

Inputs are validated: the dtype by the signature itself (its TensorSpecs); rank and size
by `tf.ensure_shape` on every input, first thing in the graph (a loaded signature, like a
server feeding the graph, does not check shapes itself), e.g. "Shape of tensor images
[3,4,8,1] is not compatible with expected shape [?,8,8,1]"; value ranges (pixel values,
at least one image, num_samples >= 1, num >= 1, finite temperature > 0, one value per
request) by `tf.debugging` assertions whose messages say what was expected, e.g.
"num_samples: expected an int >= 1; got [0]".

Requests are bounded by limits fixed at export time (`export_saved_model(max_images=,
max_num=, max_num_samples=)`, `launch.export --max_images ...`; defaults: `default_limits`):
at most max_images images per elbo / log_likelihood / encode / decompress request, at most
max_num images per sample request and at most max_num_samples importance samples per
log_likelihood request. log_likelihood also shrinks its chunk for large requests so that a
decoder pass never holds more than max(batch, max_images) images (the numbers do not depend
on the chunk). A request over a limit fails, before any work, with an InvalidArgumentError
naming the argument, the limit and the value, e.g. "num: expected at most 64 images per
request (limit max_num, fixed at export); got [1000000]", and the server answers the next
request.
The limits are in `assets.extra/vlae_export.json` ("limits") and in the SavedModel itself:
`tf.saved_model.load(path).limits()` -> {"max_images": ..., ...} (int32 scalars).

Monte Carlo outputs are deterministic: the ELBO's and log_likelihood's noise for image i
depends on the model's seed (config.seed) and on i's position in the request, as in the
library; repeating a request repeats the numbers.

The SavedModel contains only TensorFlow ops and variables: loading it needs neither
vlae_tf nor TensorFlow Probability (tested in a fresh process).
"""

from __future__ import annotations

import errno
import functools
import json
import math
import numbers
import os
import re
import shutil
import tempfile
from typing import Callable, Dict, Optional, Tuple

import keras
import tensorflow as tf

from vlae_tf import estimators
from vlae_tf import inputs
from vlae_tf.inputs import make_seed

DEFAULT_SIGNATURE = "elbo"
SIGNATURES = ("elbo", "log_likelihood", "encode", "decompress", "sample")
EXPORT_INFO_FILE = "vlae_export.json"
_VERSION_PATTERN = re.compile(r"^\d+$")
# Per-request limits, fixed at export time (BUILD_NOTES, "Request limits of the SavedModel").
LIMITS = ("max_images", "max_num", "max_num_samples")
DEFAULT_MAX_NUM_SAMPLES = 4096  # the paper's K for binary data; time grows linearly in K
# Memory of one request: images per decoder pass x the decoder's bytes per image. The
# defaults of max_images / max_num keep a pass under DEFAULT_REQUEST_BYTES (see
# default_limits), within [MIN_DEFAULT_IMAGES, MAX_DEFAULT_IMAGES].
DEFAULT_REQUEST_BYTES = 1 << 30
MIN_DEFAULT_IMAGES, MAX_DEFAULT_IMAGES = 16, 1024
_INT32_MAX = 2 ** 31 - 1


# ------------------------------------------------------------------------------ versions
def existing_versions(export_dir: str) -> list:
    """Sorted integer versions (numeric subdirectories) under `export_dir`."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if _VERSION_PATTERN.match(name) and os.path.isdir(os.path.join(export_dir, name)))


def latest_version_dir(export_dir: str) -> str:
    """`<export_dir>/<largest version>`: the version TF Serving serves by default."""
    versions = existing_versions(export_dir)
    if not versions:
        raise FileNotFoundError(f"export_dir: expected numeric version subdirectories "
                                f"(<export_dir>/<version>/saved_model.pb) in {export_dir!r}; "
                                f"found none")
    return os.path.join(export_dir, str(versions[-1]))


_NOT_WRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class ExportDirError(PermissionError):
    """`export_dir` cannot be written (read-only file system, no permission, not a
    directory); the message names it and says what was expected."""

    def __init__(self, export_dir: str, reason):
        if isinstance(reason, BaseException):
            lines = str(reason).strip().splitlines()
            text = (getattr(reason, "strerror", None) or getattr(reason, "message", None)
                    or (lines[0] if lines else type(reason).__name__))
            where = getattr(reason, "filename", None)
            reason = f"{text} ({where})" if where else text
        self.message = (f"export_dir: expected a directory this process can write (the "
                        f"SavedModel goes to <export_dir>/<version>/); {export_dir!r}: "
                        f"{reason}")
        super().__init__(errno.EACCES, self.message, export_dir)

    def __str__(self):
        return self.message


def check_export_dir(export_dir: str) -> None:
    """ExportDirError now if `export_dir` (or, when it does not exist yet, the directory
    it would be created in) is not a writable directory: before minutes of tracing.
    (`os.access`; a write that fails anyway is reported the same way by export_saved_model.)"""
    if not export_dir:
        raise ExportDirError(export_dir, "empty path")
    path = os.path.abspath(export_dir)
    while not os.path.exists(path):  # the first existing ancestor is where it is created
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise ExportDirError(export_dir, f"{path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_mount(path) else "no write permission"
        raise ExportDirError(export_dir, f"{why} ({path})")


def _read_only_mount(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


# ------------------------------------------------------------------------- request limits
def decoder_bytes_per_image(model) -> int:
    """An estimate of the memory one image takes in a decoder pass: 8 bytes (float64, the
    samplers' precision; the ELBO's float32 pass takes half) per pixel per output channel
    of every convolution of the PixelCNN. The measured peak memory of a float32 ELBO pass
    was 0.66-0.81 of half this (mnist_cpu, mnist_gated, mnist_paper, cifar10_cpu,
    cifar10_gated; BUILD_NOTES, "Request limits of the SavedModel")."""
    height, width, _ = model.config.image_shape
    model.build()
    channels = sum(int(weight.shape[-1]) for weight in model.pixelcnn.weights
                   if len(weight.shape) == 4)
    return 8 * height * width * max(channels, 1)


def default_limits(model) -> Dict[str, int]:
    """The limits `export_saved_model` uses when not given: max_images = max_num = the
    largest power of two whose decoder pass fits in DEFAULT_REQUEST_BYTES (1 GiB) by
    `decoder_bytes_per_image`, within [16, 1024] (mnist_cpu: 64, cifar10_gated: 16);
    max_num_samples = 4096."""
    fits = max(1, DEFAULT_REQUEST_BYTES // decoder_bytes_per_image(model))
    images = min(MAX_DEFAULT_IMAGES, max(MIN_DEFAULT_IMAGES, 1 << (fits.bit_length() - 1)))
    return {"max_images": images, "max_num": images,
            "max_num_samples": DEFAULT_MAX_NUM_SAMPLES}


def resolve_limits(model, **limits) -> Dict[str, int]:
    """{max_images, max_num, max_num_samples}: the given values (ints in [1, 2**31 - 1];
    numpy integers count), `default_limits(model)` for those that are None."""
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise ValueError(f"unknown request limit(s) {unknown}; valid: {', '.join(LIMITS)}")
    resolved = None
    for name in LIMITS:
        value = limits.get(name)
        if value is None:
            resolved = resolved or default_limits(model)
            limits[name] = resolved[name]
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not 1 <= value <= _INT32_MAX:
            raise ValueError(f"{name}: expected an int in [1, {_INT32_MAX}] (a per-request "
                             f"limit of the SavedModel) or None for the default; got {value!r}")
        limits[name] = int(value)
    return {name: limits[name] for name in LIMITS}


# --------------------------------------------------------------------- graph validation
def _check_images(model, images, max_images=None):
    """int32 images with in-graph checks: at least one image (at most `max_images`), values
    in [0, max_value]."""
    height, width, channels = model.config.image_shape
    count = tf.shape(images)[0]
    checks = [tf.debugging.assert_positive(
        count,
        message=f"images: expected at least one image, shape [batch >= 1, {height}, {width}, "
                f"{channels}]")]
    if max_images is not None:
        checks.append(tf.debugging.Assert(
            count <= max_images,
            [f"images: expected at most {max_images} images per request (limit max_images, "
             f"fixed at export); got", count]))
    with tf.control_dependencies(checks):
        return inputs.check_images(model.config, tf.identity(images))  # value range, in-graph assertion


def _request_value(values, name, expected, batch=None, limit=None):
    """The one value of a per-request parameter given once per instance ([N] or [N, 2]).

    Asserts, in this order: N >= 1; N == 1 or N == batch (when `batch` is given); every
    value satisfies `expected` = (condition, description); every value is at most `limit`
    = (maximum, description of the unit, name of the export's limit); all N values are
    equal. Returns values[0].
    """
    count = tf.shape(values)[0]
    checks = [tf.debugging.Assert(
        count >= 1, [f"{name}: expected one value per request (shape [1]) or one per "
                     f"instance; got none"])]
    if batch is not None:
        checks.append(tf.debugging.Assert(
            tf.logical_or(tf.equal(count, 1), tf.equal(count, batch)),
            [f"{name}: expected one value per request (shape [1]) or one per image "
             f"(shape [batch]); got this many values:", count, "for this many images:",
             batch]))
    if expected is not None:
        condition, text = expected
        checks.append(tf.debugging.Assert(
            tf.reduce_all(condition(values)), [f"{name}: expected {text}; got", values],
            summarize=16))
    if limit is not None:
        maximum, unit, limit_name = limit
        checks.append(tf.debugging.Assert(
            tf.reduce_all(values <= maximum),
            [f"{name}: expected at most {maximum} {unit} per request (limit {limit_name}, "
             f"fixed at export); got", values], summarize=16))
    with tf.control_dependencies(checks):
        first = tf.identity(values[0])
    same = tf.reduce_all(tf.equal(values, first[None]))
    with tf.control_dependencies([tf.debugging.Assert(
            same, [f"{name}: expected the same value in every instance of a request (the "
                   f"batch is evaluated with one {name}); got", values], summarize=16)]):
        return tf.identity(first)


def _num_samples(values, batch, max_num_samples=None):
    limit = (None if max_num_samples is None else
             (max_num_samples, "importance samples", "max_num_samples"))
    return _request_value(values, "num_samples", (lambda k: k >= 1, "an int >= 1"), batch,
                          limit)


def _num(values, max_num=None):
    limit = None if max_num is None else (max_num, "images", "max_num")
    return _request_value(values, "num", (lambda n: n >= 1, "an int >= 1"), limit=limit)


def _temperature(values, batch=None):
    return _request_value(
        values, "temperature",
        (lambda t: tf.logical_and(tf.math.is_finite(t), t > 0.0), "a finite float > 0"), batch)


def _seed(values, batch=None):
    return _request_value(values, "seed", None, batch)


# ------------------------------------------------------------ tensor-level computations
def graph_log_likelihood(model, images, num_samples, chunk_size=None,
                         max_pass_images=None):
    """Importance-sampled log p(x) [B] as one graph: a tf.while_loop over chunks with a
    running logsumexp, the same chunks and noise as `estimators.importance_log_likelihood`
    (default seed), for `images` (int) [B, H, W, C] and a scalar int32 `num_samples` >= 1.

    `max_pass_images`: the chunk shrinks (to at least 1) so that a decoder pass holds at
    most max(B, max_pass_images) images, chunk x B. Sample k's noise depends only on (seed,
    k), so the estimate does not depend on the chunk (up to float rounding of the sums).
    """
    chunk_size = estimators.DEFAULT_CHUNK_SIZE if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected an int >= 1 or None; got {chunk_size!r}")
    seed = make_seed(model.config.seed)
    if not model.config.use_latent:  # no latent: the likelihood is exact
        return model._elbo_terms(images, seed)["elbo"]
    num_samples = tf.cast(num_samples, tf.int32)
    chunk = tf.minimum(tf.constant(chunk_size, tf.int32), num_samples)
    posterior = model.encoder(inputs.scale(model.config, images))
    batch = tf.shape(images)[0]
    if max_pass_images is not None:
        chunk = tf.maximum(1, tf.minimum(chunk, int(max_pass_images) // tf.maximum(batch, 1)))

    def body(start, total):
        num_in_chunk = tf.minimum(chunk, num_samples - start)
        log_weights = estimators._chunk_log_weights(
            model, images, posterior, seed, start, num_in_chunk)
        chunk_total = tf.reduce_logsumexp(log_weights, axis=0)
        # logsumexp(-inf, t) == t exactly, so the first chunk matches the library's.
        return start + num_in_chunk, tf.reduce_logsumexp(tf.stack([total, chunk_total]), axis=0)

    total = tf.fill([batch], tf.constant(-math.inf, tf.float32))
    # One chunk at a time: with TensorFlow's default of 10 iterations in flight a request
    # held up to 10 chunks' activations (cifar10_gated, 16 images, K=64: 1.06 GB; one at a
    # time 0.03 GB, as fast), since a chunk's work does not wait for the running total.
    _, total = tf.while_loop(lambda start, _: start < num_samples, body,
                             (tf.constant(0, tf.int32), total), parallel_iterations=1)
    # log K in float64, rounded once, as the library's `- math.log(num_samples)`.
    return total - tf.cast(tf.math.log(tf.cast(num_samples, tf.float64)), tf.float32)


def resolve_method(model, method: Optional[str] = None) -> str:
    """The sampler the export uses: `method`, or `vlae_tf.sampling.DEFAULT_METHOD`.

    If the default (cached) sampler does not support this decoder, "naive" (the reference
    it reproduces) is used instead.
    """
    from vlae_tf import sampling

    if method is not None:
        sampling._check_method(method)
        return method
    method = sampling.DEFAULT_METHOD
    if method != "naive":
        from vlae_tf import decoders
        try:
            decoders.incremental(model)
        except decoders.UnsupportedDecoder:
            return "naive"
    return method


def generate(model, z, num, seed, temperature, method: Optional[str] = None):
    """uint8 images [num, H, W, C] from latents `z` [num, D] (None without a latent code).

    Pure tensors in and out (exportable): the latent map, then the pixel loop of
    `vlae_tf.sampling` (`naive_pixel_loop`, the reference) or of `vlae_tf.fast_sampling`
    (`pixel_loop` with `exact=True`, no XLA), which draws the reference's images bit for
    bit. So the images are `model.sample(..., method="naive")`'s for the same seed
    (checked in tests/test_export.py). The library's default fast path may compile with
    XLA, whose rounding can decide a near-tie draw differently.
    """
    from vlae_tf import sampling

    method = resolve_method(model, method)
    z_map = None if z is None else model.latent_map(z)
    if method == "naive":
        values = sampling.naive_pixel_loop(model, z_map, num, seed, temperature)
    else:
        from vlae_tf import fast_sampling
        values = fast_sampling.pixel_loop(model, z_map, num, seed, temperature, exact=True)
    return tf.cast(tf.round(values), tf.uint8)


def _split_seed(seed):
    """(latent seed, pixel seed), as `vlae_tf.sampling` splits a request's seed."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2)
    return seeds[0], seeds[1]


def shared_generator(model, method: Optional[str] = None):
    """`generate` as one tf.function (z, num, seed, temperature) -> uint8 images, traced
    once however many signatures call it (sample and decompress share it in an export)."""
    method = resolve_method(model, method)
    scalar = functools.partial(tf.TensorSpec, [])
    specs = [scalar(tf.int32), tf.TensorSpec([2], tf.int32), scalar(tf.float32)]
    if model.config.use_latent:
        specs = [tf.TensorSpec([None, model.config.latent_size], tf.float32)] + specs
        return tf.function(
            lambda z, num, seed, temperature: generate(model, z, num, seed, temperature, method),
            input_signature=specs, autograph=False)
    function = tf.function(
        lambda num, seed, temperature: generate(model, None, num, seed, temperature, method),
        input_signature=specs, autograph=False)
    return lambda z, num, seed, temperature: function(num, seed, temperature)


def graph_sample(model, num, seed, temperature, method=None, generator=None):
    """`model.sample(num, seed, temperature, method)` on tensors: scalar num, int32[2] seed.

    `generator`: a `shared_generator(model, method)` to reuse (default: inline `generate`).
    """
    generator = generator or functools.partial(generate, model, method=method)
    latent_seed, pixel_seed = _split_seed(seed)
    z = None
    if getattr(model, "hierarchy", None) is not None:  # z2 ~ p(z2), then z1 ~ p(z1|z2)
        from vlae_tf import hierarchy
        z = hierarchy.sample_prior(model.hierarchy, model.prior.sample, num, latent_seed,
                                   temperature)
    elif model.config.use_latent:
        z = model.prior.sample(num, latent_seed, temperature)
    return generator(z, num, pixel_seed, temperature)


def graph_decompress(model, images, seed, temperature, method=None, generator=None):
    """`model.decompress(images, seed, temperature, method)` on tensors."""
    generator = generator or functools.partial(generate, model, method=method)
    latent_seed, pixel_seed = _split_seed(seed)
    posterior = model.encoder(inputs.scale(model.config, images))
    eps = tf.random.stateless_normal(tf.shape(posterior[0]), latent_seed)
    z, _, _ = inputs.posterior_sample(posterior, eps, model.iaf)
    return generator(z, tf.shape(images)[0], pixel_seed, temperature)


# --------------------------------------------------------------------------- signatures
def _input(tensor, spec):
    """`tensor` checked at run time against `spec`'s shape (a loaded signature, and a
    server feeding the graph, check only the dtype): the error names the input and shows
    the expected shape, e.g. "Shape of tensor images [3,4,8,1] is not compatible with
    expected shape [?,8,8,1]"."""
    return tf.ensure_shape(tensor, spec.shape, name=spec.name)


def serving_functions(model, chunk_size: Optional[int] = None, method: Optional[str] = None,
                      limits: Optional[Dict[str, int]] = None
                      ) -> Dict[str, Tuple[Callable, list]]:
    """{signature name: (function, input_signature)}, `DEFAULT_SIGNATURE` first.

    A model without a latent code (config.use_latent=False) has no `encode` and no
    `decompress`; its `log_likelihood` is exact (the ELBO). `method` is the sampler of
    `sample` and `decompress` (None: `resolve_method`). `limits`: the per-request limits
    ({max_images, max_num, max_num_samples}; missing or None: `default_limits`).
    """
    config = model.config
    method = resolve_method(model, method)
    limits = resolve_limits(model, **(limits or {}))
    max_images = limits["max_images"]
    height, width, channels = config.image_shape
    images_spec = tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")
    num_samples_spec = tf.TensorSpec([None], tf.int32, name="num_samples")
    num_spec = tf.TensorSpec([None], tf.int32, name="num")
    seed_spec = tf.TensorSpec([None, 2], tf.int32, name="seed")
    temperature_spec = tf.TensorSpec([None], tf.float32, name="temperature")
    generator = shared_generator(model, method)

    def images_input(images):
        return _check_images(model, _input(images, images_spec), max_images)

    def elbo(images):
        images = images_input(images)
        terms = model._elbo_terms(images, make_seed(config.seed))
        return {key: tf.identity(terms[key], name=key) for key in ("elbo", "recon", "kl")}

    def log_likelihood(images, num_samples):
        images = images_input(images)
        num_samples = _num_samples(_input(num_samples, num_samples_spec), tf.shape(images)[0],
                                   limits["max_num_samples"])
        value = graph_log_likelihood(model, images, num_samples, chunk_size,
                                     max_pass_images=max_images)
        return {"log_likelihood": tf.identity(value, name="log_likelihood")}

    def encode(images):
        posterior = model.encoder(inputs.scale(model.config, images_input(images)))
        outputs = {"mean": tf.identity(posterior[0], name="mean"),
                   "scale": tf.identity(posterior[1], name="scale")}
        if config.latent_shape is not None:  # the same numbers as [B, h, w, c] maps
            maps_shape = [-1, *config.latent_shape]
            outputs["mean_map"] = tf.reshape(posterior[0], maps_shape, name="mean_map")
            outputs["scale_map"] = tf.reshape(posterior[1], maps_shape, name="scale_map")
        if getattr(model, "hierarchy", None) is not None:
            # Two layers: q(z2 | z1) at z1 = the mean of q(z1|x) (hierarchy.encode_layers).
            top_mean, top_scale = model.hierarchy.posterior(posterior[0])
            outputs["top_mean"] = tf.identity(top_mean, name="top_mean")
            outputs["top_scale"] = tf.identity(top_scale, name="top_scale")
        return outputs

    def decompress(images, seed, temperature):
        images = images_input(images)
        batch = tf.shape(images)[0]
        seed = _seed(_input(seed, seed_spec), batch)
        temperature = _temperature(_input(temperature, temperature_spec), batch)
        output = graph_decompress(model, images, seed, temperature, generator=generator)
        return {"images": tf.identity(output, name="images")}

    def sample(num, seed, temperature):
        num = _num(_input(num, num_spec), limits["max_num"])
        seed = _seed(_input(seed, seed_spec))
        temperature = _temperature(_input(temperature, temperature_spec))
        output = graph_sample(model, num, seed, temperature, generator=generator)
        return {"images": tf.identity(output, name="images")}

    functions = {
        "elbo": (elbo, [images_spec]),
        "log_likelihood": (log_likelihood, [images_spec, num_samples_spec]),
        "encode": (encode, [images_spec]),
        "decompress": (decompress, [images_spec, seed_spec, temperature_spec]),
        "sample": (sample, [num_spec, seed_spec, temperature_spec]),
    }
    if not config.use_latent:
        del functions["encode"], functions["decompress"]
    assert next(iter(functions)) == DEFAULT_SIGNATURE
    return functions


def concrete_signatures(model, chunk_size: Optional[int] = None, method: Optional[str] = None,
                        limits: Optional[Dict[str, int]] = None
                        ) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """{signature name: traced ConcreteFunction}, plus "serving_default" (= elbo).
    `limits`: the per-request limits (see `serving_functions`)."""
    from vlae_tf.model import VLAE

    if not isinstance(model, VLAE):
        raise ValueError(f"model: expected a vlae_tf.VLAE; got {type(model).__name__}")
    signatures = {}
    for name, (function, input_signature) in serving_functions(
            model, chunk_size, method, limits).items():
        signatures[name] = tf.function(function, input_signature=input_signature,
                                       autograph=False).get_concrete_function()
    signatures["serving_default"] = signatures[DEFAULT_SIGNATURE]
    return signatures


def _saveable_root(signatures, limits: Optional[Dict[str, int]] = None) -> tf.Module:
    """A root object that owns exactly the variables the signatures read, and (with
    `limits`) a `limits()` function returning the per-request limits as int32 scalars.

    Not keras.export.ExportArchive: its `track(model)` traces Keras' default serving
    function (float32 inputs, which the VLAE refuses), and without `track` it still traces
    every endpoint again while writing (an export took ~40% longer). Here each function is
    traced once, in `concrete_signatures`.
    """
    root = tf.Module(name="vlae")
    variables, seen = [], set()
    for function in signatures.values():
        for variable in function.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    root.vlae_variables = variables
    if limits is not None:
        values = dict(limits)
        root.limits = tf.function(
            lambda: {name: tf.constant(value, tf.int32) for name, value in values.items()},
            input_signature=[], autograph=False)
    return root


def signature_table(model) -> dict:
    """{name: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} of the exported model."""
    height, width, channels = model.config.image_shape
    latent = model.config.latent_size
    image = ["uint8", [None, height, width, channels]]
    vector, per_image = ["float32", [None]], ["float32", [None, latent]]
    table = {
        "elbo": {"inputs": {"images": image},
                 "outputs": {"elbo": vector, "recon": vector, "kl": vector}},
        "log_likelihood": {"inputs": {"images": image, "num_samples": ["int32", [None]]},
                           "outputs": {"log_likelihood": vector}},
        "encode": {"inputs": {"images": image},
                   "outputs": {"mean": per_image, "scale": per_image}},
        "decompress": {"inputs": {"images": image, "seed": ["int32", [None, 2]],
                                  "temperature": ["float32", [None]]},
                       "outputs": {"images": image}},
        "sample": {"inputs": {"num": ["int32", [None]], "seed": ["int32", [None, 2]],
                              "temperature": ["float32", [None]]},
                   "outputs": {"images": image}},
    }
    if model.config.latent_shape is not None:
        latent_map = ["float32", [None, *model.config.latent_shape]]
        table["encode"]["outputs"].update(mean_map=latent_map, scale_map=latent_map)
    if getattr(model, "hierarchy", None) is not None:
        top = ["float32", [None, model.config.top_latent_size]]
        table["encode"]["outputs"].update(top_mean=top, top_scale=top)
    if not model.config.use_latent:
        del table["encode"], table["decompress"]
    return table


def export_saved_model(model, export_dir: str, version: Optional[int] = None,
                       chunk_size: Optional[int] = None, method: Optional[str] = None,
                       overwrite: bool = False, max_images: Optional[int] = None,
                       max_num: Optional[int] = None,
                       max_num_samples: Optional[int] = None) -> str:
    """Writes `model` as a SavedModel to `<export_dir>/<version>/`; returns that path.

    Args:
      model: a vlae_tf.VLAE.
      export_dir: the model's base directory (what TF Serving's `--model_base_path` or
        the container's `/models/<name>` points at).
      version: a positive int; None = one more than the largest existing version (1 first).
      chunk_size: importance samples evaluated at a time by `log_likelihood` (memory is
        O(chunk_size * batch)); None = `vlae_tf.estimators.DEFAULT_CHUNK_SIZE`.
      method: the sampler of `sample` / `decompress` ("cached" or "naive"); None = the
        library's default (`vlae_tf.sampling.DEFAULT_METHOD`), or "naive" if the cached
        sampler does not support this decoder. Same seed -> same images either way.
      overwrite: replace an existing `<version>` directory instead of raising.
      max_images: at most this many images per elbo / log_likelihood / encode / decompress
        request; None = `default_limits(model)` (from the decoder's memory per image).
      max_num: at most this many images per sample request; None = the default.
      max_num_samples: at most this many importance samples per log_likelihood request;
        None = DEFAULT_MAX_NUM_SAMPLES (4096).
    The limits are enforced inside the signatures (an InvalidArgumentError naming the
    argument, the limit and the value) and stored in the SavedModel (`limits()`) and in
    `assets.extra/vlae_export.json`.

    Raises ExportDirError (a PermissionError) when `export_dir` cannot be written,
    before any tracing when that can be seen beforehand.
    """
    if version is None:
        versions = existing_versions(export_dir)
        version = versions[-1] + 1 if versions else 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: expected a positive int (TF Serving's numeric version "
                         f"directories); got {version!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size: expected an int >= 1 or None; got {chunk_size!r}")
    limits = resolve_limits(model, max_images=max_images, max_num=max_num,
                            max_num_samples=max_num_samples)
    check_export_dir(export_dir)
    final_dir = os.path.join(export_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise FileExistsError(f"{final_dir} exists: pick another version, omit `version` to "
                              f"use the next one, or pass overwrite=True")
    method = resolve_method(model, method)
    signatures = concrete_signatures(model, chunk_size, method, limits)
    try:
        return _write_version(model, export_dir, version, final_dir, signatures, limits,
                              chunk_size, method)
    except (OSError, tf.errors.PermissionDeniedError) as error:
        if isinstance(error, tf.errors.PermissionDeniedError) or (
                getattr(error, "errno", None) in _NOT_WRITABLE_ERRNOS
                and not isinstance(error, ExportDirError)):
            raise ExportDirError(export_dir, error) from error
        raise


def _write_version(model, export_dir, version, final_dir, signatures, limits, chunk_size,
                   method) -> str:
    os.makedirs(export_dir, exist_ok=True)
    # Written beside its final place and renamed: a polling server never sees a partial
    # version (names that are not integers are ignored by TF Serving).
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        target = os.path.join(staging, "saved_model")
        tf.saved_model.save(_saveable_root(signatures, limits), target, signatures=signatures)
        info = {
            "format": "vlae_tf SavedModel export",
            "default_signature": DEFAULT_SIGNATURE,
            "signatures": signature_table(model),
            "chunk_size": chunk_size or estimators.DEFAULT_CHUNK_SIZE,
            "sampling_method": method,
            "limits": limits,
            "config": model.config.to_dict(),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        os.makedirs(os.path.join(target, "assets.extra"), exist_ok=True)
        with open(os.path.join(target, "assets.extra", EXPORT_INFO_FILE), "w") as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
        if os.path.exists(final_dir):  # overwrite=True
            shutil.rmtree(final_dir)
        os.rename(target, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir
