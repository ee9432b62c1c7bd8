"""The event files launch.train writes open in TensorBoard: read back through
tensorboard's own reader (tensorboard is in the test extra, so this always runs)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from launch import summaries


def test_scalars_and_images_load_in_tensorboards_event_reader(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    summaries.write_scalars(writer, 1, {"loss": 540.25, "latent/active_units": 3})
    summaries.write_scalars(writer, 2, {"loss": 230.5, "latent/active_units": 4})
    image = np.zeros((6, 10, 1), np.uint8)
    image[2:4, 3:7] = 255
    summaries.write_image(writer, 2, "samples", image)
    writer.close()

    events = event_accumulator.EventAccumulator(str(tmp_path / "train"), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"loss", "latent/active_units"}
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 540.25), (2, 230.5)]
    assert [e.value for e in events.Scalars("latent/active_units")] == [3, 4]
    (picture,) = events.Images("samples")
    assert (picture.step, picture.height, picture.width) == (2, 6, 10)
    decoded = tf.io.decode_png(picture.encoded_image_string).numpy()
    np.testing.assert_array_equal(decoded, image)
