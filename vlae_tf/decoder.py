"""Decoder p(x|z): a gated PixelCNN whose receptive field is exactly the configured window.

    p(x | z) = prod_i p(x_i | z, x_{W(i)})

The layer plan (kernel sizes per layer) comes from `vlae_tf.window.plan_window`, which is
the only place that knows how a window maps to kernels; this module only wires layers.
Causality is by explicit padding and cropping (shifted convolutions, as in PixelCNN++),
never by masking kernels: the vertical stack is shifted down one row, the horizontal stack
right one pixel, so the output at pixel (i, j) sees no channel of pixel (i, j) itself.
Dependence between R, G and B of one pixel lives in the likelihood.

z enters as a spatial map (`build_latent_map`): "concat" adds it, through a 1x1 kernel at
the pixel's own position, to the first layer (the same as concatenating it to the input
image with an unshifted kernel, since z carries no information about x); "gated" adds a
1x1 projection of it to the gates of every later block (conditional gating, van den Oord
et al. 2016); "both" does both.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from vlae_tf import window as window_lib
from vlae_tf.nn import layers as nn

# ITU-R BT.601 luma, as in the paper's "7x4 grayscale" window.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="vlae_tf")
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


def _conv(filters, kernel_size, weight_norm, name, init_scale=1.0):
    return nn.Conv2D(filters, kernel_size, padding="valid", use_weight_norm=weight_norm,
                     init_scale=init_scale, name=name)


def down_shifted_conv(inputs, filters, rows_above, half_width, weight_norm, name):
    """Output at (r, c) sees input rows r-rows_above..r-1, columns c-half_width..c+half_width."""
    height = inputs.shape[1]
    padded = keras.layers.ZeroPadding2D(((rows_above, 0), (half_width, half_width)),
                                        name=f"{name}_pad")(inputs)
    outputs = _conv(filters, (rows_above, 2 * half_width + 1), weight_norm, name)(padded)
    # The conv gives H+1 rows; row r of the first H sees rows r-rows_above..r-1.
    return keras.layers.Cropping2D(((0, outputs.shape[1] - height), (0, 0)),
                                   name=f"{name}_crop")(outputs)


def right_shifted_conv(inputs, filters, pixels_left, weight_norm, name):
    """Output at (r, c) sees input row r, columns c-pixels_left..c-1."""
    width = inputs.shape[2]
    padded = keras.layers.ZeroPadding2D(((0, 0), (pixels_left, 0)), name=f"{name}_pad")(inputs)
    outputs = _conv(filters, (1, pixels_left), weight_norm, name)(padded)
    return keras.layers.Cropping2D(((0, 0), (0, outputs.shape[2] - width)),
                                   name=f"{name}_crop")(outputs)


def causal_vertical_conv(inputs, filters, extra_rows, extra_half_width, weight_norm, name):
    """Output at (r, c) sees rows r-extra_rows..r and columns c±extra_half_width of inputs."""
    if extra_rows == 0 and extra_half_width == 0:
        return _conv(filters, 1, weight_norm, name)(inputs)
    padded = keras.layers.ZeroPadding2D(((extra_rows, 0), (extra_half_width, extra_half_width)),
                                        name=f"{name}_pad")(inputs)
    return _conv(filters, (extra_rows + 1, 2 * extra_half_width + 1), weight_norm, name)(padded)


def _sum(tensors, name):
    return tensors[0] if len(tensors) == 1 else keras.layers.Add(name=name)(tensors)


def build_pixelcnn(config, name="pixelcnn") -> keras.Model:
    """Functional model [images in [-1,1], (z_map)] -> per-pixel likelihood parameters.

    `config` is a VLAEConfig; the output has `num_params` channels for its likelihood.
    """
    from vlae_tf import likelihoods  # local: likelihoods has no dependency on this module

    height, width, channels = config.image_shape
    plan = window_lib.plan_window(config.window, config.decoder_layers, height, width)
    filters, weight_norm = config.decoder_filters, config.weight_norm
    num_params = likelihoods.get(config.likelihood,
                                 **_likelihood_kwargs(config)).num_params(channels)

    images = keras.Input(shape=(height, width, channels), name="images")
    inputs = [images]
    z_map = None
    if config.use_latent:
        z_map = keras.Input(shape=(height, width, config.z_map_channels), name="z_map")
        inputs.append(z_map)
    z_first = z_map is not None and config.z_conditioning in ("concat", "both")
    z_later = z_map is not None and config.z_conditioning in ("gated", "both")
    visible = DecoderInput(grayscale=config.grayscale_window, name="window_input")(images)

    def z_projection(layer_name):
        return _conv(2 * filters, 1, weight_norm, layer_name)(z_map)

    # Layer 0: the only layer that reads the image.
    vertical = None
    if plan.sees_above:
        terms = [down_shifted_conv(visible, 2 * filters, plan.first_height,
                                   plan.first_half_width, weight_norm, "v0_conv")]
        if z_first:
            terms.append(z_projection("v0_z"))
        vertical_pre = _sum(terms, "v0_sum")
        vertical = nn.GatedActivation(name="v0_gate")(vertical_pre)
    terms = []
    if plan.sees_left:
        terms.append(right_shifted_conv(visible, 2 * filters, plan.left, weight_norm, "h0_conv"))
    if plan.sees_above:
        terms.append(_conv(2 * filters, 1, weight_norm, "h0_link")(vertical_pre))
    if z_first:
        terms.append(z_projection("h0_z"))
    if not terms:  # empty window and no z: the first layer is a learned constant
        terms.append(LearnedConstantMap(2 * filters, name="h0_constant")(images))
    horizontal = nn.GatedActivation(name="h0_gate")(_sum(terms, "h0_sum"))

    # Layers 1..L-1 grow the vertical rectangle; the horizontal stack stays 1x1.
    for layer in range(1, plan.num_layers):
        prefix = f"layer{layer}"
        terms = [_conv(2 * filters, 1, weight_norm, f"{prefix}_h_conv")(horizontal)]
        if vertical is not None:
            vertical_terms = [causal_vertical_conv(
                vertical, 2 * filters, plan.row_growth[layer - 1], plan.col_growth[layer - 1],
                weight_norm, f"{prefix}_v_conv")]
            if z_later:
                vertical_terms.append(z_projection(f"{prefix}_v_z"))
            vertical_pre = _sum(vertical_terms, f"{prefix}_v_sum")
            vertical_out = nn.GatedActivation(name=f"{prefix}_v_gate")(vertical_pre)
            vertical = keras.layers.Add(name=f"{prefix}_v_residual")([vertical, vertical_out])
            terms.append(_conv(2 * filters, 1, weight_norm, f"{prefix}_link")(vertical_pre))
        if z_later:
            terms.append(z_projection(f"{prefix}_h_z"))
        gated = nn.GatedActivation(name=f"{prefix}_h_gate")(_sum(terms, f"{prefix}_h_sum"))
        update = _conv(filters, 1, weight_norm, f"{prefix}_h_out", init_scale=0.1)(gated)
        horizontal = keras.layers.Add(name=f"{prefix}_h_residual")([horizontal, update])

    # Extra 1x1 gated residual blocks (the paper's binary decoder has 4): depth without
    # widening the window.
    for block in range(config.decoder_residual_blocks):
        prefix = f"res{block}"
        terms = [_conv(2 * filters, 1, weight_norm, f"{prefix}_conv")(horizontal)]
        if z_later:
            terms.append(z_projection(f"{prefix}_z"))
        gated = nn.GatedActivation(name=f"{prefix}_gate")(_sum(terms, f"{prefix}_sum"))
        update = _conv(filters, 1, weight_norm, f"{prefix}_out", init_scale=0.1)(gated)
        horizontal = keras.layers.Add(name=f"{prefix}_residual")([horizontal, update])

    hidden = keras.layers.Activation("elu", name="head_elu")(horizontal)
    params = _conv(num_params, 1, weight_norm, "head", init_scale=0.1)(hidden)
    params = keras.layers.Activation("linear", dtype="float32", name="params")(params)
    return keras.Model(inputs, params, name=name)


def _likelihood_kwargs(config):
    return {"num_mixtures": config.num_mixtures} if config.likelihood == "logistic_mixture" else {}


def build_latent_map(config, name="latent_map") -> keras.Model:
    """z [B, latent_size] -> [B, H, W, z_map_channels] by two stride-2 transposed convs."""
    height, width, _ = config.image_shape
    weight_norm = config.weight_norm
    base_height, base_width = math.ceil(height / 4), math.ceil(width / 4)
    hidden_channels = max(config.z_map_channels, 16)
    latent = keras.Input(shape=(config.latent_size,), name="z")
    features = nn.Dense(base_height * base_width * hidden_channels, use_weight_norm=weight_norm,
                        name="z_dense")(latent)
    features = keras.layers.Activation("elu")(features)
    features = keras.layers.Reshape((base_height, base_width, hidden_channels))(features)
    features = nn.Conv2D(hidden_channels, 3, strides=2, transpose=True,
                         use_weight_norm=weight_norm, name="z_up1")(features)
    features = keras.layers.Activation("elu")(features)
    features = nn.Conv2D(config.z_map_channels, 3, strides=2, transpose=True,
                         use_weight_norm=weight_norm, name="z_up2")(features)
    crop_height, crop_width = 4 * base_height - height, 4 * base_width - width
    if crop_height or crop_width:
        features = keras.layers.Cropping2D(((0, crop_height), (0, crop_width)))(features)
    return keras.Model(latent, features, name=name)
