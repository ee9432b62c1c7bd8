"""The 'photo_patches' dataset: 32x32 tiles of the two photos in the scikit-learn wheel."""

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import sources
from pipelines.errors import CorruptDatasetError, DatasetNotFoundError


def _all(split, data_dir=None):
    dataset = pipelines.load("photo_patches", split, batch_size=1, shuffle=False, repeat=False,
                             with_labels=True, data_dir=data_dir, drop_remainder=False)
    images, labels = zip(*[(x.numpy()[0], y.numpy()[0]) for x, y in dataset])
    return np.stack(images), np.array(labels)


def _write_photos(directory, height, width):
    """Two smooth random JPEGs (real JPEG bytes, as the wheel's files are)."""
    rng = np.random.default_rng(0)
    photos = []
    for name in sources.PHOTO_FILES:
        photo = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        (directory / name).write_bytes(tf.io.encode_jpeg(photo, quality=95).numpy())
        photos.append(tf.io.decode_jpeg((directory / name).read_bytes(), channels=3).numpy())
    return photos


def test_splits_are_column_bands_of_the_real_photos():
    info = pipelines.info("photo_patches")
    assert (info.image_shape, info.max_value, info.binarization) == ((32, 32, 3), 255, "none")
    splits = {split: _all(split) for split in ("train", "validation", "test")}
    assert {split: len(images) for split, (images, _) in splits.items()} == {
        "train": 364, "validation": 52, "test": 104}
    # Each split's tiles are exactly the photo's pixels in its band of tile columns.
    china = tf.io.decode_jpeg(open(sources.locate_photos()[0], "rb").read(), channels=3).numpy()
    test_images, test_labels = splits["test"]
    assert list(test_labels) == [0] * 52 + [1] * 52
    np.testing.assert_array_equal(test_images[0], china[0:32, 16 * 32:17 * 32])
    np.testing.assert_array_equal(test_images[3], china[0:32, 19 * 32:20 * 32])
    np.testing.assert_array_equal(test_images[4], china[32:64, 16 * 32:17 * 32])
    np.testing.assert_array_equal(splits["validation"][0][1], china[0:32, 15 * 32:16 * 32])
    np.testing.assert_array_equal(splits["train"][0][13], china[0:32, 13 * 32:14 * 32])
    # Real photos: not constant, spread over the 8-bit range; no tile in two splits.
    assert test_images.std() > 20 and test_images.max() > 200 and test_images.min() < 50
    keys = {split: {image.tobytes() for image in images} for split, (images, _) in
            splits.items()}
    assert not keys["train"] & keys["test"] and not keys["validation"] & keys["test"]
    both, _ = _all("train+validation")
    assert len(both) == 416


def test_reads_a_data_dir_and_refuses_missing_or_damaged_files(tmp_path):
    photos = _write_photos(tmp_path, 70, 7 * 32 + 5)  # 2 x 7 tiles each, a ragged border
    images, labels = _all("train", str(tmp_path))
    assert len(images) == 2 * 2 * 1 and list(labels) == [0, 0, 1, 1]
    np.testing.assert_array_equal(images[1], photos[0][32:64, 0:32])
    test_images, _ = _all("test", str(tmp_path))
    assert len(test_images) == 2 * 2 * 4
    np.testing.assert_array_equal(test_images[-1], photos[1][32:64, 6 * 32:7 * 32])

    (tmp_path / "flower.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CorruptDatasetError, match="flower.jpg"):
        sources.read_photo_tiles(str(tmp_path))
    (tmp_path / "flower.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="flower.jpg.*scikit-learn"):
        sources.read_photo_tiles(str(tmp_path))
    _write_photos(tmp_path, 40, 6 * 32)  # one column too few for the three bands
    with pytest.raises(CorruptDatasetError, match="at least 7 columns"):
        sources.read_photo_tiles(str(tmp_path))
    with pytest.raises(ValueError, match="validation_size"):
        pipelines.load("photo_patches", "train", batch_size=1, validation_size=3,
                       data_dir=str(tmp_path))
