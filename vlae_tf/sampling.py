"""Sampling from a VLAE: prior samples and lossy decompressions.

Generation runs the model backwards: z from the prior (sequential over z's dimensions for
the AF prior), the latent map, then x pixel by pixel in raster order. The draw for pixel i
comes from `likelihood.sample(params, fold_in(seed, i))` evaluated on the whole image and
read at pixel i, so the random numbers depend only on (seed, i): any faster sampler that
reads the same numbers gives identical images.

`method="naive"` recomputes the whole decoder for each pixel (H*W passes): the reference.
"""

from __future__ import annotations

import tensorflow as tf

METHODS = ("naive",)


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}; got {method!r}")


def _check_temperature(temperature):
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature: expected a float > 0; got {temperature!r}")
    return float(temperature)


def _pixel_loop(model, z_map, num, seed, temperature):
    """x pixel by pixel with one full decoder pass per pixel; returns float values."""
    height, width, channels = model.config.image_shape
    pixel_ids = tf.reshape(tf.range(height * width), [1, height, width, 1])

    def body(index, values):
        scaled = model._scale(values)
        params = model.pixelcnn(scaled if z_map is None else [scaled, z_map])
        pixel_seed = tf.random.experimental.stateless_fold_in(seed, index)
        draw = model.likelihood.sample(params, pixel_seed, temperature)
        is_current = tf.cast(tf.equal(pixel_ids, index), values.dtype)
        return index + 1, values * (1.0 - is_current) + draw * is_current

    values = tf.zeros([num, height, width, channels], tf.float32)
    _, values = tf.while_loop(lambda index, _: index < height * width, body,
                              (tf.constant(0), values))
    return values


def _compiled(model):
    """A tf.function per model: (z or None, num, seed, temperature) -> uint8 images."""
    function = getattr(model, "_naive_sampler_function", None)
    if function is None:
        def generate(z, num, seed, temperature):
            z_map = None if z is None else model.latent_map(z)
            values = _pixel_loop(model, z_map, num, seed, temperature)
            return tf.cast(tf.round(values), tf.uint8)
        function = tf.function(generate, reduce_retracing=True)
        model._naive_sampler_function = function
    return function


def _split_seed(model, seed):
    from vlae_tf.model import make_seed
    seed = make_seed(model.config.seed if seed is None else seed)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return seeds[0], seeds[1]


def sample(model, num, seed=None, temperature=1.0, method="naive"):
    """`num` uint8 images [num, H, W, C]; `temperature` scales prior and decoder noise."""
    _check_method(method)
    temperature = _check_temperature(temperature)
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num: expected an int >= 1; got {num!r}")
    latent_seed, pixel_seed = _split_seed(model, seed)
    z = None
    if model.config.use_latent:
        z = model.prior.sample(num, latent_seed, temperature)
    return _compiled(model)(z, tf.constant(num), pixel_seed, tf.constant(temperature))


def decompress(model, images, seed=None, temperature=1.0, method="naive"):
    """Lossy decompression x -> z ~ q(z|x) -> x' ~ p(x|z); uint8 [B, H, W, C]."""
    _check_method(method)
    temperature = _check_temperature(temperature)
    model._require_latent("decompress")
    images = model._check_images(images)
    latent_seed, pixel_seed = _split_seed(model, seed)
    posterior = model.encoder(model._scale(images))
    eps = tf.random.stateless_normal(tf.shape(posterior[0]), latent_seed)
    z, _, _ = model._posterior_sample(posterior, eps)
    num = tf.shape(images)[0]
    return _compiled(model)(z, num, pixel_seed, tf.constant(temperature))
