"""Cached sampler: the decoder's work for pixel i is O(receptive field), not a full pass.

Each decoder family owns its incremental step (`vlae_tf.decoders.<family>.Incremental`,
next to the family's Keras builder; interface: `vlae_tf.decoders.base.IncrementalDecoder`);
`pixel_loop` here drives it row by row and pixel by pixel and draws every pixel exactly as
the naive sampler does (the idea of Ramachandran et al. 2017, "Fast generation for
convolutional autoregressive models").

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

from typing import Optional

import tensorflow as tf

from vlae_tf import decoders
from vlae_tf.decoders.base import (  # noqa: F401  (re-exported for callers)
    DTYPE, IncrementalDecoder, UnsupportedDecoder, as_decoder_input, float64_compute,
    scale_values)


def pixel_seed(seed, index):
    """The seed of pixel `index` (raster order), shared by both samplers.

    alg="philox" explicitly: with the default "auto_select", `stateless_fold_in` gives
    other numbers under XLA than without it for most seeds (TF 2.21, CPU), which would make
    the XLA-compiled sampler draw other images.
    """
    return tf.random.experimental.stateless_fold_in(seed, index, alg="philox")


def subpixel_seed(seed, index, channel):
    """The seed of sub-pixel `channel` of pixel `index` (raster order), for decoders that
    are sampled sub-pixel by sub-pixel (`CHANNEL_AUTOREGRESSIVE` families, e.g.
    "pixelcnnpp"): the pixel's seed, folded with the channel."""
    return tf.random.experimental.stateless_fold_in(pixel_seed(seed, index), channel,
                                                    alg="philox")


def pixel_loop(model, z_map, num, seed, temperature,
               incremental: Optional[IncrementalDecoder] = None,
               record_params: bool = False, exact: Optional[bool] = None):
    """x row by row, pixel by pixel with cached decoder state; float32 values [B, H, W, C].

    The arguments are those of `vlae_tf.sampling.naive_pixel_loop` (z_map [B, H, W, Cz] in
    any float dtype -- float64 from `sampling.latent_map64` for bit-identical images -- or
    None, num: batch size used when z_map is None, seed int32[2], temperature), and so are
    the random numbers. Traceable with and without autograph, and under XLA.

    incremental: the family's incremental decoder (default: `decoders.incremental(model)`).
      A step with `draws_subpixels` (channel-autoregressive, "pixelcnnpp") draws the pixel
      itself, sub-pixel by sub-pixel with `subpixel_seed` (`pixel_draw`), as the naive
      sampler does.
    record_params: also return the float64 parameters used for every pixel [B, H, W, P]
      (tests: they must match a full decoder pass over the returned image).
    exact: ignored (kept for callers of an earlier version): every call draws the naive
      sampler's images, with or without XLA.
    """
    del exact
    step = incremental or decoders.incremental(model)
    height, width, channels = step.height, step.width, step.channels
    visible_channels = step.visible_channels
    likelihood = model.likelihood
    weights = step.read_weights()
    batch = num if z_map is None else tf.shape(z_map)[0]
    seed = tf.convert_to_tensor(seed)
    z_map = None if z_map is None else as_decoder_input(z_map)

    def columns(row, row_columns, row_state):
        """Samples row `row` pixel by pixel: values and decoder inputs [W, B, *], params."""

        def column_body(col, pixel_state, values_out, visible_out, params_out):
            column = None if row_columns is None else tf.nest.map_structure(
                lambda tensor: tf.gather(tensor, col), row_columns)
            if getattr(step, "draws_subpixels", False):  # channel-autoregressive family
                index = row * width + col
                draw, params, pixel_state = step.pixel_draw(
                    weights, pixel_state, column, likelihood, temperature,
                    lambda channel: subpixel_seed(seed, index, channel))
            else:
                params, pixel_state = step.pixel(weights, pixel_state, column)
                draw = likelihood.sample(params[:, None, None, :],
                                         pixel_seed(seed, row * width + col), temperature)
            visible = step.visible(as_decoder_input(scale_values(model, draw)))[:, 0, 0]
            pixel_state = step.after_pixel(weights, pixel_state, visible, column, col)
            if record_params:
                params_out = params_out.write(col, params)
            return (col + 1, pixel_state, values_out.write(col, draw[:, 0, 0]),
                    visible_out.write(col, visible), params_out)

        values_ta = tf.TensorArray(tf.float32, size=width, element_shape=[None, channels])
        visible_ta = tf.TensorArray(DTYPE, size=width, element_shape=[None, visible_channels])
        params_ta = tf.TensorArray(DTYPE, size=width if record_params else 0,
                                   infer_shape=False)
        _, pixel_state, values_ta, visible_ta, params_ta = tf.while_loop(
            lambda col, *_: col < width, column_body,
            (tf.constant(0), step.initial_pixel_state(weights, row_state, batch), values_ta,
             visible_ta,
             params_ta))
        params_cols = params_ta.stack() if record_params else None
        return pixel_state, values_ta.stack(), visible_ta.stack(), params_cols

    def row_body(row, row_state, rows_out, params_out):
        z_row = None if z_map is None else tf.gather(z_map, [row], axis=1)
        row_state, row_columns = step.start_row(weights, row_state, z_row)
        pixel_state, values_cols, visible_cols, params_cols = columns(row, row_columns,
                                                                     row_state)
        rows_out = rows_out.write(row, tf.transpose(values_cols, [1, 0, 2]))
        if record_params:
            params_out = params_out.write(row, tf.transpose(params_cols, [1, 0, 2]))
        row_state = step.end_row(weights, row_state, pixel_state,
                                 tf.transpose(visible_cols, [1, 0, 2]))
        return row + 1, row_state, rows_out, params_out

    rows_ta = tf.TensorArray(tf.float32, size=height, element_shape=[None, width, channels])
    params_ta = tf.TensorArray(DTYPE, size=height if record_params else 0, infer_shape=False)
    _, _, rows_ta, params_ta = tf.while_loop(
        lambda row, *_: row < height, row_body,
        (tf.constant(0), step.initial_row_state(weights, batch), rows_ta, params_ta))
    values = tf.transpose(rows_ta.stack(), [1, 0, 2, 3])
    if record_params:
        return values, tf.transpose(params_ta.stack(), [1, 0, 2, 3])
    return values
