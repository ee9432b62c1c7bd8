"""The decoder's receptive field is exactly the window W(i, j), probed pixel by pixel.

For every probed output pixel, the set of input pixels with a nonzero gradient of the
decoder's parameters must equal the reference set `window.window_mask` (which is written
straight from the paper's definition) -- nothing more, nothing less.
"""

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import window as window_lib
from vlae_tf.config import VLAEConfig

# Corners, edges and the interior of an 8x9 image (non-square catches transposed logic).
PROBES = [(0, 0), (0, 8), (1, 1), (3, 4), (5, 0), (2, 8), (7, 8), (7, 3)]


def tiny_config(**changes):
    base = VLAEConfig(image_shape=(8, 9, 1), latent_size=4, encoder_filters=(4,),
                      encoder_hidden=8, prior="standard_normal", decoder_layers=3,
                      decoder_filters=4, decoder_residual_blocks=1, z_map_channels=2)
    return base.replace(**changes)


def dependency_map(model, row, col, images, z):
    """[H, W, C] boolean: which input values the output at (row, col) depends on."""
    images = tf.Variable(images)
    with tf.GradientTape() as tape:
        params = model.decoder_params(images, z)
        target = tf.reduce_sum(params[0, row, col])
    gradient = tape.gradient(target, images, unconnected_gradients="zero")
    return np.abs(gradient.numpy()[0]) > 0


def probe_inputs(model, seed=0):
    height, width, channels = model.config.image_shape
    generator = np.random.default_rng(seed)
    images = generator.integers(0, model.config.max_value + 1,
                                (1, height, width, channels)).astype(np.float32)
    z = generator.normal(size=(1, model.config.latent_size)).astype(np.float32) \
        if model.config.use_latent else None
    return images, z


@pytest.mark.parametrize("window", [(1, 1), (5, 3), (7, 4), (3, 1), (1, 2), (4, 2), (1, 0),
                                    (3, 0), (15, 9), None])
def test_receptive_field_is_exactly_the_window(window):
    model = vlae_tf.VLAE(tiny_config(window=window))
    images, z = probe_inputs(model)
    for row, col in PROBES:
        depends = dependency_map(model, row, col, images, z)[..., 0]
        expected = window_lib.window_mask(window, 8, 9, row, col)
        np.testing.assert_array_equal(
            depends, expected, err_msg=f"window={window}, pixel ({row}, {col})")


def test_global_window_sees_all_previous_pixels_in_raster_order():
    model = vlae_tf.VLAE(tiny_config(window=None, use_latent=False))
    images, _ = probe_inputs(model)
    for row, col in PROBES:
        depends = dependency_map(model, row, col, images, None)[..., 0]
        raster = np.arange(8 * 9).reshape(8, 9)
        np.testing.assert_array_equal(depends, raster < raster[row, col])


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_window_is_independent_of_depth(layers):
    """The plan puts whatever the layers can't grow into the first layer."""
    model = vlae_tf.VLAE(tiny_config(window=(7, 4), decoder_layers=layers))
    images, z = probe_inputs(model)
    for row, col in [(4, 4), (7, 8)]:
        depends = dependency_map(model, row, col, images, z)[..., 0]
        np.testing.assert_array_equal(depends, window_lib.window_mask((7, 4), 8, 9, row, col))


def colour_config(**changes):
    return tiny_config(image_shape=(6, 7, 3), likelihood="logistic_mixture", num_mixtures=2,
                       window=(5, 3)).replace(**changes)


def test_colour_output_never_sees_its_own_pixel_and_sees_all_channels_of_the_window():
    model = vlae_tf.VLAE(colour_config())
    images, z = probe_inputs(model)
    for row, col in [(0, 0), (3, 3), (5, 6), (2, 0)]:
        depends = dependency_map(model, row, col, images, z)
        assert not depends[row, col].any(), "output depends on a channel of its own pixel"
        expected = window_lib.window_mask((5, 3), 6, 7, row, col)
        for channel in range(3):
            np.testing.assert_array_equal(depends[..., channel], expected)


def test_grayscale_window_sees_only_luma():
    """d params / d x is proportional to (0.299, 0.587, 0.114) at every window pixel."""
    model = vlae_tf.VLAE(colour_config(grayscale_window=True))
    images, z = probe_inputs(model)
    row, col = 4, 3
    variable = tf.Variable(images)
    with tf.GradientTape() as tape:
        target = tf.reduce_sum(model.decoder_params(variable, z)[0, row, col])
    gradient = tape.gradient(target, variable, unconnected_gradients="zero").numpy()[0]
    expected = window_lib.window_mask((5, 3), 6, 7, row, col)
    np.testing.assert_array_equal(np.abs(gradient).sum(-1) > 0, expected)
    luma = np.array([0.299, 0.587, 0.114])
    ratios = gradient[expected] / luma  # each row: the same number three times
    np.testing.assert_allclose(ratios, ratios[:, :1].repeat(3, axis=1), rtol=1e-4, atol=1e-9)


def test_plan_clips_to_the_image_and_sums_to_the_window():
    plan = window_lib.plan_window((7, 4), 3, 28, 28)
    assert plan.first_height + sum(plan.row_growth) == 4
    assert plan.first_half_width + sum(plan.col_growth) == 3
    assert plan.left == 3
    global_plan = window_lib.plan_window(None, 6, 28, 28)
    assert global_plan.first_height + sum(global_plan.row_growth) == 28
    assert global_plan.first_half_width + sum(global_plan.col_growth) == 27
    assert window_lib.plan_window((1, 0), 4, 28, 28).is_empty


@pytest.mark.parametrize("bad", [(0, 3), (3, -1), "3by2", (3,), "x"])
def test_bad_windows_are_rejected_with_the_argument_named(bad):
    with pytest.raises(ValueError, match="window"):
        window_lib.validate_window(bad)


def test_window_strings_parse():
    assert window_lib.validate_window("7x4") == (7, 4)
    assert window_lib.validate_window("global") is None
