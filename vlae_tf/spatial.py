"""The paper's CIFAR-10 VLAE on a spatial latent: ResNet / DenseNet encoder and its mirror.

Chen et al. 2017, Sec. 4.3 and App. B ("inspired by ResNet IAF VAE", Kingma et al. 2016):
the latent is a map of 16 feature maps of 8x8 (1,024 dimensions) with a diagonal Gaussian
q(z|x) per position, and

    encoder:    2 ResNet blocks -> conv stride 2 -> 2 ResNet blocks -> conv stride 2
                -> 3 ResNet blocks -> 1x1 conv to the posterior parameters
    widths:     48 on 32x32 maps, 96 on all others
    decoder:    symmetric (the generation network, ending in a 32x32 conditioning map)
    DenseNet:   the same plan, each pair of ResNet blocks replaced by one DenseNet block
                of 3 steps whose output is slightly wider than the ResNet at that stage

`config.encoder` = "resnet" | "densenet" selects it; `stage_plan(config)` is the single
description of the stages that both `build_spatial_encoder` and
`build_spatial_generation_network` (which walks it in reverse) read. The choices where the
paper is silent (BUILD_NOTES, "Spatial latent and the ResNet/DenseNet VLAE (CIFAR)"):

* ResNet block: the binary encoder's stride-1 block, ELU -> 3x3 conv -> ELU -> 3x3 conv
  (init scale 0.1) + identity (`vlae_tf.encoder.residual_block`).
* Dense block of 3 steps with growth g: step k computes s_k = conv3x3_g(ELU([x, s_1, ...,
  s_{k-1}])) (dense connectivity: every step reads the block input and all earlier
  steps); the block output is [s_1, s_2, s_3], 3g maps (the input is not passed on, as in
  the up path of Jegou et al. 2017, so widths do not pile up from block to block).
  g = floor(F / 3) + 1 by default: the least g with 3g > F (48 -> 51, 96 -> 99).
  A stage of n ResNet blocks has ceil(n / 2) dense blocks (2, 2, 3 -> 1, 1, 2).
* "conv stride 2": ELU -> 3x3 conv, stride 2, to the next stage's width F_{s+1} (its
  transpose in the generation network, to F_{s-1}); a stem 3x3 conv lifts the image's
  channels to F_0, and ELU -> 1x1 conv gives the posterior parameters (mean and raw scale:
  two 1x1 convs of c maps each = one 1x1 conv to 2c maps split in halves, weight norm
  being per output map).
* Generation network: z -> [h, w, c] -> 1x1 conv to F_last -> the stages in reverse, each
  followed by a stride-2 transposed conv to the next (larger) stage's width -> ELU -> 3x3
  conv to z_map_channels.

z is flat [B, latent_size] everywhere else in the library, in raster order: unit k is the
map entry (row, column, channel) with k = (row * w + column) * c + channel (C order of
[h, w, c]); `to_map` / `to_flat` convert.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from vlae_tf import encoder as encoder_lib
from vlae_tf.nn import layers as nn

SPATIAL_ENCODERS = ("resnet", "densenet")
DENSENET_STEPS = 3  # steps per dense block (the paper's "DenseNet block of 3 steps")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One resolution stage of the encoder (index 0 = the image's resolution).

    filters: F_s, the stage's width (the ResNet width; the width that the stem, the
      stride-2 convs and the generation network's input conv map to);
    units: ResNet blocks ("resnet") or 3-step dense blocks ("densenet") of the stage;
    growth: maps per dense step (None for "resnet");
    size: (height, width) of the stage's maps.
    """
    index: int
    size: Tuple[int, int]
    filters: int
    units: int
    growth: Optional[int] = None

    @property
    def output_width(self) -> int:
        """Maps leaving a block of this stage: F_s, or 3 * growth for a dense block."""
        return self.filters if self.growth is None else DENSENET_STEPS * self.growth


def dense_blocks(resnet_blocks: int) -> int:
    """Dense blocks replacing `resnet_blocks` ResNet blocks: one per pair, and one for an
    odd block left over (ceil(n / 2): the paper's 2, 2, 3 -> 1, 1, 2)."""
    return math.ceil(resnet_blocks / 2)


def default_growth(filters: int) -> int:
    """floor(F / 3) + 1: the least growth g whose block output 3g exceeds F."""
    return filters // DENSENET_STEPS + 1


def stage_plan(config) -> List[Stage]:
    """The stages of `config.encoder` ("resnet" | "densenet"), in encoder order.

    Stage s has width encoder_filters[s] and maps of image size / 2**s (the config
    guarantees that the last one is latent_shape's (h, w)).
    """
    if config.encoder not in SPATIAL_ENCODERS:
        raise ValueError(f"config.encoder: expected one of {SPATIAL_ENCODERS} for a spatial "
                         f"encoder; got {config.encoder!r}")
    height, width = config.image_shape[:2]
    growths = config.densenet_growth or tuple(
        default_growth(filters) for filters in config.encoder_filters)
    stages = []
    for index, (filters, blocks) in enumerate(zip(config.encoder_filters,
                                                  config.encoder_blocks)):
        size = (height // 2 ** index, width // 2 ** index)
        if config.encoder == "resnet":
            stages.append(Stage(index, size, filters, blocks))
        else:
            stages.append(Stage(index, size, filters, dense_blocks(blocks), growths[index]))
    return stages


# ----------------------------------------------------------------------------- blocks
def resnet_block(inputs, filters, weight_norm, name):
    """ELU -> 3x3 conv -> ELU -> 3x3 conv (init scale 0.1) + identity: the binary
    encoder's stride-1 block (a 1x1 skip only if the input width is not `filters`)."""
    return encoder_lib.residual_block(inputs, filters, 1, weight_norm, name)


def dense_block(inputs, growth, weight_norm, name, steps=DENSENET_STEPS):
    """s_k = conv3x3_growth(ELU(concat[x, s_1, ..., s_{k-1}])), k = 1..steps; returns
    concat[s_1, ..., s_steps] (steps * growth maps). Huang et al. 2017 (dense
    connectivity); the input is not in the output (Jegou et al. 2017)."""
    new_maps = []
    for step in range(steps):
        reads = inputs if not new_maps else keras.layers.Concatenate(
            axis=-1, name=f"{name}_cat{step}")([inputs] + new_maps)
        hidden = keras.layers.Activation("elu", name=f"{name}_elu{step}")(reads)
        new_maps.append(nn.Conv2D(growth, 3, use_weight_norm=weight_norm,
                                  name=f"{name}_conv{step}")(hidden))
    if len(new_maps) == 1:
        return new_maps[0]
    return keras.layers.Concatenate(axis=-1, name=f"{name}_out")(new_maps)


def stage_blocks(features, stage: Stage, weight_norm, name):
    """The stage's blocks, in order: `stage.units` ResNet blocks of width F_s, or dense
    blocks of growth g_s."""
    for unit in range(stage.units):
        block_name = f"{name}_block{unit}"
        if stage.growth is None:
            features = resnet_block(features, stage.filters, weight_norm, block_name)
        else:
            features = dense_block(features, stage.growth, weight_norm, block_name)
    return features


def resample(features, filters, weight_norm, name, transpose=False):
    """ELU -> 3x3 conv with stride 2 (halves the map; `transpose`: a transposed conv that
    doubles it) to `filters` maps: the paper's "conv stride 2" between stages."""
    hidden = keras.layers.Activation("elu", name=f"{name}_elu")(features)
    return nn.Conv2D(filters, 3, strides=2, transpose=transpose, use_weight_norm=weight_norm,
                     name=name)(hidden)


# --------------------------------------------------------------------------- networks
def build_spatial_encoder(config, name="encoder") -> keras.Model:
    """images [B, H, W, C] in [-1, 1] -> (mean, scale), each flat [B, latent_size].

        features = stages (stride-2 conv between them) of stem(images)
        mean = reshape(conv1x1_c(ELU(features))),  scale = softplus(reshape(
               conv1x1_c'(ELU(features)))) + MIN_SCALE            (raster order)

    The outputs are float32 layers (as the dense encoder's) under mixed precision.
    """
    weight_norm = config.weight_norm
    channels = config.latent_shape[2]  # the stage plan reaches its (h, w) (config checks)
    stages = stage_plan(config)
    images = keras.Input(shape=config.image_shape, name="images")
    features = nn.Conv2D(stages[0].filters, 3, use_weight_norm=weight_norm,
                         name="stem")(images)
    for stage in stages:
        if stage.index > 0:
            features = resample(features, stage.filters, weight_norm, f"down{stage.index}")
        features = stage_blocks(features, stage, weight_norm, f"stage{stage.index}")
    features = keras.layers.Activation("elu", name="posterior_elu")(features)
    mean_map = nn.Conv2D(channels, 1, use_weight_norm=weight_norm, init_scale=0.1,
                         name="posterior_mean")(features)
    raw_scale_map = nn.Conv2D(channels, 1, use_weight_norm=weight_norm, init_scale=0.1,
                              name="posterior_raw_scale")(features)
    # C-order reshape of [h, w, c]: flat unit k = (row * w + column) * c + channel.
    mean = keras.layers.Reshape((config.latent_size,), name="mean_flat")(mean_map)
    raw_scale = keras.layers.Reshape((config.latent_size,), name="raw_scale_flat")(
        raw_scale_map)
    scale = keras.layers.Activation("softplus", name="softplus")(raw_scale)
    scale = keras.layers.Rescaling(1.0, offset=encoder_lib.MIN_SCALE, name="scale")(scale)
    outputs = [keras.layers.Activation("linear", dtype="float32", name="mean_f32")(mean),
               keras.layers.Activation("linear", dtype="float32", name="scale_f32")(scale)]
    return keras.Model(images, outputs, name=name)


def build_spatial_generation_network(config, name="latent_map") -> keras.Model:
    """z [B, latent_size] -> the conditioning map [B, H, W, z_map_channels]: the encoder
    mirrored (`stage_plan` in reverse).

        z -> reshape [h, w, c] -> conv1x1 to F_last -> for s = last..0: the stage's blocks,
        then (s > 0) ELU -> 3x3 transposed conv, stride 2, to F_{s-1}
        -> ELU -> 3x3 conv to z_map_channels
    """
    weight_norm = config.weight_norm
    stages = stage_plan(config)
    latent = keras.Input(shape=(config.latent_size,), name="z")
    z_map = keras.layers.Reshape(tuple(config.latent_shape), name="z_map")(latent)
    features = nn.Conv2D(stages[-1].filters, 1, use_weight_norm=weight_norm,
                         name="gen_in")(z_map)
    for stage in reversed(stages):
        features = stage_blocks(features, stage, weight_norm, f"gen_stage{stage.index}")
        if stage.index > 0:
            features = resample(features, stages[stage.index - 1].filters, weight_norm,
                                f"gen_up{stage.index}", transpose=True)
    features = keras.layers.Activation("elu", name="gen_out_elu")(features)
    output = nn.Conv2D(config.z_map_channels, 3, use_weight_norm=weight_norm,
                       name="gen_out")(features)
    return keras.Model(latent, output, name=name)


# ------------------------------------------------------------------ free-bits groups
def free_bits_group_indices(config) -> List[np.ndarray]:
    """The flat latent units of each free-bits group (the KL of group j is the sum of the
    per-unit KLs over its units; VLAE._elbo_terms).

    "contiguous": np.array_split of 0..D-1 into free_bits_groups consecutive chunks (in
    raster order, h*w groups are the map's positions, h groups its rows);
    "feature_map": group k = the units (row, column, k) of every position, i.e.
    k, k + c, k + 2c, ... (Kingma et al. 2016, Eq. 15: groups of units sharing parameters).
    """
    units = np.arange(config.latent_size)
    if config.free_bits_grouping == "feature_map":
        channels = config.latent_shape[2]
        return [units[channel::channels] for channel in range(channels)]
    return np.array_split(units, config.free_bits_groups)


# ------------------------------------------------------------------ flat <-> map views
def to_map(values, latent_shape):
    """[..., h*w*c] (flat, raster order) -> [..., h, w, c]; numpy in, numpy out.

    E.g. `to_map(model.encode(x)[0], config.latent_shape)`, or the [D] results of
    `vlae_tf.diagnostics` (per-dimension KL, active-unit variances) as [h, w, c] maps.
    """
    latent_shape = tuple(int(v) for v in latent_shape)
    size = int(np.prod(latent_shape))
    if tf.is_tensor(values):
        if values.shape[-1] is not None and values.shape[-1] != size:
            raise ValueError(f"values: expected a last axis of h*w*c = {size} for "
                             f"latent_shape={latent_shape}; got shape {values.shape}")
        leading = tf.shape(values)[:-1]
        return tf.reshape(values, tf.concat([leading, latent_shape], axis=0))
    values = np.asarray(values)
    if values.ndim < 1 or values.shape[-1] != size:
        raise ValueError(f"values: expected a last axis of h*w*c = {size} for "
                         f"latent_shape={latent_shape}; got shape {values.shape}")
    return values.reshape(values.shape[:-1] + latent_shape)


def to_flat(maps):
    """[..., h, w, c] -> [..., h*w*c] in raster order (the inverse of `to_map`)."""
    if tf.is_tensor(maps):
        if maps.shape.rank is None or maps.shape.rank < 3:
            raise ValueError(f"maps: expected [..., h, w, c]; got shape {maps.shape}")
        size = int(np.prod(maps.shape[-3:]))
        return tf.reshape(maps, tf.concat([tf.shape(maps)[:-3], [size]], axis=0))
    maps = np.asarray(maps)
    if maps.ndim < 3:
        raise ValueError(f"maps: expected [..., h, w, c]; got shape {maps.shape}")
    return maps.reshape(maps.shape[:-3] + (int(np.prod(maps.shape[-3:])),))
