"""What every entry point of a VLAE shares: input checks, scaling, seeds, posterior draws.

This module sits below `model`, `estimators`, `sampling` and `export` (it imports none of
them), so that those modules import downwards only:

    model -> estimators, sampling -> inputs        (and export -> inputs)

* `check_images(config, images)`: clear ValueErrors for wrong rank, size, dtype or values.
* `scale(config, values)`: pixel values 0..max -> [-1, 1], the networks' input range.
* `make_seed(seed)`: int -> the int32[2] stateless seed every public method takes.
* `posterior_sample(posterior, eps, iaf)`: z = mean + scale * eps (+ IAF steps), log q(z|x).
* `require_latent(config, what)`: a clear error for models without a latent code.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from vlae_tf.config import INT32_MAX, INT32_MIN

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
INTEGER_DTYPES = (tf.uint8, tf.int8, tf.int16, tf.int32, tf.int64, tf.uint16, tf.bool)


def make_seed(seed) -> tf.Tensor:
    """int -> int32[2] stateless seed; an int32[2]-like is passed through."""
    if seed is None:
        seed = 0
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if not INT32_MIN <= int(seed) <= INT32_MAX:  # would wrap to another seed silently
            raise ValueError(f"seed: expected an int in [{INT32_MIN}, {INT32_MAX}] (seeds "
                             f"are int32) or an int32 tensor of shape [2]; got {seed!r}")
        return tf.constant([int(seed) % (2 ** 31 - 1), 0x5EED], dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"seed: expected an int or an int32 tensor of shape [2]; "
                         f"got shape {seed.shape}")
    return tf.cast(seed, tf.int32)


def check_images(config, images, name="images"):
    """Clear ValueErrors for wrong rank, size, dtype or values; returns an int32 tensor.

    Eagerly the value range is checked at once; inside a graph it is an assertion with
    the same message.
    """
    if isinstance(images, (tuple, list)) and images and not np.isscalar(images[0]):
        images = images[0]
    images = tf.convert_to_tensor(images)
    height, width, channels = config.image_shape
    expected = f"[batch, {height}, {width}, {channels}]"
    if images.shape.rank != 4:
        raise ValueError(f"{name}: expected a 4-D batch {expected}; got shape "
                         f"{tuple(images.shape)}")
    if tuple(images.shape[1:]) != (height, width, channels):
        raise ValueError(f"{name}: expected shape {expected} (config.image_shape); got "
                         f"{tuple(images.shape)}")
    if images.shape[0] == 0:  # statically empty: the networks would fail deep in Keras
        raise ValueError(f"{name}: expected at least one image, shape {expected} with "
                         f"batch >= 1; got shape {tuple(images.shape)}")
    if images.dtype not in INTEGER_DTYPES:
        raise ValueError(
            f"{name}: expected integer pixel values (uint8) in [0, {config.max_value}];"
            f" got dtype {images.dtype.name}. Cast after checking the values are integers.")
    images = tf.cast(images, tf.int32)
    message = (f"{name}: values must be in [0, {config.max_value}] for the "
               f"'{config.likelihood}' likelihood"
               + (" (binarize 8-bit images first)" if config.max_value == 1 else ""))
    if tf.executing_eagerly():
        if tf.size(images) > 0:
            low, high = int(tf.reduce_min(images)), int(tf.reduce_max(images))
            if low < 0 or high > config.max_value:
                raise ValueError(f"{message}; got values in [{low}, {high}]")
    else:
        with tf.control_dependencies([
                tf.debugging.assert_greater_equal(images, 0, message=message),
                tf.debugging.assert_less_equal(images, config.max_value, message=message)]):
            images = tf.identity(images)
    return images


def scale(config, values):
    """Pixel values 0..max -> [-1, 1] (float32), the networks' input range."""
    return tf.cast(values, tf.float32) * (2.0 / config.max_value) - 1.0


def posterior_sample(posterior, eps, iaf=None):
    """z = mean + scale * eps, then the IAF steps if any.

    posterior: the encoder's outputs (mean, scale[, context]); eps: N(0, I) noise of the
    same shape. Returns z, log q(z|x) [B] and the base Gaussian's per-dimension log
    densities (which a factorised KL splits into free-bits groups).
    """
    mean, scale_ = posterior[0], posterior[1]
    z = mean + scale_ * eps
    log_q_dims = -0.5 * tf.square(eps) - tf.math.log(scale_) - HALF_LOG_TWO_PI
    log_q = tf.reduce_sum(log_q_dims, axis=-1)
    if iaf is not None:
        z, log_q = iaf(z, log_q, posterior[2])
    return z, log_q, log_q_dims


def require_latent(config, what):
    if not config.use_latent:
        raise ValueError(f"{what}: this model has no latent code (config.use_latent=False)")
