"""Fixed subsets of a split for evaluation and pictures.

* `eval_images`: a split in one fixed random order (``SPLIT_SEED``), cut to N images.
  Every run and every entry point that asks for N images scores the same N, and the first
  N of a larger subset are the N-image subset, so numbers stay comparable.
* `showcase_order` / `showcase_images`: one example per class in turn, for image grids
  that show every class even when the file is sorted by label.
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from pipelines import api, transforms

# What eval.json files record as the order of their images (see `eval_images`).
EVAL_ORDER = "random order of the split, seed pipelines.SPLIT_SEED"


def eval_images(dataset: str, split: str, max_images: Optional[int], data_dir=None,
                seed: int = 0, with_labels: bool = False):
    """A split's images in a fixed random order, cut to `max_images` (None or 0: all).

    The order comes from `SPLIT_SEED`, not `seed`, so every run and every entry point
    evaluates the same subset, and the first N images of a larger subset are the N-image
    subset. A random subset rather than the first N in file order: some files are sorted
    by class (mnist5k's test split starts with its 50 zeros). `seed` only draws the
    binarization of dynamically binarized data, with stateless draws: the images are a
    pure function of (dataset, split, seed), whatever TF's global seed (`load_arrays`).
    `with_labels`: (images, labels).
    """
    if max_images is not None and (isinstance(max_images, bool)
                                   or not isinstance(max_images, numbers.Integral)
                                   or max_images < 0):
        raise ValueError(f"max_images: expected None or an integer >= 0, got {max_images!r}")
    images, labels = api.load_arrays(dataset, split, data_dir=data_dir, seed=int(seed))
    order = np.random.default_rng(transforms.SPLIT_SEED).permutation(len(images))
    selected = order[:max_images] if max_images else order
    return (images[selected], labels[selected]) if with_labels else images[selected]


def showcase_order(labels, count: int) -> np.ndarray:
    """Indices into `labels`: the first example of each class (in class order), then the
    second of each, ...; at most `count`. Unlabeled data (all labels < 0): 0..count-1."""
    labels = np.asarray(labels)
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"count: expected an integer >= 0, got {count!r}")
    if (labels < 0).all():
        return np.arange(min(count, len(labels)))
    rank = np.empty(len(labels), np.int64)  # position of each example within its class
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))[:count]


def showcase_images(dataset: str, split: str, count: int, data_dir=None,
                    seed: int = 0) -> np.ndarray:
    """`count` images of a split for pictures, in `showcase_order` of its labels (file
    order within each class). `seed` only draws the binarization of dynamic datasets."""
    images, labels = api.load_arrays(dataset, split, data_dir=data_dir, seed=int(seed))
    return images[showcase_order(labels, count)]
