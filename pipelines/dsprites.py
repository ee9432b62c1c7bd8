"""A dSprites-equivalent dataset, generated procedurally: nothing is stored or downloaded.

64x64 binary images of one white shape on black, with five known generative factors on a
full grid (the factor grid of Matthey et al.'s dSprites, 2017; this is our own renderer,
not their images):

=============  ====  ==========================================================
factor         size  values
=============  ====  ==========================================================
shape             3  square, ellipse, heart (values 1, 2, 3; indices 0, 1, 2)
scale             6  0.5 .. 1 in 6 equal steps
orientation      40  0 .. 2 pi radians in 40 equal steps (both ends included, so
                     indices 0 and 39 draw the same image, as in the original grid)
pos_x            32  0 .. 1 in 32 equal steps (0: left, 1: right)
pos_y            32  0 .. 1 in 32 equal steps (0: top, 1: bottom)
=============  ====  ==========================================================

3 x 6 x 40 x 32 x 32 = 737,280 images. Image number (the *flat index*, the label of
``pipelines.load("dsprites", ..., with_labels=True)``) is the row-major position in that
grid: ``(((shape * 6 + scale) * 40 + orientation) * 32 + pos_x) * 32 + pos_y`` with each
factor's index.

**Rendering rule** (point sampling, no anti-aliasing, so the pixels are exactly 0 or 1).
Pixel (row i, column j) is sampled at its centre ``(u, v) = ((j + 0.5) / 64, (i + 0.5) / 64)``
in image units (the image is the unit square, v downwards). The shape's centre is
``c = R + pos * (1 - 2 R)`` in each axis with ``R = UNIT_RADIUS = 0.2``, so every shape at
every factor value lies inside the image. The pixel centre is carried into the shape's own
frame by the inverse translation, rotation and scaling::

    dx = u - c_x,   dy = c_y - v                 (dy points up)
    p = ( cos(theta) dx + sin(theta) dy) / (scale R)
    q = (-sin(theta) dx + cos(theta) dy) / (scale R)

(theta turns the shape counter-clockwise on the screen), and the pixel is on when the
shape's implicit function is <= 0 there. Each shape fits in the unit disc of its frame:

* square:  ``max(|p|, |q|) - 1/sqrt(2)`` (its corners touch the unit circle; area 2);
* ellipse: ``p^2 + 4 q^2 - 1`` (semi-axes 1 along p and 1/2 along q, so the long axis is
  horizontal at theta = 0; area pi / 2);
* heart:   ``(x^2 + y^2 - 1)^3 - x^2 y^3`` with ``x = 1.25 p``, ``y = 1.25 q + 0.25``: the
  classical sextic heart curve, lobes up and point down at theta = 0, shrunk and shifted
  so its smallest enclosing circle is the unit circle (area about 2.34).

At scale 1 the unit disc is 0.2 x 64 = 12.8 pixels across in radius, so a square covers
about 328 pixels, an ellipse 257 and a heart 384; at scale 0.5 a quarter of that.

The geometry (cos, sin, 1 / (scale R), the centre) is computed in float64 with numpy and
rounded to float32 once, per factor value; the per-pixel test is a handful of float32
multiplications, additions and comparisons in TensorFlow. An image therefore depends only
on its factors: rendered alone, in any batch, eagerly or inside ``tf.data``, it is the same
image (tested).

**Generated on the fly.** ``load`` keeps only the split's image numbers (int64, 5.8 MB for
the whole grid) and renders each batch in a ``tf.data`` map after batching: memory does not
grow with the number of images. Rendering costs about 40 float32 operations per pixel (the
three shapes' tests are all evaluated, then one is selected): about 12,000 images/s on two
busy CPU cores.

**Splits** (a pure function of ``split_seed``, default ``pipelines.SPLIT_SEED``, never of the
run's seed): the grid's images are put in the order of
``numpy.random.default_rng(split_seed).permutation``; test is the first
``held_out_size(n) = min(10,000, n // 10)``, validation the next ``validation_size``
(default the same number), train the rest; "train+validation" is everything but test.
Every split keeps that random order, so the first N images of a split (``max_examples``)
are a uniform random N of it. Full grid: 717,280 / 10,000 / 10,000.

**Shuffling**: each epoch is ``tf.random.experimental.stateless_shuffle`` of the split seeded
by ``[derive_seed(seed, "shuffle"), epoch]``. With ``repeat=True`` the epochs are numbered
0, 1, 2, ... inside the stream, so the whole stream is a pure function of ``seed`` (TF's
global seed does not enter). With ``repeat=False`` each new iteration over the dataset (a
Keras epoch) draws its epoch number from a seeded ``tf.data`` random stream, as the other
datasets' shuffles do, so there TF's global seed enters too.

**Subsets for tests and quick runs**: ``stride=(s_shape, s_scale, s_orientation, s_x, s_y)``
keeps every s-th value of each factor (indices 0, s, 2s, ...; labels keep the full grid's
indices and values), e.g. ``stride=(1, 1, 4, 4, 4)`` is 3 x 6 x 10 x 8 x 8 = 11,520 images;
``max_examples`` keeps the first N of a split.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from pipelines.transforms import SPLIT_SEED, derive_seed

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_FACTORS = len(FACTOR_SIZES)
NUM_IMAGES = int(np.prod(FACTOR_SIZES))  # 737,280
IMAGE_SIZE = 64
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
# The value of each factor index (shape values 1, 2, 3 as in the original's latents_values).
FACTOR_VALUES = (
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2.0 * math.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
# Radius, in image widths, of the unit disc of a shape's frame at scale 1.
UNIT_RADIUS = 0.2
# The most images held out for test and (by default) validation.
HELD_OUT_MAX = 10_000
SPLIT_NAMES = ("train", "validation", "test", "train+validation")
LABELS = ("none", "index", "factors")

_SQUARE_HALF_SIDE = 1.0 / math.sqrt(2.0)
_ELLIPSE_Q_SCALE = 2.0  # q is doubled: semi-axis 1/2 along q
_HEART_SCALE, _HEART_SHIFT = 1.25, 0.25
# Mixed-radix place values of the flat index: posY varies fastest.
_PLACE = tuple(int(np.prod(FACTOR_SIZES[k + 1:])) for k in range(NUM_FACTORS))


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(argument, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{argument}: expected {expected}, got {value!r}")
    return int(value)


def _check_bool(argument, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{argument}: expected True or False, got {value!r}")
    return bool(value)


def check_stride(stride) -> Tuple[int, ...]:
    """``None`` -> (1, 1, 1, 1, 1); otherwise 5 positive ints, one per factor."""
    if stride is None:
        return (1,) * NUM_FACTORS
    values = tuple(stride) if isinstance(stride, (tuple, list, np.ndarray)) else None
    if values is None or len(values) != NUM_FACTORS or not all(
            _is_int(value) and value >= 1 for value in values):
        raise ValueError(f"stride: expected None or {NUM_FACTORS} integers >= 1 (one per "
                         f"factor: {', '.join(FACTOR_NAMES)}), got {stride!r}")
    return tuple(int(value) for value in values)


def _as_factor_indices(factor_indices, argument="factor_indices") -> np.ndarray:
    array = np.asarray(factor_indices)
    if array.ndim == 1 and array.shape[0] == NUM_FACTORS:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != NUM_FACTORS:
        raise ValueError(f"{argument}: expected an integer array [N, {NUM_FACTORS}] (columns "
                         f"{', '.join(FACTOR_NAMES)}), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{argument}: expected integer factor indices, got {array.dtype} "
                             f"values that are not whole numbers")
    array = array.astype(np.int64)
    for k, (name, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES)):
        column = array[:, k]
        if column.size and (column.min() < 0 or column.max() >= size):
            raise ValueError(f"{argument}: column {k} ({name}) must be in [0, {size - 1}], "
                             f"got values in [{column.min()}, {column.max()}]")
    return array


# --------------------------------------------------------------------------------------
# The factor grid
# --------------------------------------------------------------------------------------

def flat_index(factor_indices) -> np.ndarray:
    """Factor indices [N, 5] -> image numbers int64 [N] (row-major in the grid)."""
    array = _as_factor_indices(factor_indices)
    return array @ np.asarray(_PLACE, np.int64)


def factor_indices(flat) -> np.ndarray:
    """Image numbers [N] -> factor indices int64 [N, 5] (columns ``FACTOR_NAMES``)."""
    flat = np.asarray(flat)
    if flat.ndim != 1 or (flat.size and not np.issubdtype(flat.dtype, np.integer)):
        raise ValueError(f"flat: expected a 1-D integer array of image numbers, got "
                         f"{flat.dtype} of shape {flat.shape}")
    flat = flat.astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= NUM_IMAGES):
        raise ValueError(f"flat: image numbers must be in [0, {NUM_IMAGES - 1}], got "
                         f"values in [{flat.min()}, {flat.max()}]")
    return (flat[:, None] // np.asarray(_PLACE, np.int64)) % np.asarray(FACTOR_SIZES, np.int64)


def factor_values(factor_indices_) -> np.ndarray:
    """Factor indices [N, 5] -> factor values float64 [N, 5] (shape 1/2/3, scale,
    orientation in radians, pos_x, pos_y)."""
    array = _as_factor_indices(factor_indices_)
    return np.stack([FACTOR_VALUES[k][array[:, k]] for k in range(NUM_FACTORS)], axis=1)


def grid(stride=None) -> np.ndarray:
    """The image numbers of the (strided) grid, ascending, int64."""
    stride = check_stride(stride)
    return _grid(stride).copy()


@functools.lru_cache(maxsize=8)
def _grid(stride) -> np.ndarray:
    kept = [np.arange(0, size, step, dtype=np.int64) for size, step in zip(FACTOR_SIZES, stride)]
    mesh = np.meshgrid(*kept, indexing="ij")
    flat = sum(axis.reshape(-1) * place for axis, place in zip(mesh, _PLACE))
    flat.setflags(write=False)
    return flat


def grid_size(stride=None) -> int:
    """Number of images in the (strided) grid: 737,280 for the full one."""
    stride = check_stride(stride)
    return int(np.prod([math.ceil(size / step) for size, step in zip(FACTOR_SIZES, stride)]))


def grid_factor_sizes(stride=None) -> Tuple[int, ...]:
    """Number of values each factor keeps in the (strided) grid."""
    stride = check_stride(stride)
    return tuple(math.ceil(size / step) for size, step in zip(FACTOR_SIZES, stride))


def sample_factor_indices(num: int, rng: np.random.Generator, stride=None) -> np.ndarray:
    """``num`` factor-index rows drawn uniformly and independently from the (strided) grid
    (the full grid's indices, int64 [num, 5])."""
    stride = check_stride(stride)
    num = _check_int("num", num, 0)
    columns = [rng.integers(0, math.ceil(size / step), size=num) * step
               for size, step in zip(FACTOR_SIZES, stride)]
    return np.stack(columns, axis=1).astype(np.int64)


def held_out_size(num_images: int) -> int:
    """Test images (and default validation images) of a grid of ``num_images``."""
    return min(HELD_OUT_MAX, num_images // 10)


def split(name: str, stride=None, validation_size: Optional[int] = None,
          split_seed: int = SPLIT_SEED) -> np.ndarray:
    """The image numbers of a split, in its fixed random order (int64; see the module
    docstring). ``validation_size`` None: ``held_out_size`` of the grid."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {', '.join(SPLIT_NAMES)}, got {name!r}")
    stride = check_stride(stride)
    split_seed = _check_int("split_seed", split_seed, 0)
    members = _grid(stride)
    num = len(members)
    test = held_out_size(num)
    validation = test if validation_size is None else _check_int(
        "validation_size", validation_size, 0)
    if validation > num - test - 1:
        raise ValueError(f"validation_size: dsprites has {num} images here of which {test} "
                         f"are test, so validation_size must be in [0, {num - test - 1}], "
                         f"got {validation_size}")
    if name == "validation" and validation == 0:
        raise ValueError("validation_size: the validation split is empty "
                         "(validation_size=0); give validation_size >= 1")
    order = members[_permutation(num, split_seed)]
    bounds = {"test": (0, test), "validation": (test, test + validation),
              "train": (test + validation, num), "train+validation": (test, num)}
    start, stop = bounds[name]
    return order[start:stop].copy()


@functools.lru_cache(maxsize=4)
def _permutation(num: int, split_seed: int) -> np.ndarray:
    order = np.random.default_rng(split_seed).permutation(num)
    order.setflags(write=False)
    return order


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

def _centre(position):
    return UNIT_RADIUS + np.asarray(position, np.float64) * (1.0 - 2.0 * UNIT_RADIUS)


def _inverse_radius(scale):
    return 1.0 / (np.asarray(scale, np.float64) * UNIT_RADIUS)


def _geometry_from_values(shape, scale, orientation, pos_x, pos_y):
    """float64 factor values -> the float32 per-image parameters of `_rasterise`."""
    orientation = np.asarray(orientation, np.float64)
    return (np.asarray(shape, np.int32),
            np.cos(orientation).astype(np.float32), np.sin(orientation).astype(np.float32),
            _inverse_radius(scale).astype(np.float32),
            _centre(pos_x).astype(np.float32), _centre(pos_y).astype(np.float32))


# Per-factor-value tables, computed by the same numpy functions as `render`'s parameters,
# so a grid image rendered by index or by value gets bit-identical float32 inputs.
_COS_TABLE = np.cos(FACTOR_VALUES[2]).astype(np.float32)
_SIN_TABLE = np.sin(FACTOR_VALUES[2]).astype(np.float32)
_INVERSE_RADIUS_TABLE = _inverse_radius(FACTOR_VALUES[1]).astype(np.float32)
_CENTRE_X_TABLE = _centre(FACTOR_VALUES[3]).astype(np.float32)
_CENTRE_Y_TABLE = _centre(FACTOR_VALUES[4]).astype(np.float32)
_PIXEL_CENTRES = ((np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE).astype(np.float32)


def _rasterise(shape, cos, sin, inverse_radius, centre_x, centre_y):
    """Per-image parameters [B] -> uint8 images [B, 64, 64, 1] by the implicit-function test
    of the module docstring (shape int32 0/1/2; the rest float32)."""
    columns = tf.constant(_PIXEL_CENTRES)[None, None, :]  # u, [1, 1, W]
    rows = tf.constant(_PIXEL_CENTRES)[None, :, None]  # v, [1, H, 1]

    def per_image(value):
        return value[:, None, None]

    dx = columns - per_image(centre_x)  # [B, 1, W]
    dy = per_image(centre_y) - rows  # [B, H, 1], upwards
    cos, sin, inverse_radius = per_image(cos), per_image(sin), per_image(inverse_radius)
    p = (cos * dx + sin * dy) * inverse_radius  # [B, H, W]
    q = (cos * dy - sin * dx) * inverse_radius
    square = tf.maximum(tf.abs(p), tf.abs(q)) <= _SQUARE_HALF_SIDE
    q_ellipse = q * _ELLIPSE_Q_SCALE
    ellipse = p * p + q_ellipse * q_ellipse <= 1.0
    x = p * _HEART_SCALE
    y = q * _HEART_SCALE + _HEART_SHIFT
    bracket = x * x + y * y - 1.0
    heart = bracket * bracket * bracket <= x * x * (y * y * y)
    shape = per_image(shape)
    inside = tf.where(tf.equal(shape, 0), square, tf.where(tf.equal(shape, 1), ellipse, heart))
    return tf.cast(inside, tf.uint8)[..., None]


def _rasterise_flat(flat):
    """Image numbers int64 [B] -> uint8 images [B, 64, 64, 1] (graph-friendly)."""
    place = tf.constant(_PLACE, tf.int64)
    sizes = tf.constant(FACTOR_SIZES, tf.int64)
    indices = (flat[:, None] // place) % sizes  # [B, 5]
    return _rasterise(
        tf.cast(indices[:, 0], tf.int32),
        tf.gather(tf.constant(_COS_TABLE), indices[:, 2]),
        tf.gather(tf.constant(_SIN_TABLE), indices[:, 2]),
        tf.gather(tf.constant(_INVERSE_RADIUS_TABLE), indices[:, 1]),
        tf.gather(tf.constant(_CENTRE_X_TABLE), indices[:, 3]),
        tf.gather(tf.constant(_CENTRE_Y_TABLE), indices[:, 4]),
    )


_VECTOR = tf.TensorSpec([None], tf.float32)
_rasterise_compiled = tf.function(
    _rasterise, input_signature=[tf.TensorSpec([None], tf.int32)] + [_VECTOR] * 5)
_rasterise_flat_compiled = tf.function(
    _rasterise_flat, input_signature=[tf.TensorSpec([None], tf.int64)])


def render(shape, scale, orientation, pos_x, pos_y) -> np.ndarray:
    """Images of arbitrary (also off-grid) factor values; uint8 [N, 64, 64, 1] in {0, 1}.

    Args (scalars or 1-D arrays, broadcast together):
      shape: shape index 0 (square), 1 (ellipse) or 2 (heart) -- an index, not the 1/2/3
        value of ``factor_values``.
      scale: size relative to the unit disc of radius ``UNIT_RADIUS`` image widths (> 0).
      orientation: radians, counter-clockwise on the screen.
      pos_x, pos_y: position in [0, 1] (0: left / top); values outside move the shape
        (partly) out of the image.
    """
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(value)) for value in
                                   (shape, scale, orientation, pos_x, pos_y)))
    if arrays[0].ndim != 1:
        raise ValueError(f"render: expected scalars or 1-D arrays, got shape {arrays[0].shape}")
    shape_array = arrays[0]
    if shape_array.size and (not np.all(np.isin(shape_array, (0, 1, 2)))):
        raise ValueError(f"shape: expected shape indices 0 (square), 1 (ellipse) or 2 "
                         f"(heart), got {np.unique(shape_array)[:5]}")
    values = [np.asarray(array, np.float64) for array in arrays[1:]]
    if not all(np.all(np.isfinite(array)) for array in values):
        raise ValueError("render: scale, orientation, pos_x and pos_y must be finite")
    if values[0].size and values[0].min() <= 0:
        raise ValueError(f"scale: expected values > 0, got {values[0].min()}")
    geometry = _geometry_from_values(shape_array.astype(np.int32), *values)
    if not len(shape_array):
        return np.zeros((0,) + IMAGE_SHAPE, np.uint8)
    return _rasterise_compiled(*(tf.constant(part) for part in geometry)).numpy()


def render_indices(factor_indices_) -> np.ndarray:
    """Images of grid points given by factor indices [N, 5]; uint8 [N, 64, 64, 1]. The same
    images ``load`` gives for their image numbers (bit for bit)."""
    return render_flat(flat_index(factor_indices_))


def render_flat(flat) -> np.ndarray:
    """Images of image numbers [N] (the ``with_labels`` labels); uint8 [N, 64, 64, 1]."""
    flat = factor_indices(flat) @ np.asarray(_PLACE, np.int64)  # validated
    if not len(flat):
        return np.zeros((0,) + IMAGE_SHAPE, np.uint8)
    return _rasterise_flat_compiled(tf.constant(flat, tf.int64)).numpy()


# --------------------------------------------------------------------------------------
# The tf.data pipeline
# --------------------------------------------------------------------------------------

def _ordered(members: np.ndarray, shuffle: bool, repeat: bool, seed: int) -> tf.data.Dataset:
    """A dataset of image numbers: the split in order, or shuffled per epoch."""
    members_t = tf.constant(members, tf.int64)
    if not shuffle:
        dataset = tf.data.Dataset.from_tensor_slices(members_t)
        return dataset.repeat() if repeat else dataset
    key = derive_seed(seed, "shuffle")

    def one_epoch(epoch):
        seed_pair = tf.stack([tf.constant(key, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(members_t, seed=seed_pair))

    if repeat:
        return tf.data.Dataset.counter().flat_map(one_epoch)  # epochs 0, 1, 2, ...
    epoch = tf.data.Dataset.random(seed=key, rerandomize_each_iteration=True).take(1)
    return epoch.flat_map(one_epoch).apply(
        tf.data.experimental.assert_cardinality(len(members)))


def _with_factors(images, flat):
    place = tf.constant(_PLACE, tf.int64)
    indices = (flat[:, None] // place) % tf.constant(FACTOR_SIZES, tf.int64)
    values = tf.stack([tf.gather(tf.constant(FACTOR_VALUES[k], tf.float32), indices[:, k])
                       for k in range(NUM_FACTORS)], axis=1)
    return images, {"index": flat, "factor_indices": indices, "factor_values": values}


def load(split_name: str, batch_size: int, seed: int = 0, *, stride=None,
         labels: str = "none", shuffle: Optional[bool] = None, repeat: bool = False,
         drop_remainder: Optional[bool] = None, max_examples: Optional[int] = None,
         validation_size: Optional[int] = None,
         split_seed: int = SPLIT_SEED) -> tf.data.Dataset:
    """Batches of generated images, uint8 [B, 64, 64, 1] in {0, 1}, rendered on the fly.

    Args:
      split_name: "train", "validation", "test" or "train+validation" (see ``split``).
      batch_size: images per batch (>= 1).
      seed: drives the shuffle (see the module docstring); not the split.
      stride: keep every s-th value of each factor (a smaller grid; None: all 737,280).
      labels: "none" (images only), "index" ((images, image numbers int64 [B]), what
        ``pipelines.load(..., with_labels=True)`` gives) or "factors" ((images, dict with
        "index" [B], "factor_indices" int64 [B, 5] and "factor_values" float32 [B, 5]).
      shuffle: default True for train and train+validation, else False.
      repeat: repeat forever (each epoch reshuffled).
      drop_remainder: default True for train and train+validation, else False.
      max_examples: keep the first N of the split (a uniform random N; before shuffling).
      validation_size: images in the validation split (default ``held_out_size``).
      split_seed: the seed of the split (default ``pipelines.SPLIT_SEED``).
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    max_examples = _check_int("max_examples", max_examples, 1, allow_none=True)
    if labels not in LABELS:
        raise ValueError(f"labels: expected one of {', '.join(LABELS)}, got {labels!r}")
    is_train = split_name in ("train", "train+validation")
    shuffle = is_train if shuffle is None else _check_bool("shuffle", shuffle)
    drop_remainder = (is_train if drop_remainder is None
                      else _check_bool("drop_remainder", drop_remainder))
    repeat = _check_bool("repeat", repeat)
    members = split(split_name, stride, validation_size, split_seed)
    if max_examples is not None:
        members = members[:max_examples]
    if drop_remainder and len(members) < batch_size:
        raise ValueError(f"batch_size: dsprites/{split_name} has {len(members)} examples, "
                         f"fewer than batch_size={batch_size}, so drop_remainder=True would "
                         f"yield no batch")
    dataset = _ordered(members, shuffle, repeat, seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda flat: (_rasterise_flat(flat), flat),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if labels == "none":
        dataset = dataset.map(lambda images, flat: images)
    elif labels == "factors":
        dataset = dataset.map(_with_factors)
    return dataset.prefetch(tf.data.AUTOTUNE)


def registry_pipeline(split_name, *, batch_size, seed, shuffle, repeat, drop_remainder,
                      with_labels, max_examples, validation_size) -> tf.data.Dataset:
    """What ``pipelines.load("dsprites", ...)`` runs (labels: the image numbers)."""
    return load(split_name, batch_size, seed, labels="index" if with_labels else "none",
                shuffle=shuffle, repeat=repeat, drop_remainder=drop_remainder,
                max_examples=max_examples, validation_size=validation_size)


def open_split(split_name, data_dir, validation_size):
    """The registry's per-example view: (image uint8 [64, 64, 1], image number int64), in
    the split's order, rendered per element (nothing is cached). ``pipelines.load`` does
    not use it (it calls ``registry_pipeline``); it is there for code that walks
    registry entries."""
    del data_dir  # generated: no files
    members = split(split_name, None, validation_size)
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(members, tf.int64))
    dataset = dataset.map(lambda flat: (_rasterise_flat(flat[None])[0], flat))
    return dataset, len(members)


SPLITS_TEXT = (
    "Generated: the 737,280 grid images in a fixed seeded random order "
    "(numpy default_rng(pipelines.SPLIT_SEED).permutation); test = the first 10,000, "
    "validation = the next validation_size (default 10,000), train = the rest (717,280). "
    "Each split keeps that order, so max_examples=N is a uniform random N of it."
)
SOURCE_TEXT = (
    "Procedurally generated dSprites-equivalent (pipelines/dsprites.py; nothing stored or "
    "downloaded): 64x64 binary images of a square, ellipse or heart on the dSprites factor "
    "grid, 3 shapes x 6 scales (0.5..1) x 40 orientations (0..2pi) x 32 x 32 positions "
    "(0..1), rendered in tf.data by an implicit-function test at pixel centres. Labels "
    "(with_labels) are the image numbers, row-major in the grid: "
    "pipelines.dsprites.factor_indices(labels) / factor_values(...) give the factors."
)
