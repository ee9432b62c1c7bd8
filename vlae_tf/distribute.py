"""tf.distribute strategies by name, so that scaling out is a flag, not a code change.

    strategy = vlae_tf.distribute.make_strategy("mirrored")
    with strategy.scope():
        model = vlae_tf.VLAE(config); model.compile()
    model.fit(dataset_with_the_global_batch)

The model divides its mean loss by the number of replicas (gradients are summed across
replicas) and draws each image's training noise from the global batch, so a run with N
replicas follows the same trajectory as one device with the same global batch (tested).
Training datasets need `drop_remainder=True`: a partial last batch can leave a replica
empty, which crashes a convolution.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str = "default", devices=None) -> tf.distribute.Strategy:
    """"default": one device; "mirrored": all local GPUs (or `devices`); "multi_worker":
    one replica set per worker, cluster from the TF_CONFIG environment variable.

    Create it at program start, before other TensorFlow work (multi_worker needs that).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}; got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable "
                         '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}})')
    try:
        cluster = json.loads(tf_config)
        workers = cluster["cluster"]["worker"]
        cluster["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG: expected JSON with cluster.worker and task.index; "
                         f"got {tf_config!r} ({error})") from None
    if not workers:
        raise ValueError("TF_CONFIG: cluster.worker is empty")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that should write checkpoints, logs and pictures."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().jobs)


def use_logical_cpus(count: int) -> None:
    """Splits the CPU into `count` logical devices (testing mirrored without GPUs).

    Must run before TensorFlow initialises its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))


def collective_friendly(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Casts uint8 images to int32: MultiWorkerMirroredStrategy's collectives (Keras runs
    one on the input batches) accept no 8-bit integers. The model accepts any integer dtype.
    """
    def cast(element):
        return tf.nest.map_structure(
            lambda tensor: tf.cast(tensor, tf.int32) if tensor.dtype == tf.uint8 else tensor,
            element)
    return dataset.map(cast)
