"""vlae_tf.load: the public loader of a launch.train model_dir (also behind launch.common),
and launch.evaluate's time estimate."""

import ast
import json
import os
import time

import numpy as np
import pytest

import pipelines
import vlae_tf
from launch import common
from launch import evaluate as evaluate_lib
from vlae_tf import loading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = vlae_tf.VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                          encoder_hidden=16, prior="standard_normal", window=(3, 2),
                          decoder_layers=2, decoder_filters=8, decoder_residual_blocks=0,
                          z_map_channels=4, ema_momentum=None, seed=3)


def write_model_dir(path, run, weights=(loading.WEIGHTS_FILE,)):
    """A model_dir as launch.train leaves it; each weights file from a different model."""
    path.mkdir()
    (path / loading.CONFIG_FILE).write_text(json.dumps(TINY.to_dict()))
    (path / loading.RUN_FILE).write_text(json.dumps(run))
    saved = {}
    for index, name in enumerate(weights):
        model = vlae_tf.VLAE(TINY.replace(seed=index))
        model.build()
        model.save_weights(str(path / name))
        saved[name] = [w.numpy() for w in model.weights]
    return saved


def assert_same_weights(model, expected):
    assert len(model.weights) == len(expected)
    for actual, wanted in zip(model.weights, expected):
        np.testing.assert_array_equal(actual.numpy(), wanted)


def test_load_returns_the_weights_the_run_selected(tmp_path):
    run = {"select": "best_validation",
           "selection": {"select": "best_validation", "epoch": 2}}
    saved = write_model_dir(tmp_path / "run", run,
                            (loading.WEIGHTS_FILE, loading.BEST_WEIGHTS_FILE))
    model, config = vlae_tf.load(str(tmp_path / "run"))
    assert config == TINY and model.config == TINY
    assert_same_weights(model, saved[loading.BEST_WEIGHTS_FILE])
    last, _ = vlae_tf.load(str(tmp_path / "run"), select="last")
    assert_same_weights(last, saved[loading.WEIGHTS_FILE])
    # launch.common goes through the same loader.
    via_launch, run_info = common.load_trained_model(str(tmp_path / "run"))
    assert_same_weights(via_launch, saved[loading.BEST_WEIGHTS_FILE])
    assert run_info == run


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found: the model_dir must"):
        vlae_tf.load(str(tmp_path))
    write_model_dir(tmp_path / "final", {"select": "last", "train_on": "train+validation"})
    with pytest.raises(ValueError, match="select: expected one of best_validation, last"):
        vlae_tf.load(str(tmp_path / "final"), select="best")
    with pytest.raises(ValueError, match="no best-validation weights: it trained on "
                                         "train\\+validation.*select='last'"):
        vlae_tf.load(str(tmp_path / "final"), select="best_validation")
    os.remove(tmp_path / "final" / loading.WEIGHTS_FILE)
    with pytest.raises(FileNotFoundError, match="model.weights.h5 not found: training has "
                                                "not finished an epoch"):
        vlae_tf.load(str(tmp_path / "final"))
    # The command line gets the same messages as one-line LaunchErrors.
    with pytest.raises(common.LaunchError, match="training has not finished an epoch"):
        common.load_trained_model(str(tmp_path / "final"))
    with pytest.raises(common.LaunchError, match="config.json not found"):
        common.selected_weights(str(tmp_path))


def test_library_names_the_files_and_imports_neither_launch_nor_pipelines():
    assert loading.TRAIN_AND_VALIDATION == pipelines.TRAIN_AND_VALIDATION
    assert common.WEIGHTS_FILE is loading.WEIGHTS_FILE  # one description, imported
    # Every import statement of the library, read from the source (a subprocess importing
    # vlae_tf takes ~40 s on a loaded 2-core machine).
    offenders = []
    for root, _, names in os.walk(os.path.join(REPO, "vlae_tf")):
        for name in (n for n in names if n.endswith(".py")):
            path = os.path.join(root, name)
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                modules = ([alias.name for alias in node.names]
                           if isinstance(node, ast.Import) else
                           [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [(os.path.relpath(path, REPO), module) for module in modules
                              if module.split(".")[0] in ("launch", "pipelines", "bench")]
    assert offenders == []


def test_evaluate_extrapolates_the_time_from_one_timed_chunk():
    calls = []

    class Model:  # 50 ms per chunk of importance samples
        def importance_log_likelihood(self, batch, num_samples, chunk_size, seed):
            calls.append((len(batch), num_samples, chunk_size))
            time.sleep(0.05)
            return np.zeros(len(batch))

    images = np.zeros((6, 8, 8, 1), np.uint8)
    seconds = evaluate_lib.expected_seconds(Model(), images, num_samples=40, batch_size=2,
                                            chunk_size=10)
    assert calls == [(2, 10, 10)] * 2  # an untimed (tracing) call, then the timed one
    assert 0.05 * 12 <= seconds < 0.05 * 12 * 3  # 4 chunks x 3 batches
