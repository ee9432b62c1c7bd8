"""Damaged state in a model_dir (issue 16, item 3): a torn last line of metrics.jsonl, a
garbage checkpoints/latest.json, a truncated checkpoint, a truncated or garbage
model.weights.h5 / best.weights.h5, and NaN in metrics.jsonl.

One tiny in-process launch.train run (2 epochs of 1 step, two checkpoints) is shared; each
test damages a copy of it. Its `fit` only advances the step counter and drives
launch.train's callback through the epoch ends, so every file is written by the real code
(checkpoints, weight files, metrics lines, the best-epoch selection) but no training step
is traced (that cost most of a minute here). The resumed runs train nothing (the run is
complete, or asked for fewer epochs than its checkpoint holds).
"""

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest
from absl import flags

import vlae_tf
from launch import common
from launch import evaluate as evaluate_lib
from launch import export as export_lib
from launch import sample as sample_lib
from launch import train as train_lib
from launch.common import LaunchError
from tests.test_launch import h5_values, tiny_config
from vlae_tf import loading

CKPT_1, CKPT_2 = "ckpt-000000001", "ckpt-000000002"


def options(model_dir, **changes):
    values = dict(dataset="mnist5k_binary", model_dir=str(model_dir), batch_size=16,
                  epochs=2, max_train_examples=16, log_every=1, eval_max_images=4,
                  eval_num_images=0, validation_max_images=4, diagnostics_images=0,
                  verbose="0")
    values.update(changes)
    return train_lib.TrainOptions(**values)


LOGS = {"loss": 540.0, "elbo_nats": -540.0, "recon_nats": 539.0, "kl_nats": 1.0,
        "bits_per_dim": 0.99}


def epochs_without_training(self, data, epochs=1, initial_epoch=0, steps_per_epoch=1,
                            callbacks=(), **_):
    """VLAE.fit for the fixture: the optimizer (slots, EMA) is built, each "step" advances
    its counter and moves the raw weights away from their (untouched) Polyak averages, and
    the callbacks see each batch and epoch end as in `fit`."""
    self.optimizer.build(self.trainable_variables)
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=self)
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch):
            self.optimizer.iterations.assign_add(1)
            for variable in self.trainable_variables:
                variable.assign_add(keras.ops.full(variable.shape, 0.01, variable.dtype))
            callback_list.on_train_batch_end(batch, dict(LOGS))
        callback_list.on_epoch_end(epoch, dict(LOGS))
    return keras.callbacks.History()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-epoch run (1 step each): ckpt-1, ckpt-2, best.weights.h5 and
    model.weights.h5, metrics.jsonl, run.json, eval.json."""
    model_dir = tmp_path_factory.mktemp("damaged") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vlae_tf.VLAE, "fit", epochs_without_training)
        train_lib.train(tiny_config(), options(model_dir), log=lambda _: None)
    assert sorted(os.listdir(model_dir / "checkpoints")) == [CKPT_1, CKPT_2, "latest.json"]
    assert {common.WEIGHTS_FILE, common.BEST_WEIGHTS_FILE, common.METRICS_FILE,
            common.EVAL_FILE} <= set(os.listdir(model_dir))
    return model_dir


@pytest.fixture
def copy(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def truncate(path, size=1000):
    with open(path, "rb") as handle:
        data = handle.read(size)
    with open(path, "wb") as handle:
        handle.write(data)


def resume(model_dir, **changes):
    messages = []
    result = train_lib.train(tiny_config(), options(model_dir, **changes),
                             log=messages.append)
    return result, messages


# ----------------------------------------------------------------------- metrics.jsonl
def test_torn_last_metrics_line_is_dropped_with_one_line(copy):
    """A crash while appending left half a line: every later resume failed in
    _truncate_metrics. Now the torn line is dropped, said once, and the run continues
    (here together with a garbage latest.json: the newest complete checkpoint is used)."""
    metrics = copy / common.METRICS_FILE
    intact = metrics.read_text()
    metrics.write_text(intact + '{"kind": "step", "loss": 54')  # no newline: torn
    (copy / "checkpoints" / "latest.json").write_text("\x00\x17garbage{")
    result, messages = resume(copy)
    torn = [message for message in messages if message.startswith("Dropped")]
    assert len(torn) == 1, messages
    assert torn[0].startswith(f"Dropped its last line of {metrics}, torn by an interrupted "
                              f"write (not JSON: ") and '"loss": 54' in torn[0]
    assert metrics.read_text() == intact  # every complete line kept, valid JSON
    fallback = [message for message in messages if "newest usable checkpoint" in message]
    assert len(fallback) == 1 and CKPT_2 in fallback[0] and "latest.json" in fallback[0]
    assert result["step"] == 2
    assert any("already trained 2 epochs" in message for message in messages)


def test_metrics_lines_stay_strict_json_with_nan_and_infinity(tmp_path):
    path = tmp_path / common.METRICS_FILE
    train_lib._append_jsonl(str(path), {"kind": "step", "step": 1, "loss": math.nan,
                                        "kl_nats": np.float32("inf"), "recon_nats": -math.inf,
                                        "elbo_nats": -80.5, "nested": [math.nan, 1.0]})

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    line = json.loads(path.read_text(), parse_constant=refuse)
    assert line == {"kind": "step", "step": 1, "loss": None, "kl_nats": None,
                    "recon_nats": None, "elbo_nats": -80.5, "nested": [None, 1.0]}


# ------------------------------------------------------------------------- checkpoints
def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(copy, run):
    truncate(copy / "checkpoints" / CKPT_2 / train_lib.Checkpoints.WEIGHTS)
    result, messages = resume(copy, epochs=1)  # from ckpt-1, nothing left to train
    fallback = [message for message in messages if "newest usable checkpoint" in message]
    assert len(fallback) == 1, messages
    assert fallback[0].startswith(f"Resuming from {CKPT_1} (step 1)")
    assert f"{CKPT_2}/train_state.weights.h5 is damaged" in fallback[0]
    assert (result["epochs"], result["step"]) == (1, 1)
    # The metrics of the dropped epoch are gone with it; what is left parses.
    lines = [json.loads(line) for line in (copy / common.METRICS_FILE).read_text().splitlines()]
    assert lines and max(line["step"] for line in lines) == 1


def test_no_usable_checkpoint_is_one_line_naming_the_files(copy):
    (copy / "checkpoints" / "latest.json").write_text('{"name": "../../etc"}')
    truncate(copy / "checkpoints" / CKPT_2 / train_lib.Checkpoints.WEIGHTS)
    (copy / "checkpoints" / CKPT_1 / train_lib.Checkpoints.WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(LaunchError) as error:
        resume(copy)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("no usable checkpoint to resume from in")
    for part in ("latest.json: expected \"name\" of the form ckpt-<9 digits>",
                 f"{CKPT_2}/train_state.weights.h5 is damaged",
                 f"{CKPT_1}/train_state.weights.h5 is damaged", "restart training from scratch"):
        assert part in message, (part, message)


def test_damaged_model_weights_of_a_finished_run_are_written_again(copy, run):
    (copy / common.WEIGHTS_FILE).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    result, messages = resume(copy)
    rewritten = [message for message in messages if "writing it again" in message]
    assert len(rewritten) == 1 and "model.weights.h5 is damaged" in rewritten[0], messages
    assert result["step"] == 2
    expected, got = h5_values(run / common.WEIGHTS_FILE), h5_values(copy / common.WEIGHTS_FILE)
    assert expected.keys() == got.keys()
    for key in expected:  # the checkpoint's Polyak averages are what the file held
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    raw = h5_values(copy / "checkpoints" / CKPT_2 / train_lib.Checkpoints.WEIGHTS)
    assert any(not np.array_equal(raw[key], expected[key]) for key in expected
               if key in raw and "optimizer" not in key)  # not the raw weights


# ------------------------------------------- evaluate / sample / export / vlae_tf.load
def one_line_error(capsys, module, *arguments):
    """`python -m launch.<module> arguments` in-process: exit status 2 and one line."""
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    flag_values([module.__name__, *arguments])
    with pytest.raises(SystemExit) as exit_info:
        common.run_main(lambda argv: module.main(argv, flag_values),
                        module.__name__)([module.__name__])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_damaged_weights_are_named_in_one_line(copy, tmp_path, capsys):
    truncate(copy / common.BEST_WEIGHTS_FILE)
    (copy / common.WEIGHTS_FILE).write_bytes(b"not an HDF5 file at all" * 10)
    best, last = str(copy / common.BEST_WEIGHTS_FILE), str(copy / common.WEIGHTS_FILE)

    with pytest.raises(loading.DamagedFileError) as error:  # the run selects best
        vlae_tf.load(str(copy))
    assert str(error.value).startswith(f"{best} is damaged: not a readable Keras weights "
                                       f"file (") and "truncated" in str(error.value)
    assert "--select=last" in str(error.value)
    with pytest.raises(ValueError, match=rf"^{last} is damaged: .*signature not found.*"
                                         rf"re-running the launch.train command"):
        vlae_tf.load(str(copy), select="last")

    line = one_line_error(capsys, evaluate_lib, f"--model_dir={copy}", "--max_images=2",
                          "--num_importance_samples=2")
    assert line.startswith(f"launch.evaluate: error: {best} is damaged"), line
    line = one_line_error(capsys, evaluate_lib, f"--model_dir={copy}", "--select=last")
    assert line.startswith(f"launch.evaluate: error: {last} is damaged"), line
    line = one_line_error(capsys, sample_lib, f"--model_dir={copy}",
                          f"--out_dir={tmp_path / 'pngs'}")
    assert line.startswith(f"launch.sample: error: {best} is damaged"), line
    line = one_line_error(capsys, export_lib, f"--model_dir={copy}",
                          f"--export_dir={tmp_path / 'exports'}")
    assert line.startswith(f"launch.export: error: {best} is damaged"), line
    line = one_line_error(capsys, export_lib, f"--weights={last}",
                          f"--config_json={copy / common.CONFIG_FILE}",
                          f"--export_dir={tmp_path / 'exports'}")
    assert line.startswith(f"launch.export: error: {last} is damaged"), line
    assert not (tmp_path / "exports").exists() and not (tmp_path / "pngs").exists()


def test_damaged_json_files_are_named_in_one_line(copy, tmp_path):
    (copy / common.RUN_FILE).write_text('{"select": "best_valid')
    with pytest.raises(LaunchError, match=rf"^{copy / common.RUN_FILE} is damaged: expected "
                                          rf"the run's record as JSON; "):
        common.load_trained_model(str(copy))
    (copy / common.CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(loading.DamagedFileError,
                       match=rf"^{copy / common.CONFIG_FILE} is damaged: expected a "
                             rf"VLAEConfig as a JSON object; got list"):
        loading.read_config(str(copy))
    with pytest.raises(LaunchError, match=rf"^{copy / common.CONFIG_FILE} is damaged"):
        resume(copy)
