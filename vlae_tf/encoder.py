"""Encoder q(z|x): a convolutional ResNet -> diagonal Gaussian (+ context for IAF).

Paper's binary encoder (Chen et al. 2017, App. A): 3x3 filters with [16, 32, 32] feature
maps, each stride-2 residual block followed by a stride-1 block, then a 450-unit dense
layer. The Gaussian scale is softplus(raw) + 1e-4 so it never reaches zero.
"""

from __future__ import annotations

import keras

from vlae_tf.nn import layers as nn

MIN_SCALE = 1e-4


def residual_block(inputs, filters, strides, weight_norm, name):
    """ELU -> 3x3 conv (strided) -> ELU -> 3x3 conv, plus a (strided 1x1) skip."""
    hidden = keras.layers.Activation("elu", name=f"{name}_elu1")(inputs)
    hidden = nn.Conv2D(filters, 3, strides=strides, use_weight_norm=weight_norm,
                       name=f"{name}_conv1")(hidden)
    hidden = keras.layers.Activation("elu", name=f"{name}_elu2")(hidden)
    hidden = nn.Conv2D(filters, 3, use_weight_norm=weight_norm, init_scale=0.1,
                       name=f"{name}_conv2")(hidden)
    skip = inputs
    if strides != 1 or inputs.shape[-1] != filters:
        skip = nn.Conv2D(filters, 1, strides=strides, use_weight_norm=weight_norm,
                         name=f"{name}_skip")(inputs)
    return keras.layers.Add(name=f"{name}_add")([skip, hidden])


def build_encoder(config, name="encoder") -> keras.Model:
    """Functional model: images in [-1, 1] -> (mean, scale, context).

    config.encoder="resnet" | "densenet": the paper's CIFAR encoder onto the latent_shape
    map, (mean, scale) flat in raster order (`vlae_tf.spatial.build_spatial_encoder`)."""
    if config.encoder != "dense":
        from vlae_tf import spatial  # imports this module (its residual block)
        return spatial.build_spatial_encoder(config, name=name)
    weight_norm = config.weight_norm
    images = keras.Input(shape=config.image_shape, name="images")
    features = nn.Conv2D(config.encoder_filters[0], 3, use_weight_norm=weight_norm,
                         name="stem")(images)
    for level, filters in enumerate(config.encoder_filters):
        features = residual_block(features, filters, 2, weight_norm, f"down{level}")
        features = residual_block(features, filters, 1, weight_norm, f"same{level}")
    features = keras.layers.Flatten(name="flatten")(keras.layers.Activation("elu")(features))
    hidden = nn.Dense(config.encoder_hidden, use_weight_norm=weight_norm, name="hidden")(features)
    hidden = keras.layers.Activation("elu", name="hidden_elu")(hidden)
    mean = nn.Dense(config.latent_size, use_weight_norm=weight_norm, init_scale=0.1,
                    name="mean")(hidden)
    raw_scale = nn.Dense(config.latent_size, use_weight_norm=weight_norm, init_scale=0.1,
                         name="raw_scale")(hidden)
    scale = keras.layers.Activation("softplus", name="softplus")(raw_scale)
    scale = keras.layers.Rescaling(1.0, offset=MIN_SCALE, name="scale")(scale)
    outputs = [keras.layers.Activation("linear", dtype="float32", name="mean_f32")(mean),
               keras.layers.Activation("linear", dtype="float32", name="scale_f32")(scale)]
    if config.iaf_steps > 0:
        context = nn.Dense(config.iaf_context_size, use_weight_norm=weight_norm,
                           name="context")(hidden)
        outputs.append(keras.layers.Activation("elu", dtype="float32", name="context_elu")(context))
    return keras.Model(images, outputs, name=name)
