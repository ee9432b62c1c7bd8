"""Inputs that used to give silently wrong results (issue 16) are refused with a ValueError
(LaunchError for the command lines) that names the argument."""

import math

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from launch import train as train_lib
from launch.common import LaunchError
from vlae_tf import sampling
from vlae_tf import window as window_lib
from vlae_tf.config import VLAEConfig
from vlae_tf.inputs import make_seed


def tiny_config(**changes):
    base = VLAEConfig(image_shape=(6, 6, 1), latent_size=2, encoder_filters=(4,),
                      encoder_hidden=8, prior="standard_normal", window=(3, 2),
                      decoder_layers=1, decoder_filters=4, decoder_residual_blocks=0,
                      z_map_channels=2, ema_momentum=None, free_bits_mode="none")
    return base.replace(**changes)


@pytest.fixture(scope="module")
def model():
    return vlae_tf.VLAE(tiny_config())


@pytest.mark.parametrize("temperature", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_non_finite_temperature_is_refused(model, temperature):
    images = np.zeros((2, 6, 6, 1), np.uint8)
    with pytest.raises(ValueError, match=r"temperature: expected a finite float > 0; got"):
        model.sample(2, seed=0, temperature=temperature)
    with pytest.raises(ValueError, match=r"temperature: expected a finite float > 0; got"):
        model.decompress(images, seed=0, temperature=temperature)


def test_numpy_float_temperature_still_works():
    assert sampling._check_temperature(np.float32(0.5)) == 0.5
    assert sampling._check_temperature(2) == 2.0


@pytest.mark.parametrize("field, value", [("learning_rate", math.inf),
                                          ("learning_rate", math.nan),
                                          ("free_bits", math.inf), ("free_bits", math.nan),
                                          ("seed", 2 ** 31), ("seed", -2 ** 31 - 1)])
def test_config_refuses_non_finite_rates_and_wide_seeds(field, value):
    with pytest.raises(ValueError, match=rf"VLAEConfig\.{field}: expected .*; got"):
        tiny_config(**{field: value})


def test_config_keeps_int32_seeds():
    assert tiny_config(seed=2 ** 31 - 1).seed == 2 ** 31 - 1
    assert tiny_config(seed=-2 ** 31).seed == -2 ** 31


@pytest.mark.parametrize("window", [(5.7, 3), (5, 2.5), (math.inf, 3), (True, 2)])
def test_non_integer_window_is_refused(window):
    with pytest.raises(ValueError, match=r"window: expected a pair of ints"):
        window_lib.validate_window(window)
    with pytest.raises(ValueError, match=r"window: expected a pair of ints"):
        tiny_config(window=window)


def test_integral_windows_still_accepted():
    assert window_lib.validate_window((5.0, 3)) == (5, 3)  # e.g. from JSON
    assert window_lib.validate_window((np.int64(5), np.int32(3))) == (5, 3)
    assert window_lib.validate_window("7x4") == (7, 4)


@pytest.mark.parametrize("seed", [2 ** 31, -2 ** 31 - 1, 10 ** 12, np.int64(2 ** 40)])
def test_seed_that_does_not_fit_int32_is_refused(model, seed):
    with pytest.raises(ValueError, match=r"seed: expected an int in \[-2147483648, "
                                         r"2147483647\]"):
        make_seed(seed)
    with pytest.raises(ValueError, match=r"seed: expected an int in"):
        model.sample(1, seed=seed)


def test_int32_seeds_keep_their_streams():
    # Unchanged mapping for every seed that fits (old runs keep their numbers).
    np.testing.assert_array_equal(make_seed(5), [5, 0x5EED])
    np.testing.assert_array_equal(make_seed(np.int64(2 ** 31 - 2)), [2 ** 31 - 2, 0x5EED])
    np.testing.assert_array_equal(make_seed(-1), [2 ** 31 - 2, 0x5EED])


def test_fit_on_empty_data_is_refused():
    model = vlae_tf.VLAE(tiny_config())
    model.compile()
    empty = np.zeros((0, 6, 6, 1), np.uint8)
    with pytest.raises(ValueError, match=r"x: expected training data with at least one"):
        model.fit(empty, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x: expected training data with at least one"):
        model.fit(tf.data.Dataset.from_tensor_slices(empty).batch(2), verbose=0)
    # Unknown cardinality: found out after the epochs ran no step.
    filtered = tf.data.Dataset.from_tensor_slices(np.zeros((4, 6, 6, 1), np.uint8)) \
        .filter(lambda image: False).batch(2)
    with pytest.raises(ValueError, match=r"gave no batch in 2 epoch\(s\)"):
        model.fit(filtered, epochs=2, verbose=0)
    # Nothing left to train (resume at the last epoch) is not an error.
    history = model.fit(np.zeros((2, 6, 6, 1), np.uint8), epochs=1, initial_epoch=1,
                        verbose=0)
    assert history.history == {}


def test_empty_model_dir_flag_is_refused():
    with pytest.raises(LaunchError, match=r"--model_dir: expected a directory path .*got ''"):
        train_lib.parse(["launch.train", "--preset=mnist_cpu", "--model_dir="])
    _, options = train_lib.parse(["launch.train", "--preset=mnist_cpu"])
    assert options.model_dir.endswith("mnist_cpu")


def test_empty_batches_are_refused_in_one_line(model):
    empty = np.zeros((0, 6, 6, 1), np.uint8)
    for call in (model.elbo, model.encode, lambda x: model.decompress(x, seed=0),
                 lambda x: model.importance_log_likelihood(x, 2)):
        with pytest.raises(ValueError, match=r"images: expected at least one image"):
            call(empty)


def test_numpy_integer_counts_just_work(model):
    np.testing.assert_array_equal(model.sample(np.int64(2), seed=0), model.sample(2, seed=0))
