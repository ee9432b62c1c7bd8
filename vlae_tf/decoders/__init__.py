"""Decoder families p(x|z), by `VLAEConfig.decoder`.

    "gated"          the windowed gated PixelCNN (`vlae_tf.decoders.gated`): receptive field
                     exactly the configured window A x B, no blind spot.
    "masked_resnet"  the paper's binary-image decoder (`vlae_tf.decoders.masked`): a masked
                     3x3 PixelCNN in ResNet blocks (1 mask-A + L-1 mask-B layers), optionally
                     with tied weights; its field is that of the stack (blind spot included).
    "pixelcnnpp"     the paper's CIFAR decoder (`vlae_tf.decoders.pixelcnnpp`): a conditional,
                     channel-autoregressive PixelCNN++ whose field is the window A x B read
                     with A pixels of width (4x2, 5x3, 7x4, ...); sampled sub-pixel by
                     sub-pixel (both samplers; the cached one without XLA).

Each family module owns its Keras builder, its receptive-field statement and its
incremental sampling step (see `vlae_tf.decoders.base`); this registry maps the config's
name to the family.
"""

from __future__ import annotations

from vlae_tf.decoders import gated, masked, pixelcnnpp
from vlae_tf.decoders.base import IncrementalDecoder, UnsupportedDecoder

FAMILIES = {gated.NAME: gated, masked.NAME: masked, pixelcnnpp.NAME: pixelcnnpp}
NAMES = tuple(FAMILIES)


def family(config):
    """The module of `config.decoder`'s family."""
    try:
        return FAMILIES[config.decoder]
    except KeyError:
        raise ValueError(f"decoder: expected one of {NAMES}; got {config.decoder!r}") from None


def build_pixelcnn(config, name="pixelcnn"):
    """Keras model [images in [-1, 1], (z_map)] -> per-pixel likelihood parameters."""
    return family(config).build(config, name=name)


def receptive_field(config, row: int, col: int):
    """Boolean [H, W]: the pixels the decoder's output at (row, col) may depend on."""
    return family(config).receptive_field(config, row, col)


def channel_autoregressive(config) -> bool:
    """Whether the family's output at a pixel depends on the pixel's earlier channels, so
    that it is sampled sub-pixel by sub-pixel (the naive sampler; "pixelcnnpp")."""
    return bool(getattr(family(config), "CHANNEL_AUTOREGRESSIVE", False))


def has_cached_sampler(config) -> bool:
    """Whether the family has an incremental step for the cached sampler (a module's
    `CACHED_SAMPLER`, default True; `sampling.sample` falls back to the naive sampler,
    with a warning, for a family without one)."""
    return bool(getattr(family(config), "CACHED_SAMPLER", True))


def incremental(model) -> IncrementalDecoder:
    """The model's decoder as its family's incremental step (for the cached sampler).

    Raises UnsupportedDecoder if the model's pixelcnn is not the network its config
    describes (use method="naive" then).
    """
    return family(model.config).Incremental(model)


__all__ = ["FAMILIES", "NAMES", "IncrementalDecoder", "UnsupportedDecoder", "build_pixelcnn",
           "channel_autoregressive", "family", "has_cached_sampler", "incremental",
           "receptive_field"]
