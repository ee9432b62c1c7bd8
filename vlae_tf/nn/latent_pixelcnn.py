"""The PixelCNN of one autoregressive-flow step on a spatial latent (the VLAE's CIFAR prior).

References:
  X. Chen et al., "Variational Lossy Autoencoder", ICLR 2017 (arXiv:1611.02731), App. B:
    "each flow is a PixelCNN with 2 hidden layers and 128 feature maps, acting on the
    16x8x8 latent"; ELU activations throughout (App. A).
  A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks",
    ICML 2016 (arXiv:1601.06759): masked convolutions, masks A and B, channel groups.
  M. Germain et al., "MADE", ICML 2015 (arXiv:1502.03509): unit degrees and masks.

Ordering. ``z`` is a flat ``[..., D]`` vector, ``D = h * w * c``, in raster order: unit
``k = (row * w + col) * c + ch`` (the C-order flattening of ``[h, w, c]``, the project's z
convention). The network maps it to ``[..., D, P]`` (the layout of ``vlae_tf.nn.made.MADE``,
so one MAF step code drives either network), and output ``k`` depends only on ``z_{<k}``:
every channel of the earlier positions and the channels ``< ch`` of its own position.

Masks. Every layer is a "same"-padded convolution whose kernel ``[kh, kw, in, out]`` is
multiplied by a fixed 0/1 mask ``M`` on each call (the variable itself is never changed):

    taps strictly before the centre in raster order     M = 1 for every (in, out) pair
    (the rows above it; its own row, left of it)
    taps after the centre                                M = 0
    the centre tap                                       M[i, j] = 1 iff d_in(i) <= d_out(j)

with MADE-style channel degrees ``d``: input channel ``ch`` has degree ``ch + 1``; hidden
feature map ``j`` has degree ``j mod c`` (cycled over ``0..c-1``, reproducible and spread
evenly); output column ``ch * P + p`` (parameter p of channel ch) has degree ``ch``. At the
centre this is mask A on the input layer (a map of degree m sees channels ``< m``), mask B
between hidden layers (``m_i <= m_j``) and, on the output layer, strict with respect to the
inputs: a path through centre taps only from input channel ``a`` to output channel ``b`` at
one position has ``a + 1 <= m <= ... <= b``, i.e. ``a < b``. A path with at least one
off-centre tap ends at an earlier position (raster offsets add like lexicographic order, so
a sum of "before" offsets and zero offsets is "before"). Degree-0 maps see only earlier
positions and feed every channel of their own position, like PixelCNN's R group; with
``c = 1`` the masks are exactly PixelCNN's A-then-B masks.

Receptive field. A stack of masked ``k x k`` convolutions has PixelCNN's blind spot: with
``L`` layers (hidden + output) a unit sees at most ``L * (k // 2)`` rows up and columns to
the left, and in the rows above no further right than ``k // 2`` columns per layer that
goes up: the upper-right region, which precedes the unit in raster order, stays unseen. The network stays exactly autoregressive, only its field
is narrower than ``z_{<k}``; stacked flow steps (with the order reversed between them) widen
what the prior as a whole couples. Default ``kernel_size = 3``: the paper gives no size;
3x3 is PixelCNN's masked hidden-layer kernel, and the cost of a pass grows with ``k^2``
while sampling runs ``D`` sequential passes per step (1024 for CIFAR's 8x8x16 latent).

Initialisation matches the MADE's: the output layer starts at zero (a zero kernel, or with
weight normalisation a zero gain), so every flow step starts as the identity map.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from vlae_tf.nn.layers import CheckpointListsMixin, causal_kernel_mask
from vlae_tf.nn.made import validate_hidden_units, validate_positive_int

__all__ = ["LatentMaskedConv2D", "LatentPixelCNN", "latent_channel_degrees",
           "latent_conv_mask", "validate_kernel_size", "validate_latent_shape"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def validate_kernel_size(arg_name: str, value) -> int:
    """``int(value)``, or ValueError unless it is an odd int >= 3 (1 would leave only the
    centre tap: the positions would not see each other)."""
    if not _is_int(value) or value < 3 or value % 2 != 1:
        raise ValueError(f"`{arg_name}` must be an odd int >= 3 (a masked kernel with taps "
                         f"before its centre), got {value!r}.")
    return int(value)


def validate_latent_shape(arg_name: str, value, latent_size: int | None = None
                          ) -> tuple[int, int, int]:
    """``(h, w, c)`` as ints >= 1 (with ``h * w * c == latent_size`` if given), or ValueError."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3 \
            or not all(_is_int(size) and size >= 1 for size in value):
        raise ValueError(f"`{arg_name}` must be (height, width, channels) of ints >= 1, "
                         f"got {value!r}.")
    shape = tuple(int(size) for size in value)
    if latent_size is not None and int(np.prod(shape)) != latent_size:
        raise ValueError(f"`{arg_name}` must have height * width * channels == latent_size="
                         f"{latent_size}, got {value!r}.")
    return shape


def latent_channel_degrees(channels: int, hidden_maps: Sequence[int]) -> list[np.ndarray]:
    """Degrees of the input channels (``1..c``) and of every hidden layer's maps
    (``j mod c``, i.e. ``0..c-1`` cycled)."""
    degrees = [np.arange(1, channels + 1)]
    for maps in hidden_maps:
        degrees.append(np.arange(maps) % channels)
    return degrees


def output_degrees(channels: int, num_outputs_per_dim: int) -> np.ndarray:
    """Degree of each output column ``ch * P + p``: its channel ``ch``."""
    return np.repeat(np.arange(channels), num_outputs_per_dim)


def latent_conv_mask(kernel_size: int, in_degrees, out_degrees) -> np.ndarray:
    """Float32 0/1 mask ``[k, k, in, out]``: taps strictly before the centre are full, taps
    after it empty, and the centre tap connects ``i -> j`` iff ``in_degrees[i] <=
    out_degrees[j]`` (see the module docstring)."""
    kernel_size = validate_kernel_size("kernel_size", kernel_size)
    in_degrees, out_degrees = np.asarray(in_degrees), np.asarray(out_degrees)
    # causal_kernel_mask's mask A with one channel: exactly the taps before the centre.
    before = causal_kernel_mask((kernel_size, kernel_size), 1, "A")[:, :, 0, 0]
    mask = np.broadcast_to(before[:, :, None, None],
                           (kernel_size, kernel_size, in_degrees.size, out_degrees.size)).copy()
    centre = kernel_size // 2
    mask[centre, centre] = in_degrees[:, None] <= out_degrees[None, :]
    return mask.astype(np.float32)


@keras.saving.register_keras_serializable(package="vlae_tf")
class LatentMaskedConv2D(keras.layers.Layer):
    """Stride-1 "same" convolution ``y = conv(x, W * M) + b`` with ``M = latent_conv_mask``.

    The mask multiplies a copy of the kernel on every call, so masked entries get zero
    gradient and the variable is never mutated. With ``use_weight_norm`` (as the MADE's
    ``MaskedDense``): ``w = g * (v * M) / ||v * M||`` per output map, the norm over
    ``(kh, kw, in)``, so masked entries never count; no data-dependent init (the prior's
    layers keep their identity start, like the MADE's).
    """

    def __init__(self, kernel_size, in_degrees, out_degrees, use_weight_norm=False,
                 kernel_initializer="glorot_uniform", gain_initializer="ones", **kwargs):
        # float32 unless told otherwise: flows must not run in float16.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.kernel_size = validate_kernel_size("kernel_size", kernel_size)
        self.in_degrees = np.asarray(in_degrees, dtype=np.int64).reshape(-1)
        self.out_degrees = np.asarray(out_degrees, dtype=np.int64).reshape(-1)
        if self.in_degrees.size == 0 or self.out_degrees.size == 0:
            raise ValueError(f"`in_degrees` and `out_degrees` must be non-empty, got "
                             f"{self.in_degrees.size} and {self.out_degrees.size} entries.")
        self.kernel_mask = latent_conv_mask(self.kernel_size, self.in_degrees, self.out_degrees)
        self.filters = int(self.out_degrees.size)
        self.use_weight_norm = bool(use_weight_norm)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.gain_initializer = keras.initializers.get(gain_initializer)

    def build(self, input_shape=None):
        fan_in = None if input_shape is None else input_shape[-1]
        if fan_in is not None and fan_in != self.in_degrees.size:
            raise ValueError(f"{self.name}: input last dimension must be "
                             f"{self.in_degrees.size} (one per input degree), got {fan_in}.")
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_mask.shape,
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.gain = (self.add_weight(name="gain", shape=(self.filters,),
                                     initializer=self.gain_initializer)
                     if self.use_weight_norm else None)

    def call(self, inputs):
        kernel = tf.convert_to_tensor(self.kernel)
        masked = kernel * tf.constant(self.kernel_mask, dtype=kernel.dtype)  # a new tensor
        if self.gain is not None:
            norm = tf.sqrt(tf.reduce_sum(tf.square(masked), axis=(0, 1, 2), keepdims=True)
                           + 1e-12)
            masked = masked / norm * tf.cast(self.gain, kernel.dtype)
        outputs = tf.nn.conv2d(inputs, tf.cast(masked, inputs.dtype), strides=1,
                               padding="SAME")
        return outputs + tf.cast(self.bias, outputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, in_degrees=self.in_degrees.tolist(),
                      out_degrees=self.out_degrees.tolist(),
                      use_weight_norm=self.use_weight_norm,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      gain_initializer=keras.initializers.serialize(self.gain_initializer))
        return config


@keras.saving.register_keras_serializable(package="vlae_tf")
class LatentPixelCNN(CheckpointListsMixin, keras.layers.Layer):
    """PixelCNN on the latent map: flat ``z [..., D]`` -> parameters ``[..., D, P]``.

    ``z`` is reshaped to ``[N, h, w, c]`` (raster order), passed through masked
    convolutions (input layer, ``len(hidden_maps) - 1`` hidden-to-hidden layers, output
    layer; ELU, the paper's activation throughout, after every hidden layer) and the output
    ``[N, h, w, c * P]`` is reshaped back, so ``[..., k, p]`` is parameter ``p`` of unit
    ``k``. Output ``k`` depends on ``z_{<k}`` only (module docstring), so ``[..., 0, :]``
    is a constant. The interface of ``vlae_tf.nn.made.MADE`` (``event_size``,
    ``num_outputs_per_dim``, ``context_size = 0``), so ``flows.make_maf_bijector`` takes it.

    Args:
      latent_shape: ``(h, w, c)``; ``D = h * w * c``.
      hidden_maps: feature maps of each hidden layer (paper, CIFAR: ``(128, 128)``).
      num_outputs_per_dim: P (1 mean-only, 2 shift and log-scale).
      kernel_size: odd, >= 3 (default 3; see the module docstring).
      activation: hidden activation (default ELU).
      weight_norm: weight-normalised layers (as the MADE's ``weight_norm``).
    """

    def __init__(self, latent_shape, hidden_maps=(128, 128), num_outputs_per_dim=2,
                 kernel_size=3, activation="elu", weight_norm=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_shape = validate_latent_shape("latent_shape", latent_shape)
        self.event_size = int(np.prod(self.latent_shape))
        self.hidden_maps = validate_hidden_units("hidden_maps", hidden_maps)
        self.num_outputs_per_dim = validate_positive_int("num_outputs_per_dim",
                                                         num_outputs_per_dim)
        self.kernel_size = validate_kernel_size("kernel_size", kernel_size)
        self.activation = keras.activations.get(activation)
        self.weight_norm = bool(weight_norm)
        self.context_size = 0  # unconditional (the MADE interface of make_maf_bijector)

        channels = self.latent_shape[2]
        degrees = latent_channel_degrees(channels, self.hidden_maps)
        self.hidden_layers = [
            LatentMaskedConv2D(self.kernel_size, in_degrees, out_degrees,
                               use_weight_norm=self.weight_norm, name=f"masked_conv_{i}",
                               dtype=self.dtype_policy)
            for i, (in_degrees, out_degrees) in enumerate(zip(degrees[:-1], degrees[1:]))]
        # Zero output (identity flow step at the start), as the MADE: a zero kernel, or with
        # weight norm a zero gain (a zero kernel has no direction to normalise).
        self.output_layer = LatentMaskedConv2D(
            self.kernel_size, degrees[-1], output_degrees(channels, self.num_outputs_per_dim),
            use_weight_norm=self.weight_norm,
            kernel_initializer="glorot_uniform" if self.weight_norm else "zeros",
            gain_initializer="zeros", name="masked_conv_output", dtype=self.dtype_policy)

    @property
    def masks(self) -> list[np.ndarray]:
        """The 0/1 kernel masks of the hidden layers and of the output layer."""
        return [layer.kernel_mask for layer in self.hidden_layers] + [self.output_layer.kernel_mask]

    def build(self, inputs_shape=None):
        if inputs_shape is not None:
            self._check_last_dim(inputs_shape[-1])
        fan_in = self.latent_shape[2]
        for layer, maps in zip(self.hidden_layers, self.hidden_maps):
            layer.build((None,) + self.latent_shape[:2] + (fan_in,))
            fan_in = maps
        self.output_layer.build((None,) + self.latent_shape[:2] + (fan_in,))

    def _check_last_dim(self, got):
        if got is not None and got != self.event_size:
            raise ValueError(f"{self.name}: inputs last dimension must be {self.event_size} "
                             f"(latent_shape={self.latent_shape} flattened), got {got}.")

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        self._check_last_dim(inputs.shape[-1] if inputs.shape.rank else None)
        batch_shape = tf.shape(inputs)[:-1]
        hidden = tf.reshape(inputs, (-1,) + self.latent_shape)  # raster order
        for layer in self.hidden_layers:
            hidden = self.activation(layer(hidden))
        flat = self.output_layer(hidden)  # [N, h, w, c * P], column ch * P + p
        outputs = tf.reshape(flat, tf.concat(
            [batch_shape, [self.event_size, self.num_outputs_per_dim]], axis=0))
        # Keep the static shape that tf.reshape with a dynamic shape would lose.
        outputs.set_shape(inputs.shape[:-1].concatenate(
            [self.event_size, self.num_outputs_per_dim]))
        return outputs

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.event_size, self.num_outputs_per_dim)

    def get_config(self):
        config = super().get_config()
        config.update(latent_shape=list(self.latent_shape), hidden_maps=list(self.hidden_maps),
                      num_outputs_per_dim=self.num_outputs_per_dim,
                      kernel_size=self.kernel_size,
                      activation=keras.activations.serialize(self.activation),
                      weight_norm=self.weight_norm)
        return config
