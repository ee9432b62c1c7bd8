"""Masked Autoencoder for Distribution Estimation (MADE) as Keras 3 layers.

Reference: M. Germain, K. Gregor, I. Murray, H. Larochelle, "MADE: Masked
Autoencoder for Distribution Estimation", ICML 2015 (arXiv:1502.03509).

A MADE is an MLP whose weight matrices are multiplied element-wise by fixed 0/1
masks so that output ``d`` is a function of inputs ``x_{<d}`` only (natural
order ``0..D-1``). With degrees ``m(.)`` assigned to every unit,

    input k          : m = k + 1                       (k = 0..D-1)
    hidden unit j    : m_j in {lowest, ..., D-1}       (cycled deterministically)
    hidden mask      : M[i, j] = 1  iff  m_prev(i) <= m_j
    output mask      : M[i, d] = 1  iff  m_prev(i) <  d + 1

so any path from input ``k`` to output ``d`` has ``k + 1 <= ... <= d``, i.e.
``k < d`` (strict autoregression). Degree-0 hidden units (used when there is a
context input) see no input dimension at all; they carry the context to every
output, including output 0, which is what IAF needs (Kingma et al. 2016).

Why our own implementation: ``tfp.bijectors.AutoregressiveNetwork`` is a Keras 2
(tf-keras) layer, so a Keras 3 model does not track its variables -- they would
silently never train. These layers are plain Keras 3 layers.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from vlae_tf.nn.layers import CheckpointListsMixin

__all__ = [
    "MaskedDense",
    "MADE",
    "made_degrees",
    "made_masks",
    "validate_positive_int",
    "validate_non_negative_int",
    "validate_hidden_units",
]


# ---------------------------------------------------------------------------
# Argument validation (shared by the flow / prior modules).
# ---------------------------------------------------------------------------
def _is_int(value) -> bool:
    # bool is an int subclass but `num_steps=True` is always a bug.
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def validate_positive_int(arg_name: str, value) -> int:
    """Returns ``int(value)`` or raises ValueError unless ``value`` is an int >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{arg_name}` must be an int >= 1, got {value!r}.")
    return int(value)


def validate_non_negative_int(arg_name: str, value) -> int:
    """Returns ``int(value)`` or raises ValueError unless ``value`` is an int >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"`{arg_name}` must be an int >= 0, got {value!r}.")
    return int(value)


def validate_hidden_units(arg_name: str, value) -> tuple[int, ...]:
    """Returns a tuple of ints; raises unless ``value`` is a non-empty sequence of ints >= 1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(
            f"`{arg_name}` must be a non-empty sequence of ints >= 1 (e.g. (640,)), got {value!r}.")
    if not all(_is_int(units) and units >= 1 for units in value):
        raise ValueError(f"`{arg_name}` must contain only ints >= 1, got {value!r}.")
    return tuple(int(units) for units in value)


# ---------------------------------------------------------------------------
# Degrees and masks (pure numpy: deterministic, no TF graph state).
# ---------------------------------------------------------------------------
def made_degrees(event_size: int, hidden_units: Sequence[int],
                 include_degree_zero: bool = False) -> list[np.ndarray]:
    """Degrees of the input units followed by those of every hidden layer.

    Inputs get degrees ``1..D``. Hidden degrees cycle through ``lowest..D-1`` with
    ``lowest = 0`` if ``include_degree_zero`` (units that see only the context) or
    if ``D == 1`` (no input may reach the only output), else ``lowest = 1`` as in
    Germain et al. Cycling (instead of random sampling) makes the masks
    reproducible and spreads units evenly over degrees.
    """
    lowest = 0 if (include_degree_zero or event_size == 1) else 1
    num_degrees = event_size - lowest  # values lowest..D-1
    degrees = [np.arange(1, event_size + 1)]
    for units in hidden_units:
        degrees.append(lowest + np.arange(units) % num_degrees)
    return degrees


def made_masks(event_size: int, hidden_units: Sequence[int], num_outputs_per_dim: int,
               include_degree_zero: bool = False) -> list[np.ndarray]:
    """Float32 0/1 masks ``[fan_in, fan_out]`` for each hidden layer and the output layer.

    The output layer has ``D * num_outputs_per_dim`` columns; column ``d * P + p``
    is parameter ``p`` of dimension ``d`` (so a reshape to ``[..., D, P]`` works).
    """
    degrees = made_degrees(event_size, hidden_units, include_degree_zero)
    masks = [(prev[:, None] <= nxt[None, :]).astype(np.float32)
             for prev, nxt in zip(degrees[:-1], degrees[1:])]
    output_dim = np.repeat(np.arange(event_size), num_outputs_per_dim)  # d of each column
    masks.append((degrees[-1][:, None] <= output_dim[None, :]).astype(np.float32))
    return masks


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="vlae_tf")
class MaskedDense(keras.layers.Layer):
    """Dense layer ``y = act(x @ (W * M) + b)`` with a fixed 0/1 mask ``M``.

    The mask is a numpy array (a constant, not a variable) applied to a copy of
    the kernel at call time, so the masked-out entries of ``W`` get zero gradient
    and the stored kernel is never mutated.

    Args:
      units: number of output units.
      mask: array-like ``[fan_in, units]`` of 0/1.
      activation, use_bias, kernel_initializer, bias_initializer: as keras.layers.Dense.
    """

    def __init__(self, units, mask, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 use_weight_norm=False, gain_initializer="ones", **kwargs):
        # float32 unless told otherwise: masks/flows must not run in float16.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.units = validate_positive_int("units", units)
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim != 2 or mask.shape[1] != self.units:
            raise ValueError(
                f"`mask` must have shape [fan_in, units={self.units}], got {mask.shape}.")
        if not np.all((mask == 0.0) | (mask == 1.0)):
            raise ValueError("`mask` must contain only 0 and 1.")
        self.kernel_mask = mask
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.use_weight_norm = bool(use_weight_norm)
        self.gain_initializer = keras.initializers.get(gain_initializer)

    def build(self, input_shape):
        fan_in = input_shape[-1]
        if fan_in is not None and fan_in != self.kernel_mask.shape[0]:
            raise ValueError(
                f"{self.name}: input last dimension must be {self.kernel_mask.shape[0]} "
                f"(mask fan_in), got {fan_in}.")
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_mask.shape,
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.units,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)
        # Weight normalisation (Salimans & Kingma 2016) of the masked kernel, per unit:
        # w = g * (v * M) / ||v * M||, so masked entries neither train nor count.
        self.gain = (self.add_weight(name="gain", shape=(self.units,),
                                     initializer=self.gain_initializer)
                     if self.use_weight_norm else None)

    def call(self, inputs):
        # New tensor, never an in-place edit of the variable.
        kernel = tf.convert_to_tensor(self.kernel)
        masked_kernel = kernel * tf.constant(self.kernel_mask, dtype=kernel.dtype)
        if self.gain is not None:
            norm = tf.sqrt(tf.reduce_sum(tf.square(masked_kernel), axis=0, keepdims=True)
                           + 1e-12)
            masked_kernel = masked_kernel / norm * tf.cast(self.gain, kernel.dtype)
        outputs = tf.matmul(inputs, tf.cast(masked_kernel, inputs.dtype))
        if self.bias is not None:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            mask=self.kernel_mask.astype(int).tolist(),
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            use_weight_norm=self.use_weight_norm,
            gain_initializer=keras.initializers.serialize(self.gain_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="vlae_tf")
class MADE(CheckpointListsMixin, keras.layers.Layer):
    """MADE network: ``[..., D]`` (+ optional context ``[..., C]``) -> ``[..., D, P]``.

    Output ``[..., d, :]`` depends only on ``inputs[..., :d]`` (and on the context),
    so ``[..., 0, :]`` is constant in ``inputs``. Callers that stack several
    autoregressive steps reverse the dimension order between steps themselves.

    The context (e.g. the encoder's features ``h`` in IAF) enters the first
    hidden layer's pre-activation through an unmasked, bias-free dense layer; it
    is unmasked because the context is not part of the autoregressive ordering.

    The output layer is initialised to zero, so a fresh flow built from MADEs
    starts as (close to) the identity map, which keeps early training stable.

    Args:
      event_size: D, the number of autoregressive dimensions.
      hidden_units: sizes of the hidden layers, e.g. ``(640,)``.
      num_outputs_per_dim: P, parameters per dimension (2 for shift & log-scale).
      activation: hidden activation (Keras name or callable).
      context_size: C, size of the conditioning input; 0 means unconditional.
    """

    def __init__(self, event_size, hidden_units=(640,), num_outputs_per_dim=2,
                 activation="relu", context_size=0, weight_norm=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.event_size = validate_positive_int("event_size", event_size)
        self.hidden_units = validate_hidden_units("hidden_units", hidden_units)
        self.num_outputs_per_dim = validate_positive_int("num_outputs_per_dim",
                                                         num_outputs_per_dim)
        self.context_size = validate_non_negative_int("context_size", context_size)
        self.activation = keras.activations.get(activation)
        self.weight_norm = bool(weight_norm)

        masks = made_masks(self.event_size, self.hidden_units, self.num_outputs_per_dim,
                           include_degree_zero=self.context_size > 0)
        # Activation is applied in call() so the context can be added pre-activation.
        self.hidden_layers = [
            MaskedDense(units, mask, use_weight_norm=self.weight_norm,
                        name=f"masked_dense_{i}", dtype=self.dtype_policy)
            for i, (units, mask) in enumerate(zip(self.hidden_units, masks[:-1]))
        ]
        # Zero output (identity flow at the start): a zero kernel, or with weight norm a
        # zero gain (a zero kernel has no direction to normalise).
        self.output_layer = MaskedDense(
            self.event_size * self.num_outputs_per_dim, masks[-1],
            kernel_initializer="glorot_uniform" if self.weight_norm else "zeros",
            bias_initializer="zeros", use_weight_norm=self.weight_norm,
            gain_initializer="zeros", name="masked_dense_output", dtype=self.dtype_policy)
        self.context_layer = (
            keras.layers.Dense(self.hidden_units[0], use_bias=False, name="context_dense",
                               dtype=self.dtype_policy)
            if self.context_size > 0 else None)

    @property
    def masks(self) -> list[np.ndarray]:
        """The 0/1 masks of the hidden layers and of the output layer."""
        return [layer.kernel_mask for layer in self.hidden_layers] + [self.output_layer.kernel_mask]

    def build(self, inputs_shape=None, context_shape=None):
        # Shapes are fixed by the constructor; the arguments are only checked.
        if inputs_shape is not None:
            self._check_last_dim("inputs", inputs_shape[-1], self.event_size)
        if context_shape is not None:
            if self.context_size == 0:
                raise ValueError(f"{self.name} was built with context_size=0; got a context.")
            self._check_last_dim("context", context_shape[-1], self.context_size)
        fan_in = self.event_size
        for layer, units in zip(self.hidden_layers, self.hidden_units):
            layer.build((None, fan_in))
            fan_in = units
        self.output_layer.build((None, fan_in))
        if self.context_layer is not None:
            self.context_layer.build((None, self.context_size))

    def _check_last_dim(self, what, got, expected):
        if got is not None and got != expected:
            raise ValueError(
                f"{self.name}: {what} last dimension must be {expected}, got {got}.")

    def call(self, inputs, context=None):
        inputs = tf.convert_to_tensor(inputs)
        self._check_last_dim("inputs", inputs.shape[-1], self.event_size)
        if self.context_size > 0:
            if context is None:
                raise ValueError(f"{self.name} was built with context_size="
                                 f"{self.context_size}; `context` is required.")
            context = tf.convert_to_tensor(context)
            self._check_last_dim("context", context.shape[-1], self.context_size)
        elif context is not None:
            raise ValueError(f"{self.name} was built with context_size=0; got a context.")

        hidden = self.hidden_layers[0](inputs)
        if self.context_layer is not None:
            hidden = hidden + self.context_layer(context)
        hidden = self.activation(hidden)
        for layer in self.hidden_layers[1:]:
            hidden = self.activation(layer(hidden))
        flat = self.output_layer(hidden)  # [..., D * P]
        new_shape = tf.concat(
            [tf.shape(flat)[:-1], [self.event_size, self.num_outputs_per_dim]], axis=0)
        outputs = tf.reshape(flat, new_shape)
        # Keep the static shape that tf.reshape with a dynamic shape would lose.
        outputs.set_shape(
            flat.shape[:-1].concatenate([self.event_size, self.num_outputs_per_dim]))
        return outputs

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return tuple(inputs_shape[:-1]) + (self.event_size, self.num_outputs_per_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            event_size=self.event_size,
            hidden_units=list(self.hidden_units),
            num_outputs_per_dim=self.num_outputs_per_dim,
            activation=keras.activations.serialize(self.activation),
            context_size=self.context_size,
            weight_norm=self.weight_norm,
        )
        return config
