"""What every decoder family shares: the decoder's input, float64 evaluation, and the
interface of a family's incremental (cached) sampling step.

A decoder family (`vlae_tf.decoders.gated`, `vlae_tf.decoders.masked`) is one module that
owns three things, so that adding a family means writing it once:

* `build(config)`: the Keras model [images in [-1, 1], (z_map)] -> per-pixel parameters;
* `receptive_field(config, row, col)`: the pixels the output at (row, col) may depend on
  (stated in `vlae_tf.window`, checked pixel by pixel by gradients in the tests);
* `Incremental(model)`: the same network evaluated pixel by pixel from caches, which
  `vlae_tf.fast_sampling.pixel_loop` drives (see `IncrementalDecoder`).

Both samplers evaluate the decoder in float64 from the float32 weights (see
`vlae_tf.fast_sampling` for why float32 cannot give bit-identical draws).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras.src.backend import AutocastScope

# ITU-R BT.601 luma, as in the paper's "7x4 grayscale" window.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# The dtype both samplers evaluate the decoder in.
DTYPE = tf.float64


class UnsupportedDecoder(ValueError):
    """The model's decoder is not one its family's incremental step can evaluate."""


def likelihood_kwargs(config):
    """Constructor arguments of the config's likelihood (`vlae_tf.likelihoods.get`).

    A family may add its own: `LIKELIHOOD_KWARGS` of its module (e.g. the channel-
    autoregressive "pixelcnnpp" decoder: {"coupled": False}, a mixture per sub-pixel)."""
    if config.likelihood != "logistic_mixture":
        return {}
    from vlae_tf import decoders  # local: the registry imports this module

    extra = getattr(decoders.FAMILIES.get(config.decoder), "LIKELIHOOD_KWARGS", {})
    return {"num_mixtures": config.num_mixtures, **extra}


def num_params(config) -> int:
    """Channels of the decoder's output: the likelihood's parameters per pixel."""
    from vlae_tf import likelihoods  # local: likelihoods does not depend on decoders

    return likelihoods.get(config.likelihood, **likelihood_kwargs(config)).num_params(
        config.image_shape[-1])


@keras.saving.register_keras_serializable(package="vlae_tf")
def functional_inputs(config):
    """The Keras inputs of a functional decoder: (images [B, H, W, C], z_map [B, H, W,
    z_map_channels] or None without a latent code, the list to build the model from)."""
    height, width, channels = config.image_shape
    images = keras.Input(shape=(height, width, channels), name="images")
    if not config.use_latent:
        return images, None, [images]
    z_map = keras.Input(shape=(height, width, config.z_map_channels), name="z_map")
    return images, z_map, [images, z_map]


class DecoderInput(keras.layers.Layer):
    """Image in [-1, 1] -> what the window may see, plus a constant channel of ones.

    The ones channel lets the first layer tell zero padding from content (PixelCNN++).
    With `grayscale=True` the window sees only the luma of its pixels.
    """

    def __init__(self, grayscale=False, **kwargs):
        super().__init__(**kwargs)
        self.grayscale = bool(grayscale)

    def call(self, images):
        if self.grayscale:
            weights = tf.constant(GRAY_WEIGHTS, dtype=images.dtype)
            images = tf.reduce_sum(images * weights, axis=-1, keepdims=True)
        return tf.concat([images, tf.ones_like(images[..., :1])], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = 1 if self.grayscale else input_shape[-1]
        return tuple(input_shape[:-1]) + (channels + 1,)

    def get_config(self):
        return {**super().get_config(), "grayscale": self.grayscale}


@keras.saving.register_keras_serializable(package="vlae_tf")
class LearnedConstantMap(keras.layers.Layer):
    """A learned per-channel constant broadcast over the image (reads only its shape)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def build(self, input_shape):
        self.value = self.add_weight(name="value", shape=(self.channels,), initializer="zeros")

    def call(self, images):
        shape = tf.concat([tf.shape(images)[:-1], [self.channels]], axis=0)
        return tf.broadcast_to(tf.cast(self.value, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


# ------------------------------------------------------------------- float64 evaluation
@contextlib.contextmanager
def float64_compute(*layers):
    """Within this context, calls of `layers` (and their sublayers) trace in float64.

    The layers' dtype policies are switched to float64 and an autocast scope makes their
    float32 variables read as float64, so the very layer code that trains runs at double
    precision; the policies are restored on exit. Use it while tracing (inside a
    tf.function), not around code that trains the model concurrently.
    """
    saved = []
    for layer in layers:
        for sublayer in layer._flatten_layers(include_self=True, recursive=True):
            saved.append((sublayer, sublayer.dtype_policy))
    try:
        for sublayer, _ in saved:
            sublayer.dtype_policy = "float64"
        with AutocastScope("float64"):
            yield
    finally:
        for sublayer, policy in reversed(saved):
            sublayer.dtype_policy = policy


def scale_values(model, values):
    """Pixel values 0..max -> [-1, 1] in float64 (the decoder input, as `inputs.scale`)."""
    return tf.cast(values, DTYPE) * (2.0 / model.config.max_value) - 1.0


def as_decoder_input(tensor):
    """Rounds to float32 and back: the pixelcnn's Keras inputs (images, z_map) are float32,
    so a float64 pass of the model sees its inputs at float32 precision; the cached sampler
    rounds its inputs the same way. (Values that agree to ~1e-16 round alike.)"""
    return tf.cast(tf.cast(tensor, tf.float32), DTYPE)


# ------------------------------------------------------------------ incremental interface
class IncrementalDecoder:
    """A family's decoder evaluated pixel by pixel in raster order, from caches.

    `vlae_tf.fast_sampling.pixel_loop` calls, per image row r and column c:

        row_state = initial_row_state(weights, B)
        for r:  row_state, columns = start_row(weights, row_state, z_row)
                pixel_state = initial_pixel_state(weights, row_state, B)
                for c:  params, pixel_state = pixel(weights, pixel_state, columns[c])
                        (draw pixel (r, c) from params)
                        pixel_state = after_pixel(weights, pixel_state, visible, columns[c], c)
                row_state = end_row(weights, row_state, pixel_state, visible_row)

    Every state is a tuple of tensors of fixed shapes (tf.while_loop variables). `columns`
    is a tensor (or tuple of tensors) with a leading axis of W, or None; `visible` is the
    decoder input of the drawn pixel (`visible(scaled)`), [B, visible_channels], and
    `visible_row` the row's, [B, W, visible_channels]. `pixel` must give the parameters the
    family's Keras model gives at (r, c) for the same image, to float64 rounding.
    """

    height: int
    width: int
    channels: int
    visible_channels: int

    def visible(self, scaled):
        raise NotImplementedError

    def read_weights(self):
        """Weights in the form `pixel` uses, read once per sampling call."""
        return ()

    def initial_row_state(self, weights, batch):
        raise NotImplementedError

    def start_row(self, weights, row_state, z_row):
        raise NotImplementedError

    def initial_pixel_state(self, weights, row_state, batch):
        raise NotImplementedError

    def pixel(self, weights, pixel_state, column):
        raise NotImplementedError

    def after_pixel(self, weights, pixel_state, visible, column, col):
        raise NotImplementedError

    def end_row(self, weights, row_state, pixel_state, visible_row):
        raise NotImplementedError
