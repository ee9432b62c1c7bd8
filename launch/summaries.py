"""TensorBoard event files of a model_dir (`tensorboard/train`, `tensorboard/eval`).

Written as raw Summary protos with TensorFlow's own writer: `tf.summary.scalar/image` live
in the `tensorboard` package, which TensorFlow 2.21 does not install. TensorBoard reads
these (simple_value scalars, PNG images) like its own; `pip install tensorboard` to view.

Kept in launch/, not in the library: they exist to keep the launchers' install free of the
`tensorboard` package. Code that trains with `model.fit` uses `keras.callbacks.TensorBoard`
(which needs that package anyway) and can log `vlae_tf.images.image_grid` pictures with
`tf.summary.image`.
"""

from __future__ import annotations

import glob
import os
from typing import Dict

import numpy as np

import vlae_tf  # noqa: F401  (sets KERAS_BACKEND=tensorflow before keras is imported)
import tensorflow as tf  # noqa: E402


def write_scalars(writer, step: int, values: Dict[str, float]) -> None:
    """One simple_value scalar summary per {tag: value} at `step`."""
    from tensorflow.core.framework import summary_pb2

    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()])
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))


def write_image(writer, step: int, tag: str, image: np.ndarray) -> None:
    """One uint8 [H, W, C] image as a PNG image summary."""
    from tensorflow.core.framework import summary_pb2

    height, width, channels = image.shape
    png = tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, image=summary_pb2.Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png))])
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))


def read_summaries(directory: str):
    """[(step, tag, kind, simple_value)] of every summary under `directory` (for tests and
    checks; kind is "simple_value" or "image")."""
    from tensorflow.core.util import event_pb2

    found = []
    for path in sorted(glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.append((int(event.step), value.tag, value.WhichOneof("value"),
                              value.simple_value))
    return found
