"""Small Keras 3 layers: weight-normalised convolutions and dense layers, causal shifts.

Weight normalisation (Salimans & Kingma 2016): w = g * v / ||v||, with the norm taken per
output unit. Data-dependent initialisation sets g and b from the first batch so that every
pre-activation starts with zero mean and unit variance:

    t = x * (v / ||v||);   g <- init_scale / std(t);   b <- -mean(t) * g

(g <- init_scale for a channel without variance on the batch, e.g. identical images).

It runs eagerly inside the `data_dependent_init()` context: the model is called once on a
batch and each layer initialises itself from the (already initialised) activations that
reach it, in data-flow order. Kernels are never mutated in `call`; the normalised kernel is
a new tensor each time.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

_DATA_INIT = {"active": False, "count": 0}
# Pre-activations are O(1) (unit-norm kernels on O(1) inputs); a batch variance below
# this (std < 1e-3) is float rounding of a constant, not a scale to normalise.
MIN_INIT_VARIANCE = 1e-6


@contextlib.contextmanager
def data_dependent_init():
    """Within this context, eager calls of weight-normalised layers initialise g and b."""
    if not tf.executing_eagerly():
        raise RuntimeError("data_dependent_init() must run eagerly (outside tf.function)")
    _DATA_INIT["active"], _DATA_INIT["count"] = True, 0
    _DATA_INIT["done"] = set()
    try:
        yield _DATA_INIT
    finally:
        _DATA_INIT["active"] = False
        _DATA_INIT["done"] = set()


def _maybe_initialise(layer, pre_activation, axes):
    """Sets g, b so that the layer's output has zero mean, unit variance on this batch."""
    if not (_DATA_INIT["active"] and layer.use_weight_norm and tf.executing_eagerly()):
        return None
    if id(layer) in _DATA_INIT["done"]:  # a layer called several times (tied weights):
        return None                      # its first call initialises it
    _DATA_INIT["done"].add(id(layer))
    mean, variance = tf.nn.moments(pre_activation, axes=axes)
    # A channel without variance on this batch (identical images reaching a dense layer,
    # e.g. an all-zero batch) has nothing to normalise: 1/sqrt(0 + 1e-6) would scale it by
    # 1000 per layer and the KL would reach 1e12. Such channels keep unit scale (g =
    # init_scale, the norm of w); the others are normalised as before, bit for bit.
    scale = tf.where(variance > MIN_INIT_VARIANCE,
                     layer.init_scale / tf.sqrt(variance + 1e-6),
                     tf.cast(layer.init_scale, variance.dtype))
    layer.gain.assign(scale)
    layer.bias.assign(-mean * scale)
    _DATA_INIT["count"] += 1
    return pre_activation * scale + layer.bias


class CheckpointListsMixin:
    """Lets `tf.train.Checkpoint` see sublayers that a layer keeps in Python lists.

    Keras 3 (TF backend) hands list attributes (its `TrackedList`s) to a SavedModel but not
    to a checkpoint, so `tf.train.Checkpoint(model=model)` silently skipped e.g. the MADEs
    of the flows and restored a model with random flow weights. Each element of such a
    list becomes the checkpoint child `<attribute>_<index>`. Keras' own formats
    (`.keras`, `.weights.h5`) do not use this and are unchanged.
    """

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            for attribute in getattr(self, "_tracked", ()):
                value = getattr(self, attribute, None)
                if not isinstance(value, (list, tuple)):
                    continue
                for index, item in enumerate(value):
                    if isinstance(item, tf.__internal__.tracking.Trackable):
                        children.setdefault(f"{attribute}_{index}", item)
        return children


def _kernel_norm(kernel, norm_axes):
    """||v|| per output unit (keepdims), the weight norm's denominator."""
    return tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=norm_axes, keepdims=True) + 1e-12)


class _WeightNormMixin:
    """Shared variable creation for weight-normalised layers."""

    def _add_weight_norm_variables(self, kernel_shape, units):
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape,
            initializer=keras.initializers.RandomNormal(stddev=0.05))
        self.bias = self.add_weight(name="bias", shape=(units,), initializer="zeros")
        if self.use_weight_norm:
            self.gain = self.add_weight(name="gain", shape=(units,), initializer="ones")

    def _raw_kernel(self):
        """The kernel before normalisation (a masked layer multiplies in its mask here)."""
        return tf.convert_to_tensor(self.kernel)

    def _normalised_kernel(self, norm_axes):
        """v / ||v|| computed in float32 (the variable's dtype), then cast to the compute
        dtype, so mixed precision does not lose the norm's accuracy."""
        kernel = self._raw_kernel()
        if self.use_weight_norm:
            kernel = kernel / _kernel_norm(kernel, norm_axes)
        return tf.cast(kernel, self.compute_dtype)

    def effective_kernel(self, norm_axes):
        """w = g * v / ||v|| (v without weight norm) in the compute dtype: the kernel the
        layer applies. The gain multiplies the kernel's output axis rather than the
        [B, H, W, units] output: the same function, but a full-size multiply and its two
        full-size gradient ops (the input's, and the gain's reduction) per layer become
        ops on the kernel. The product is taken in float32, before the cast."""
        if not self.use_weight_norm:
            return self._normalised_kernel(norm_axes)
        kernel = self._raw_kernel()
        norm = _kernel_norm(kernel, norm_axes)
        gain = tf.reshape(self.gain, norm.shape)  # on the output axis (2: transposed)
        return tf.cast(kernel * (gain / norm), self.compute_dtype)

    def _add_bias(self, outputs):
        """outputs + b over the last axis. An add, not tf.nn.bias_add: as fast here, and
        BiasAdd let grappler's oneDNN remapper try a Conv2D+BiasAdd+Add+Elu fusion of the
        ResNet blocks that fails ("remapper failed: ... Mutation::Apply error", one error
        line per traced evaluation, TF 2.21)."""
        return outputs + tf.cast(self.bias, outputs.dtype)

    def _initialising(self):
        return _DATA_INIT["active"] and self.use_weight_norm and tf.executing_eagerly()


def conv2d(inputs, kernel, strides, padding):
    """`tf.nn.conv2d` (NHWC, int strides), except that a strided 1x1 kernel subsamples first.

    For a 1x1 kernel, "SAME" and "VALID" pad nothing and output pixel (i, j) reads input
    pixel (s*i, s*j) (ceil(n/s) outputs either way), so `inputs[:, ::s, ::s]` followed by a
    stride-1 1x1 convolution is the same function with the same [1, 1, in, out] kernel.
    Why not let TensorFlow do it: with oneDNN (TensorFlow's default on Linux CPUs with
    AVX512-VNNI/BF16, AVX-VNNI or AMX; forced by TF_ENABLE_ONEDNN_OPTS=1) the *weight
    gradient* of a strided 1x1 convolution runs a kernel that first copies the subsampled
    input into a buffer, and overruns it when the input has fewer channels than the CPU's
    SIMD block (oneDNN issue #6035): silently wrong gradients, or a SIGSEGV/SIGABRT of the
    whole process, e.g. on a batch of one image (TF 2.21.0 with oneDNN 3.7.3;
    `tests/onednn_strided_1x1.py` reproduces it). Its stride-1 1x1 kernel is correct.
    """
    if strides != 1 and tuple(kernel.shape[:2]) == (1, 1):
        inputs = subsample(inputs, strides)
        strides, padding = 1, "VALID"
    return tf.nn.conv2d(inputs, kernel, strides=strides, padding=padding)


def subsample(inputs, strides):
    """inputs[:, ::s, ::s] of [B, H, W, C] (static H, W, C), by pad, reshape and tf.slice.

    The same values; the gradient of the strided slice (StridedSliceGrad) took 14 ms on a
    [64, 32, 32, 48] map where this one's took 2 ms (see `crop`)."""
    _, height, width, channels = inputs.shape
    rows, cols = -(-height // strides), -(-width // strides)
    padded = tf.pad(inputs, [[0, 0], [0, rows * strides - height],
                             [0, cols * strides - width], [0, 0]])
    blocks = tf.reshape(padded, [-1, rows, strides, cols, strides, channels])
    picked = tf.slice(blocks, [0] * 6, [-1, rows, 1, cols, 1, channels])
    return tf.reshape(picked, [-1, rows, cols, channels])


def conv2d_transpose(inputs, kernel, output_shape, strides):
    """`tf.nn.conv2d_transpose` with "SAME" padding and output [B, s*h, s*w, F]; a strided
    1x1 kernel ([1, 1, F, in]) is a stride-1 1x1 convolution whose result is spread onto the
    (s*i, s*j) pixels of a zero map (what the transposed convolution computes), for the
    same oneDNN bug as `conv2d`: its weight gradient is that of a strided 1x1 convolution
    of the output gradient, which breaks when F is below the SIMD block."""
    if strides == 1 or tuple(kernel.shape[:2]) != (1, 1):
        return tf.nn.conv2d_transpose(inputs, kernel, output_shape=output_shape,
                                      strides=strides, padding="SAME")
    outputs = tf.nn.conv2d(inputs, tf.transpose(kernel, (0, 1, 3, 2)), strides=1,
                           padding="VALID")
    # [B, h, w, F] -> [B, h, 1, w, 1, F], s-1 zeros after each pixel on both spatial
    # axes -> [B, h, s, w, s, F] = [B, s*h, s*w, F] with the values at (s*i, s*j).
    outputs = tf.pad(outputs[:, :, None, :, None, :],
                     [[0, 0], [0, 0], [0, strides - 1], [0, 0], [0, strides - 1], [0, 0]])
    return tf.reshape(outputs, output_shape)


@keras.saving.register_keras_serializable(package="vlae_tf")
class Conv2D(_WeightNormMixin, keras.layers.Layer):
    """2-D convolution (optionally transposed), weight-normalised by default.

    `padding` is "same" or "valid"; causal layers pad explicitly and use "valid".
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", transpose=False,
                 use_weight_norm=True, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, kernel_size)
        self.filters = int(filters)
        self.kernel_size = tuple(int(size) for size in kernel_size)
        self.strides = int(strides)
        self.padding = padding.upper()
        self.transpose = bool(transpose)
        self.use_weight_norm = bool(use_weight_norm)
        self.init_scale = float(init_scale)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        if self.transpose:  # tf.nn.conv2d_transpose kernels are [h, w, out, in]
            shape = self.kernel_size + (self.filters, in_channels)
        else:
            shape = self.kernel_size + (in_channels, self.filters)
        self._add_weight_norm_variables(shape, self.filters)

    def call(self, inputs, padding=None):
        """`padding` overrides the layer's ("valid" on a pre-padded patch: cached sampler)."""
        padding = self.padding if padding is None else padding.upper()
        norm_axes = (0, 1, 3) if self.transpose else (0, 1, 2)
        initialising = self._initialising()
        # The data-dependent init reads the pre-activation of the unit-norm kernel.
        kernel = (self._normalised_kernel(norm_axes) if initialising
                  else self.effective_kernel(norm_axes))
        if self.transpose:
            batch = tf.shape(inputs)[0]
            height, width = inputs.shape[1] * self.strides, inputs.shape[2] * self.strides
            outputs = conv2d_transpose(
                inputs, kernel, output_shape=tf.stack([batch, height, width, self.filters]),
                strides=self.strides)
        else:
            outputs = conv2d(inputs, kernel, strides=self.strides, padding=padding)
        if initialising:
            initialised = _maybe_initialise(self, outputs, axes=(0, 1, 2))
            if initialised is not None:
                return initialised
            # A tied layer's later calls: its gain and bias are set; apply them as usual.
            outputs = outputs * tf.cast(self.gain, outputs.dtype)
        return self._add_bias(outputs)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.transpose:
            return (batch, height * self.strides if height else None,
                    width * self.strides if width else None, self.filters)
        if self.padding == "VALID":
            height = None if height is None else (height - self.kernel_size[0]) // self.strides + 1
            width = None if width is None else (width - self.kernel_size[1]) // self.strides + 1
        else:
            height = None if height is None else -(-height // self.strides)
            width = None if width is None else -(-width // self.strides)
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding.lower(), transpose=self.transpose,
                      use_weight_norm=self.use_weight_norm, init_scale=self.init_scale)
        return config


@keras.saving.register_keras_serializable(package="vlae_tf")
class Dense(_WeightNormMixin, keras.layers.Layer):
    """Dense layer, weight-normalised by default."""

    def __init__(self, units, use_weight_norm=True, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_weight_norm = bool(use_weight_norm)
        self.init_scale = float(init_scale)

    def build(self, input_shape):
        self._add_weight_norm_variables((int(input_shape[-1]), self.units), self.units)

    def call(self, inputs):
        initialising = self._initialising()
        kernel = (self._normalised_kernel(norm_axes=(0,)) if initialising
                  else self.effective_kernel(norm_axes=(0,)))
        outputs = tf.matmul(inputs, kernel)
        if initialising:
            initialised = _maybe_initialise(self, outputs, axes=(0,))
            if initialised is not None:
                return initialised
            outputs = outputs * tf.cast(self.gain, outputs.dtype)
        return self._add_bias(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, use_weight_norm=self.use_weight_norm,
                      init_scale=self.init_scale)
        return config


def crop(inputs, top=0, bottom=0, left=0, right=0):
    """inputs [B, H, W, C] without `top`/`bottom` rows and `left`/`right` columns.

    `tf.slice` rather than Python slicing (`keras.layers.Cropping2D`): the gradient of a
    strided slice is StridedSliceGrad, which took 52 ms on a [64, 29, 28, 64] map where
    slice's gradient (a pad) took 4 ms (bench/results/profiles: 10% of a gated decoder's
    training step). The same function."""
    height, width = inputs.shape[1], inputs.shape[2]
    if None in (height, width):
        raise ValueError(f"crop: expected static spatial sizes; got {inputs.shape}")
    return tf.slice(inputs, [0, top, left, 0],
                    [-1, height - top - bottom, width - left - right, -1])


@keras.saving.register_keras_serializable(package="vlae_tf")
class Crop2D(keras.layers.Layer):
    """`keras.layers.Cropping2D` (((top, bottom), (left, right))) by `crop`."""

    def __init__(self, cropping, **kwargs):
        super().__init__(**kwargs)
        (top, bottom), (left, right) = cropping
        self.cropping = ((int(top), int(bottom)), (int(left), int(right)))

    def call(self, inputs):
        (top, bottom), (left, right) = self.cropping
        return crop(inputs, top, bottom, left, right)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.cropping
        batch, height, width, channels = input_shape
        return (batch, None if height is None else height - top - bottom,
                None if width is None else width - left - right, channels)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


@keras.saving.register_keras_serializable(package="vlae_tf")
class GatedActivation(keras.layers.Layer):
    """tanh(a) * sigmoid(b) for the two halves [a, b] of the channel axis (gated PixelCNN)."""

    def call(self, inputs):
        value, gate = tf.split(inputs, 2, axis=-1)
        return tf.tanh(value) * tf.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // 2,)


def causal_kernel_mask(kernel_size, in_channels, mask_type, center_from_channel=None):
    """0/1 numpy mask [kh, kw, in_channels, 1] of a masked PixelCNN convolution.

    The kernel sees the rows above its centre and, in the centre row, the columns to the
    left; mask "B" also the centre itself (van den Oord et al. 2016a, one channel per
    pixel). In a mask-"A" layer, input channels >= `center_from_channel` see the centre as
    well: conditioning features (the z map) carry no information about the pixel.
    """
    import numpy as np

    height, width = kernel_size
    if height % 2 != 1 or width % 2 != 1:
        raise ValueError(f"kernel_size: expected odd sizes for a masked convolution; got "
                         f"{kernel_size}")
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' or 'B'; got {mask_type!r}")
    mask = np.zeros((height, width, in_channels, 1), np.float32)
    center_row, center_col = height // 2, width // 2
    mask[:center_row] = 1.0
    mask[center_row, :center_col] = 1.0
    if mask_type == "B":
        mask[center_row, center_col] = 1.0
    elif center_from_channel is not None:
        mask[center_row, center_col, center_from_channel:] = 1.0
    return mask


@keras.saving.register_keras_serializable(package="vlae_tf")
class MaskedConv2D(Conv2D):
    """Masked ("same"-padded) convolution of a PixelCNN, weight-normalised by default.

    The mask (`causal_kernel_mask`) multiplies a copy of the kernel on every call, before
    the weight normalisation w = g * (v * M) / ||v * M||, so masked entries get no
    gradient and never count in the norm; the variable itself is never modified.
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", center_from_channel=None,
                 **kwargs):
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, padding="same", **kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type: expected 'A' or 'B'; got {mask_type!r}")
        self.mask_type = mask_type
        self.center_from_channel = (None if center_from_channel is None
                                    else int(center_from_channel))

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_mask = causal_kernel_mask(self.kernel_size, int(input_shape[-1]),
                                              self.mask_type, self.center_from_channel)

    def _raw_kernel(self):
        kernel = tf.convert_to_tensor(self.kernel)
        return kernel * tf.constant(self.kernel_mask, dtype=kernel.dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        config.update(mask_type=self.mask_type, center_from_channel=self.center_from_channel)
        return config
