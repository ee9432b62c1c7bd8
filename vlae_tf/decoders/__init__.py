"""Decoder families p(x|z), by `VLAEConfig.decoder`.

    "gated"          the windowed gated PixelCNN (`vlae_tf.decoders.gated`): receptive field
                     exactly the configured window A x B, no blind spot.
    "masked_resnet"  the paper's binary-image decoder (`vlae_tf.decoders.masked`): a masked
                     3x3 PixelCNN in ResNet blocks (1 mask-A + L-1 mask-B layers), optionally
                     with tied weights; its field is that of the stack (blind spot included).

Each family module owns its Keras builder, its receptive-field statement and its
incremental sampling step (see `vlae_tf.decoders.base`); this registry maps the config's
name to the family.
"""

from __future__ import annotations

from vlae_tf.decoders import gated, masked
from vlae_tf.decoders.base import IncrementalDecoder, UnsupportedDecoder

FAMILIES = {gated.NAME: gated, masked.NAME: masked}
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


def incremental(model) -> IncrementalDecoder:
    """The model's decoder as its family's incremental step (for the cached sampler).

    Raises UnsupportedDecoder if the model's pixelcnn is not the network its config
    describes (use method="naive" then).
    """
    return family(model.config).Incremental(model)


__all__ = ["FAMILIES", "NAMES", "IncrementalDecoder", "UnsupportedDecoder", "build_pixelcnn",
           "family", "incremental", "receptive_field"]
