"""Pictures of a VLAE: image grids, decompression rows, PNG files.

    samples, rows = vlae_tf.images.samples_and_decompressions(model, test_images[:8],
                                                             num_samples=64, per_image=7)
    vlae_tf.images.write_png("samples.png", vlae_tf.images.image_grid(samples, 8, max_value=1))
    vlae_tf.images.write_png("decompressions.png", vlae_tf.images.image_grid(rows, 8, 1))

* `image_grid(images, columns, max_value)`: a batch -> one uint8 picture with borders.
* `decompression_rows(originals, decompressions, per_image)`: each original followed by
  its decompressions (the paper's Figure 1 layout: one row per image with `columns` =
  1 + per_image).
* `samples_and_decompressions(model, originals, ...)`: prior samples and decompression
  rows in one call, with the fastest sampler.
* `write_png(path, image)`: a uint8 [H, W, C] picture as a PNG, written atomically.
* `resolve_sample_method(method)`: "auto" -> the fastest sampler (all draw the same images).

Picking which test images to show (one per class in turn) needs labels from a dataset:
`pipelines.showcase_order` / `pipelines.showcase_images`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from vlae_tf import files, sampling

AUTO = "auto"
PNG_CHANNELS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA: what tf.io.encode_png takes


def resolve_sample_method(method: str = AUTO) -> str:
    """"auto" -> the fastest sampler of `vlae_tf.sampling` ("cached"); a valid name passes
    through. The samplers draw identical images for the same seed, so "auto" only changes
    the speed."""
    methods = tuple(sampling.METHODS)
    if method == AUTO:
        return "cached" if "cached" in methods else methods[0]
    if method not in methods:
        raise ValueError(f"method: expected one of {AUTO}, {', '.join(methods)}; "
                         f"got {method!r}")
    return method


def image_grid(images, columns: int, max_value: int = 255, pad: int = 2,
               zoom: int = 1, pad_value: int = 128) -> np.ndarray:
    """Images [N, H, W, C] (values 0..max_value) -> one uint8 picture [rows*(H'+pad)+pad,
    columns*(W'+pad)+pad, C] in 0..255, filled row by row; H' = H·zoom, W' = W·zoom.

    Values are scaled by 255 / max_value (binary images become 0/255); `zoom` repeats
    pixels; borders and empty cells are `pad_value`. `columns` is capped at N.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images: expected a non-empty batch [N, H, W, C]; got shape "
                         f"{images.shape}")
    for name, value, lowest in (("columns", columns, 1), ("zoom", zoom, 1), ("pad", pad, 0),
                                ("max_value", max_value, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ValueError(f"{name}: expected an int >= {lowest}; got {value!r}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value: expected a grey level in [0, 255]; got {pad_value!r}")
    images = images.astype(np.float32) * (255.0 / max_value)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    if zoom > 1:
        images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
    count, height, width, channels = images.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels),
                   pad_value, np.uint8)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def write_png(path: str, image) -> str:
    """Writes a uint8 [H, W, C] picture (C = 1, 2, 3 or 4) as a PNG; returns `path`.

    Atomic: the file is written next to `path` and renamed over it, so a reader never
    sees half a PNG (e.g. TensorBoard or a browser reloading while training writes).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in PNG_CHANNELS:
        raise ValueError(f"image: expected [H, W, C] with C in {PNG_CHANNELS}; got shape "
                         f"{image.shape} (image_grid turns a batch into one picture)")
    if image.dtype != np.uint8:
        raise ValueError(f"image: expected dtype uint8 (0..255); got {image.dtype} "
                         f"(image_grid scales 0..max_value images to uint8)")
    data = tf.io.encode_png(tf.constant(image)).numpy()
    # (vlae_tf.files: the temporary is removed on failure; a full disk is a DiskFullError)
    return files.write_bytes_atomic(path, data)


def decompression_rows(originals, decompressions, per_image: int) -> np.ndarray:
    """Originals [n, ...] and their decompressions [n*per_image, ...] (image-major: all of
    image 0's, then image 1's, ...) -> [n*(1 + per_image), ...]: original 0, its
    decompressions, original 1, ... — rows of an `image_grid` with 1 + per_image columns."""
    originals, decompressions = np.asarray(originals), np.asarray(decompressions)
    if isinstance(per_image, bool) or not isinstance(per_image, (int, np.integer)) \
            or per_image < 1:
        raise ValueError(f"per_image: expected an int >= 1; got {per_image!r}")
    if len(decompressions) != len(originals) * per_image:
        raise ValueError(f"decompressions: expected {len(originals)} originals x "
                         f"{per_image} = {len(originals) * per_image} images; got "
                         f"{len(decompressions)}")
    rows = []
    for index in range(len(originals)):
        rows.append(originals[index:index + 1])
        rows.append(decompressions[index * per_image:(index + 1) * per_image])
    return np.concatenate(rows)


def samples_and_decompressions(model, originals, num_samples: int, per_image: int,
                               seed: int = 0, temperature: float = 1.0,
                               method: str = AUTO):
    """(prior samples uint8 [num_samples, H, W, C], decompression rows uint8
    [n*(1+per_image), H, W, C] or None) of a model.

    Samples use `seed`, decompressions `seed + 1`. Each original is repeated per_image
    times in one batch, so every copy gets its own z ~ q(z|x) and its own pixel noise.
    Rows are None when there are no originals or the model has no latent code.
    """
    method = resolve_sample_method(method)
    samples = model.sample(int(num_samples), seed=int(seed), temperature=float(temperature),
                           method=method).numpy()
    rows = None
    if model.config.use_latent and originals is not None and len(originals):
        originals = np.asarray(originals)
        repeated = np.repeat(originals, per_image, axis=0)
        lossy = model.decompress(repeated, seed=int(seed) + 1, temperature=float(temperature),
                                 method=method).numpy()
        rows = decompression_rows(originals, lossy, per_image)
    return samples, rows
