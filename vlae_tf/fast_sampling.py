"""Cached windowed sampler: the decoder's work for pixel i is O(window), not a full pass.

The windowed gated PixelCNN of `vlae_tf.decoder` has a structure that makes generation
cheap (the idea of Ramachandran et al. 2017, "Fast generation for convolutional
autoregressive models", specialised to this decoder):

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
of the layer's input, never features of a blank image.

**Identical images.** Pixel i (raster order) is drawn by `likelihood.sample(params_i,
pixel_seed(seed, i), temperature)` with `params_i` of shape [B, 1, 1, P] in both samplers,
so the random numbers are the same. The parameters cannot be bit-identical in float32: the
libraries pick other summation orders for a [B, C] x [C, C'] product than for a convolution
over [B, H, W, C], other vectorised tanh/log code paths for other shapes, and XLA contracts
multiply-adds; the two samplers' float32 parameters differ by ~1e-6, and a draw whose
decision variable lies that close to its threshold flips. For 8-bit data that is not rare
(rounding to 256 bins magnifies the difference ~128x: about one flip per 32x32x3 image).
So both samplers evaluate the decoder in **float64** (weights and inputs cast from the
model's float32), and the likelihood draws in float64 too: the two computations then agree
to ~1e-15 and a draw could only differ if its decision variable fell within ~1e-15 of a
threshold (about 1e-9 per 32x32x3 image). The float64 parameters equal the model's float32
decoder to float32 precision (tests/test_sampling.py).
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional

import tensorflow as tf
from keras.src.backend import AutocastScope

from vlae_tf import decoder as decoder_lib
from vlae_tf import window as window_lib
from vlae_tf.nn import layers as nn

# The dtype both samplers evaluate the decoder in (see the module docstring).
DTYPE = tf.float64


def pixel_seed(seed, index):
    """The seed of pixel `index` (raster order), shared by both samplers.

    alg="philox" explicitly: with the default "auto_select", `stateless_fold_in` gives
    other numbers under XLA than without it for most seeds (TF 2.21, CPU), which would make
    the XLA-compiled sampler draw other images.
    """
    return tf.random.experimental.stateless_fold_in(seed, index, alg="philox")


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


class UnsupportedDecoder(ValueError):
    """The decoder is not the windowed gated PixelCNN this sampler mirrors."""


class _Conv:
    """One weight-normalised `nn.Conv2D`, read once per call: conv(x, v/||v||) * g + b."""

    def __init__(self, layer: nn.Conv2D):
        if layer.transpose or layer.strides != 1 or layer.padding != "VALID":
            raise UnsupportedDecoder(f"layer {layer.name}: expected a stride-1 'valid' conv")
        self.name = layer.name
        self.filters = layer.filters
        with float64_compute(layer):  # the layer's own normalisation, in float64
            self.kernel = tf.cast(layer._normalised_kernel(norm_axes=(0, 1, 2)), DTYPE)
            self.gain = tf.cast(layer.gain, DTYPE) if layer.use_weight_norm else None
            self.bias = tf.cast(layer.bias, DTYPE)
        self.matrix = tf.reshape(self.kernel, [-1, self.filters])

    def _affine(self, outputs):
        # The same two ops, in the same order, as nn.Conv2D.call.
        if self.gain is not None:
            outputs = outputs * self.gain
        return outputs + self.bias

    def conv(self, inputs):
        """[B, h, w, C] -> 'valid' convolution [B, h', w', filters]."""
        return self._affine(tf.nn.conv2d(inputs, self.kernel, strides=1, padding="VALID"))

    def dense(self, inputs):
        """[B, kh*kw*C] (one receptive field, flattened like the kernel) -> [B, filters]."""
        return self._affine(tf.matmul(inputs, self.matrix))


def _sum(tensors):
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


class DecoderMirror:
    """The decoder's layers, grouped the way the cached sampler evaluates them.

    Built from the model's config and its `pixelcnn`: the layer plan comes from
    `window.plan_window` (as in `decoder.build_pixelcnn`); every weighted layer of the
    pixelcnn must be one this mirror knows, or `UnsupportedDecoder` is raised (use
    `method="naive"` for a decoder that is not the standard windowed gated PixelCNN).
    """

    def __init__(self, model):
        config = model.config
        self.config = config
        height, width, channels = config.image_shape
        self.height, self.width, self.channels = height, width, channels
        self.plan = window_lib.plan_window(config.window, config.decoder_layers, height, width)
        self.filters = config.decoder_filters
        self.pixelcnn = model.pixelcnn
        self.use_latent = config.use_latent
        self.z_first = self.use_latent and config.z_conditioning in ("concat", "both")
        self.z_later = self.use_latent and config.z_conditioning in ("gated", "both")
        self.visible_channels = (1 if config.grayscale_window else channels) + 1
        self.conv_names = self._expected_conv_names()
        found = sorted(layer.name for layer in self.pixelcnn.layers
                       if isinstance(layer, nn.Conv2D))
        if found != sorted(self.conv_names):
            raise UnsupportedDecoder(
                f"cached sampler: the decoder's convolutions {found} are not the expected "
                f"{sorted(self.conv_names)}; use method='naive'")
        # Stateless (no weights); absent from the pixelcnn when the window is empty.
        self.window_input = decoder_lib.DecoderInput(grayscale=config.grayscale_window,
                                                     dtype="float64")
        self.head_activation = self.pixelcnn.get_layer("head_elu").activation
        self.constant = None
        if not (self.plan.sees_above or self.plan.sees_left or self.z_first):
            self.constant = self.pixelcnn.get_layer("h0_constant")

    def _expected_conv_names(self) -> List[str]:
        plan = self.plan
        names = []
        if plan.sees_above:
            names += ["v0_conv", "h0_link"] + (["v0_z"] if self.z_first else [])
        if plan.sees_left:
            names.append("h0_conv")
        if self.z_first:
            names.append("h0_z")
        for layer in range(1, plan.num_layers):
            names += [f"layer{layer}_h_conv", f"layer{layer}_h_out"]
            if plan.sees_above:
                names += [f"layer{layer}_v_conv", f"layer{layer}_link"]
                if self.z_later:
                    names.append(f"layer{layer}_v_z")
            if self.z_later:
                names.append(f"layer{layer}_h_z")
        for block in range(self.config.decoder_residual_blocks):
            names += [f"res{block}_conv", f"res{block}_out"]
            if self.z_later:
                names.append(f"res{block}_z")
        names.append("head")
        return names

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
            vertical_pre = _sum(pre)
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
                vertical_pre = _sum(pre)
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
    def pixel(self, weights, left_pixels, terms):
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
        horizontal = _gate(_sum(h0))
        for layer in range(1, plan.num_layers):
            prefix = f"layer{layer}"
            pre = [weights[f"{prefix}_h_conv"].dense(horizontal)]
            if plan.sees_above:
                pre.append(terms.pop(0))
            if self.z_later:
                pre.append(terms.pop(0))
            update = weights[f"{prefix}_h_out"].dense(_gate(_sum(pre)))
            horizontal = horizontal + update
        for block in range(self.config.decoder_residual_blocks):
            pre = [weights[f"res{block}_conv"].dense(horizontal)]
            if self.z_later:
                pre.append(terms.pop(0))
            update = weights[f"res{block}_out"].dense(_gate(_sum(pre)))
            horizontal = horizontal + update
        assert not terms, "row terms left over: mirror and decoder disagree"
        return weights["head"].dense(self.head_activation(horizontal))


def pixel_loop(model, z_map, num, seed, temperature, mirror: Optional[DecoderMirror] = None,
               record_params: bool = False, exact: Optional[bool] = None):
    """x row by row, pixel by pixel with cached decoder state; float32 values [B, H, W, C].

    The arguments are those of `vlae_tf.sampling.naive_pixel_loop` (z_map [B, H, W, Cz] in
    any float dtype -- float64 from `sampling.latent_map64` for bit-identical images -- or
    None, num: batch size used when z_map is None, seed int32[2], temperature), and so are
    the random numbers. Traceable with and without autograph, and under XLA.

    record_params: also return the float64 parameters used for every pixel [B, H, W, P]
      (tests: they must match a full decoder pass over the returned image).
    exact: ignored (kept for callers of an earlier version): every call draws the naive
      sampler's images, with or without XLA.
    """
    del exact
    mirror = mirror or DecoderMirror(model)
    plan = mirror.plan
    height, width, channels = mirror.height, mirror.width, mirror.channels
    visible_channels = mirror.visible_channels
    likelihood = model.likelihood
    weights = mirror.read_weights()
    batch = num if z_map is None else tf.shape(z_map)[0]
    seed = tf.convert_to_tensor(seed)
    z_map = None if z_map is None else as_decoder_input(z_map)

    def columns(row, terms_by_column):
        """Samples row `row` pixel by pixel: values, decoder inputs [W, B, *], params."""

        def column_body(col, left_window, values_out, visible_out, params_out):
            pixel_terms = [] if terms_by_column is None else tf.unstack(
                tf.gather(terms_by_column, col), axis=1)
            left_pixels = tf.reshape(left_window, [batch, plan.left * visible_channels])
            params = mirror.pixel(weights, left_pixels, pixel_terms)
            draw = likelihood.sample(params[:, None, None, :],
                                     pixel_seed(seed, row * width + col), temperature)
            visible = mirror.visible(as_decoder_input(scale_values(model, draw)))[:, 0, 0]
            if plan.left > 0:
                left_window = tf.concat([left_window[:, 1:], visible[:, None]], axis=1)
            if record_params:
                params_out = params_out.write(col, params)
            return (col + 1, left_window, values_out.write(col, draw[:, 0, 0]),
                    visible_out.write(col, visible), params_out)

        left_window = tf.zeros([batch, plan.left, visible_channels], DTYPE)
        values_ta = tf.TensorArray(tf.float32, size=width, element_shape=[None, channels])
        visible_ta = tf.TensorArray(DTYPE, size=width, element_shape=[None, visible_channels])
        params_ta = tf.TensorArray(DTYPE, size=width if record_params else 0,
                                   infer_shape=False)
        _, _, values_ta, visible_ta, params_ta = tf.while_loop(
            lambda col, *_: col < width, column_body,
            (tf.constant(0), left_window, values_ta, visible_ta, params_ta))
        params_cols = params_ta.stack() if record_params else None
        return values_ta.stack(), visible_ta.stack(), params_cols

    def row_body(row, vertical_inputs, caches, rows_out, params_out):
        z_row = None if z_map is None else tf.gather(z_map, [row], axis=1)
        terms, caches = mirror.row_terms(weights, vertical_inputs, caches, z_row)
        # [W, B, T, 2F]: one gather per pixel fetches all row contributions.
        terms_by_column = None if terms is None else tf.transpose(terms, [1, 0, 2, 3])
        values_cols, visible_cols, params_cols = columns(row, terms_by_column)
        rows_out = rows_out.write(row, tf.transpose(values_cols, [1, 0, 2]))
        if record_params:
            params_out = params_out.write(row, tf.transpose(params_cols, [1, 0, 2]))
        if plan.sees_above:
            visible_row = tf.transpose(visible_cols, [1, 0, 2])[:, None]
            visible_row = _pad_columns(visible_row, plan.first_half_width)
            vertical_inputs = tf.concat([vertical_inputs[:, 1:], visible_row], axis=1)
        return row + 1, vertical_inputs, caches, rows_out, params_out

    vertical_inputs = tf.zeros(
        [batch, plan.first_height, width + 2 * plan.first_half_width, visible_channels], DTYPE)
    caches = mirror.initial_caches(batch)
    rows_ta = tf.TensorArray(tf.float32, size=height, element_shape=[None, width, channels])
    params_ta = tf.TensorArray(DTYPE, size=height if record_params else 0, infer_shape=False)
    _, _, _, rows_ta, params_ta = tf.while_loop(
        lambda row, *_: row < height, row_body,
        (tf.constant(0), vertical_inputs, caches, rows_ta, params_ta))
    values = tf.transpose(rows_ta.stack(), [1, 0, 2, 3])
    if record_params:
        return values, tf.transpose(params_ta.stack(), [1, 0, 2, 3])
    return values
