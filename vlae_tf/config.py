"""VLAEConfig: every knob of the model in one validated, immutable dataclass."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import typing
from typing import Optional, Tuple

import numpy as np

from vlae_tf import window as window_lib

LIKELIHOODS = ("bernoulli", "logistic_mixture")
PRIORS = ("standard_normal", "af", "mog", "vamp")
Z_CONDITIONING = ("concat", "gated", "both")
FREE_BITS_MODES = ("none", "hard", "soft")
FREE_BITS_GROUPINGS = ("contiguous", "feature_map")
# Decoder families (vlae_tf.decoders) and their options.
DECODERS = ("gated", "masked_resnet", "pixelcnnpp")
Z_CONCAT_MASKS = ("A", "B")
RESIDUAL_PLACEMENTS = ("end", "interleaved")
LATENT_MAPS = ("dense_upsample", "symmetric")
ENCODERS = ("dense", "resnet", "densenet")
PRIOR_NETWORKS = ("made", "pixelcnn")
# Seeds become int32 tensors (stateless RNG): a larger int would wrap silently.
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class VLAEConfig:
    """Configuration of a VLAE. Build one from `vlae_tf.presets.get(name)` and `.replace()`.

    Units: `free_bits` is in nats per group of latent dimensions (the paper's binary setting
    is 0.01 nats per data dimension: 7.84 nats in one group for 28x28 images).

    Schedules are functions of the training step t (1-based; `VLAE.noise_step`, the counter
    of the KL warm-up), so a resumed run continues them exactly:
    - free bits as a warm-up (`free_bits_hold_steps` H, `free_bits_anneal_steps` M):
      lambda(t) = free_bits * clip(1 - (t - H) / M, 0, 1); M = 0 (default) is no schedule,
      a permanent floor (then H must be 0; M = 1 drops the floor at once after H steps). A
      step with lambda(t) = 0 trains on the ELBO. Needs free_bits > 0 and mode hard/soft.
    - the capacity objective (`capacity_gamma` gamma, `capacity_start`, `capacity_end`,
      `capacity_steps` N): loss = recon + gamma * |KL - C(t)|, C(t) = C_start + (C_end -
      C_start) * min(1, t / N) (N = 0: C_end), KL the global-batch mean. It is the KL term,
      so free bits, kl_weight != 1, KL warm-up and IWAE training are refused with it.
    """

    # Data.
    image_shape: Tuple[int, int, int] = (28, 28, 1)
    likelihood: str = "bernoulli"  # "bernoulli" (values 0/1) | "logistic_mixture" (0..255)
    num_mixtures: int = 10  # logistic mixture components
    # Latent code and encoder q(z|x).
    use_latent: bool = True  # False: unconditional windowed decoder (no z, KL = 0)
    latent_size: int = 64
    # Spatial latent (the paper's CIFAR 8x8x16): None = a vector. z is always handled as a
    # flat [B, latent_size] vector, flattened in raster order (row, column, then channel
    # within a position: C order of [h, w, c]); latent_size must equal h * w * c.
    latent_shape: Optional[Tuple[int, int, int]] = None
    # The encoder q(z|x) (and, with latent_map="symmetric", its mirror the generation
    # network): "dense" (binary: strided ResNet -> dense encoder_hidden -> z vector) |
    # "resnet" / "densenet" (the paper's CIFAR VLAE: a fully convolutional ResNet / DenseNet
    # onto the latent_shape map; vlae_tf/spatial.py).
    encoder: str = "dense"
    # "dense": one strided + one stride-1 block per entry; "resnet"/"densenet": the width
    # of each resolution stage (paper CIFAR: (48, 96, 96) on 32, 16, 8), a stride-2 conv
    # between stages.
    encoder_filters: Tuple[int, ...] = (16, 32, 32)
    # "resnet": ResNet blocks per stage (paper: (2, 2, 3)); "densenet": ceil(n / 2) dense
    # blocks of 3 steps per stage (each pair of ResNet blocks is one dense block).
    encoder_blocks: Tuple[int, ...] = (2, 2, 3)
    # "densenet": maps added by each of a dense block's 3 steps, one per stage (its output
    # is 3 * growth maps); None = floor(F / 3) + 1, the least with 3 * growth > F =
    # encoder_filters[stage] ("slightly wider" than the ResNet, paper: 51, 99, 99).
    densenet_growth: Optional[Tuple[int, ...]] = None
    encoder_hidden: int = 450  # encoder="dense" (and its mirror) only
    iaf_steps: int = 0  # IAF posterior steps on top of the diagonal Gaussian (0 = none)
    iaf_hidden: Tuple[int, ...] = (640,)
    iaf_context_size: int = 64
    # Hierarchical latents (vlae_tf.hierarchy): latent_layers=2 is p(z2) p(z1|z2) p(x|z1)
    # with q(z1|x) q(z2|z1); z1 has latent_size dimensions, z2 top_latent_size, and the
    # prior below (`prior`) is p(z2). 1 = the one-layer model (the other two are unused).
    latent_layers: int = 1
    top_latent_size: int = 16
    hierarchy_hidden: int = 128  # hidden units of the q(z2|z1) and p(z1|z2) MLPs
    # Prior p(z).
    prior: str = "af"  # "af" (MAF) | "standard_normal" (VAE baseline) | "mog" | "vamp"
    prior_components: int = 16  # mixture components / pseudo-inputs of "mog" and "vamp"
    prior_steps: int = 4
    prior_hidden: Tuple[int, ...] = (640,)
    prior_mean_only: bool = True  # volume-preserving MAF steps, as in the paper (binary)
    prior_weight_norm: bool = False  # weight-normalised MADE layers (the paper's presets)
    # The network of each AF step: "made" (dense MADE, binary) | "pixelcnn" (masked convs on
    # the latent_shape map, the paper's CIFAR prior; prior_hidden = feature maps per layer).
    prior_network: str = "made"
    # Kernel size of the "pixelcnn" prior's masked convolutions (odd, >= 3); 3 = PixelCNN's.
    prior_kernel_size: int = 3
    # Decoder p(x|z): a PixelCNN family (vlae_tf.decoders) and the z path into it.
    decoder: str = "gated"  # "gated" (windowed gated) | "masked_resnet" (paper, binary)
    #                        | "pixelcnnpp" (paper, CIFAR: channel-autoregressive PixelCNN++)
    window: Optional[Tuple[int, int]] = (13, 6)  # gated: (A, B); None = global field
    grayscale_window: bool = False  # window sees only 0.299R + 0.587G + 0.114B
    decoder_layers: int = 6
    decoder_filters: int = 12
    decoder_residual_blocks: int = 4  # extra 1x1 residual blocks
    # pixelcnnpp: dropout rate inside its gated ResNet blocks (0 = none; the paper does not
    # say; PixelCNN++ used 0.5 on CIFAR-10 without a latent code). Other decoders: 0.
    decoder_dropout: float = 0.0
    residual_placement: str = "end"  # "end" (after the masked/window layers) | "interleaved"
    tie_weights: bool = False  # masked_resnet: one kernel for all mask-B layers
    z_conditioning: str = "both"  # "concat" (first layer) | "gated" (later blocks) | "both"
    z_concat_mask: str = "B"  # masked_resnet: mask of the z channels in the mask-A layer
    latent_map: str = "dense_upsample"  # z path: "dense_upsample" | "symmetric" (paper)
    z_map_channels: int = 16
    # Objective.
    free_bits: float = 0.0  # lambda, nats per group
    free_bits_groups: int = 1
    # How the latent units form the groups: "contiguous" (free_bits_groups consecutive
    # chunks of the flat z; with a latent_shape, raster-order chunks: h*w groups = one per
    # position) | "feature_map" (one group per map of latent_shape, free_bits_groups = c:
    # the IAF paper's free-bits groups, Kingma et al. 2016, Eq. 15).
    free_bits_grouping: str = "contiguous"
    free_bits_mode: str = "hard"  # "none" | "hard" | "soft" (adaptive KL weight, CIFAR)
    # Free bits as a warm-up: lambda(t) = free_bits for t <= hold, then linearly to 0 over
    # anneal steps (objectives.free_bits_lambda); anneal 0 = no schedule (permanent floor).
    free_bits_hold_steps: int = 0
    free_bits_anneal_steps: int = 0
    # Capacity-controlled objective (Burgess et al. 2018), off when capacity_gamma is None:
    # loss = recon + gamma * |KL - C(t)|, C from capacity_start to capacity_end nats
    # linearly over capacity_steps steps (objectives.capacity_schedule).
    capacity_gamma: Optional[float] = None
    capacity_start: float = 0.0
    capacity_end: float = 0.0
    capacity_steps: int = 0
    kl_weight: float = 1.0  # beta (beta-VAE: > 1); scales the KL term of the loss only
    kl_warmup_steps: int = 0  # KL weight ramps linearly from 0 to kl_weight over N steps
    num_train_samples: int = 1  # K of the IWAE bound used for training (1 = the ELBO)
    max_consecutive_nonfinite: int = 10  # non-finite losses skipped in a row before stopping
    # Optimisation.
    learning_rate: float = 2e-3
    ema_momentum: Optional[float] = 0.998  # Polyak averaging; None disables it
    weight_norm: bool = True
    seed: int = 0

    def __post_init__(self):
        _validate(self)

    def replace(self, **changes) -> "VLAEConfig":
        """A copy with `changes` applied (validated); unknown fields raise ValueError."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ValueError(
                f"VLAEConfig.replace: unknown field(s) {unknown}; valid fields: "
                f"{sorted(field.name for field in dataclasses.fields(self))}")
        return dataclasses.replace(self, **_normalise(changes))

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def num_dims(self) -> int:
        return self.image_shape[0] * self.image_shape[1] * self.image_shape[2]

    @property
    def max_value(self) -> int:
        return 1 if self.likelihood == "bernoulli" else 255

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "VLAEConfig":
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"VLAEConfig.from_dict: unknown field(s) {unknown}")
        return cls(**_normalise(values))


def _normalise(values: dict) -> dict:
    """Turns JSON lists (and 'AxB' strings) into the tuples the dataclass stores."""
    values = dict(values)
    for key in ("image_shape", "latent_shape", "encoder_filters", "encoder_blocks",
                "densenet_growth", "iaf_hidden", "prior_hidden"):
        if key in values and values[key] is not None and not isinstance(values[key], tuple):
            values[key] = tuple(values[key])
    if "window" in values:
        values["window"] = window_lib.validate_window(values["window"])
    return values


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check(condition, field, expected, got):
    if not condition:
        raise ValueError(f"VLAEConfig.{field}: expected {expected}; got {got!r}")


_FIELD_TYPES = None  # {field name: (type, optional, element type, tuple length)}


def _field_types() -> dict:
    """Each field's type from VLAEConfig's type hints: int, float, bool, str or tuple
    (with its element type and fixed length, None for Tuple[x, ...]), and whether None
    is allowed (Optional). Read once; a new field is covered without listing it."""
    global _FIELD_TYPES
    if _FIELD_TYPES is None:
        hints, types = typing.get_type_hints(VLAEConfig), {}
        for field in dataclasses.fields(VLAEConfig):
            annotation, optional = hints[field.name], False
            if typing.get_origin(annotation) is typing.Union:
                arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
                annotation, optional = arguments[0], True
            element = length = None
            if typing.get_origin(annotation) is tuple:
                arguments = typing.get_args(annotation)
                element = arguments[0]
                length = None if len(arguments) == 2 and arguments[1] is Ellipsis \
                    else len(arguments)
                annotation = tuple
            types[field.name] = (annotation, optional, element, length)
        _FIELD_TYPES = types
    return _FIELD_TYPES


_TYPE_NAMES = {int: "an int", float: "a float", bool: "True or False", str: "a string"}
_PLURAL_NAMES = {int: "ints", float: "floats", bool: "bools", str: "strings"}


def _typed(value, kind):
    """`value` as `kind` (int, float, bool, str), or raise TypeError. ints: Python or numpy
    integers, or integral finite floats (3.0, e.g. from JSON), never bools; floats: any
    real number but a bool; bools: Python or numpy bools only."""
    if kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) \
                and math.isfinite(value) and float(value).is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return float(value)
    elif kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:  # a field type this check does not know: leave it to the field's own checks
        return value
    raise TypeError(kind)


def _check_types(config: VLAEConfig) -> None:
    """Every field has its annotated type (so that a float or a string never reaches
    Keras: `latent_size=2.5`, `decoder_filters="8"`), normalised in place: numpy scalars
    become Python ones, ints in float fields floats, lists tuples. ValueError naming the
    field otherwise. The window has its own check (window.validate_window)."""
    for name, (kind, optional, element, length) in _field_types().items():
        value = getattr(config, name)
        if name == "window" or (value is None and optional):
            continue
        expected = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        try:
            if kind is tuple:
                plural = _PLURAL_NAMES.get(element, "values")
                expected = f"a tuple of {length} {plural}" if length else f"a tuple of {plural}"
                if not isinstance(value, (tuple, list)) or (
                        length is not None and len(value) != length):
                    raise TypeError(tuple)
                typed = tuple(_typed(item, element) for item in value)
            else:
                typed = _typed(value, kind)
        except TypeError:
            raise ValueError(f"VLAEConfig.{name}: expected "
                             f"{'None or ' if optional else ''}{expected}; got {value!r}") \
                from None
        if typed is not value:
            object.__setattr__(config, name, typed)


def _validate(config: VLAEConfig) -> None:
    object.__setattr__(config, "window", window_lib.validate_window(config.window, "VLAEConfig.window"))
    _check_types(config)
    for key in ("image_shape", "encoder_filters", "iaf_hidden", "prior_hidden"):
        value = getattr(config, key)
        if isinstance(value, list):
            object.__setattr__(config, key, tuple(value))
    shape = config.image_shape
    _check(len(shape) == 3 and all(isinstance(v, int) and v >= 1 for v in shape),
           "image_shape", "(height, width, channels) of positive ints", shape)
    _check(shape[2] in (1, 3), "image_shape", "1 or 3 channels", shape)
    _check(config.likelihood in LIKELIHOODS, "likelihood", f"one of {LIKELIHOODS}",
           config.likelihood)
    _check(int(config.num_mixtures) >= 1, "num_mixtures", "an int >= 1", config.num_mixtures)
    _check(int(config.latent_size) >= 1, "latent_size", "an int >= 1", config.latent_size)
    if config.latent_shape is not None:
        _check(len(config.latent_shape) == 3 and all(v >= 1 for v in config.latent_shape),
               "latent_shape", "None or (height, width, channels) of positive ints",
               config.latent_shape)
        _check(int(np.prod(config.latent_shape)) == config.latent_size, "latent_shape",
               f"a shape whose size equals latent_size={config.latent_size}",
               config.latent_shape)
    _check(config.prior_network in PRIOR_NETWORKS, "prior_network",
           f"one of {PRIOR_NETWORKS}", config.prior_network)
    if config.prior_network == "pixelcnn":
        _check(config.prior == "af", "prior_network",
               f"'made' unless prior='af' (got prior={config.prior!r})", config.prior_network)
        _check(config.latent_shape is not None, "prior_network",
               "'made' unless latent_shape is set (a PixelCNN needs the latent's map shape)",
               config.prior_network)
    _check(config.prior_kernel_size >= 3 and config.prior_kernel_size % 2 == 1,
           "prior_kernel_size", "an odd int >= 3 (a masked kernel with taps before its centre)",
           config.prior_kernel_size)
    _check(len(config.encoder_filters) >= 1 and all(f >= 1 for f in config.encoder_filters),
           "encoder_filters", "a non-empty tuple of positive ints", config.encoder_filters)
    _check(config.encoder_hidden >= 1, "encoder_hidden", "an int >= 1", config.encoder_hidden)
    _validate_spatial_encoder(config)
    _check(config.iaf_steps >= 0, "iaf_steps", "an int >= 0", config.iaf_steps)
    _check(config.prior in PRIORS, "prior", f"one of {PRIORS}", config.prior)
    _check(config.prior_steps >= 1, "prior_steps", "an int >= 1", config.prior_steps)
    _check(config.grayscale_window is False or shape[2] == 3, "grayscale_window",
           "False for 1-channel images (it needs RGB)", config.grayscale_window)
    _check(config.decoder_layers >= 1, "decoder_layers", "an int >= 1", config.decoder_layers)
    _check(config.decoder_filters >= 1, "decoder_filters", "an int >= 1", config.decoder_filters)
    _check(config.decoder_residual_blocks >= 0, "decoder_residual_blocks", "an int >= 0",
           config.decoder_residual_blocks)
    _check(config.z_conditioning in Z_CONDITIONING, "z_conditioning",
           f"one of {Z_CONDITIONING}", config.z_conditioning)
    _check(config.z_map_channels >= 1, "z_map_channels", "an int >= 1", config.z_map_channels)
    _check(config.decoder in DECODERS, "decoder", f"one of {DECODERS}", config.decoder)
    _check(config.z_concat_mask in Z_CONCAT_MASKS, "z_concat_mask",
           f"one of {Z_CONCAT_MASKS}", config.z_concat_mask)
    _check(config.residual_placement in RESIDUAL_PLACEMENTS, "residual_placement",
           f"one of {RESIDUAL_PLACEMENTS}", config.residual_placement)
    _check(config.latent_map in LATENT_MAPS, "latent_map", f"one of {LATENT_MAPS}",
           config.latent_map)
    if config.decoder == "gated":
        _check(not config.tie_weights, "tie_weights",
               "False for decoder='gated' (its layers have kernels of different shapes; "
               "tying is for decoder='masked_resnet')", config.tie_weights)
        _check(config.residual_placement == "end", "residual_placement",
               "'end' for decoder='gated' (its 1x1 blocks follow the window layers)",
               config.residual_placement)
    elif config.decoder == "pixelcnnpp":  # its window table, likelihood and z path
        from vlae_tf.decoders import pixelcnnpp  # local: keeps config import-light
        pixelcnnpp.check_config(config)
    else:  # masked_resnet: the field is that of its masked stack, z enters at the input
        _check(config.window is None, "window",
               "None for decoder='masked_resnet' (its receptive field is the masked stack's, "
               "set by decoder_layers)", config.window)
        _check(config.z_conditioning == "concat", "z_conditioning",
               "'concat' for decoder='masked_resnet' (z is concatenated with the image at "
               "its input only)", config.z_conditioning)
        _check(not config.grayscale_window, "grayscale_window",
               "False for decoder='masked_resnet'", config.grayscale_window)
    _check(_finite(config.decoder_dropout) and 0 <= config.decoder_dropout < 1,
           "decoder_dropout", "a float in [0, 1)", config.decoder_dropout)
    _check(config.decoder_dropout == 0 or config.decoder == "pixelcnnpp", "decoder_dropout",
           f"0.0 unless decoder='pixelcnnpp' (got decoder={config.decoder!r})",
           config.decoder_dropout)
    # Finite: free_bits=inf makes the hinge inf (every step skipped as non-finite) and
    # learning_rate=inf makes the first step nan; both must be refused here, by name.
    _check(_finite(config.free_bits) and config.free_bits >= 0, "free_bits",
           "a finite float >= 0 (nats per group)", config.free_bits)
    _check(1 <= config.free_bits_groups <= config.latent_size, "free_bits_groups",
           f"an int in [1, latent_size={config.latent_size}]", config.free_bits_groups)
    _check(config.free_bits_grouping in FREE_BITS_GROUPINGS, "free_bits_grouping",
           f"one of {FREE_BITS_GROUPINGS}", config.free_bits_grouping)
    if config.free_bits_grouping == "feature_map":
        _check(config.latent_shape is not None
               and config.free_bits_groups == config.latent_shape[2], "free_bits_groups",
               f"latent_shape's channel count (one group per feature map) for "
               f"free_bits_grouping='feature_map' (latent_shape={config.latent_shape})",
               config.free_bits_groups)
    _check(config.free_bits_mode in FREE_BITS_MODES, "free_bits_mode",
           f"one of {FREE_BITS_MODES}", config.free_bits_mode)
    _check(config.free_bits_groups == 1 or (config.prior == "standard_normal"
                                              and config.iaf_steps == 0),
           "free_bits_groups",
           "1 unless prior='standard_normal' and iaf_steps=0 (a flow's KL does not split "
           "over latent dimensions)", config.free_bits_groups)
    _validate_hierarchy(config)
    _validate_schedules(config)
    _check(config.prior_components >= 1, "prior_components", "an int >= 1",
           config.prior_components)
    _check(config.kl_weight >= 0, "kl_weight", "a float >= 0", config.kl_weight)
    _check(config.kl_warmup_steps >= 0, "kl_warmup_steps", "an int >= 0",
           config.kl_warmup_steps)
    _check(config.num_train_samples >= 1, "num_train_samples", "an int >= 1",
           config.num_train_samples)
    _check(config.num_train_samples == 1 or (
        config.kl_weight == 1.0 and config.kl_warmup_steps == 0
        and (config.free_bits_mode == "none" or config.free_bits == 0)),
        "num_train_samples",
        "1 when free bits, kl_weight != 1 or KL warm-up are used (the IWAE bound has no "
        "separate KL term to weight)", config.num_train_samples)
    _check(config.max_consecutive_nonfinite >= 1, "max_consecutive_nonfinite", "an int >= 1",
           config.max_consecutive_nonfinite)
    _check(_finite(config.learning_rate) and config.learning_rate > 0, "learning_rate",
           "a finite float > 0", config.learning_rate)
    _check(isinstance(config.seed, numbers.Integral) and not isinstance(config.seed, bool)
           and INT32_MIN <= config.seed <= INT32_MAX, "seed",
           f"an int in [{INT32_MIN}, {INT32_MAX}] (seeds are int32)", config.seed)
    _check(config.ema_momentum is None or 0 < config.ema_momentum < 1, "ema_momentum",
           "None or a float in (0, 1)", config.ema_momentum)


def _validate_spatial_encoder(config: VLAEConfig) -> None:
    """encoder, encoder_blocks, densenet_growth; the fully convolutional encoders' needs:
    a latent map (latent_shape) that the len(encoder_filters) - 1 stride-2 convs reach
    exactly from the image, and their mirror as the z path (vlae_tf/spatial.py)."""
    _check(config.encoder in ENCODERS, "encoder", f"one of {ENCODERS}", config.encoder)
    _check(len(config.encoder_blocks) >= 1 and all(b >= 1 for b in config.encoder_blocks),
           "encoder_blocks", "a non-empty tuple of positive ints", config.encoder_blocks)
    growth = config.densenet_growth
    _check(growth is None or (len(growth) >= 1 and all(g >= 1 for g in growth)),
           "densenet_growth", "None or a non-empty tuple of positive ints", growth)
    if config.encoder == "dense":
        return
    stages = len(config.encoder_filters)
    what = f"for encoder={config.encoder!r}"
    _check(len(config.encoder_blocks) == stages, "encoder_blocks",
           f"one count per stage (len(encoder_filters)={stages}) {what}",
           config.encoder_blocks)
    if config.encoder == "densenet" and growth is not None:
        _check(len(growth) == stages, "densenet_growth",
               f"None or one growth per stage (len(encoder_filters)={stages}) {what}", growth)
    _check(config.latent_shape is not None, "latent_shape",
           f"(height, width, channels) of the latent map {what} (it encodes onto a map); "
           f"e.g. (8, 8, 16) for 32x32 images", config.latent_shape)
    factor = 2 ** (stages - 1)
    height, width = config.image_shape[:2]
    expected = (height // factor, width // factor)
    _check(height % factor == 0 and width % factor == 0
           and tuple(config.latent_shape[:2]) == expected, "latent_shape",
           f"a map of image_shape's (height, width) = {(height, width)} / {factor} "
           f"(the {stages - 1} stride-2 convs of encoder_filters={config.encoder_filters}), "
           f"i.e. {expected + ('c',)} {what}"
           + ("" if height % factor == 0 and width % factor == 0
              else f"; {(height, width)} is not a multiple of {factor}"),
           config.latent_shape)
    _check(config.latent_map == "symmetric", "latent_map",
           f"'symmetric' {what} (its generation network mirrors the encoder)",
           config.latent_map)
    _check(config.iaf_steps == 0, "iaf_steps",
           f"0 {what} (the paper's CIFAR VLAE has a diagonal Gaussian posterior; the IAF "
           f"context is built by encoder='dense' only)", config.iaf_steps)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate_hierarchy(config: VLAEConfig) -> None:
    """latent_layers, top_latent_size, hierarchy_hidden, and what the hierarchy refuses."""
    _check(config.latent_layers in (1, 2), "latent_layers",
           "1 (one latent layer) or 2 (p(z2) p(z1|z2), vlae_tf.hierarchy)",
           config.latent_layers)
    _check(config.top_latent_size >= 1, "top_latent_size", "an int >= 1",
           config.top_latent_size)
    _check(config.hierarchy_hidden >= 1, "hierarchy_hidden", "an int >= 1",
           config.hierarchy_hidden)
    if config.latent_layers == 1:
        return
    for ok, field, expected in (
            (config.use_latent, "use_latent", "True when latent_layers=2"),
            (config.iaf_steps == 0, "iaf_steps",
             "0 when latent_layers=2 (q(z1|x) is a diagonal Gaussian in the hierarchy)"),
            (config.prior != "vamp", "prior",
             "'standard_normal', 'af' or 'mog' when latent_layers=2 (the VampPrior's "
             "components are q(z1|u) of the encoder, not densities over z2)"),
            (config.latent_shape is None, "latent_shape",
             "None when latent_layers=2 (the hierarchy is over vector latents)"),
            (config.free_bits_groups == 1, "free_bits_groups",
             "1 when latent_layers=2 (free bits apply per layer: one group per layer)")):
        _check(ok, field, expected, getattr(config, field))


def _validate_schedules(config: VLAEConfig) -> None:
    """The free-bits schedule and the capacity objective (see the class docstring)."""
    for key in ("free_bits_hold_steps", "free_bits_anneal_steps", "capacity_steps"):
        value = getattr(config, key)
        _check(_is_int(value) and value >= 0, key, "an int >= 0", value)
    free_bits_on = config.free_bits > 0 and config.free_bits_mode != "none"
    # anneal 0 is "no schedule"; a hold without an anneal would be read as either "drop
    # the floor after H steps" or "forever": refused, M = 1 says the former.
    _check(config.free_bits_hold_steps == 0 or config.free_bits_anneal_steps > 0,
           "free_bits_hold_steps", "0 when free_bits_anneal_steps=0 (no schedule: the floor "
           "is permanent; free_bits_anneal_steps=1 drops it at once after the hold)",
           config.free_bits_hold_steps)
    _check(config.free_bits_anneal_steps == 0 or free_bits_on, "free_bits_anneal_steps",
           f"0 unless free bits are on (free_bits > 0 and free_bits_mode 'hard' or 'soft'; "
           f"got free_bits={config.free_bits!r}, free_bits_mode={config.free_bits_mode!r})",
           config.free_bits_anneal_steps)
    gamma = config.capacity_gamma
    _check(gamma is None or (_finite(gamma) and gamma > 0), "capacity_gamma",
           "None (off) or a finite float > 0", gamma)
    if gamma is None:
        for key in ("capacity_start", "capacity_end", "capacity_steps"):
            _check(getattr(config, key) == 0, key, "0 unless capacity_gamma is set (the "
                   "capacity objective is off)", getattr(config, key))
        return
    _check(_finite(config.capacity_start) and config.capacity_start >= 0, "capacity_start",
           "a finite float >= 0 (nats)", config.capacity_start)
    _check(_finite(config.capacity_end) and config.capacity_end >= config.capacity_start,
           "capacity_end", f"a finite float >= capacity_start={config.capacity_start!r} "
           f"(nats)", config.capacity_end)
    # The capacity term replaces the KL term: a second rule for the same KL is ill-defined.
    for ok, reason in (
            (config.use_latent, "use_latent=True (there is no KL to control)"),
            (not free_bits_on, "free bits off (free_bits=0 or free_bits_mode='none'): "
                               "|KL - C| and a free-bits floor are two targets for one KL"),
            (config.kl_weight == 1.0, "kl_weight=1.0 (capacity_gamma is the KL weight)"),
            (config.kl_warmup_steps == 0, "kl_warmup_steps=0 (the growing capacity is the "
                                          "warm-up)"),
            (config.num_train_samples == 1, "num_train_samples=1 (the IWAE bound has no "
                                            "separate KL term)")):
        _check(ok, "capacity_gamma", f"None unless {reason}", gamma)
