"""The paper's binary-image decoder: a masked ResNet PixelCNN (Chen et al. 2017, App. A).

    p(x | z) = prod_i p(x_i | z, x_{F(i)}),   F(i) = the field of the masked stack

A "typical masked PixelCNN" (van den Oord et al. 2016a), not a gated one: the z map
(28x28x4 from the generation network) is concatenated with the image, and the 5-channel
input goes through

    h  = MaskA_3x3(concat(x, z_map))                   (the only layer that reads x or z)
    h += MaskB_3x3(elu(h))                             (L-1 times, L = decoder_layers)
    h += W2 elu(W1 elu(h))                             (1x1 ResNet blocks, between them)
    params = W_head elu(h)                             (one Bernoulli logit per pixel)

with ELU and weight normalisation everywhere. `tie_weights=True` makes every mask-B layer
one layer (one kernel, gain and bias; the mask-A layer has other input channels, so it
cannot join). `residual_placement="interleaved"` puts the 1x1 blocks into the gaps between
consecutive mask-B layers (for the paper's 6 layers and 4 blocks: one in each of the 4
gaps), "end" after the last masked layer. `z_concat_mask` is the mask on the z channels of
the first layer: "B" lets pixel i see z_map at its own position (z carries no information
about x_i, so the model stays autoregressive), "A" hides it like the image channel.
The field of the stack (blind spot included; 69 pixels for 6 layers of 3x3) is stated in
`vlae_tf.window.masked_stack_mask`.

**One description.** `MaskedResNetPixelCNN.forward(inputs, masked_conv)` is the network,
written once. The Keras model runs it on whole images (`masked_conv` = the layer's "same"
convolution); the cached sampler (`Incremental`) runs the very same function on one pixel
[B, 1, 1, C] at a time, with `masked_conv` assembling each masked layer's 3x3 input patch
from row caches (the layer's input on the row above, and on the current row so far) and
calling the same layer with "valid" padding. 1x1 layers, ELU and sums are the same ops on
a 1x1 image.
"""

from __future__ import annotations

from typing import List, Tuple

import keras
import tensorflow as tf

from vlae_tf import window as window_lib
from vlae_tf.decoders import base
from vlae_tf.decoders.base import DTYPE, UnsupportedDecoder
from vlae_tf.nn import layers as nn

NAME = "masked_resnet"
KERNEL_SIZE = 3


def receptive_field(config, row: int, col: int):
    """The pixels the output at (row, col) depends on: the masked stack's field."""
    height, width, _ = config.image_shape
    return window_lib.masked_stack_mask(config.decoder_layers, height, width, row, col)


def stage_plan(config) -> List[Tuple[str, int]]:
    """The network's stages in order: ("masked", layer index) and ("block", block index).

    Masked layer 0 is the mask-A layer; blocks are placed by `config.residual_placement`.
    """
    layers, blocks = config.decoder_layers, config.decoder_residual_blocks
    gaps = max(layers - 2, 0)  # gaps between consecutive mask-B layers
    in_gaps = min(blocks, gaps) if config.residual_placement == "interleaved" else 0
    plan = [("masked", 0)]
    block = 0
    for layer in range(1, layers):
        plan.append(("masked", layer))
        if layer < layers - 1 and block < in_gaps:
            plan.append(("block", block))
            block += 1
    plan += [("block", index) for index in range(block, blocks)]
    return plan


@keras.saving.register_keras_serializable(package="vlae_tf")
class MaskedResNetPixelCNN(nn.CheckpointListsMixin, keras.Model):
    """[images in [-1, 1], (z_map)] -> per-pixel likelihood parameters (see module doc)."""

    def __init__(self, config, name="pixelcnn", **kwargs):
        super().__init__(name=name, **kwargs)
        self.vlae_config = config
        self.plan = stage_plan(config)
        filters, weight_norm = config.decoder_filters, config.weight_norm
        image_channels = config.image_shape[-1]
        center_from = image_channels if config.z_concat_mask == "B" else None
        self.first = nn.MaskedConv2D(filters, KERNEL_SIZE, mask_type="A",
                                     center_from_channel=center_from,
                                     use_weight_norm=weight_norm, name="masked0")
        num_b = config.decoder_layers - 1
        if config.tie_weights and num_b > 0:
            self.masked_b_layers = [nn.MaskedConv2D(
                filters, KERNEL_SIZE, mask_type="B", use_weight_norm=weight_norm,
                init_scale=0.1, name="masked_tied")]
        else:
            self.masked_b_layers = [nn.MaskedConv2D(
                filters, KERNEL_SIZE, mask_type="B", use_weight_norm=weight_norm,
                init_scale=0.1, name=f"masked{layer}") for layer in range(1, num_b + 1)]
        # Flat lists of layers (nn.CheckpointListsMixin shows them to tf.train.Checkpoint).
        blocks = range(config.decoder_residual_blocks)
        self.block_in_layers = [nn.Conv2D(filters, 1, use_weight_norm=weight_norm,
                                          name=f"res{block}_in") for block in blocks]
        self.block_out_layers = [nn.Conv2D(filters, 1, use_weight_norm=weight_norm,
                                           init_scale=0.1, name=f"res{block}_out")
                                 for block in blocks]
        self.head = nn.Conv2D(base.num_params(config), 1, use_weight_norm=weight_norm,
                              init_scale=0.1, name="head")
        self.params_output = keras.layers.Activation("linear", dtype="float32", name="params")

    def masked_layer(self, index):
        """Masked layer `index` of the stack (0: mask-A; tied mask-B layers share one)."""
        if index == 0:
            return self.first
        return self.masked_b_layers[0 if self.vlae_config.tie_weights else index - 1]

    def forward(self, inputs, masked_conv):
        """The network, once. `masked_conv(index, layer, conv_input)` applies masked layer
        `index` to its input (whole images, or one position in the cached sampler)."""
        hidden = masked_conv(0, self.first, inputs)
        for kind, index in self.plan[1:]:
            if kind == "masked":
                hidden = hidden + masked_conv(index, self.masked_layer(index),
                                              tf.nn.elu(hidden))
            else:
                layer_in, layer_out = self.block_in_layers[index], self.block_out_layers[index]
                hidden = hidden + layer_out(tf.nn.elu(layer_in(tf.nn.elu(hidden))))
        return self.params_output(self.head(tf.nn.elu(hidden)))

    def network_input(self, inputs):
        """[images, z_map] (or images) -> the concatenated input of the first layer.

        The inputs are float32, as a functional model's Inputs are: a float64 pass (the
        samplers) sees them at float32 precision, like the cached sampler's inputs."""
        if isinstance(inputs, (list, tuple)):
            images, z_map = inputs
            inputs = tf.concat([tf.cast(images, tf.float32), tf.cast(z_map, tf.float32)],
                               axis=-1)
        elif self.vlae_config.use_latent:
            raise ValueError("pixelcnn: expected [images, z_map] for a model with a latent code")
        return tf.cast(tf.cast(inputs, tf.float32), self.compute_dtype)

    def call(self, inputs):
        return self.forward(self.network_input(inputs),
                            lambda index, layer, conv_input: layer(conv_input))

    def get_config(self):
        return {"config": self.vlae_config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        from vlae_tf.config import VLAEConfig

        return cls(VLAEConfig.from_dict(config["config"]), name=config.get("name", "pixelcnn"))


def build(config, name="pixelcnn") -> keras.Model:
    height, width, channels = config.image_shape
    model = MaskedResNetPixelCNN(config, name=name)
    z_channels = config.z_map_channels if config.use_latent else 0
    images = tf.zeros([1, height, width, channels])
    model(images if not config.use_latent else [images, tf.zeros([1, height, width, z_channels])])
    return model


def _write_column(buffer, col, value):
    """buffer [B, W+2, C] with column `col` (padded index col+1) replaced by value [B, C].

    A one-hot blend rather than a dynamic concat: the shapes stay static under XLA."""
    width = buffer.shape[1]
    one_hot = tf.one_hot(col + 1, width, dtype=buffer.dtype)[None, :, None]
    updated = buffer * (1.0 - one_hot) + one_hot * value[:, None, :]
    updated.set_shape(buffer.shape)  # the batch size stays static for tf.while_loop
    return updated


class Incremental(base.IncrementalDecoder):
    """`MaskedResNetPixelCNN.forward` at one pixel, from row caches of every masked layer.

    For masked layer s the caches hold its input on the previous row and on the current
    row up to the current pixel ([B, W+2, C_s]: one zero column of padding each side, the
    conv's "same" padding). A 3x3 mask-B layer at (r, c) needs its input at (r-1, c-1..c+1)
    and (r, c-1..c): all computed at earlier pixels, or just now for (r, c) itself. The
    mask-A layer's input is [image, z map]: its image part at (r, c) is written after the
    pixel is drawn (mask A does not read it at (r, c)).
    """

    def __init__(self, model):
        config = model.config
        pixelcnn = model.pixelcnn
        if not isinstance(pixelcnn, MaskedResNetPixelCNN) or \
                pixelcnn.vlae_config.to_dict() != config.to_dict():
            raise UnsupportedDecoder("cached sampler: the model's pixelcnn is not the masked "
                                     "ResNet PixelCNN of its config; use method='naive'")
        self.pixelcnn = pixelcnn
        self.config = config
        self.height, self.width, self.channels = config.image_shape
        self.visible_channels = self.channels
        self.z_channels = config.z_map_channels if config.use_latent else 0
        filters = config.decoder_filters
        self.stage_channels = [self.channels + self.z_channels] + \
            [filters] * (config.decoder_layers - 1)

    def visible(self, scaled):
        return scaled

    def _zero_rows(self, batch):
        return tuple(tf.zeros([batch, self.width + 2, channels], DTYPE)
                     for channels in self.stage_channels)

    def initial_row_state(self, weights, batch):
        return self._zero_rows(batch)

    def start_row(self, weights, row_state, z_row):
        columns = None if z_row is None else tf.transpose(z_row[:, 0], [1, 0, 2])  # [W, B, Cz]
        return row_state, columns

    def initial_pixel_state(self, weights, row_state, batch):
        return (tf.constant(0), row_state, self._zero_rows(batch))

    def _first_input(self, image, column):
        return image if column is None else tf.concat([image, column], axis=-1)

    def pixel(self, weights, pixel_state, column):
        col, previous, current = pixel_state
        current = list(current)
        batch = tf.shape(previous[0])[0]

        def masked_conv(index, layer, conv_input):
            row = _write_column(current[index], col, conv_input[:, 0, 0])
            current[index] = row
            above = tf.slice(previous[index], [0, col, 0], [-1, KERNEL_SIZE, -1])
            here = tf.slice(row, [0, col, 0], [-1, KERNEL_SIZE, -1])
            below = tf.zeros_like(here)  # masked out; its zeros keep the patch 3x3
            return layer(tf.stack([above, here, below], axis=1), padding="valid")

        image = tf.zeros([batch, self.channels], DTYPE)  # not read at (r, c) by mask A
        first_input = self._first_input(image, column)[:, None, None, :]
        with base.float64_compute(self.pixelcnn):
            params = self.pixelcnn.forward(first_input, masked_conv)
        return params[:, 0, 0], (col, previous, tuple(current))

    def after_pixel(self, weights, pixel_state, visible, column, col):
        _, previous, current = pixel_state
        first = _write_column(current[0], col, self._first_input(visible, column))
        return (col + 1, previous, (first,) + tuple(current[1:]))

    def end_row(self, weights, row_state, pixel_state, visible_row):
        # The current rows become the rows above (same static shapes as the loop's state).
        return tuple(tf.ensure_shape(current, above.shape)
                     for current, above in zip(pixel_state[2], row_state))
