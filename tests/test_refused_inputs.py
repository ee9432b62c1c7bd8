"""Inputs that used to give silently wrong results (issue 16) are refused with a ValueError
(LaunchError for the command lines) that names the argument."""

import json
import math
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import vlae_tf
from launch import common
from launch import evaluate as evaluate_lib
from launch import export as export_launcher
from launch import sample as sample_lib
from launch import supervise
from launch import train as train_lib
from launch.common import LaunchError
from vlae_tf import export
from vlae_tf import loading
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
    # importance_log_likelihood refused them ("expected an int >= 1; got np.int64(2)").
    images = np.zeros((1, 6, 6, 1), np.uint8)
    np.testing.assert_array_equal(
        model.importance_log_likelihood(images, np.int64(2), chunk_size=np.int32(1)),
        model.importance_log_likelihood(images, 2, chunk_size=1))
    with pytest.raises(ValueError, match=r"num_samples: expected an int >= 1; got True"):
        model.importance_log_likelihood(images, True)


# ----------------------------------------------- issue 16, item 6: one line, not a trace
@pytest.mark.parametrize("field, value, expected", [
    ("latent_size", 2.5, "an int"), ("decoder_filters", "8", "an int"),
    ("latent_size", True, "an int"), ("encoder_filters", (8, 4.5), "a tuple of ints"),
    ("kl_weight", "1", "a float"), ("use_latent", 1, "True or False"),
    ("ema_momentum", "0.9", "None or a float")])
def test_config_fields_of_the_wrong_type_are_refused_by_name(field, value, expected):
    """They reached Keras: `latent_size=2.5` built a model whose layers failed deep inside,
    `decoder_filters="8"` raised a TypeError without a field name."""
    with pytest.raises(ValueError, match=rf"^VLAEConfig\.{field}: expected {expected}; got "):
        tiny_config(**{field: value})


def test_config_fields_take_numpy_scalars_and_integral_numbers():
    config = tiny_config(latent_size=np.int64(3), encoder_filters=[np.int32(4)],
                         learning_rate=1, ema_momentum=np.float32(0.5), decoder_filters=4.0,
                         use_latent=np.bool_(True))
    assert (config.latent_size, config.encoder_filters, config.decoder_filters) == (3, (4,), 4)
    assert [type(value) for value in (config.latent_size, config.encoder_filters[0],
                                      config.decoder_filters, config.learning_rate,
                                      config.ema_momentum, config.use_latent)] == [
        int, int, int, float, float, bool]
    assert VLAEConfig.from_dict(json.loads(config.to_json())) == config  # JSON-ready


def test_evaluate_output_in_a_missing_directory_is_refused_before_the_work(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "is.json"
    with pytest.raises(LaunchError, match=rf"^--output: expected a path in an existing "
                                          rf"directory; {missing.parent} does not exist"):
        evaluate_lib.evaluate(str(tmp_path / "run"), output=str(missing))
    with pytest.raises(LaunchError, match=rf"^--output: expected a file path; {tmp_path} is "
                                          rf"a directory"):
        evaluate_lib.evaluate(str(tmp_path / "run"), output=str(tmp_path))


def test_sample_out_dir_that_is_a_file_is_refused(model, tmp_path):
    a_file = tmp_path / "samples.png"
    a_file.write_bytes(b"")
    with pytest.raises(LaunchError, match=rf"^--out_dir: expected a directory for samples.png "
                                          rf"and decompressions.png; {a_file} is a file"):
        sample_lib.sample(str(tmp_path / "run"), out_dir=str(a_file))
    with pytest.raises(LaunchError, match=r"^--out_dir: expected a directory it can write"):
        sample_lib.write_pngs(model, str(a_file / "inside"), num=1)  # a file in the way


def test_read_only_export_dir_is_one_line_before_tracing(tmp_path, monkeypatch):
    """Simulated: tests may run as root, which chmod 0o500 does not stop. os.access says
    no (a read-only mount does so for root too), or the write itself fails."""
    target = tmp_path / "exports"
    if os.geteuid() != 0:  # the real thing where it can be had
        target.mkdir()
        target.chmod(0o500)
        try:
            with pytest.raises(export.ExportDirError, match="no write permission"):
                export.check_export_dir(str(target))
        finally:
            target.chmod(0o700)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).startswith(
        str(tmp_path)) else real_access(path, mode))
    with pytest.raises(export.ExportDirError,
                       match=rf"^export_dir: expected a directory this process can write "
                             rf".*'{target}': (no write permission|read-only file system)"):
        export.check_export_dir(str(target))
    with pytest.raises(LaunchError, match=r"^--export_dir: expected a directory this process "
                                          r"can write"):  # before loading the model
        export_launcher.export(str(tmp_path / "no_run"), str(target))
    monkeypatch.undo()

    # os.access allowed it, the write did not (e.g. a server-side ACL): the same error.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(export.tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(export, "concrete_signatures", lambda *args: {})  # no tracing
    with pytest.raises(export.ExportDirError, match=rf"'{target}': Permission denied"):
        export.export_saved_model(vlae_tf.VLAE(tiny_config()), str(target))


def test_config_that_does_not_fit_its_weights_names_both_files(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    trained = vlae_tf.VLAE(tiny_config())
    trained.build()
    trained.save_weights(str(model_dir / "model.weights.h5"))
    (model_dir / "config.json").write_text(tiny_config(latent_size=3).to_json())  # edited
    config_path, weights = model_dir / "config.json", model_dir / "model.weights.h5"
    pattern = (rf"^{weights} does not fit the model of {config_path}: A total of \d+ objects "
               rf"could not be loaded.*; was {config_path} edited after training")
    with pytest.raises(loading.ConfigMismatchError, match=pattern):
        vlae_tf.load(str(model_dir))
    with pytest.raises(LaunchError, match=pattern) as error:
        common.load_trained_model(str(model_dir))
    assert "\n" not in str(error.value)


def test_missing_binary_under_supervise_is_one_line_with_status_2(tmp_path, monkeypatch,
                                                                   capsys):
    missing = str(tmp_path / "no-such-program")
    with pytest.raises(supervise.CommandError, match=rf"cannot run the command '{missing}': "
                                                     rf"No such file or directory"):
        supervise.supervise([missing, "--flag"], max_restarts=3, restart_delay=0)
    monkeypatch.setattr(supervise, "FLAGS", types.SimpleNamespace(max_restarts=3,
                                                                  restart_delay=0.0))
    with pytest.raises(SystemExit) as exit_info:
        supervise.main(["launch.supervise", "--", missing])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("launch.supervise: error: cannot run"), err


def test_negative_seed_is_refused_in_one_line(tmp_path):
    for arguments in (["--seed=-1"], ["--seed=2147483648"]):
        with pytest.raises(LaunchError, match=r"^--seed: expected an int in \[0, 2147483647\]"):
            train_lib.parse(["launch.train", "--preset=mnist_cpu", *arguments])
    for module, extra in ((evaluate_lib, []), (sample_lib, [f"--out_dir={tmp_path}"])):
        flag_values = flags.FlagValues()
        module.define_flags(flag_values)
        flag_values([module.__name__, f"--model_dir={tmp_path / 'run'}", "--seed=-1", *extra])
        with pytest.raises(LaunchError, match=r"^--seed: expected an int in \[0, 2147483647\]; "
                                              r"got -1"):
            module.main([], flag_values)
