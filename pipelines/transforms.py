"""Dataset-independent steps: deterministic splits, binarization, the batching pipeline.

Randomness policy:
  * Split membership (which train examples form the carved-out validation set, the mnist5k
    test/validation sets) uses the fixed ``SPLIT_SEED``, NOT the run's ``seed``: the
    validation and test sets are then the same for every training run, so numbers from
    runs with different seeds are comparable.
  * Shuffling and dynamic binarization use the run's ``seed`` (via ``derive_seed`` so the
    two streams are independent). They are tf.data seeded ops: an iterator created anew
    (next epoch, or ``repeat``) reshuffles / redraws, and the sequence of epochs is the same
    for the same seed. As for every seeded TF op, TF's global seed (``tf.random.set_seed``)
    also enters; with it fixed (or unset) the data stream is fully reproducible.
  * ``load_arrays`` (evaluation images) binarizes with stateless draws only
    (``binarize_fixed``): a pure function of (dataset, split, seed), whatever the global seed.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import tensorflow as tf

SPLIT_SEED = 20170101


def derive_seed(seed: int, purpose: str) -> int:
    """A 31-bit seed for one purpose ("shuffle", "binarize") from the run's seed.

    crc32 rather than hash(): Python salts str hashes per process, which would break
    reproducibility across runs.
    """
    return (int(seed) * 1_000_003 + zlib.crc32(purpose.encode("utf-8"))) % (2**31 - 1)


# --------------------------------------------------------------------------------------
# Deterministic splits
# --------------------------------------------------------------------------------------

def validation_mask(num_examples: int, validation_size: int, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask over ``num_examples`` train examples marking exactly ``validation_size``.

    The members are a seeded uniform random subset (not the last N examples: source files
    are sometimes ordered by class or writer).
    """
    if not 0 <= validation_size < num_examples:
        raise ValueError(
            f"validation_size must be in [0, {num_examples}) for a train split of "
            f"{num_examples} examples, got {validation_size}"
        )
    chosen = np.random.default_rng(split_seed).permutation(num_examples)[:validation_size]
    mask = np.zeros(num_examples, dtype=bool)
    mask[chosen] = True
    return mask


def stratified_order(labels: np.ndarray, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """A permutation of example indices in which every prefix is (nearly) class-balanced.

    Each class's indices are permuted (seeded), then taken round-robin over the classes:
    with 10 balanced classes, any prefix whose length is a multiple of 10 holds exactly the
    same number of examples of each class. Consecutive slices of this order therefore
    give disjoint, stratified splits.
    """
    rng = np.random.default_rng(split_seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    for rank in range(max(len(idx) for idx in per_class)):
        order.extend(int(idx[rank]) for idx in per_class if rank < len(idx))
    return np.asarray(order, dtype=np.int64)


def select_by_mask(dataset: tf.data.Dataset, mask: np.ndarray) -> tf.data.Dataset:
    """Keep the elements whose position i has ``mask[i]``; order is preserved.

    The cardinality is asserted so Keras knows the number of steps per epoch.
    """
    keep = tf.constant(mask, dtype=tf.bool)
    selected = (
        dataset.enumerate()
        .filter(lambda index, element: tf.gather(keep, index))
        .map(lambda index, element: element)
    )
    return selected.apply(tf.data.experimental.assert_cardinality(int(mask.sum())))


def count_examples(dataset: tf.data.Dataset) -> int:
    """Number of elements; uses the static cardinality when known (TFDS and the mock set it)."""
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("cannot split an infinite dataset")
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


# --------------------------------------------------------------------------------------
# Per-example preprocessing (runs once, before the cache)
# --------------------------------------------------------------------------------------

def binarize_threshold(image: tf.Tensor) -> tf.Tensor:
    """Static binarization: any non-zero pixel is on. uint8 in {0, 1}.

    The real binarized_mnist is already {0, 1}; this also makes values binary when the
    stored values are not (TFDS mock data fills images with 0..254).
    """
    return tf.cast(image > 0, tf.uint8)


def omniglot_to_ink_28x28(image: tf.Tensor) -> tf.Tensor:
    """TFDS Omniglot 105x105x3 RGB -> 28x28x1 uint8 "ink" intensity (strokes high).

    Grayscale, invert (TFDS draws black strokes on white; the binary models expect the
    foreground to be 1, as in Burda et al.'s Omniglot), then area-resize, which averages
    the 105/28 ~ 3.75 pixel blocks into grey levels that dynamic binarization samples.
    """
    grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
    ink = 255.0 - grey
    small = tf.image.resize(ink, (28, 28), method=tf.image.ResizeMethod.AREA)
    return tf.cast(tf.clip_by_value(tf.round(small), 0.0, 255.0), tf.uint8)


# --------------------------------------------------------------------------------------
# Dynamic binarization (runs every time an element is drawn, after batching)
# --------------------------------------------------------------------------------------

def binarize_dynamic(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Replace each 8-bit batch by a Bernoulli(grey / 255) draw, fresh every epoch.

    ``Dataset.random(rerandomize_each_iteration=True)`` supplies one int64 per batch; each
    new iterator over the pipeline (a new epoch, or a ``repeat``) gets a new, seed-derived
    stream of them. The pixels are then drawn with a *stateless* uniform seeded by that
    number, so the draw does not depend on thread scheduling of the parallel map: it is
    determined by (seed, epoch, batch index, batch size).

    Drawing per batch rather than per image is deliberate: one vectorized draw per batch
    runs ~5x faster on 2 CPU cores than a map over single images. The price is that the
    same seed with another batch_size gives a different (equally valid) draw.

    Args:
      dataset: batched (images uint8 [B,H,W,C], labels) pairs.
      seed: the run's seed.
    """
    batch_seeds = tf.data.Dataset.random(
        seed=derive_seed(seed, "binarize"), rerandomize_each_iteration=True
    )

    def draw(pair, batch_seed):
        images, labels = pair
        uniform = tf.random.stateless_uniform(
            tf.shape(images), seed=tf.stack([batch_seed, tf.constant(SPLIT_SEED, tf.int64)])
        )
        probability_on = tf.cast(images, tf.float32) / 255.0
        return tf.cast(uniform < probability_on, tf.uint8), labels

    return tf.data.Dataset.zip((dataset, batch_seeds)).map(
        draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def binarize_fixed(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Replace each 8-bit batch by one Bernoulli(grey / 255) draw that is a pure function of
    (seed, batch index, batch size): the same on every iteration and in every process.

    For one-pass reads of evaluation images (``load_arrays``). ``binarize_dynamic`` takes its
    per-batch seeds from ``Dataset.random``, a seeded op into which TF's global seed enters:
    ``launch.train`` sets it and ``launch.evaluate`` does not, so they scored different
    pixels of "the same" images. Here every draw is stateless, seeded by
    [derive_seed(seed, "binarize"), batch index].
    """
    base = tf.constant(derive_seed(seed, "binarize"), tf.int64)

    def draw(index, pair):
        images, labels = pair
        uniform = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([base, index]))
        probability_on = tf.cast(images, tf.float32) / 255.0
        return tf.cast(uniform < probability_on, tf.uint8), labels

    return dataset.enumerate().map(draw, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True)


# --------------------------------------------------------------------------------------
# The common tail: cache, shuffle, repeat, batch, binarize, prefetch
# --------------------------------------------------------------------------------------

def build_pipeline(
    examples: tf.data.Dataset,
    num_examples: int,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    repeat: bool,
    drop_remainder: bool,
    dynamic_binarization: bool,
    with_labels: bool,
    redraw_binarization: bool = True,
) -> tf.data.Dataset:
    """Turn a dataset of preprocessed (image uint8 [H,W,C], label int64) into batches.

    The cache holds the decoded, preprocessed 8-bit images, so decoding/resizing happens
    once; shuffling and the binarization draw happen after it, so they change every epoch.
    ``redraw_binarization=False``: one fixed draw instead (``binarize_fixed``).
    """
    dataset = examples.cache()
    if shuffle:
        # A buffer as large as the split gives a uniform permutation each epoch. The
        # split is cached in memory anyway (largest: CIFAR-10 train, ~140 MB).
        dataset = dataset.shuffle(
            buffer_size=max(num_examples, 1),
            seed=derive_seed(seed, "shuffle"),
            reshuffle_each_iteration=True,
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if dynamic_binarization:
        binarize = binarize_dynamic if redraw_binarization else binarize_fixed
        dataset = binarize(dataset, seed)
    if not with_labels:
        dataset = dataset.map(lambda images, labels: images)
    return dataset.prefetch(tf.data.AUTOTUNE)
