"""The weight-normalised layers apply w = g * v / ||v|| folded into the kernel: the same
function (and gradients) as conv(x, v / ||v||) * g + b, the formula of Salimans & Kingma;
and vlae_tf turns TensorFlow's oneDNN kernels on unless the user said otherwise."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vlae_tf.nn import layers as nn


def _reference(layer, inputs):
    """conv(x, v/||v||) * g + b with the layer's variables, written out."""
    kernel = tf.convert_to_tensor(layer._raw_kernel())
    if isinstance(layer, nn.Dense):
        unit = kernel / tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=0, keepdims=True) + 1e-12)
        outputs = tf.matmul(inputs, unit)
    elif layer.transpose:
        unit = kernel / tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=(0, 1, 3),
                                              keepdims=True) + 1e-12)
        batch, height, width, _ = inputs.shape
        outputs = tf.nn.conv2d_transpose(
            inputs, unit, [batch, height * layer.strides, width * layer.strides, layer.filters],
            strides=layer.strides, padding="SAME")
    else:
        unit = kernel / tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=(0, 1, 2),
                                              keepdims=True) + 1e-12)
        outputs = tf.nn.conv2d(inputs, unit, strides=layer.strides, padding=layer.padding)
    return outputs * layer.gain + layer.bias


LAYERS = {
    "conv3x3": (lambda: nn.Conv2D(6, 3), [4, 9, 9, 5]),
    "conv3x3_stride2": (lambda: nn.Conv2D(6, 3, strides=2), [4, 9, 9, 5]),
    "transposed_stride2": (lambda: nn.Conv2D(6, 3, strides=2, transpose=True), [4, 5, 5, 7]),
    "masked_a": (lambda: nn.MaskedConv2D(6, 3, mask_type="A"), [4, 9, 9, 5]),
    "masked_b_5x5": (lambda: nn.MaskedConv2D(5, 5, mask_type="B"), [4, 9, 9, 5]),
    "dense": (lambda: nn.Dense(7), [6, 11]),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_folded_gain_is_the_weight_norm_formula_with_its_gradients(name):
    make, shape = LAYERS[name]
    layer = make()
    generator = np.random.default_rng(0)
    inputs = tf.constant(generator.normal(size=shape), tf.float32)
    layer(inputs)
    # Gains and biases far from their initial 1 and 0, so that a missing factor shows.
    layer.gain.assign(generator.uniform(0.3, 3.0, layer.gain.shape).astype(np.float32))
    layer.bias.assign(generator.normal(size=layer.bias.shape).astype(np.float32))
    weights = [layer.kernel, layer.gain, layer.bias]
    results = []
    for function in (layer, lambda x: _reference(layer, x)):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = function(inputs)
            loss = tf.reduce_sum(tf.sin(outputs))  # not linear: gradients depend on outputs
        results.append([outputs] + tape.gradient(loss, [inputs] + weights))
    for ours, reference in zip(*results):
        scale = float(tf.reduce_max(tf.abs(reference)))
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5 * scale + 1e-6)


def test_data_dependent_init_still_normalises_the_first_batch():
    layer = nn.Conv2D(8, 3, init_scale=0.5)
    inputs = tf.random.stateless_normal([16, 10, 10, 3], seed=[1, 2]) * 4.0 + 1.0
    layer(inputs)
    with nn.data_dependent_init() as state:
        layer(inputs)
    assert state["count"] == 1
    outputs = layer(inputs).numpy()  # the normal (folded) path after the init
    np.testing.assert_allclose(outputs.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(outputs.std(axis=(0, 1, 2)), 0.5, rtol=1e-3)


def _onednn_in_fresh_process(env_value):
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = env_value
    result = subprocess.run(
        [sys.executable, "-c", "import vlae_tf; print(vlae_tf.onednn_enabled())"],
        env=environment, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_vlae_tf_turns_onednn_on_unless_the_user_chose():
    assert _onednn_in_fresh_process(None) == "True"
    assert _onednn_in_fresh_process("0") == "False"


@pytest.mark.parametrize("shape,strides", [((3, 7, 7, 5), 2), ((2, 8, 6, 3), 2),
                                           ((2, 9, 10, 4), 3), ((1, 1, 1, 2), 2)])
def test_subsample_and_crop_are_python_slicing(shape, strides):
    values = tf.reshape(tf.range(np.prod(shape), dtype=tf.float32), shape)
    np.testing.assert_array_equal(nn.subsample(values, strides).numpy(),
                                  values[:, ::strides, ::strides].numpy())
    height, width = shape[1], shape[2]
    if height > 1 and width > 2:
        np.testing.assert_array_equal(nn.crop(values, 1, 0, 0, 2).numpy(),
                                      values[:, 1:, :width - 2].numpy())
        layer = nn.Crop2D(((0, 1), (1, 1)))
        np.testing.assert_array_equal(layer(values).numpy(),
                                      values[:, :height - 1, 1:width - 1].numpy())
        assert layer.compute_output_shape(shape) == layer(values).shape
