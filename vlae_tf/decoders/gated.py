"""The gated windowed PixelCNN: a receptive field of exactly the configured window.

    p(x | z) = prod_i p(x_i | z, x_{W(i)})

The layer plan (kernel sizes per layer) comes from `vlae_tf.window.plan_window`, which is
the only place that knows how a window maps to kernels; this module wires layers (`build`)
and evaluates the same layers pixel by pixel for the cached sampler (`Incremental`).
Causality is by explicit padding and cropping (shifted convolutions, as in PixelCNN++),
never by masking kernels: the vertical stack is shifted down one row, the horizontal stack
right one pixel, so the output at pixel (i, j) sees no channel of pixel (i, j) itself.
Dependence between R, G and B of one pixel lives in the likelihood.

z enters as a spatial map (`vlae_tf.decoder.build_latent_map`): "concat" adds it, through a
1x1 kernel at the pixel's own position, to the first layer (the same as concatenating it to
the input image with an unshifted kernel, since z carries no information about x); "gated"
adds a 1x1 projection of it to the gates of every later block (conditional gating, van den
Oord et al. 2016); "both" does both.

**Incremental evaluation** (`Incremental`, after Ramachandran et al. 2017, "Fast generation
for convolutional autoregressive models"):

* The **vertical stack** at row r sees only rows < r of the image. So once row r-1 is
  sampled, the whole vertical stack of row r -- every layer, every column -- is computed in
  one go from a cache: the last `first_height` image rows for the first layer and, for each
  later layer l, the last `row_growth[l]` rows of layer l-1's output. That is H single-row
  passes per image instead of H*W full passes. The 1x1 links from the vertical into the
  horizontal stack and the 1x1 projections of the z map are computed for the row too.
* The **horizontal stack** at pixel (r, c) reads the image only through its first layer,
  a 1 x `left` convolution of the `left` pixels to the left (kept in a rolling buffer);
  every later layer is 1x1. So per pixel there remain a handful of [B, C] x [C, C']
  matrix products, the gated activations and the likelihood draw.

Zero padding is reproduced exactly: the full decoder zero-pads each layer's *input* (not
the image), so the caches start as zeros and the rows/columns outside the image are zeros
of the layer's input, never features of a blank image. The layers' names are stated once,
in `conv_names`: `build` checks that it created exactly those, and `Incremental` reads them.
"""

from __future__ import annotations

from typing import Dict, List

import keras
import tensorflow as tf

from vlae_tf import window as window_lib
from vlae_tf.decoders import base
from vlae_tf.decoders.base import DTYPE, UnsupportedDecoder
from vlae_tf.nn import layers as nn

NAME = "gated"


def receptive_field(config, row: int, col: int):
    """The pixels the output at (row, col) depends on: exactly the window W(row, col)."""
    height, width, _ = config.image_shape
    return window_lib.window_mask(config.window, height, width, row, col)


def _plan(config):
    height, width, _ = config.image_shape
    return window_lib.plan_window(config.window, config.decoder_layers, height, width)


def conv_names(config) -> List[str]:
    """The weighted layers of the gated decoder for `config`, by name."""
    plan = _plan(config)
    z_first = config.use_latent and config.z_conditioning in ("concat", "both")
    z_later = config.use_latent and config.z_conditioning in ("gated", "both")
    names = []
    if plan.sees_above:
        names += ["v0_conv", "h0_link"] + (["v0_z"] if z_first else [])
    if plan.sees_left:
        names.append("h0_conv")
    if z_first:
        names.append("h0_z")
    for layer in range(1, plan.num_layers):
        names += [f"layer{layer}_h_conv", f"layer{layer}_h_out"]
        if plan.sees_above:
            names += [f"layer{layer}_v_conv", f"layer{layer}_link"]
            if z_later:
                names.append(f"layer{layer}_v_z")
        if z_later:
            names.append(f"layer{layer}_h_z")
    for block in range(config.decoder_residual_blocks):
        names += [f"res{block}_conv", f"res{block}_out"]
        if z_later:
            names.append(f"res{block}_z")
    names.append("head")
    return names


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
    return nn.Crop2D(((0, outputs.shape[1] - height), (0, 0)),
                     name=f"{name}_crop")(outputs)


def right_shifted_conv(inputs, filters, pixels_left, weight_norm, name):
    """Output at (r, c) sees input row r, columns c-pixels_left..c-1."""
    width = inputs.shape[2]
    padded = keras.layers.ZeroPadding2D(((0, 0), (pixels_left, 0)), name=f"{name}_pad")(inputs)
    outputs = _conv(filters, (1, pixels_left), weight_norm, name)(padded)
    return nn.Crop2D(((0, 0), (0, outputs.shape[2] - width)),
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


def build(config, name="pixelcnn") -> keras.Model:
    """Functional model [images in [-1,1], (z_map)] -> per-pixel likelihood parameters.

    `config` is a VLAEConfig; the output has `num_params` channels for its likelihood.
    """
    height, width, channels = config.image_shape
    plan = window_lib.plan_window(config.window, config.decoder_layers, height, width)
    filters, weight_norm = config.decoder_filters, config.weight_norm
    num_params = base.num_params(config)

    images, z_map, inputs = base.functional_inputs(config)
    z_first = z_map is not None and config.z_conditioning in ("concat", "both")
    z_later = z_map is not None and config.z_conditioning in ("gated", "both")
    visible = base.DecoderInput(grayscale=config.grayscale_window, name="window_input")(images)

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
        terms.append(base.LearnedConstantMap(2 * filters, name="h0_constant")(images))
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
    model = keras.Model(inputs, params, name=name)
    created = sorted(layer.name for layer in model.layers if isinstance(layer, nn.Conv2D))
    if created != sorted(conv_names(config)):  # the incremental step reads these by name
        raise AssertionError(f"gated decoder: built {created}, conv_names() says "
                             f"{sorted(conv_names(config))}")
    return model


class _Conv:
    """One weight-normalised `nn.Conv2D`, read once per call: conv(x, g * v / ||v||) + b."""

    def __init__(self, layer: nn.Conv2D):
        if layer.transpose or layer.strides != 1 or layer.padding != "VALID":
            raise UnsupportedDecoder(f"layer {layer.name}: expected a stride-1 'valid' conv")
        self.name = layer.name
        self.filters = layer.filters
        with base.float64_compute(layer):  # the layer's own kernel g * v / ||v||, in float64
            self.kernel = tf.cast(layer.effective_kernel(norm_axes=(0, 1, 2)), DTYPE)
            self.bias = tf.cast(layer.bias, DTYPE)
        self.matrix = tf.reshape(self.kernel, [-1, self.filters])

    def _affine(self, outputs):
        # The same op as nn.Conv2D.call after its convolution.
        return outputs + self.bias

    def conv(self, inputs):
        """[B, h, w, C] -> 'valid' convolution [B, h', w', filters]."""
        return self._affine(tf.nn.conv2d(inputs, self.kernel, strides=1, padding="VALID"))

    def dense(self, inputs):
        """[B, kh*kw*C] (one receptive field, flattened like the kernel) -> [B, filters]."""
        return self._affine(tf.matmul(inputs, self.matrix))


def _fold_sum(tensors):
    """keras.layers.Add: a left fold, in the decoder's term order."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


def _gate(inputs):
    """nn.GatedActivation: tanh(a) * sigmoid(b) for the two halves of the last axis."""
    value, gate = tf.split(inputs, 2, axis=-1)
    return tf.tanh(value) * tf.sigmoid(gate)


def _pad_columns(tensor, half_width):
    """Zero-pads axis 2 of [B, h, W, C] by `half_width` on both sides."""
    if half_width == 0:
        return tensor
    return tf.pad(tensor, [[0, 0], [0, 0], [half_width, half_width], [0, 0]])


class Incremental(base.IncrementalDecoder):
    """The gated decoder's layers, grouped the way the cached sampler evaluates them.

    Built from the model's config and its `pixelcnn`: the layer plan comes from
    `window.plan_window` (as in `build`); the pixelcnn's weighted layers must be exactly
    `conv_names(config)`, or `UnsupportedDecoder` is raised (use `method="naive"`).
    """

    def __init__(self, model):
        config = model.config
        self.config = config
        height, width, channels = config.image_shape
        self.height, self.width, self.channels = height, width, channels
        self.plan = _plan(config)
        self.filters = config.decoder_filters
        self.pixelcnn = model.pixelcnn
        self.use_latent = config.use_latent
        self.z_first = self.use_latent and config.z_conditioning in ("concat", "both")
        self.z_later = self.use_latent and config.z_conditioning in ("gated", "both")
        self.visible_channels = (1 if config.grayscale_window else channels) + 1
        self.conv_names = conv_names(config)
        found = sorted(layer.name for layer in self.pixelcnn.layers
                       if isinstance(layer, nn.Conv2D))
        if found != sorted(self.conv_names):
            raise UnsupportedDecoder(
                f"cached sampler: the decoder's convolutions {found} are not the expected "
                f"{sorted(self.conv_names)}; use method='naive'")
        # Stateless (no weights); absent from the pixelcnn when the window is empty.
        self.window_input = base.DecoderInput(grayscale=config.grayscale_window,
                                              dtype="float64")
        self.head_activation = self.pixelcnn.get_layer("head_elu").activation
        self.constant = None
        if not (self.plan.sees_above or self.plan.sees_left or self.z_first):
            self.constant = self.pixelcnn.get_layer("h0_constant")

    def read_weights(self) -> Dict[str, _Conv]:
        """Normalised kernels, gains and biases in float64: once per sampling call."""
        return {name: _Conv(self.pixelcnn.get_layer(name)) for name in self.conv_names}

    def visible(self, scaled):
        """[..., C] decoder input in [-1, 1] -> [..., Cv] what the window sees (+ ones)."""
        return self.window_input(scaled)

    # ------------------------------------------------------------------ one row (vertical)
    def row_terms(self, weights, vertical_inputs, caches, z_row):
        """Everything of row r that does not depend on row r itself.

        vertical_inputs: [B, first_height, W + 2*first_half_width, Cv], image rows r-fh..r-1
          (zeros above the image), as seen by the first vertical layer.
        caches: per later layer l, [B, row_growth, W + 2*col_growth, F]: layer l-1's vertical
          output on the previous rows (zeros above the image).
        z_row: [B, 1, W, Cz] or None.
        Returns (terms [B, W, T, 2F] or None, new caches); terms are, in order, the row
        contributions to the pre-activations of h0, layer1..L-1 and res0.. (see `pixel`).
        """
        plan = self.plan
        terms = []
        new_caches = []
        vertical = None
        if plan.sees_above:
            pre = [weights["v0_conv"].conv(vertical_inputs)]
            if self.z_first:
                pre.append(weights["v0_z"].conv(z_row))
            vertical_pre = _fold_sum(pre)
            vertical = _gate(vertical_pre)
            terms.append(weights["h0_link"].conv(vertical_pre))
        if self.z_first:
            terms.append(weights["h0_z"].conv(z_row))
        for layer in range(1, plan.num_layers):
            prefix = f"layer{layer}"
            if vertical is not None:
                rows, half_width = plan.row_growth[layer - 1], plan.col_growth[layer - 1]
                current = _pad_columns(vertical, half_width)
                if rows > 0:
                    window = tf.concat([caches[layer - 1], current], axis=1)
                    new_caches.append(window[:, 1:])
                else:
                    window = current
                    new_caches.append(caches[layer - 1])
                pre = [weights[f"{prefix}_v_conv"].conv(window)]
                if self.z_later:
                    pre.append(weights[f"{prefix}_v_z"].conv(z_row))
                vertical_pre = _fold_sum(pre)
                vertical = vertical + _gate(vertical_pre)
                terms.append(weights[f"{prefix}_link"].conv(vertical_pre))
            if self.z_later:
                terms.append(weights[f"{prefix}_h_z"].conv(z_row))
        if self.z_later:
            for block in range(self.config.decoder_residual_blocks):
                terms.append(weights[f"res{block}_z"].conv(z_row))
        if not terms:
            return None, new_caches
        return tf.stack([term[:, 0] for term in terms], axis=2), new_caches

    def initial_caches(self, batch):
        plan = self.plan
        caches = []
        if plan.sees_above:
            for layer in range(1, plan.num_layers):
                rows, half_width = plan.row_growth[layer - 1], plan.col_growth[layer - 1]
                caches.append(tf.zeros(
                    [batch, rows, self.width + 2 * half_width, self.filters], DTYPE))
        return caches

    # --------------------------------------------------------------- one pixel (horizontal)
    def pixel_params(self, weights, left_pixels, terms):
        """Parameters [B, P] (float64) of one pixel.

        left_pixels: [B, left * Cv], the decoder input of the `left` pixels to its left
          (zeros outside the image), flattened like the h0_conv kernel.
        terms: list of [B, 2F] row contributions (see `row_terms`), or [].
        """
        plan = self.plan
        terms = list(terms)
        h0 = []
        if plan.sees_left:
            h0.append(weights["h0_conv"].dense(left_pixels))
        if plan.sees_above:
            h0.append(terms.pop(0))
        if self.z_first:
            h0.append(terms.pop(0))
        if self.constant is not None:
            value = tf.cast(self.constant.value, DTYPE)
            batch = tf.shape(left_pixels)[0]
            h0 = [tf.broadcast_to(value, [batch, 2 * self.filters])]
        horizontal = _gate(_fold_sum(h0))
        for layer in range(1, plan.num_layers):
            prefix = f"layer{layer}"
            pre = [weights[f"{prefix}_h_conv"].dense(horizontal)]
            if plan.sees_above:
                pre.append(terms.pop(0))
            if self.z_later:
                pre.append(terms.pop(0))
            update = weights[f"{prefix}_h_out"].dense(_gate(_fold_sum(pre)))
            horizontal = horizontal + update
        for block in range(self.config.decoder_residual_blocks):
            pre = [weights[f"res{block}_conv"].dense(horizontal)]
            if self.z_later:
                pre.append(terms.pop(0))
            update = weights[f"res{block}_out"].dense(_gate(_fold_sum(pre)))
            horizontal = horizontal + update
        assert not terms, "row terms left over: Incremental and build disagree"
        return weights["head"].dense(self.head_activation(horizontal))



    # ------------------------------------------------ base.IncrementalDecoder interface
    def initial_row_state(self, weights, batch):
        plan = self.plan
        vertical_inputs = tf.zeros(
            [batch, plan.first_height, self.width + 2 * plan.first_half_width,
             self.visible_channels], DTYPE)
        return (vertical_inputs, tuple(self.initial_caches(batch)))

    def start_row(self, weights, row_state, z_row):
        vertical_inputs, caches = row_state
        terms, caches = self.row_terms(weights, vertical_inputs, list(caches), z_row)
        # [W, B, T, 2F]: one gather per pixel fetches all row contributions.
        columns = None if terms is None else tf.transpose(terms, [1, 0, 2, 3])
        return (vertical_inputs, tuple(caches)), columns

    def initial_pixel_state(self, weights, row_state, batch):
        return (tf.zeros([batch, self.plan.left, self.visible_channels], DTYPE),)

    def pixel(self, weights, pixel_state, column):
        (left_window,) = pixel_state
        terms = [] if column is None else tf.unstack(column, axis=1)
        batch = tf.shape(left_window)[0]
        left_pixels = tf.reshape(left_window, [batch, self.plan.left * self.visible_channels])
        return self.pixel_params(weights, left_pixels, terms), pixel_state

    def after_pixel(self, weights, pixel_state, visible, column, col):
        (left_window,) = pixel_state
        if self.plan.left > 0:
            left_window = tf.concat([left_window[:, 1:], visible[:, None]], axis=1)
        return (left_window,)

    def end_row(self, weights, row_state, pixel_state, visible_row):
        vertical_inputs, caches = row_state
        if self.plan.sees_above:
            visible_row = _pad_columns(visible_row[:, None], self.plan.first_half_width)
            vertical_inputs = tf.concat([vertical_inputs[:, 1:], visible_row], axis=1)
        return (vertical_inputs, caches)
