"""pipelines.dsprites: the generated dSprites-equivalent. Grid and labels, splits, the
on-the-fly pipeline's determinism, and that each factor changes the image as documented
(centroid follows position, pixel count follows scale, the square's 90-degree symmetry,
the shapes' areas, the rotation's direction)."""

import functools
import math

import numpy as np
import pytest

import pipelines
from pipelines import dsprites

SMALL = (1, 1, 8, 8, 8)  # 3 x 6 x 5 x 4 x 4 = 1,440 images
PIXELS_PER_UNIT = dsprites.UNIT_RADIUS * dsprites.IMAGE_SIZE  # 12.8 px: the unit disc at scale 1


def _centroid(image):
    """(column, row) of the on pixels' centres, in image units (0..1)."""
    rows, columns = np.nonzero(image[..., 0])
    return (columns.mean() + 0.5) / dsprites.IMAGE_SIZE, (rows.mean() + 0.5) / dsprites.IMAGE_SIZE


def _centre(position):
    return dsprites.UNIT_RADIUS + position * (1 - 2 * dsprites.UNIT_RADIUS)


@functools.lru_cache(maxsize=None)
def _heart_area():
    """The heart's area in its unit-disc frame, by a fine grid (the renderer's own rule)."""
    grid = np.linspace(-1.0, 1.0, 1001)
    p, q = np.meshgrid(grid, grid)
    x, y = 1.25 * p, 1.25 * q + 0.25
    inside = (x * x + y * y - 1) ** 3 <= x * x * y ** 3
    return inside.mean() * 4.0


# ------------------------------------------------------------------------- grid, labels
def test_the_factor_grid_is_the_originals():
    assert dsprites.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert dsprites.NUM_IMAGES == 737_280 == dsprites.grid_size() == len(dsprites.grid())
    np.testing.assert_allclose(dsprites.FACTOR_VALUES[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(dsprites.FACTOR_VALUES[2][[0, -1]], [0.0, 2 * math.pi])
    assert len(dsprites.FACTOR_VALUES[2]) == 40
    for k in (3, 4):
        np.testing.assert_allclose(dsprites.FACTOR_VALUES[k], np.arange(32) / 31)
    # Row-major image numbers, pos_y fastest.
    assert dsprites.flat_index([[0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0],
                                [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]).tolist() == [
        1, 32, 1024, 40960, 245760]
    rng = np.random.default_rng(0)
    flat = rng.integers(0, dsprites.NUM_IMAGES, 1000)
    np.testing.assert_array_equal(dsprites.flat_index(dsprites.factor_indices(flat)), flat)
    np.testing.assert_array_equal(dsprites.grid(), np.arange(dsprites.NUM_IMAGES))
    # A strided grid keeps every s-th value of each factor, with the full grid's indices.
    assert dsprites.grid_size(SMALL) == len(dsprites.grid(SMALL)) == 1440
    kept = dsprites.factor_indices(dsprites.grid(SMALL))
    assert sorted(set(kept[:, 2])) == [0, 8, 16, 24, 32]
    assert dsprites.grid_factor_sizes(SMALL) == (3, 6, 5, 4, 4)
    values = dsprites.factor_values([[2, 5, 39, 31, 0]])
    np.testing.assert_allclose(values, [[3.0, 1.0, 2 * math.pi, 1.0, 0.0]])


def test_splits_are_disjoint_fixed_and_cover_the_grid():
    sizes = {name: len(dsprites.split(name)) for name in dsprites.SPLIT_NAMES}
    assert sizes == {"train": 717_280, "validation": 10_000, "test": 10_000,
                     "train+validation": 727_280}
    parts = [dsprites.split(name, SMALL) for name in ("train", "validation", "test")]
    assert [len(part) for part in parts] == [1152, 144, 144]
    union = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(union), dsprites.grid(SMALL))  # disjoint, complete
    # A pure function of split_seed; validation_size moves images between validation and
    # train only.
    np.testing.assert_array_equal(dsprites.split("test", SMALL), parts[2])
    assert not np.array_equal(dsprites.split("test", SMALL, split_seed=1), parts[2])
    np.testing.assert_array_equal(dsprites.split("test", SMALL, validation_size=10), parts[2])
    assert len(dsprites.split("train", SMALL, validation_size=10)) == 1286
    # In the split's random order: not the grid's order.
    assert not np.all(np.diff(parts[0]) > 0)


def test_registered_and_loaded_like_the_other_datasets():
    info = pipelines.info("dsprites")
    assert (info.image_shape, info.max_value, info.binarization) == ((64, 64, 1), 1, "static")
    assert "737,280" in info.source + info.splits
    images, labels = next(iter(pipelines.load("dsprites", "train", 16, with_labels=True)))
    assert images.shape == (16, 64, 64, 1) and images.dtype.name == "uint8"
    assert set(np.unique(images.numpy())) <= {0, 1}
    assert labels.dtype.name == "int64"
    assert np.isin(labels.numpy(), dsprites.split("train")).all()
    # Every image has a shape in it, fully inside the frame (no pixel on the border).
    counts = images.numpy().sum(axis=(1, 2, 3))
    assert (counts > 50).all()
    border = images.numpy()[:, [0, -1], :, :].sum() + images.numpy()[:, :, [0, -1], :].sum()
    assert border == 0
    # The test split unshuffled, in its order.
    test = next(iter(pipelines.load("dsprites", "test", 5, with_labels=True)))[1].numpy()
    np.testing.assert_array_equal(test, dsprites.split("test")[:5])


def test_an_image_depends_only_on_its_factors():
    """Same image rendered alone, in a batch, by index or by value, in tf.data or not."""
    batch = next(iter(dsprites.load("train", 64, stride=SMALL, labels="factors")))
    images, factors = batch[0].numpy(), {key: value.numpy() for key, value in batch[1].items()}
    np.testing.assert_array_equal(dsprites.render_flat(factors["index"]), images)
    np.testing.assert_array_equal(dsprites.render_indices(factors["factor_indices"]), images)
    alone = np.concatenate([dsprites.render_flat(factors["index"][i:i + 1]) for i in (0, 7, 63)])
    np.testing.assert_array_equal(alone, images[[0, 7, 63]])
    values = dsprites.factor_values(factors["factor_indices"])
    by_value = dsprites.render(values[:, 0].astype(int) - 1, *values[:, 1:].T)
    np.testing.assert_array_equal(by_value, images)
    # Factor labels are the grid's.
    np.testing.assert_array_equal(dsprites.flat_index(factors["factor_indices"]),
                                  factors["index"])
    np.testing.assert_allclose(factors["factor_values"], values, rtol=1e-6)


def test_shuffling_is_a_pure_function_of_the_seed_and_reshuffles_each_epoch():
    def stream(seed, count):
        dataset = dsprites.load("train", 96, seed, stride=SMALL, labels="index", repeat=True)
        return np.concatenate([labels.numpy() for _, labels in dataset.take(count)])

    first = stream(0, 24)  # 24 x 96 = 2 epochs of the 1,152 train images
    np.testing.assert_array_equal(first, stream(0, 24))
    assert not np.array_equal(first[:96], stream(1, 1))
    train = np.sort(dsprites.split("train", SMALL))
    epoch_1, epoch_2 = first[:1152], first[1152:]
    np.testing.assert_array_equal(np.sort(epoch_1), train)  # each epoch: every image once
    np.testing.assert_array_equal(np.sort(epoch_2), train)
    assert not np.array_equal(epoch_1, epoch_2)
    # One pass (repeat=False): a known number of batches, drop_remainder for train.
    one_pass = dsprites.load("train", 100, stride=SMALL)
    assert int(one_pass.cardinality()) == 11


# ------------------------------------------------------------ each factor, as documented
def test_position_moves_the_centroid():
    positions = dsprites.FACTOR_VALUES[3][[0, 10, 20, 31]]
    for shape in (0, 1):  # point-symmetric shapes: the centroid is the centre
        along_x = dsprites.render(shape, 0.8, 0.3, positions, 0.5)
        along_y = dsprites.render(shape, 0.8, 0.3, 0.5, positions)
        columns = [_centroid(image)[0] for image in along_x]
        rows = [_centroid(image)[1] for image in along_y]
        np.testing.assert_allclose(columns, _centre(positions), atol=0.5 / 64)
        np.testing.assert_allclose(rows, _centre(positions), atol=0.5 / 64)
    heart = [_centroid(image)[0] for image in dsprites.render(2, 1.0, 0.0, positions, 0.5)]
    assert np.all(np.diff(heart) > 0)  # right with pos_x


def test_scale_grows_the_pixel_count_as_its_square_and_shapes_differ_in_area():
    areas = {0: 2.0, 1: math.pi / 2, 2: _heart_area()}
    scales = dsprites.FACTOR_VALUES[1]
    counts = {}
    for shape, area in areas.items():
        count = dsprites.render(shape, scales, 0.2, 0.5, 0.5).sum(axis=(1, 2, 3))
        assert np.all(np.diff(count) > 0)
        np.testing.assert_allclose(count, area * (scales * PIXELS_PER_UNIT) ** 2, rtol=0.08)
        counts[shape] = count[-1]
    # At equal scale: ellipse < square < heart, each by more than 10%.
    assert counts[1] * 1.1 < counts[0] and counts[0] * 1.1 < counts[2]


def test_orientation_turns_the_shape_counter_clockwise():
    rng = np.random.default_rng(1)
    for _ in range(5):  # the square has a 90-degree symmetry: same image up to rounding
        scale, theta, x, y = rng.uniform(0.5, 1), rng.uniform(0, 2 * np.pi), *rng.uniform(0, 1, 2)
        square, turned = dsprites.render([0, 0], scale, [theta, theta + np.pi / 2], x, y)
        assert np.sum(square != turned) <= 2
    # The ellipse's long axis is horizontal at 0, vertical at pi/2, and at pi/4 it rises to
    # the right on the screen (rows grow downwards: negative column-row covariance).
    flat, upright, diagonal = dsprites.render(1, 1.0, [0.0, np.pi / 2, np.pi / 4], 0.5, 0.5)
    rows, columns = np.nonzero(flat[..., 0])
    assert np.ptp(columns) > 1.8 * np.ptp(rows)
    rows, columns = np.nonzero(upright[..., 0])
    assert np.ptp(rows) > 1.8 * np.ptp(columns)
    rows, columns = np.nonzero(diagonal[..., 0])
    assert np.cov(columns, rows)[0, 1] < -10
    # The heart points down at 0 (narrow bottom rows); at pi (centred, where the pixel grid
    # is symmetric) it is the image turned upside down.
    heart, flipped = dsprites.render(2, 1.0, [0.0, np.pi], 0.5, 0.5)
    rows = np.nonzero(heart[..., 0].any(axis=1))[0]
    width = heart[..., 0].sum(axis=1)
    assert width[rows[-3:]].sum() < width[rows[:3]].sum() / 2 + 20
    assert width[rows[-1]] < width[rows[len(rows) // 3]] / 4
    assert np.sum(np.flip(heart, axis=(0, 1)) != flipped) <= 2
    # Orientation indices 0 and 39 (0 and 2 pi) draw the same image, as in the original.
    a, b = dsprites.render_indices([[2, 3, 0, 5, 7], [2, 3, 39, 5, 7]])
    np.testing.assert_array_equal(a, b)


def test_labels_match_the_rendered_factors():
    """For every image of a batch: the centroid is at the labelled position and the pixel
    count is the labelled shape's area at the labelled scale."""
    areas = {1.0: 2.0, 2.0: math.pi / 2, 3.0: _heart_area()}
    images, factors = next(iter(dsprites.load("test", 48, stride=SMALL, labels="factors")))
    images, values = images.numpy(), factors["factor_values"].numpy()
    for image, (shape, scale, _, x, y) in zip(images, values):
        column, row = _centroid(image)
        assert abs(column - _centre(x)) < 1.0 / 64 and abs(row - _centre(y)) < 1.0 / 64
        expected = areas[float(shape)] * (scale * PIXELS_PER_UNIT) ** 2
        assert abs(image.sum() - expected) < 0.1 * expected


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="stride"):
        dsprites.grid((1, 2))
    with pytest.raises(ValueError, match=r"column 2 \(orientation\)"):
        dsprites.flat_index([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match="validation_size"):
        dsprites.split("train", SMALL, validation_size=2000)
    with pytest.raises(ValueError, match="validation_size"):
        pipelines.load("dsprites", "validation", 8, validation_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        dsprites.load("train", 2000, stride=SMALL)
    with pytest.raises(ValueError, match="labels"):
        dsprites.load("train", 8, labels="values")
    with pytest.raises(ValueError, match="shape"):
        dsprites.render(3, 1.0, 0.0, 0.5, 0.5)
