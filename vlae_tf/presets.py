"""Named configurations: the paper's settings, small CPU settings, and the baselines.

    cfg = vlae_tf.presets.get("mnist_paper").replace(window=(7, 4))

`*_paper` follow Chen et al. (2017), App. A, where the paper is specific; deviations are
listed in BUILD_NOTES.md. `*_cpu` are sized to train in minutes on 2 CPU cores. The
baselines keep the encoder and training budget of `mnist_cpu` and change one thing each.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from vlae_tf.config import VLAEConfig

_REGISTRY: Dict[str, Callable[[], VLAEConfig]] = {}
_DESCRIPTIONS: Dict[str, str] = {}
_DATASETS: Dict[str, Optional[str]] = {}  # preset -> the `pipelines` dataset it is meant for


def register(name: str, description: str, dataset: Optional[str] = None):
    """Decorator registering a `() -> VLAEConfig` factory under `name`.

    `dataset`: the name of the `pipelines` dataset the preset is meant for (what
    `launch.train` uses without `--dataset`); None when it has none. A plain string, so
    that the library does not import `pipelines`.
    """
    if dataset is not None and not isinstance(dataset, str):
        raise ValueError(f"dataset: expected a dataset name (str) or None for preset "
                         f"{name!r}; got {dataset!r}")

    def decorator(factory):
        if name in _REGISTRY:
            raise ValueError(f"preset {name!r} is registered twice")
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description
        _DATASETS[name] = dataset
        return factory
    return decorator


def names() -> List[str]:
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The preset's one-line description and its default dataset."""
    _check_name(name)
    dataset = _DATASETS.get(name)
    return _DESCRIPTIONS[name] + (f" [default dataset: {dataset}]" if dataset else "")


def default_dataset(name: str) -> Optional[str]:
    """The dataset the preset is meant for (a `pipelines` name), or None."""
    _check_name(name)
    return _DATASETS.get(name)


def get(name: str) -> VLAEConfig:
    """The preset's VLAEConfig; unknown names raise ValueError listing the valid ones."""
    _check_name(name)
    return _REGISTRY[name]()


def _check_name(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(names())}")


# ---------------------------------------------------------------------------- paper
# Binary data, Chen et al. (2017) App. A with Kingma et al. (2016) App. B: encoder 3x3
# ResNet [16, 32, 32] + a 450-unit dense layer, latent 64; AF prior of 4 mean-only steps,
# each a 3-layer MADE (2 hidden layers of 640 units; weight-normalised, like every layer);
# the deterministic generation network symmetric to the encoder, to a 28x28x4 map
# concatenated with the image; a masked ResNet PixelCNN of 1 mask-A + 5 mask-B 3x3 layers
# of 12 filters with 4 1x1 ResNet blocks between the mask-B layers (field: 69 pixels, blind
# spot included); free bits 0.01 nats per data dimension (7.84 nats for 784 dims), Adamax
# 2e-3, Polyak averaging 0.998. Tied masked weights on static MNIST only ("untying them
# improves the other datasets"). The choices where the paper is ambiguous: BUILD_NOTES.md.
# What the paper's binary model and the gated binary models share.
_BINARY_COMMON = dict(
    image_shape=(28, 28, 1), likelihood="bernoulli", latent_size=64,
    encoder_filters=(16, 32, 32), encoder_hidden=450, prior="af", prior_steps=4,
    prior_mean_only=True, decoder_layers=6, decoder_filters=12, decoder_residual_blocks=4,
    free_bits=0.01 * 784, free_bits_mode="hard", learning_rate=2e-3, ema_momentum=0.998)
_BINARY_PAPER = dict(
    _BINARY_COMMON, prior_hidden=(640, 640), prior_weight_norm=True,
    decoder="masked_resnet", window=None, residual_placement="interleaved",
    tie_weights=False, z_conditioning="concat", z_concat_mask="B", latent_map="symmetric",
    z_map_channels=4)


@register("mnist_paper", "Paper's binary VLAE (masked ResNet PixelCNN, AF prior) on "
          "dynamically binarized MNIST", dataset="mnist")
def _mnist_paper():
    return VLAEConfig(**_BINARY_PAPER)


@register("binarized_mnist_paper", "Paper's binary VLAE with tied masked weights, on "
          "statically binarized MNIST", dataset="binarized_mnist")
def _binarized_mnist_paper():
    return VLAEConfig(**{**_BINARY_PAPER, "tie_weights": True})


@register("omniglot_paper", "Paper's binary VLAE on Burda et al.'s 28x28 OMNIGLOT",
          dataset="omniglot_burda")
def _omniglot_paper():
    return VLAEConfig(**_BINARY_PAPER)


@register("caltech101_paper", "Paper's binary VLAE on 28x28 Caltech-101 Silhouettes",
          dataset="caltech101_silhouettes")
def _caltech_paper():
    return VLAEConfig(**_BINARY_PAPER)


# The gated models the package had as its binary "paper" presets before the paper's own
# architecture landed: the same encoder, latent and training, a gated windowed decoder of 6
# layers x 12 filters + 4 1x1 gated blocks (window 13x6: the masked stack's field without
# the blind spot), z added into every gate, one hidden MADE layer of 640.
_BINARY_GATED = dict(_BINARY_COMMON, prior_hidden=(640,), window=(13, 6))


@register("mnist_gated", "Gated windowed VLAE (13x6 window) with the paper's binary "
          "encoder, prior and training, on dynamically binarized MNIST", dataset="mnist")
def _mnist_gated():
    return VLAEConfig(**_BINARY_GATED)


@register("omniglot_gated", "mnist_gated's model on TFDS OMNIGLOT (resized to 28x28)",
          dataset="omniglot")
def _omniglot_gated():
    return VLAEConfig(**_BINARY_GATED)


@register("caltech101_gated", "mnist_gated's model on 28x28 Caltech-101 Silhouettes",
          dataset="caltech101_silhouettes")
def _caltech_gated():
    return VLAEConfig(**_BINARY_GATED)


# CIFAR-10, Chen et al. (2017) Sec. 4.3 / App. B-C: a spatial latent of 16 maps of 8x8
# (1,024 dims) with a diagonal Gaussian q(z|x) per position; the ResNet VLAE encoder
# (2 ResNet blocks -> stride-2 conv -> 2 blocks -> stride-2 conv -> 3 blocks -> 1x1 conv;
# 48 maps at 32x32, 96 elsewhere) and its symmetric generation network to a 32x32 map, or
# the DenseNet VLAE (each pair of ResNet blocks one 3-step dense block, slightly wider);
# an AF prior of 6 steps, each a PixelCNN of 2 hidden layers of 128 maps, the order
# reversed between steps; a conditional channel-autoregressive PixelCNN++ decoder of 64
# maps (its vertical/horizontal layers set by the window, then 4 gated 1x1 ResNet blocks,
# the z map entering every block), 10 logistic components per sub-pixel; soft free bits.
# Not stated by the paper, chosen here (BUILD_NOTES.md): lambda = 0.01 nats per dimension
# (as for the binary data), mean-only prior steps, Adamax 2e-3, Polyak 0.998, no dropout,
# a 48-map conditioning map (the generation network's width at 32x32).
_CIFAR_PAPER_COMMON = dict(
    image_shape=(32, 32, 3), likelihood="logistic_mixture", num_mixtures=10,
    latent_size=8 * 8 * 16, latent_shape=(8, 8, 16), encoder_filters=(48, 96, 96),
    encoder_blocks=(2, 2, 3), latent_map="symmetric", z_map_channels=48,
    prior="af", prior_network="pixelcnn", prior_steps=6, prior_hidden=(128, 128),
    prior_mean_only=True, prior_weight_norm=True, decoder="pixelcnnpp", window=(7, 4),
    decoder_filters=64, decoder_residual_blocks=4, z_conditioning="gated",
    free_bits=0.01 * 3072, free_bits_mode="soft", learning_rate=2e-3, ema_momentum=0.998)
CIFAR_BACKBONES = {"": "densenet", "_resnet": "resnet"}  # preset suffix -> encoder
CIFAR_WINDOWS = {"4x2": ((4, 2), False), "5x3": ((5, 3), False), "7x4": ((7, 4), False),
                 "7x4_gray": ((7, 4), True)}
# The paper's bits/dim (Table 5, App. E) where it states one for the preset.
CIFAR_PAPER_BITS_PER_DIM = {"cifar10_paper": 2.95, "cifar10_paper_resnet": 3.04,
                            "cifar10_paper_7x4": 2.95, "cifar10_paper_resnet_7x4": 3.04}


def _register_cifar_paper(suffix, encoder, label=None):
    name = f"cifar10_paper{suffix}" + (f"_{label}" if label else "")
    backbone = "DenseNet" if encoder == "densenet" else "ResNet"
    window, grayscale = CIFAR_WINDOWS[label or "7x4"]
    what = (label or "7x4").replace("_gray", " grayscale")

    @register(name, f"Paper's CIFAR-10 {backbone} VLAE (8x8x16 latent, PixelCNN AF prior, "
                    f"channel-autoregressive PixelCNN++), {what} window", dataset="cifar10")
    def _factory():
        return VLAEConfig(**{**_CIFAR_PAPER_COMMON, "encoder": encoder, "window": window,
                             "grayscale_window": grayscale})


for _suffix, _encoder in CIFAR_BACKBONES.items():
    _register_cifar_paper(_suffix, _encoder)
    for _label in CIFAR_WINDOWS:
        _register_cifar_paper(_suffix, _encoder, _label)


# The vector-latent CIFAR model these presets replaced: a 256-d latent, a 64/128/256 + FC
# encoder, a 4-step MADE prior and the gated windowed decoder with linear RGB coupling.
@register("cifar10_gated", "Gated windowed VLAE for CIFAR-10 (256-d vector latent, MADE "
                           "prior, 7x4 window, coupled logistic mixture)", dataset="cifar10")
def _cifar_gated():
    return VLAEConfig(
        image_shape=(32, 32, 3), likelihood="logistic_mixture", num_mixtures=10,
        latent_size=256, encoder_filters=(64, 128, 256), encoder_hidden=1024, prior="af",
        prior_steps=4, prior_hidden=(1024,), prior_mean_only=False, window=(7, 4),
        decoder_layers=4, decoder_filters=64, decoder_residual_blocks=4, z_map_channels=32,
        free_bits=0.01 * 3072, free_bits_mode="soft", learning_rate=2e-3, ema_momentum=0.998)


# ----------------------------------------------------------------------------- CPU
_BINARY_CPU = dict(
    image_shape=(28, 28, 1), likelihood="bernoulli", latent_size=32,
    encoder_filters=(16, 32), encoder_hidden=256, prior="af", prior_steps=2,
    prior_hidden=(256,), prior_mean_only=True, window=(5, 3), decoder_layers=3,
    decoder_filters=32, decoder_residual_blocks=2, z_map_channels=16,
    free_bits=0.01 * 784, free_bits_mode="hard", learning_rate=2e-3, ema_momentum=0.998)


@register("mnist_cpu", "Small binary VLAE (5x3 window, AF prior) that trains in minutes on CPU",
          dataset="mnist5k_binary")
def _mnist_cpu():
    return VLAEConfig(**_BINARY_CPU)


@register("fashion_mnist_cpu", "Small 8-bit VLAE for Fashion-MNIST (logistic mixture, 5x3)",
          dataset="fashion_mnist")
def _fashion_cpu():
    return VLAEConfig(**{**_BINARY_CPU, "likelihood": "logistic_mixture", "num_mixtures": 5,
                         "free_bits": 0.0, "free_bits_mode": "none"})


@register("cifar10_cpu", "Small 8-bit colour VLAE (32x32x3, 5x3 window)", dataset="cifar10")
def _cifar_cpu():
    return VLAEConfig(**{**_BINARY_CPU, "image_shape": (32, 32, 3),
                         "likelihood": "logistic_mixture", "num_mixtures": 5,
                         "latent_size": 64, "encoder_filters": (32, 64),
                         "free_bits": 0.01 * 3072, "free_bits_mode": "soft"})


# ------------------------------------------------------------------------- baselines
@register("factorized_vae_cpu",
          "Baseline: mnist_cpu with an empty window (p(x|z) factorised over pixels)",
          dataset="mnist5k_binary")
def _factorized():
    return VLAEConfig(**{**_BINARY_CPU, "window": (1, 0)})


@register("unconditional_cpu", "Baseline: mnist_cpu's windowed decoder alone, no latent code",
          dataset="mnist5k_binary")
def _unconditional():
    return VLAEConfig(**{**_BINARY_CPU, "use_latent": False})


@register("global_cpu",
          "Baseline: mnist_cpu with a global receptive field (plain PixelCNN; expect KL ~ 0)",
          dataset="mnist5k_binary")
def _global():
    return VLAEConfig(**{**_BINARY_CPU, "window": None, "free_bits": 0.0,
                         "free_bits_mode": "none"})


@register("standard_normal_prior_cpu", "Baseline: mnist_cpu with a N(0, I) prior (VAE)",
          dataset="mnist5k_binary")
def _standard_normal():
    return VLAEConfig(**{**_BINARY_CPU, "prior": "standard_normal"})


@register("iaf_posterior_cpu",
          "Baseline: mnist_cpu with a N(0, I) prior and an IAF posterior of the same size",
          dataset="mnist5k_binary")
def _iaf():
    return VLAEConfig(**{**_BINARY_CPU, "prior": "standard_normal", "iaf_steps": 2,
                         "iaf_hidden": (256,)})
