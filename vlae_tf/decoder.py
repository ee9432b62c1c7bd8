"""The decoder p(x|z): the z path (latent map) and the decoder family's PixelCNN.

    p(x | z) = prod_i p(x_i | z, x_{F(i)})

z reaches the PixelCNN as a spatial map [B, H, W, z_map_channels] (`build_latent_map`):

* `latent_map="dense_upsample"`: z -> dense -> (H/4, W/4) -> two stride-2 transposed convs
  (the gated models' z path, added into their gates by `z_conditioning`);
* `latent_map="symmetric"`: the paper's deterministic generation network (Chen et al. 2017,
  App. A; Kingma et al. 2016, App. B), the encoder mirrored -- dense layers, then per level
  (in reverse) a stride-1 ResNet block and an upsampling ResNet block whose transposed
  convolutions replace the encoder's strided ones (and the identity skip where the size
  changes), cropped to the encoder's sizes (e.g. 4 -> 7 -> 14 -> 28), then a 3x3 conv to
  the map (the paper's 28x28x4, concatenated with the image).

The PixelCNN itself belongs to a decoder family (`vlae_tf.decoders`): `build_pixelcnn`
builds the one `config.decoder` names.
"""

from __future__ import annotations

import math

import keras

from vlae_tf import decoders
from vlae_tf import encoder as encoder_lib
from vlae_tf import spatial
from vlae_tf.decoders.base import (  # noqa: F401  (re-exported for callers)
    GRAY_WEIGHTS, DecoderInput, LearnedConstantMap, likelihood_kwargs)
from vlae_tf.nn import layers as nn

LATENT_MAPS = ("dense_upsample", "symmetric")


def build_pixelcnn(config, name="pixelcnn") -> keras.Model:
    """The decoder family's model [images in [-1, 1], (z_map)] -> per-pixel parameters."""
    return decoders.build_pixelcnn(config, name=name)


def build_latent_map(config, name="latent_map") -> keras.Model:
    """z [B, latent_size] -> [B, H, W, z_map_channels], by `config.latent_map`; "symmetric"
    mirrors `config.encoder` (the spatial encoders': `spatial.build_spatial_generation_network`)."""
    if config.latent_map == "symmetric":
        if config.encoder in spatial.SPATIAL_ENCODERS:
            return spatial.build_spatial_generation_network(config, name=name)
        return build_generation_network(config, name=name)
    return _build_dense_upsample(config, name=name)


def _build_dense_upsample(config, name="latent_map") -> keras.Model:
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
        features = nn.Crop2D(((0, crop_height), (0, crop_width)))(features)
    return keras.Model(latent, features, name=name)


def encoder_sizes(config):
    """Spatial sizes (h, w) of the encoder's levels: the input, then one per stride-2 level
    ("same" padding: ceil(s / 2)), e.g. 28 -> 14 -> 7 -> 4."""
    height, width, _ = config.image_shape
    sizes = [(height, width)]
    for _ in config.encoder_filters:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        sizes.append((height, width))
    return sizes


def upsampling_block(inputs, filters, target_size, weight_norm, name):
    """The encoder's strided block, mirrored: ELU -> 3x3 transposed conv (stride 2) -> ELU
    -> 3x3 conv, plus a stride-2 1x1 transposed conv in place of the identity; cropped to
    `target_size` when doubling overshoots (4 -> 8 -> 7)."""
    hidden = keras.layers.Activation("elu", name=f"{name}_elu1")(inputs)
    hidden = nn.Conv2D(filters, 3, strides=2, transpose=True, use_weight_norm=weight_norm,
                       name=f"{name}_conv1")(hidden)
    hidden = keras.layers.Activation("elu", name=f"{name}_elu2")(hidden)
    hidden = nn.Conv2D(filters, 3, use_weight_norm=weight_norm, init_scale=0.1,
                       name=f"{name}_conv2")(hidden)
    skip = nn.Conv2D(filters, 1, strides=2, transpose=True, use_weight_norm=weight_norm,
                     name=f"{name}_skip")(inputs)
    outputs = keras.layers.Add(name=f"{name}_add")([skip, hidden])
    crop_height = outputs.shape[1] - target_size[0]
    crop_width = outputs.shape[2] - target_size[1]
    if crop_height or crop_width:
        outputs = nn.Crop2D(((0, crop_height), (0, crop_width)),
                            name=f"{name}_crop")(outputs)
    return outputs


def build_generation_network(config, name="latent_map") -> keras.Model:
    """z -> the paper's conditioning map, symmetric to `vlae_tf.encoder.build_encoder`.

    dense(encoder_hidden) -> dense(h_L * w_L * F_L) -> for each level l = L-1..0: a
    stride-1 ResNet block of F_l maps, then an upsampling block to F_{l-1} maps (F_0 for
    the last) and the level's input size -> ELU -> 3x3 conv to z_map_channels.
    """
    weight_norm = config.weight_norm
    filters = config.encoder_filters
    sizes = encoder_sizes(config)
    latent = keras.Input(shape=(config.latent_size,), name="z")
    hidden = nn.Dense(config.encoder_hidden, use_weight_norm=weight_norm,
                      name="gen_hidden")(latent)
    hidden = keras.layers.Activation("elu", name="gen_hidden_elu")(hidden)
    bottom_height, bottom_width = sizes[-1]
    features = nn.Dense(bottom_height * bottom_width * filters[-1],
                        use_weight_norm=weight_norm, name="gen_dense")(hidden)
    features = keras.layers.Reshape((bottom_height, bottom_width, filters[-1]),
                                    name="gen_reshape")(features)
    for level in reversed(range(len(filters))):
        features = encoder_lib.residual_block(features, filters[level], 1, weight_norm,
                                              f"gen_same{level}")
        features = upsampling_block(features, filters[max(level - 1, 0)], sizes[level],
                                    weight_norm, f"gen_up{level}")
    features = keras.layers.Activation("elu", name="gen_out_elu")(features)
    z_map = nn.Conv2D(config.z_map_channels, 3, use_weight_norm=weight_norm,
                      name="gen_out")(features)
    return keras.Model(latent, z_map, name=name)
