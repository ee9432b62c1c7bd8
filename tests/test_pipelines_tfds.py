"""Tests of the TFDS-backed pipelines (mnist, binarized_mnist, omniglot, cifar10) on TFDS
mock data: ``tfds.testing.mock_data(policy=USE_CODE)`` generates random examples from
each dataset's feature spec, so nothing is downloaded or read from disk. (Under the mock,
``builder.info.splits`` is empty: the pipelines must not depend on it.)
"""
import collections
import hashlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import pipelines

NUM_MOCK_EXAMPLES = 40
VALIDATION_SIZE = 8  # carved out of the 40 mock train examples


@pytest.fixture(autouse=True)
def mock_tfds():
    with tfds.testing.mock_data(
        num_examples=NUM_MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        yield


def _validation_size(name):
    return None if name == "binarized_mnist" else VALIDATION_SIZE


def _load(name, split, batch_size=8, **kwargs):
    kwargs.setdefault("validation_size", _validation_size(name))
    return pipelines.load(name, split, batch_size, **kwargs)


def _epoch(dataset):
    return np.concatenate([batch.numpy() for batch in dataset])


def _digests(images):
    return collections.Counter(hashlib.sha1(image.tobytes()).hexdigest() for image in images)


EXPECTED_SPLIT_SIZES = {
    # train, validation, test under the mock (binarized_mnist has a native validation split)
    "mnist": (32, 8, 40),
    "binarized_mnist": (40, 40, 40),
    "omniglot": (32, 8, 40),
    "cifar10": (32, 8, 40),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SPLIT_SIZES))
def test_shapes_dtypes_values_and_split_sizes(name):
    info = pipelines.info(name)
    for split, expected_size in zip(pipelines.SPLITS, EXPECTED_SPLIT_SIZES[name]):
        dataset = _load(name, split, batch_size=8, with_labels=True)
        images_spec, labels_spec = dataset.element_spec
        assert images_spec.dtype == tf.uint8 and labels_spec.dtype == tf.int64
        assert tuple(images_spec.shape[1:]) == info.image_shape
        if split == "train":
            assert images_spec.shape[0] == 8  # drop_remainder: static batch dimension
        images, labels = [], []
        for batch_images, batch_labels in dataset:
            images.append(batch_images.numpy())
            labels.append(batch_labels.numpy())
        images, labels = np.concatenate(images), np.concatenate(labels)
        assert len(images) == expected_size == len(labels), (split, len(images))
        values = set(np.unique(images).tolist())
        if info.max_value == 1:
            assert values == {0, 1}, (name, split, sorted(values)[:10])
        else:
            assert len(values) > 200 and max(values) <= 255  # 8-bit, untouched
        if info.num_classes is None:
            assert np.all(labels == pipelines.NO_LABEL)
        else:
            assert labels.min() >= 0 and labels.max() < info.num_classes


def test_cifar10_is_uint8_32x32x3():
    images = next(iter(_load("cifar10", "test", batch_size=16)))
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.uint8
    assert int(tf.reduce_max(images)) > 1


def test_omniglot_is_converted_to_28x28_ink():
    images, labels = pipelines.load_arrays("omniglot", "test", seed=1)
    assert images.shape == (NUM_MOCK_EXAMPLES, 28, 28, 1)
    # Mock pages are uniform noise (mean grey ~127): after grayscale, inversion and
    # area-averaging the ink is ~0.5, so about half the binarized pixels are on.
    assert 0.3 < images.mean() < 0.7
    assert labels.max() < 1623


def _raw_tfds(name, split, feature):
    return np.stack([example[feature] for example in tfds.as_numpy(
        tfds.load(name, split=split, download=False))])


def test_carved_validation_is_disjoint_from_train_and_complete():
    # cifar10 is 8-bit, so examples can be compared by content with the raw TFDS train.
    raw = _raw_tfds("cifar10", "train", "image")
    train = _epoch(_load("cifar10", "train", shuffle=False, drop_remainder=False))
    validation = _epoch(_load("cifar10", "validation"))
    assert len(train) + len(validation) == len(raw) == NUM_MOCK_EXAMPLES
    assert len(validation) == VALIDATION_SIZE
    assert not _digests(train) & _digests(validation)
    assert _digests(train) + _digests(validation) == _digests(raw)


@pytest.mark.parametrize("name", ["mnist", "omniglot"])
def test_carved_validation_of_binarized_sets_follows_the_fixed_mask(name):
    # Binarization hides the images' identity: check through the labels, in source order,
    # that validation is exactly the fixed-seed mask's examples and train the rest.
    raw_labels = _raw_tfds(name, "train", "label")
    mask = pipelines.transforms.validation_mask(len(raw_labels), VALIDATION_SIZE)
    _, train_labels = pipelines.load_arrays(name, "train", validation_size=VALIDATION_SIZE)
    _, val_labels = pipelines.load_arrays(name, "validation", validation_size=VALIDATION_SIZE, seed=9)
    np.testing.assert_array_equal(val_labels, raw_labels[mask])
    np.testing.assert_array_equal(train_labels, raw_labels[~mask])


def test_binarized_mnist_is_statically_binarized():
    first = _epoch(_load("binarized_mnist", "test"))
    second = _epoch(_load("binarized_mnist", "test"))
    assert set(np.unique(first).tolist()) == {0, 1}
    np.testing.assert_array_equal(first, second)  # static: the same bits every time
    raw = _raw_tfds("binarized_mnist", "test", "image")
    np.testing.assert_array_equal(first, (raw > 0).astype(np.uint8))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_same_seed_same_batches_other_seed_other_batches(name):
    def batches(seed):
        dataset = _load(name, "train", batch_size=8, seed=seed)
        return [_epoch(dataset) for _ in range(2)]

    run_a, run_b, run_c = batches(5), batches(5), batches(6)
    for epoch_a, epoch_b in zip(run_a, run_b):
        np.testing.assert_array_equal(epoch_a, epoch_b)
    assert not np.array_equal(run_a[0], run_c[0])
    assert not np.array_equal(run_a[0], run_a[1])  # reshuffled (and, for mnist, redrawn)


def test_mnist_dynamic_binarization_fresh_each_epoch_yet_reproducible():
    # Unshuffled, so any difference between epochs comes from the binarization draw.
    dataset = _load("mnist", "test", batch_size=10, seed=11, shuffle=False)
    epoch1, epoch2, epoch3 = _epoch(dataset), _epoch(dataset), _epoch(dataset)
    assert set(np.unique(epoch1).tolist()) == {0, 1}
    assert not np.array_equal(epoch1, epoch2) and not np.array_equal(epoch2, epoch3)
    rebuilt = _load("mnist", "test", batch_size=10, seed=11, shuffle=False)
    np.testing.assert_array_equal(_epoch(rebuilt), epoch1)
    np.testing.assert_array_equal(_epoch(rebuilt), epoch2)

    # With repeat=True the second pass is also a fresh draw, identical to the second
    # epoch of the non-repeated pipeline (the draw stream continues across epochs).
    repeated = _load("mnist", "test", batch_size=10, seed=11, shuffle=False, repeat=True)
    iterator = iter(repeated)
    first_two = [np.concatenate([next(iterator).numpy() for _ in range(4)]) for _ in range(2)]
    np.testing.assert_array_equal(first_two[0], epoch1)
    assert not np.array_equal(first_two[0], first_two[1])

    # The draw follows Bernoulli(grey/255): mock grey levels are uniform on 0..254.
    grey = _raw_tfds("mnist", "test", "image")
    assert abs(epoch1.mean() - grey.mean() / 255.0) < 0.02
    assert epoch1[grey == 0].max(initial=0) == 0


def test_dataset_works_with_keras_style_epochs():
    # Keras iterates a finite dataset once per epoch: each pass must be a fresh draw and
    # every train batch must have the full static size.
    dataset = _load("mnist", "train", batch_size=8, seed=0)
    assert dataset.element_spec.shape.as_list() == [8, 28, 28, 1]
    assert int(dataset.cardinality()) == (NUM_MOCK_EXAMPLES - VALIDATION_SIZE) // 8
    sums = [[int(tf.reduce_sum(batch)) for batch in dataset] for _ in range(2)]
    assert len(sums[0]) == len(sums[1]) == 4
    assert sums[0] != sums[1]



@pytest.mark.parametrize("name", ["mnist", "binarized_mnist"])
def test_train_plus_validation_is_the_union_of_train_and_validation(name):
    """Carved (mnist: the carve-out rejoins train) and native (binarized_mnist: TFDS
    concatenates its own two splits): exactly the images of train and validation. Compared
    before binarization (registry's open_split), since mnist's draw differs per pipeline."""
    from pipelines import registry

    def images(split):
        dataset, count = registry.get_entry(name).open_split(split, None, _validation_size(name))
        arrays = np.stack([image.numpy() for image, _ in dataset])
        assert len(arrays) == count
        return arrays

    train, validation, union = (images(split) for split in
                                ("train", "validation", pipelines.TRAIN_AND_VALIDATION))
    assert len(union) == NUM_MOCK_EXAMPLES * (2 if name == "binarized_mnist" else 1)
    assert _digests(union) == _digests(train) + _digests(validation)
    batches = _epoch(_load(name, pipelines.TRAIN_AND_VALIDATION, batch_size=8))
    assert len(batches) == len(union)  # through load too, with train's defaults
