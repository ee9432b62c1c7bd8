"""pipelines.eval_images / showcase_images / showcase_order: the fixed subsets every entry
point evaluates and draws (on the 500 real mnist5k test digits, which are sorted by class)."""

import numpy as np
import pytest

import pipelines


def test_showcase_order_takes_one_image_per_class_in_turn():
    labels = np.array([0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(pipelines.showcase_order(labels, 5), [0, 3, 5, 1, 4])
    np.testing.assert_array_equal(pipelines.showcase_order(-np.ones(4, int), 3), [0, 1, 2])
    with pytest.raises(ValueError, match="count: expected an integer >= 0"):
        pipelines.showcase_order(labels, -1)


def test_evaluation_subsets_are_nested_and_mix_the_classes():
    small = pipelines.eval_images("mnist5k_binary", "test", 20)
    large, large_labels = pipelines.eval_images("mnist5k_binary", "test", 60, with_labels=True)
    np.testing.assert_array_equal(small, large[:20])
    everything, labels = pipelines.load_arrays("mnist5k_binary", "test")
    assert len(pipelines.eval_images("mnist5k_binary", "test", None)) == len(everything) == 500
    # The order is SPLIT_SEED's permutation of the file (what eval.json files record).
    order = np.random.default_rng(pipelines.SPLIT_SEED).permutation(500)[:60]
    np.testing.assert_array_equal(large, everything[order])
    np.testing.assert_array_equal(large_labels, labels[order])
    assert (labels[:20] == labels[0]).all()  # the file starts with one class...
    assert len(set(large_labels[:20].tolist())) >= 5  # ...the evaluation subset does not
    with pytest.raises(ValueError, match="max_images: expected None or an integer >= 0"):
        pipelines.eval_images("mnist5k_binary", "test", -3)


def test_showcase_images_show_every_class_in_turn():
    everything, labels = pipelines.load_arrays("mnist5k_binary", "test")
    shown = pipelines.showcase_images("mnist5k_binary", "test", 12)
    np.testing.assert_array_equal(shown, everything[pipelines.showcase_order(labels, 12)])
    shown_labels = labels[pipelines.showcase_order(labels, 12)]
    np.testing.assert_array_equal(shown_labels, list(range(10)) + [0, 1])


def test_evaluation_images_do_not_depend_on_the_global_seed():
    # launch.train sets TF's global seed and launch.evaluate does not: the dynamically
    # binarized evaluation images must be the same pixels either way (issue 16, item 7).
    import tensorflow as tf
    draws = []
    for global_seed in (1, 2):
        tf.random.set_seed(global_seed)
        draws.append(pipelines.eval_images("mnist5k_binary", "test", 50, seed=3))
    tf.random.set_seed(0)
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], pipelines.eval_images("mnist5k_binary", "test", 50,
                                                              seed=4))
    # Still a Bernoulli(grey / 255) draw of the same digits.
    grey = pipelines.eval_images("mnist5k", "test", 50)
    assert set(np.unique(draws[0])) == {0, 1}
    assert not np.any(draws[0][grey == 0]) and np.all(draws[0][grey == 255])
    np.testing.assert_allclose(draws[0].mean(), grey.mean() / 255.0, atol=0.01)
