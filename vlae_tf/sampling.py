"""Sampling from a VLAE: prior samples and lossy decompressions.

Generation runs the model backwards: z from the prior (sequential over z's dimensions for
the AF prior; compiled, and shared by both samplers), the latent map, then x pixel by pixel
in raster order. Pixel i (i = row * W + col) is drawn by

    likelihood.sample(params_i, fast_sampling.pixel_seed(pixel_seed, i), temperature)

with params_i the decoder's parameters of that pixel, shape [B, 1, 1, P]. The random
numbers therefore depend only on (seed, i, B), and both samplers draw them with the same
ops on the same shapes:

* `method="cached"` (default, `vlae_tf.fast_sampling`): the decoder family's incremental
  step (e.g. the gated decoder's vertical stack once per row from cached rows and its 1x1
  horizontal stack once per pixel): O(receptive field) work per pixel, all in one
  tf.function with nested tf.while_loops (XLA-compiled for small batches, see
  `auto_jit_compile`).
* `method="naive"`: one full pass of the model's decoder over the whole image per pixel
  (H*W passes), read at pixel i: the reference, and the only method for a decoder the
  cached sampler does not know.

Both evaluate the decoder and draw in float64 (from the float32 weights), which is what
makes their images identical for the same seed, with and without XLA; see
`vlae_tf.fast_sampling` for why float32 is not enough. `temperature` divides the decoder's
logits / scales its noise, and scales the prior's base noise (z = f(T * eps)).
"""

from __future__ import annotations

import math
import numbers
import warnings

import tensorflow as tf

from vlae_tf import decoders
from vlae_tf import fast_sampling
from vlae_tf import inputs

METHODS = ("cached", "naive")
DEFAULT_METHOD = "cached"


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}; got {method!r}")


def _check_temperature(temperature):
    # nan and inf pass `> 0` tests or none at all, and then draw all-zero images silently.
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature: expected a finite float > 0; got {temperature!r}")
    return float(temperature)


def latent_map64(model, z):
    """The latent map z -> [B, H, W, Cz] evaluated in float64 (both samplers use it)."""
    with fast_sampling.float64_compute(model.latent_map):
        return model.latent_map(tf.cast(z, fast_sampling.DTYPE))


def naive_pixel_loop(model, z_map, num, seed, temperature, num_pixels=None):
    """x pixel by pixel with one full decoder pass per pixel; float32 values [B, H, W, C].

    The decoder is the model's own `pixelcnn` (any architecture), traced in float64 (see
    `fast_sampling.float64_compute`); z_map [B, H, W, Cz] in any float dtype (float64 from
    `latent_map64` for images bit-identical to the cached sampler's) or None.
    `num_pixels` (benchmarks): stop after the first num_pixels pixels in raster order
    (the rest stay 0); every step costs the same full pass.

    A channel-autoregressive decoder (`decoders.channel_autoregressive`, "pixelcnnpp"),
    whose parameters for channel c of a pixel depend on the pixel's channels < c, is
    sampled sub-pixel by sub-pixel instead (H*W*C passes: R, then G given R, then B):
    sub-pixel (i, c) is `likelihood.sample(likelihood.channel_params(params_i, c),
    fast_sampling.subpixel_seed(seed, i, c), temperature)`, a 1-channel mixture.
    """
    height, width, channels = model.config.image_shape
    num_pixels = height * width if num_pixels is None else num_pixels
    per_pixel = channels if decoders.channel_autoregressive(model.config) else 1
    # Step t draws unit t: a pixel (all its channels at once), or one sub-pixel.
    unit_ids = tf.reshape(tf.range(height * width * per_pixel), [1, height, width, per_pixel])
    batch = num if z_map is None else tf.shape(z_map)[0]
    z_map = None if z_map is None else fast_sampling.as_decoder_input(z_map)

    def body(step, values):
        scaled = fast_sampling.as_decoder_input(fast_sampling.scale_values(model, values))
        with fast_sampling.float64_compute(model.pixelcnn):
            params = model.pixelcnn(scaled if z_map is None else [scaled, z_map])
        index, channel = step // per_pixel, step % per_pixel
        row, col = index // width, index % width
        pixel_params = params[:, row:row + 1, col:col + 1, :]
        if per_pixel == 1:
            draw = model.likelihood.sample(pixel_params, fast_sampling.pixel_seed(seed, index),
                                           temperature)  # [B, 1, 1, C]
        else:
            draw = model.likelihood.sample(
                model.likelihood.channel_params(pixel_params, channel),
                fast_sampling.subpixel_seed(seed, index, channel), temperature)  # [B,1,1,1]
        is_current = tf.cast(tf.equal(unit_ids, step), values.dtype)
        return step + 1, values * (1.0 - is_current) + draw * is_current

    values = tf.zeros([batch, height, width, channels], tf.float32)
    _, values = tf.while_loop(lambda step, _: step < num_pixels * per_pixel, body,
                              (tf.constant(0), values))
    return values


def resolve_method(model, method):
    """`method`, except that "cached" for a decoder family without a cached step
    (`decoders.has_cached_sampler`: a family module with CACHED_SAMPLER = False; all
    three families have one) becomes "naive", with a warning: the default
    `model.sample()` then still works, on the reference sampler."""
    _check_method(method)
    if method == "cached" and not decoders.has_cached_sampler(model.config):
        warnings.warn(f"sampling: decoder={model.config.decoder!r} has no cached sampler; "
                      f"using method='naive' (one decoder pass per pixel or sub-pixel)", stacklevel=3)
        return "naive"
    return method


def generate_values(model, z, num, seed, temperature, method=DEFAULT_METHOD,
                    incremental=None):
    """Pure-tensor core of `sample` / `decompress`: latents -> float32 pixel values.

    z [B, latent_size] (None without a latent code), num: batch size (scalar), seed: the
    pixel seed int32[2], temperature: scalar. Traceable (with or without autograph, and the
    cached method under XLA): use it to embed sampling in another graph with the images
    `sample` / `decompress` give for the same z and seed.
    """
    z_map = None if z is None else latent_map64(model, z)
    if method == "naive":
        return naive_pixel_loop(model, z_map, num, seed, temperature)
    return fast_sampling.pixel_loop(model, z_map, num, seed, temperature,
                                    incremental=incremental)


# XLA removes the per-op overhead that dominates the cached sampler's many small steps,
# but on CPU its float64 matrix products are slower than the plain kernels' once they are
# big. Measured on 2 cores (batch * filters^2): XLA ~10x faster at 144 (mnist_paper, B=1)
# and 1.4x at 14k (mnist_paper, B=100), 3x faster at 4k (cifar10_gated, B=1), 2x slower at
# 65k (cifar10_gated, B=16).
AUTO_JIT_MAX_WORK = 2 ** 15


def auto_jit_compile(model, batch: int) -> bool:
    """Whether the cached sampler is compiled with XLA when `jit_compile=None` (CPU: for
    small per-pixel work; measured on 2 cores only)."""
    return batch * model.config.decoder_filters ** 2 <= AUTO_JIT_MAX_WORK


def _compiled(model, method, jit_compile=False):
    """A tf.function per (model, method, jit): (z or None, num, seed, T) -> uint8."""
    cache = model.__dict__.setdefault("_sampler_functions", {})
    key = (method, bool(jit_compile))
    if key not in cache:
        incremental = None if method == "naive" else decoders.incremental(model)

        def generate(z, num, seed, temperature):
            values = generate_values(model, z, num, seed, temperature, method, incremental)
            return tf.cast(tf.round(values), tf.uint8)

        cache[key] = tf.function(generate, reduce_retracing=True, jit_compile=bool(jit_compile))
    return cache[key]


def _resolve_jit(model, method, batch, jit_compile):
    if method == "naive":
        if jit_compile:
            raise ValueError("jit_compile: the naive sampler (the reference) runs without XLA")
        return False
    if not getattr(decoders.family(model.config), "XLA_SAMPLER", True):
        # e.g. "pixelcnnpp": its sub-pixel draws do not compile with XLA (a random op's
        # shape is not a compile-time constant there); the plain kernels give its images.
        if jit_compile:
            raise ValueError(f"jit_compile: decoder={model.config.decoder!r}'s cached "
                             f"sampler runs without XLA; got {jit_compile!r}")
        return False
    if jit_compile is None:
        return auto_jit_compile(model, batch)
    return bool(jit_compile)


def prior_sampler(model):
    """The compiled prior sampler (num, seed int32[2], temperature) -> z [num, D].

    `sample` uses it for both methods, so that they start from the same z. As in
    `prior.sample`: z = f(T * eps), eps = stateless_normal(seed). eps is drawn without XLA
    (XLA's stateless_normal gives other numbers for the same seed); the AF prior's flow f,
    sequential over z's dimensions (D MADE passes per MAF step), runs XLA-compiled, ~15x
    faster than its graph loop on CPU. z equals the eager `prior.sample` to float32
    rounding (tests/test_sampling.py). Two latent layers: z = z1 ~ p(z1|z2) of z2 drawn
    by that sampler (`vlae_tf.hierarchy.sample_prior`).
    """
    cache = model.__dict__.setdefault("_sampler_functions", {})
    if "prior" not in cache:
        prior = model.prior
        specs = [tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32),
                 tf.TensorSpec([], tf.float32)]
        if not hasattr(prior, "bijector"):  # e.g. N(0, I): nothing sequential to compile
            cache["prior"] = tf.function(
                lambda num, seed, temperature: prior.sample(num, seed, temperature),
                input_signature=specs)
        else:
            draw_eps = tf.function(
                lambda num, seed, temperature: tf.random.stateless_normal(
                    [num, prior.latent_size], seed=seed, dtype=tf.float32) * temperature,
                input_signature=specs)
            flow = tf.function(lambda eps: prior.bijector.forward(eps), jit_compile=True)

            def sample_prior(num, seed, temperature):
                return flow(draw_eps(num, seed, temperature))

            cache["prior"] = sample_prior
        hierarchy = getattr(model, "hierarchy", None)
        if hierarchy is not None:  # two layers: z2 ~ p(z2) as above, then z1 ~ p(z1|z2)
            from vlae_tf import hierarchy as hierarchy_lib
            top = cache["prior"]
            cache["prior"] = lambda num, seed, temperature: hierarchy_lib.sample_prior(
                hierarchy, top, num, seed, temperature)
    return cache["prior"]


def _split_seed(model, seed):
    seed = inputs.make_seed(model.config.seed if seed is None else seed)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return seeds[0], seeds[1]


def sample(model, num, seed=None, temperature=1.0, method=DEFAULT_METHOD, jit_compile=None):
    """`num` uint8 images [num, H, W, C]; `temperature` scales prior and decoder noise.

    method: "cached" (default) or "naive" (the reference); both give the same images.
    jit_compile (cached only): XLA on/off; None picks by `auto_jit_compile`.
    A decoder without a cached step ("pixelcnnpp") uses "naive" for "cached" (`resolve_method`).
    """
    method = resolve_method(model, method)
    temperature = _check_temperature(temperature)
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 1:
        raise ValueError(f"num: expected an int >= 1; got {num!r}")
    num = int(num)  # numpy integers count too
    latent_seed, pixel_seed = _split_seed(model, seed)
    z = None
    if model.config.use_latent:
        z = prior_sampler(model)(tf.constant(num), latent_seed, tf.constant(temperature))
    jit_compile = _resolve_jit(model, method, num, jit_compile)
    return _compiled(model, method, jit_compile)(z, tf.constant(num), pixel_seed,
                                                 tf.constant(temperature))


def decompress(model, images, seed=None, temperature=1.0, method=DEFAULT_METHOD,
               jit_compile=None):
    """Lossy decompression x -> z ~ q(z|x) -> x' ~ p(x|z); uint8 [B, H, W, C].

    `temperature` applies to the decoder only (z comes from the posterior); `method` and
    `jit_compile` as in `sample`.
    """
    method = resolve_method(model, method)
    temperature = _check_temperature(temperature)
    inputs.require_latent(model.config, "decompress")
    images = inputs.check_images(model.config, images)
    latent_seed, pixel_seed = _split_seed(model, seed)
    posterior = model.encoder(inputs.scale(model.config, images))
    eps = tf.random.stateless_normal(tf.shape(posterior[0]), latent_seed)
    z, _, _ = inputs.posterior_sample(posterior, eps, model.iaf)
    jit_compile = _resolve_jit(model, method, int(images.shape[0]), jit_compile)
    return _compiled(model, method, jit_compile)(
        z, tf.shape(images)[0], pixel_seed, tf.constant(temperature))
