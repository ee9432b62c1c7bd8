"""vlae_tf.images: grid layout, PNG round trips, decompression rows, the sampler choice."""

import os

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import images as images_lib
from vlae_tf.config import VLAEConfig


def test_image_grid_layout_is_pixel_exact():
    pictures = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3, 1) % 2
    grid = images_lib.image_grid(pictures, columns=3, max_value=1, pad=1, zoom=2)
    # 2 rows x 3 columns of 4x6 cells (zoom 2) with 1-pixel borders.
    expected = np.full((2 * 5 + 1, 3 * 7 + 1, 1), 128, np.uint8)
    for index in range(5):
        row, column = divmod(index, 3)
        cell = pictures[index].repeat(2, 0).repeat(2, 1) * 255
        expected[1 + row * 5:1 + row * 5 + 4, 1 + column * 7:1 + column * 7 + 6] = cell
    np.testing.assert_array_equal(grid, expected)
    assert (grid[6:10, 15:21] == 128).all()  # the sixth cell is empty


def test_image_grid_scales_8bit_colour_and_caps_columns():
    pictures = np.array([[[[0, 128, 255]]], [[[10, 20, 30]]]], np.uint8)  # 2 images 1x1x3
    grid = images_lib.image_grid(pictures, columns=10, max_value=255, pad=1, pad_value=0)
    assert grid.shape == (3, 5, 3)  # columns capped at the 2 images
    np.testing.assert_array_equal(grid[1, 1], [0, 128, 255])
    np.testing.assert_array_equal(grid[1, 3], [10, 20, 30])
    assert (grid[0] == 0).all() and (grid[:, 2] == 0).all()
    with pytest.raises(ValueError, match="columns: expected an int >= 1"):
        images_lib.image_grid(pictures, columns=0)
    with pytest.raises(ValueError, match=r"images: expected a non-empty batch \[N, H, W, C\]"):
        images_lib.image_grid(pictures[0], columns=2)


def test_write_png_round_trips_and_replaces_atomically(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    path = str(tmp_path / "picture.png")
    assert images_lib.write_png(path, np.zeros((5, 7, 3), np.uint8)) == path
    images_lib.write_png(path, picture)  # over an existing file
    decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
    np.testing.assert_array_equal(decoded, picture)
    assert os.listdir(tmp_path) == ["picture.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="image: expected dtype uint8"):
        images_lib.write_png(path, picture.astype(np.float32))
    with pytest.raises(ValueError, match=r"image: expected \[H, W, C\]"):
        images_lib.write_png(path, picture[None])


def test_decompression_rows_put_each_original_before_its_decompressions():
    originals = np.array([10, 20])[:, None, None, None]
    decompressions = np.array([11, 12, 13, 21, 22, 23])[:, None, None, None]
    rows = images_lib.decompression_rows(originals, decompressions, per_image=3)
    np.testing.assert_array_equal(rows[:, 0, 0, 0], [10, 11, 12, 13, 20, 21, 22, 23])
    with pytest.raises(ValueError, match="decompressions: expected 2 originals x 2 = 4"):
        images_lib.decompression_rows(originals, decompressions, per_image=2)


def test_resolve_sample_method():
    assert images_lib.resolve_sample_method("auto") == "cached"
    assert images_lib.resolve_sample_method("naive") == "naive"
    with pytest.raises(ValueError, match="method: expected one of auto, cached, naive"):
        images_lib.resolve_sample_method("fast")


def test_samples_and_decompressions_are_the_models_draws():
    config = VLAEConfig(image_shape=(7, 8, 1), latent_size=4, encoder_filters=(4,),
                        encoder_hidden=8, prior="standard_normal", decoder_layers=2,
                        decoder_filters=6, decoder_residual_blocks=0, z_map_channels=3,
                        ema_momentum=None)
    model = vlae_tf.VLAE(config)
    originals = np.random.default_rng(0).integers(0, 2, (2, 7, 8, 1)).astype(np.uint8)
    # The naive sampler: it traces faster than the cached one and draws the same images.
    samples, rows = images_lib.samples_and_decompressions(model, originals, num_samples=3,
                                                          per_image=2, seed=4, method="naive")
    np.testing.assert_array_equal(samples, model.sample(3, seed=4, method="naive").numpy())
    lossy = model.decompress(np.repeat(originals, 2, axis=0), seed=5, method="naive").numpy()
    np.testing.assert_array_equal(rows, images_lib.decompression_rows(originals, lossy, 2))
    np.testing.assert_array_equal(rows[3], originals[1])  # original 1 follows 0's two
    _, none = images_lib.samples_and_decompressions(model, None, num_samples=1, per_image=2,
                                                    method="naive")
    assert none is None
