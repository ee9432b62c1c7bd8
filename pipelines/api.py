"""``load`` and ``load_arrays``: argument checking and assembly of the pipeline."""
from __future__ import annotations

import numbers
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from pipelines import registry, transforms

_LOAD_ARRAYS_BATCH = 2048


def _check_int(argument: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    # bool is an int subclass; True as a batch size is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{argument}: expected {expected}, got {value!r}")


def _check_bool(argument: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (bool, np.bool_)):
        expected = "True or False" + (" or None" if allow_none else "")
        raise ValueError(f"{argument}: expected {expected}, got {value!r}")


def _check_common(name, split, seed, data_dir, max_examples, validation_size):
    entry = registry.get_entry(name)
    if split not in registry.SPLITS + (registry.TRAIN_AND_VALIDATION,):
        raise ValueError(f"split: expected one of {', '.join(registry.SPLITS)} or "
                         f"{registry.TRAIN_AND_VALIDATION}, got {split!r}")
    _check_int("seed", seed, 0)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data_dir: expected a path (str or os.PathLike) or None, got {data_dir!r}")
    _check_int("max_examples", max_examples, 1, allow_none=True)
    _check_int("validation_size", validation_size, 0, allow_none=True)
    return entry


def load(
    name: str,
    split: str,
    batch_size: int,
    seed: int = 0,
    data_dir: Optional[str] = None,
    with_labels: bool = False,
    shuffle: Optional[bool] = None,
    repeat: bool = False,
    drop_remainder: Optional[bool] = None,
    max_examples: Optional[int] = None,
    validation_size: Optional[int] = None,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of uint8 images ``[B, H, W, C]``.

    Args:
      name: one of ``pipelines.names()``.
      split: "train", "validation" or "test". Sources without a validation split get a
        fixed, seeded carve-out of train (see ``pipelines.info(name).splits``); train and
        validation never overlap. "train+validation" (``pipelines.TRAIN_AND_VALIDATION``)
        is their union, for a final retraining: exactly the images of train and of
        validation (a carve-out rejoins train in the source's order), with train's
        defaults (shuffled, drop_remainder).
      batch_size: examples per batch (>= 1).
      seed: drives shuffling and dynamic binarization; the same seed gives the same
        batches, epoch after epoch. Split membership does not depend on it.
      data_dir: where the source lives (TFDS data dir, IDX dir, .mat dir, csv dir);
        None for each source's default.
      with_labels: yield ``(images, labels int64 [B])`` instead of images. Unlabeled
        sources (binarized_mnist) give labels -1.
      shuffle: default True for train, False otherwise. Reshuffles every epoch.
      repeat: repeat forever (each repetition reshuffles and redraws the binarization).
      drop_remainder: default True for train (static batch shape, which distributed
        training needs), False otherwise.
      max_examples: keep only the first N examples of the split (before shuffling);
        for quick experiments and tests.
      validation_size: for sources whose validation split is carved from train, how many
        examples it takes (None: the documented default). Must be None for sources with
        a validation split of their own.

    Images are in {0, 1} for binary datasets (``info(name).max_value == 1``) and 0..255
    otherwise. Dynamically binarized datasets draw a fresh binarization every epoch; the
    draws are determined by (seed, epoch, batch index, batch_size), so changing
    batch_size changes them.

    Raises:
      ValueError: a bad argument (the message names it, what was expected, what came).
      DatasetNotFoundError (a FileNotFoundError): the data is not on this machine.
      CorruptDatasetError (a ValueError): a data file is damaged.
    """
    return _load(name, split, batch_size, seed, data_dir, with_labels, shuffle, repeat,
                 drop_remainder, max_examples, validation_size, redraw_binarization=True)


def _load(name, split, batch_size, seed, data_dir, with_labels, shuffle, repeat,
          drop_remainder, max_examples, validation_size, redraw_binarization):
    """`load`; `redraw_binarization=False`: one fixed draw (`transforms.binarize_fixed`)."""
    entry = _check_common(name, split, seed, data_dir, max_examples, validation_size)
    _check_int("batch_size", batch_size, 1)
    _check_bool("with_labels", with_labels)
    _check_bool("shuffle", shuffle, allow_none=True)
    _check_bool("repeat", repeat)
    _check_bool("drop_remainder", drop_remainder, allow_none=True)
    is_train = split in ("train", registry.TRAIN_AND_VALIDATION)
    shuffle = is_train if shuffle is None else bool(shuffle)
    drop_remainder = is_train if drop_remainder is None else bool(drop_remainder)

    if entry.pipeline is not None:  # generated on the fly (dsprites): no cache, no files
        return entry.pipeline(split, batch_size=int(batch_size), seed=int(seed),
                              shuffle=shuffle, repeat=bool(repeat),
                              drop_remainder=drop_remainder, with_labels=bool(with_labels),
                              max_examples=max_examples, validation_size=validation_size)
    examples, num_examples = entry.open_split(split, data_dir, validation_size)
    if max_examples is not None and max_examples < num_examples:
        examples, num_examples = examples.take(max_examples), max_examples
    if drop_remainder and num_examples < batch_size:
        raise ValueError(
            f"batch_size: {name}/{split} has {num_examples} examples, fewer than "
            f"batch_size={batch_size}, so drop_remainder=True would yield no batch"
        )
    return transforms.build_pipeline(
        examples,
        num_examples,
        batch_size=int(batch_size),
        seed=int(seed),
        shuffle=shuffle,
        repeat=bool(repeat),
        drop_remainder=drop_remainder,
        dynamic_binarization=entry.info.binarization == "dynamic",
        with_labels=bool(with_labels),
        redraw_binarization=redraw_binarization,
    )


def load_arrays(
    name: str,
    split: str,
    data_dir: Optional[str] = None,
    seed: int = 0,
    max_examples: Optional[int] = None,
    validation_size: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """A whole split in memory, in source order: ``(images uint8 [N,H,W,C], labels int64 [N])``.

    For evaluation and analysis on small datasets. Dynamically binarized datasets return
    one binarization draw, a pure function of (dataset, split, ``seed``): stateless draws
    (``transforms.binarize_fixed``), so TensorFlow's global seed does not enter and every
    entry point (train's final evaluation, evaluate, sample) scores the same pixels. It is
    not the draw ``load`` makes for the same seed. Unlabeled sources give labels -1.
    Same arguments and errors as ``load``.
    """
    dataset = _load(
        name,
        split,
        batch_size=_LOAD_ARRAYS_BATCH,
        seed=seed,
        data_dir=data_dir,
        with_labels=True,
        shuffle=False,
        repeat=False,
        drop_remainder=False,
        max_examples=max_examples,
        validation_size=validation_size,
        redraw_binarization=False,
    )
    image_batches, label_batches = [], []
    for images, labels in dataset.as_numpy_iterator():
        image_batches.append(images)
        label_batches.append(labels)
    return np.concatenate(image_batches), np.concatenate(label_batches).astype(np.int64)
