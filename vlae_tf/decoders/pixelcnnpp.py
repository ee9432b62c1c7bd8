"""The paper's CIFAR-10 decoder: a conditional, windowed, channel-autoregressive PixelCNN++.

    p(x | z) = prod_i prod_c p(x_{i,c} | z, x_{W(i)}, x_{i,<c})      (c = R, G, B)

Chen et al. 2017, Sec. 4.3 / App. B: "Conditional PixelCNN++ (Salimans et al. 2017),
channel-autoregressive variant", "4 blocks of 64 feature maps" with gated ResNet
connections, and a receptive field set by the number of vertical and horizontal layers
(4x2: 1 + 2, 5x3: 2 + 2, 7x4: 3 + 3; "7x4 grayscale": 7x4 with the window's pixels seen as
0.299R + 0.587G + 0.114B, `base.DecoderInput`).

**Network** (PixelCNN++ building blocks, F = `decoder_filters`, z_map = [B, H, W, Cz]):

    concat_elu(t)  = elu([t, -t])
    gated(t; conv, a) = t + A * sigmoid(B),  [A, B] = nin_2F(drop(concat_elu(c1))) + nin_2F(z_map),
                        c1 = conv_F(concat_elu(t)) + nin_F(concat_elu(a))     (a optional)

    u_1  = down_shift(down_shifted_conv_[2,3](x))                    (vertical stream u)
    ul_1 = down_shift(down_shifted_conv_[1,3](x))
           + right_shift(down_right_shifted_conv_[2,1](x))           (horizontal stream ul)
    u_m  = gated(u_{m-1}; down_shifted_conv_[2,3])                    m = 2..V
    ul_k = gated(ul_{k-1}; down_right_shifted_conv_[2,2], a = u_{min(k, V)})   k = 2..H
    h    = R gated 1x1 blocks on ul_H (`decoder_residual_blocks`; conv = nin)

A down-shifted [kh, kw] conv pads kh-1 rows on top and (kw-1)/2 columns each side (output
(i, j) reads rows i-kh+1..i, columns j-(kw-1)/2..j+(kw-1)/2); a down-right-shifted one pads
kh-1 rows on top and kw-1 columns on the left (rows i-kh+1..i, columns j-kw+1..j);
down_shift / right_shift move a map one row down / one column right (zeros enter). Every
layer zero-pads its own input, as in PixelCNN++; x carries a channel of ones so the first
layers can tell padding from content. The z map enters *every* gated ResNet block (u, ul,
the 1x1 blocks and the head) through a 1x1 projection added to the pre-gate activations
(`z_conditioning="gated"`, as `h W` in PixelCNN++'s conditional gated_resnet); "both" also
adds 1x1 projections of it to u_1 and ul_1; "concat" is refused (z would miss the blocks).

One kernel extent per layer: the *second* convolution of each gated block is a 1x1 (nin),
not PixelCNN++'s second shifted conv, so that a block is one "layer" of the paper's table
and the window is exactly the one the table names (with two shifted convs per block the
field would grow twice per block). ul_k receives u at the same position after
min(k, V) vertical layers (PixelCNN++ pairs block k of ul with block k of u; a stream
shorter than the other stops growing).

**Receptive field** (offsets from (i, j), clipped at the borders; computed layer by layer
in `stack_offsets`, checked pixel by pixel by gradients in tests/test_pixelcnnpp_decoder.py).
For the paper's windows, with (V, H) = (vertical, horizontal) layer counts incl. the first:

    4x2 (1, 2): rows i-2..i-1, columns j-2..j+1 (4 wide: 2 left of j to 1 right), + (i, j-2..j-1)
    5x3 (2, 2): rows i-3..i-1, columns j-2..j+2,                                + (i, j-2..j-1)
    7x4 (3, 3): rows i-4..i-1, columns j-3..j+3,                                + (i, j-3..j-1)

i.e. the paper's "A x B rectangle immediately above x_i plus the ceil((A-1)/2) pixels to its
left", with an even A read as floor(A/2) columns left of j and A/2 - 1 right of it (4 wide
for 4x2; the gated family's literal reading gives 3 wide). The general rule
(`plan_window`): V layers give u rows i-V-1..i-1 and columns j-V..j+V; H layers give ul H
pixels to the left and rows i-H..i-1, columns j-H..j+1; so

    A = 2n + 1 >= 5, B = n + 1:   V = H = n             (5x3, 7x4, 9x5, ...)
    A = 2n >= 6,     B = n + 1:   V = n - 1, H = n      (6x4, 8x5, ...)
    4x2:                          V = 1, H = 2          (the paper's table)

Any other window is not realised exactly by this stack and is a ValueError naming
`VLAEConfig.window` (the gated family realises every window).

**"4 blocks of 64 feature maps".** The spatial layers are fixed by the window table (1-3
vertical, 2-3 horizontal, counting the first layers), so the paper's 4 blocks cannot be
further shifted layers without widening the window beyond 7x4. They are read as the
`decoder_residual_blocks` (= 4 in the paper's setting) 1x1 gated ResNet blocks on ul after
the window layers, each conditioned on z: "shallow but very wide" (depth from 1x1 blocks,
width 64 = `decoder_filters`).

**Channel-autoregressive head.** The features h at (i, j) see only the window (never pixel
(i, j)). Sub-pixel c gets its own 1x1 gated ResNet block on h, `head{c}`, whose extra input
a is this pixel's channels < c ([-1, 1] values; none for R, R for G, R and G for B; full
colour even with a grayscale window), conditioned on z, then a 1x1 layer to 3K parameters:
its own K-component discretized logistic mixture, no linear coupling
(`DiscretizedLogisticMixture(K, coupled=False)`, via `LIKELIHOOD_KWARGS`). So at the
sub-pixel level the field is: the window (all channels of its pixels, or their gray
value) + channels < c of (i, j) (`subpixel_receptive_field`).

**Sampling.** `CHANNEL_AUTOREGRESSIVE`: the naive sampler (`sampling.naive_pixel_loop`)
draws sub-pixel by sub-pixel (R, then a pass for G given R, then B: H*W*C full passes),
sub-pixel (i, c) with `fast_sampling.subpixel_seed(seed, i, c)`. The cached sampler
(`Incremental`, driven by `fast_sampling.pixel_loop` through `pixel_draw`) computes u
once per row and ul, the 1x1 blocks and the heads once per pixel from caches, drawing the
sub-pixels in the same order with the same seeds: the same images, bit for bit (both in
float64). It runs without XLA (`XLA_SAMPLER = False`: under XLA the shape of a later
sub-pixel's random draw is not a compile-time constant); `jit_compile=True` is refused.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from vlae_tf import window as window_lib
from vlae_tf.decoders import base
from vlae_tf.decoders.base import DTYPE, UnsupportedDecoder
from vlae_tf.nn import layers as nn

NAME = "pixelcnnpp"
LIKELIHOOD_KWARGS = {"coupled": False}  # a mixture per sub-pixel (see module doc)
CHANNEL_AUTOREGRESSIVE = True  # sampled sub-pixel by sub-pixel
CACHED_SAMPLER = True  # `Incremental`: the cached sampler, sub-pixel by sub-pixel
XLA_SAMPLER = False  # its cached sampler runs without XLA (`sampling._resolve_jit`)

# Kernels (rows, columns) of PixelCNN++.
FIRST_VERTICAL = (2, 3)     # down-shifted, then down_shift: u_1
FIRST_UP = (1, 3)           # down-shifted, then down_shift: ul_1's row above
FIRST_LEFT = (2, 1)         # down-right-shifted, then right_shift: ul_1's left pixel
VERTICAL = (2, 3)           # down-shifted: u blocks
HORIZONTAL = (2, 2)         # down-right-shifted: ul blocks


# ------------------------------------------------------------------------- the window
@dataclasses.dataclass(frozen=True)
class StackPlan:
    """Layer counts of the PixelCNN++ stack for a window (see module doc)."""

    width: int        # A
    height: int       # B: rows above
    vertical: int     # V: layers of u, the first included
    horizontal: int   # H: layers of ul, the first included

    @property
    def columns_left(self) -> int:
        """Columns left of j in the rows above (and pixels left of j in row i)."""
        return self.width // 2

    @property
    def columns_right(self) -> int:
        return (self.width - 1) // 2


def supported_windows(max_width: int = 11):
    """The windows the stack realises exactly, up to A = max_width (for messages/tests)."""
    windows = [(4, 2)]
    for width in range(5, max_width + 1):
        windows.append((width, width // 2 + 1))
    return windows


def plan_window(window, name: str = "VLAEConfig.window") -> StackPlan:
    """(A, B) -> StackPlan: 4x2 -> (1, 2); A = 2n+1 >= 5, B = n+1 -> (n, n);
    A = 2n >= 6, B = n+1 -> (n-1, n); anything else a ValueError naming `name`."""
    window = window_lib.validate_window(window, name)
    expected = (f"a window the PixelCNN++ stack realises exactly for decoder='pixelcnnpp': "
                f"4x2, or A >= 5 with B = A // 2 + 1 ("
                + ", ".join(f"{a}x{b}" for a, b in supported_windows()) + ", ...)")
    if window is None:
        raise ValueError(f"{name}: expected {expected}; got None (a global field)")
    width, height = window
    if (width, height) == (4, 2):
        vertical, horizontal = 1, 2
    elif width >= 5 and height == width // 2 + 1:
        horizontal = width // 2
        vertical = horizontal if width % 2 else horizontal - 1
    else:
        raise ValueError(f"{name}: expected {expected}; got {window_lib.describe(window)}")
    return StackPlan(width=width, height=height, vertical=vertical, horizontal=horizontal)


def _minkowski(offsets, kernel):
    return {(r1 + r2, c1 + c2) for r1, c1 in offsets for r2, c2 in kernel}


def _down_shifted_offsets(kernel):
    rows, cols = kernel
    half = (cols - 1) // 2
    return {(-r, c) for r in range(rows) for c in range(-half, half + 1)}


def _down_right_shifted_offsets(kernel):
    rows, cols = kernel
    return {(-r, -c) for r in range(rows) for c in range(cols)}


def stack_offsets(vertical: int, horizontal: int):
    """The offsets (dr, dc) the features after the window layers depend on, computed layer
    by layer from the kernels and shifts above (the 1x1 blocks and the head add none)."""
    down = {(-1, 0)}
    right = {(0, -1)}
    u = [_minkowski(_down_shifted_offsets(FIRST_VERTICAL), down)]
    for _ in range(1, vertical):
        u.append(_minkowski(u[-1], _down_shifted_offsets(VERTICAL)))
    ul = (_minkowski(_down_shifted_offsets(FIRST_UP), down)
          | _minkowski(_down_right_shifted_offsets(FIRST_LEFT), right))
    for k in range(2, horizontal + 1):
        ul = _minkowski(ul, _down_right_shifted_offsets(HORIZONTAL)) | u[min(k, vertical) - 1]
    return sorted(ul)


def window_offsets(width: int, height: int):
    """The paper's window A x B as offsets: rows -B..-1, columns -floor(A/2)..floor((A-1)/2),
    and (0, -1..-ceil((A-1)/2))."""
    left, right = width // 2, (width - 1) // 2
    offsets = {(dr, dc) for dr in range(-height, 0) for dc in range(-left, right + 1)}
    offsets |= {(0, -dc) for dc in range(1, math.ceil((width - 1) / 2) + 1)}
    return sorted(offsets)


def receptive_field(config, row: int, col: int):
    """Boolean [H, W]: the pixels the output at (row, col) depends on (any channel):
    rows row-B..row-1, columns col-floor(A/2)..col+floor((A-1)/2), and (row, col-ceil((A-1)/2)
    ..col-1), clipped; the pixel's own earlier channels are in `subpixel_receptive_field`."""
    height, width, _ = config.image_shape
    plan = plan_window(config.window)
    mask = np.zeros((height, width), dtype=bool)
    for d_row, d_col in window_offsets(plan.width, plan.height):
        r, c = row + d_row, col + d_col
        if 0 <= r < height and 0 <= c < width:
            mask[r, c] = True
    return mask


def subpixel_receptive_field(config, row: int, col: int, channel: int):
    """Boolean [H, W, C]: the sub-pixels the parameters of (row, col, channel) depend on:
    every channel of the window's pixels (a grayscale window: through their gray value
    only) and channels < channel of (row, col)."""
    channels = config.image_shape[-1]
    mask = np.repeat(receptive_field(config, row, col)[..., None], channels, axis=-1)
    mask[row, col, :channel] = True
    return mask


# ------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package="vlae_tf")
class ConcatELU(keras.layers.Layer):
    """elu([t, -t]) on the channel axis (PixelCNN++'s nonlinearity): 2x the channels."""

    def call(self, inputs):
        return tf.nn.elu(tf.concat([inputs, -inputs], axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * input_shape[-1],)


@keras.saving.register_keras_serializable(package="vlae_tf")
class SigmoidGate(keras.layers.Layer):
    """a * sigmoid(b) for the two halves [a, b] of the channel axis (PixelCNN++'s gate)."""

    def call(self, inputs):
        value, gate = tf.split(inputs, 2, axis=-1)
        return value * tf.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // 2,)


@keras.saving.register_keras_serializable(package="vlae_tf")
class EarlierChannels(keras.layers.Layer):
    """The first `channels` channels of an image (the current pixel's channels < c)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, inputs):
        return inputs[..., :self.channels]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _conv(filters, kernel_size, weight_norm, name, init_scale=1.0):
    return nn.Conv2D(filters, kernel_size, padding="valid", use_weight_norm=weight_norm,
                     init_scale=init_scale, name=name)


def down_shifted_conv(inputs, filters, kernel, weight_norm, name):
    """Output (i, j) reads rows i-kh+1..i, columns j-(kw-1)/2..j+(kw-1)/2 of `inputs`."""
    rows, cols = kernel
    half = (cols - 1) // 2
    padded = keras.layers.ZeroPadding2D(((rows - 1, 0), (half, half)),
                                        name=f"{name}_pad")(inputs)
    return _conv(filters, kernel, weight_norm, name)(padded)


def down_right_shifted_conv(inputs, filters, kernel, weight_norm, name):
    """Output (i, j) reads rows i-kh+1..i, columns j-kw+1..j of `inputs`."""
    rows, cols = kernel
    padded = keras.layers.ZeroPadding2D(((rows - 1, 0), (cols - 1, 0)),
                                        name=f"{name}_pad")(inputs)
    return _conv(filters, kernel, weight_norm, name)(padded)


def down_shift(inputs, name):
    """Output (i, j) = inputs (i-1, j); zeros in row 0."""
    padded = keras.layers.ZeroPadding2D(((1, 0), (0, 0)), name=f"{name}_pad")(inputs)
    return nn.Crop2D(((0, 1), (0, 0)), name=name)(padded)


def right_shift(inputs, name):
    """Output (i, j) = inputs (i, j-1); zeros in column 0."""
    padded = keras.layers.ZeroPadding2D(((0, 0), (1, 0)), name=f"{name}_pad")(inputs)
    return nn.Crop2D(((0, 0), (0, 1)), name=name)(padded)


def layer_names(config):
    """The weighted layers (nn.Conv2D) of the decoder for `config`, by name."""
    plan = plan_window(config.window)
    z_first = config.use_latent and config.z_conditioning == "both"
    z_blocks = config.use_latent
    names = ["u1_conv", "ul1_up_conv", "ul1_left_conv"]
    if z_first:
        names += ["u1_z", "ul1_z"]

    def block(prefix, link=False):
        return ([f"{prefix}_conv", f"{prefix}_out"] + ([f"{prefix}_link"] if link else [])
                + ([f"{prefix}_z"] if z_blocks else []))

    for m in range(2, plan.vertical + 1):
        names += block(f"u{m}")
    for k in range(2, plan.horizontal + 1):
        names += block(f"ul{k}", link=True)
    for index in range(config.decoder_residual_blocks):
        names += block(f"res{index}")
    for channel in range(config.image_shape[-1]):
        names += block(f"head{channel}", link=channel > 0) + [f"head{channel}_params"]
    return names


def build(config, name="pixelcnn") -> keras.Model:
    """Functional model [images in [-1, 1], (z_map)] -> [B, H, W, 3K C] parameters, channel
    c's 3K (its 1-channel mixture) at [3K c, 3K (c+1)) (see module doc)."""
    height, width, channels = config.image_shape
    plan = plan_window(config.window)
    filters, weight_norm = config.decoder_filters, config.weight_norm
    params_per_channel = base.num_params(config) // channels

    images, z_map, inputs = base.functional_inputs(config)
    visible = base.DecoderInput(grayscale=config.grayscale_window, name="window_input")(images)

    def nin(tensor, units, layer_name, init_scale=1.0):
        return _conv(units, 1, weight_norm, layer_name, init_scale)(tensor)

    def gated_resnet(tensor, prefix, conv, link=None):
        """tensor + A sigmoid(B) (see module doc); `conv(t, name)` is the block's spatial
        (or 1x1) convolution, `link` the extra input a."""
        hidden = conv(ConcatELU(name=f"{prefix}_elu_in")(tensor), f"{prefix}_conv")
        if link is not None:
            linked = nin(ConcatELU(name=f"{prefix}_elu_link")(link), filters, f"{prefix}_link")
            hidden = keras.layers.Add(name=f"{prefix}_sum")([hidden, linked])
        hidden = ConcatELU(name=f"{prefix}_elu_mid")(hidden)
        if config.decoder_dropout > 0:
            hidden = keras.layers.Dropout(config.decoder_dropout, name=f"{prefix}_dropout")(
                hidden)
        pre_gate = nin(hidden, 2 * filters, f"{prefix}_out", init_scale=0.1)
        if z_map is not None:
            pre_gate = keras.layers.Add(name=f"{prefix}_z_sum")(
                [pre_gate, nin(z_map, 2 * filters, f"{prefix}_z")])
        gated = SigmoidGate(name=f"{prefix}_gate")(pre_gate)
        return keras.layers.Add(name=f"{prefix}_residual")([tensor, gated])

    def vertical_conv(tensor, layer_name):
        return down_shifted_conv(tensor, filters, VERTICAL, weight_norm, layer_name)

    def horizontal_conv(tensor, layer_name):
        return down_right_shifted_conv(tensor, filters, HORIZONTAL, weight_norm, layer_name)

    def pointwise_conv(tensor, layer_name):
        return nin(tensor, filters, layer_name)

    # The first layers: the only ones that read the window's pixels.
    u = down_shift(down_shifted_conv(visible, filters, FIRST_VERTICAL, weight_norm, "u1_conv"),
                   "u1_shift")
    ul_up = down_shift(down_shifted_conv(visible, filters, FIRST_UP, weight_norm,
                                         "ul1_up_conv"), "ul1_up_shift")
    ul_left = right_shift(down_right_shifted_conv(visible, filters, FIRST_LEFT, weight_norm,
                                                  "ul1_left_conv"), "ul1_left_shift")
    ul_terms = [ul_up, ul_left]
    if z_map is not None and config.z_conditioning == "both":
        u = keras.layers.Add(name="u1_sum")([u, nin(z_map, filters, "u1_z")])
        ul_terms.append(nin(z_map, filters, "ul1_z"))
    ul = keras.layers.Add(name="ul1_sum")(ul_terms)

    us = [u]
    for m in range(2, plan.vertical + 1):
        us.append(gated_resnet(us[-1], f"u{m}", vertical_conv))
    for k in range(2, plan.horizontal + 1):
        ul = gated_resnet(ul, f"ul{k}", horizontal_conv, link=us[min(k, plan.vertical) - 1])
    for index in range(config.decoder_residual_blocks):
        ul = gated_resnet(ul, f"res{index}", pointwise_conv)

    heads = []
    for channel in range(channels):
        link = EarlierChannels(channel, name=f"head{channel}_pixel")(images) if channel else None
        hidden = gated_resnet(ul, f"head{channel}", pointwise_conv, link=link)
        hidden = keras.layers.Activation("elu", name=f"head{channel}_elu")(hidden)
        heads.append(nin(hidden, params_per_channel, f"head{channel}_params", init_scale=0.1))
    params = heads[0] if channels == 1 else keras.layers.Concatenate(name="heads")(heads)
    params = keras.layers.Activation("linear", dtype="float32", name="params")(params)
    model = keras.Model(inputs, params, name=name)
    created = sorted(layer.name for layer in model.layers if isinstance(layer, nn.Conv2D))
    if created != sorted(layer_names(config)):
        raise AssertionError(f"pixelcnnpp decoder: built {created}, layer_names() says "
                             f"{sorted(layer_names(config))}")
    return model


def _concat_elu(tensor):
    """ConcatELU, the same ops."""
    return tf.nn.elu(tf.concat([tensor, -tensor], axis=-1))


def _sigmoid_gate(tensor):
    """SigmoidGate, the same ops."""
    value, gate = tf.split(tensor, 2, axis=-1)
    return value * tf.sigmoid(gate)


def _write_column(buffer, index, value):
    """buffer [B, N, C] with entry `index` replaced by value [B, C] (static shapes)."""
    one_hot = tf.one_hot(index, buffer.shape[1], dtype=buffer.dtype)[None, :, None]
    updated = buffer * (1.0 - one_hot) + one_hot * value[:, None, :]
    updated.set_shape(buffer.shape)
    return updated


class Incremental(base.IncrementalDecoder):
    """The decoder's own layers evaluated row by row and pixel by pixel from caches.

    * Row r (`start_row`): the vertical stream u reads only rows < r, so its whole row r
      -- every layer, every column -- is computed at once: u_1 from the last two visible
      rows, u_m from the conv inputs concat_elu(u_{m-1}) of rows r-1 (cached) and r. With
      it the row's ul_1 "up" term and the links u_{min(k, V)} of the ul blocks.
    * Pixel (r, c) (`pixel_draw`): ul_1's left term from the visible pixels (r-1, c-1) and
      (r, c-1); block k of ul from the conv inputs concat_elu(ul_{k-1}) at (r-1, c-1..c)
      (the previous row's buffer) and (r, c-1..c) (this row's, written as they are
      computed); the 1x1 blocks; then sub-pixel by sub-pixel the heads, each draw feeding
      the next head (R, G given R, B given R and G), with `subpixel_seed`.

    Zero padding as in the full model: buffers start as zeros (each layer pads its own
    input), and the shifted terms u_1, ul_1's up term (row 0) and left term (column 0) are
    exactly 0 there, not a convolution of zeros.
    """

    draws_subpixels = True  # fast_sampling.pixel_loop calls pixel_draw

    def __init__(self, model):
        config = model.config
        if config.decoder != NAME:
            raise UnsupportedDecoder(f"cached sampler: expected decoder={NAME!r}; got "
                                     f"{config.decoder!r}")
        self.pixelcnn = model.pixelcnn
        expected = sorted(layer_names(config))
        found = sorted(layer.name for layer in getattr(self.pixelcnn, "layers", ())
                       if isinstance(layer, nn.Conv2D))
        if found != expected:
            raise UnsupportedDecoder(
                f"cached sampler: the decoder's convolutions {found} are not the expected "
                f"{expected}; use method='naive'")
        self.config = config
        self.plan = plan_window(config.window)
        self.height, self.width, self.channels = config.image_shape
        self.visible_channels = (1 if config.grayscale_window else self.channels) + 1
        self.filters = config.decoder_filters
        self.use_latent = config.use_latent
        self.z_first = config.use_latent and config.z_conditioning == "both"
        self.window_input = base.DecoderInput(grayscale=config.grayscale_window,
                                              dtype="float64")
        self.max_value = config.max_value

    def _layer(self, name, tensor):
        return self.pixelcnn.get_layer(name)(tensor)

    def _block(self, prefix, tensor, hidden, link, z):
        """The rest of a gated block after its conv (in build's order of sums)."""
        if link is not None:
            hidden = hidden + self._layer(f"{prefix}_link", _concat_elu(link))
        pre_gate = self._layer(f"{prefix}_out", _concat_elu(hidden))
        if z is not None:
            pre_gate = pre_gate + self._layer(f"{prefix}_z", z)
        return tensor + _sigmoid_gate(pre_gate)

    def visible(self, scaled):
        return self.window_input(scaled)

    # ------------------------------------------------------------------------ rows
    def initial_row_state(self, weights, batch):
        width, filters = self.width, self.filters
        visible_rows = tf.zeros([batch, 2, width + 2, self.visible_channels], DTYPE)
        u_inputs = tuple(tf.zeros([batch, 1, width + 2, 2 * filters], DTYPE)
                         for _ in range(2, self.plan.vertical + 1))
        ul_inputs = tuple(tf.zeros([batch, width + 1, 2 * filters], DTYPE)
                          for _ in range(2, self.plan.horizontal + 1))
        return (tf.constant(0), visible_rows, u_inputs, ul_inputs)

    def start_row(self, weights, row_state, z_row):
        row, visible_rows, u_inputs, ul_inputs = row_state
        not_first = tf.cast(row > 0, DTYPE)  # down_shift: row 0 of u_1 / ul_1's up is 0
        with base.float64_compute(self.pixelcnn):
            u = self._layer("u1_conv", visible_rows) * not_first  # [B, 1, W, F]
            if self.z_first:
                u = u + self._layer("u1_z", z_row)
            us, new_inputs = [u], []
            for index, m in enumerate(range(2, self.plan.vertical + 1)):
                current = tf.pad(_concat_elu(us[-1]), [[0, 0], [0, 0], [1, 1], [0, 0]])
                patch = tf.concat([u_inputs[index], current], axis=1)
                hidden = self._layer(f"u{m}_conv", patch)
                us.append(self._block(f"u{m}", us[-1], hidden, None, z_row))
                new_inputs.append(current)
            up = self._layer("ul1_up_conv", visible_rows[:, 1:]) * not_first
            links = tf.stack([us[min(k, self.plan.vertical) - 1][:, 0]
                              for k in range(2, self.plan.horizontal + 1)], axis=2)
        columns = {"up": tf.transpose(up[:, 0], [1, 0, 2]),            # [W, B, F]
                   "links": tf.transpose(links, [1, 0, 2, 3])}          # [W, B, H-1, F]
        if z_row is not None:
            columns["z"] = tf.transpose(z_row[:, 0], [1, 0, 2])        # [W, B, Cz]
        return (row, visible_rows, tuple(new_inputs), ul_inputs), columns

    def end_row(self, weights, row_state, pixel_state, visible_row):
        row, visible_rows, u_inputs, _ = row_state
        padded = tf.pad(visible_row, [[0, 0], [1, 1], [0, 0]])[:, None]
        visible_rows = tf.concat([visible_rows[:, 1:], padded], axis=1)
        ul_inputs = tuple(tf.ensure_shape(current, above.shape)
                          for current, above in zip(pixel_state[4], row_state[3]))
        return (row + 1, visible_rows, u_inputs, ul_inputs)

    # ---------------------------------------------------------------------- pixels
    def initial_pixel_state(self, weights, row_state, batch):
        _, visible_rows, _, ul_inputs = row_state
        left = tf.zeros([batch, self.visible_channels], DTYPE)
        current = tuple(tf.zeros_like(buffer) for buffer in ul_inputs)
        return (tf.constant(0), visible_rows[:, 1], left, ul_inputs, current)

    def pixel(self, weights, pixel_state, column):
        raise NotImplementedError("pixelcnnpp draws sub-pixel by sub-pixel: pixel_draw")

    def pixel_draw(self, weights, pixel_state, column, likelihood, temperature, seed_of):
        """Draws pixel (r, c) sub-pixel by sub-pixel: values [B, 1, 1, C] float32, the
        float64 parameters [B, P] its draws used, and the new pixel state.
        `seed_of(channel)` is the sub-pixel's seed."""
        col, above, left, ul_above, ul_current = pixel_state
        ul_current = list(ul_current)
        z = column["z"][:, None, None, :] if "z" in column else None
        not_first = tf.cast(col > 0, DTYPE)  # right_shift: column 0 of the left term is 0
        with base.float64_compute(self.pixelcnn):
            patch = tf.stack([above[:, col], left], axis=1)[:, :, None, :]  # [B, 2, 1, Cv]
            terms = [column["up"][:, None, None, :],
                     self._layer("ul1_left_conv", patch) * not_first]
            if self.z_first:
                terms.append(self._layer("ul1_z", z))
            ul = terms[0]
            for term in terms[1:]:
                ul = ul + term
            for index, k in enumerate(range(2, self.plan.horizontal + 1)):
                buffer = _write_column(ul_current[index], col + 1, _concat_elu(ul)[:, 0, 0])
                ul_current[index] = buffer
                patch = tf.stack([ul_above[index][:, col:col + 2], buffer[:, col:col + 2]],
                                 axis=1)  # [B, 2, 2, 2F]: rows r-1, r; columns c-1, c
                hidden = self._layer(f"ul{k}_conv", patch)
                ul = self._block(f"ul{k}", ul, hidden,
                                 column["links"][:, index][:, None, None, :], z)
            for block in range(self.config.decoder_residual_blocks):
                hidden = self._layer(f"res{block}_conv", _concat_elu(ul))
                ul = self._block(f"res{block}", ul, hidden, None, z)
            draws, params = [], []
            for channel in range(self.channels):
                link = None
                if channel:
                    drawn = tf.concat(draws, axis=-1)
                    link = base.as_decoder_input(
                        tf.cast(drawn, DTYPE) * (2.0 / self.max_value) - 1.0)
                hidden = self._layer(f"head{channel}_conv", _concat_elu(ul))
                head = self._block(f"head{channel}", ul, hidden, link, z)
                head = self.pixelcnn.get_layer(f"head{channel}_elu")(head)
                channel_params = self._layer(f"head{channel}_params", head)
                draws.append(likelihood.sample(channel_params, seed_of(channel), temperature))
                params.append(channel_params[:, 0, 0])
        values = tf.concat(draws, axis=-1)
        return values, tf.concat(params, axis=-1), (col, above, left, ul_above,
                                                    tuple(ul_current))

    def after_pixel(self, weights, pixel_state, visible, column, col):
        _, above, _, ul_above, ul_current = pixel_state
        return (col + 1, above, visible, ul_above, ul_current)


def check_config(config) -> None:
    """The config fields this family constrains (called by `VLAEConfig` validation);
    ValueError "VLAEConfig.<field>: expected ...; got ..." otherwise."""
    def check(condition, field, expected, got):
        if not condition:
            raise ValueError(f"VLAEConfig.{field}: expected {expected}; got {got!r}")

    plan_window(config.window, "VLAEConfig.window")
    check(config.likelihood == "logistic_mixture", "likelihood",
          "'logistic_mixture' for decoder='pixelcnnpp' (a discretized logistic mixture per "
          "sub-pixel)", config.likelihood)
    check(config.z_conditioning in ("gated", "both"), "z_conditioning",
          "'gated' or 'both' for decoder='pixelcnnpp' (z enters every gated ResNet block)",
          config.z_conditioning)
    check(not config.tie_weights, "tie_weights", "False for decoder='pixelcnnpp'",
          config.tie_weights)
    check(config.residual_placement == "end", "residual_placement",
          "'end' for decoder='pixelcnnpp' (its 1x1 blocks follow the window layers)",
          config.residual_placement)


__all__ = ["NAME", "StackPlan", "plan_window", "supported_windows", "stack_offsets",
           "window_offsets", "receptive_field", "subpixel_receptive_field", "layer_names",
           "build", "Incremental", "check_config", "ConcatELU", "SigmoidGate",
           "EarlierChannels"]
