"""A full disk (issue 21): every atomic write removes its temporary on failure, ENOSPC ends a
run with one line naming the path and the space needed, the last committed checkpoint stays
intact and the same command resumes; temporaries of killed writers are swept at start.

ENOSPC is injected (an OSError from the write) rather than produced on a small tmpfs, which
needs root to mount.
"""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vlae_tf
from launch import common
from launch import train as train_lib
from launch.common import LaunchError
from vlae_tf import files, images

TINY = dict(latent_size=4, encoder_filters=(8,), encoder_hidden=16, prior_steps=1,
            prior_hidden=(16,), decoder_layers=2, decoder_filters=8,
            decoder_residual_blocks=0, z_map_channels=4, ema_momentum=0.9)
# h5py's wording when HDF5's write() fails with ENOSPC (no errno attribute is set).
H5PY_ENOSPC = ("Can't synchronously write data (file write failed: time = ..., errno = 28, "
               "error message = 'No space left on device')")


def leftovers(directory):
    """Everything that looks like the temporary of an atomic write or a checkpoint save."""
    found = []
    for root, dirs, names in os.walk(directory):
        found += [os.path.join(root, name) for name in names + dirs
                  if ".tmp" in name]
    return found


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def one_line_error(capsys, error):
    """What `common.run_main` prints for `error` raised by a launcher's main."""
    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        common.run_main(main, "launch.train")(["launch.train"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture
def enospc_on_write(monkeypatch):
    """Makes os.fsync of files whose name contains `marker` fail with ENOSPC (after the
    data is written: the temporary exists, as on a disk that fills up)."""
    def install(marker):
        real_fsync = os.fsync

        def fsync(descriptor):
            if marker in os.readlink(f"/proc/self/fd/{descriptor}"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)
    return install


# ------------------------------------------------------------------------- atomic writes
def test_json_and_png_writes_remove_their_temporary_on_enospc(tmp_path, enospc_on_write,
                                                               capsys):
    config = tmp_path / "config.json"
    common.write_json_atomic(str(config), {"a": 1})
    enospc_on_write(".tmp")
    with pytest.raises(files.DiskFullError) as error:
        common.write_json_atomic(str(config), {"a": 2})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(config)
    assert json.loads(config.read_text()) == {"a": 1}  # the committed file is untouched
    png = tmp_path / "samples.png"
    with pytest.raises(files.DiskFullError):
        images.write_png(str(png), np.zeros((4, 4, 1), np.uint8))
    assert not png.exists()
    assert leftovers(tmp_path) == []
    line = one_line_error(capsys, error.value)
    assert line.startswith("launch.train: error: no space left on the device of ")
    assert str(config) in line and "needs about" in line and "free in" in line


def test_weights_write_checks_space_first_and_cleans_up_a_failed_write(tmp_path, monkeypatch):
    model = vlae_tf.VLAE(vlae_tf.presets.get("mnist_cpu").replace(**TINY))
    model.elbo(np.zeros((1, 28, 28, 1), np.uint8))
    path = str(tmp_path / "model.weights.h5")
    needed = common.weights_file_bytes(model)
    assert needed > sum(int(np.prod(w.shape)) * 4 for w in model.weights)

    # Not enough space: refused before HDF5 writes a byte (it crashed when it ran out).
    usage = files.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(files.shutil, "disk_usage",
                        lambda _: usage._replace(free=needed - 1))
    calls = []
    monkeypatch.setattr(type(model), "save_weights", lambda self, p: calls.append(p))
    with pytest.raises(files.DiskFullError, match="needs about"):
        common.save_weights_atomic(model, path)
    assert calls == [] and leftovers(tmp_path) == []
    monkeypatch.undo()

    # Space runs out during the write anyway: half a temporary, then h5py's error.
    def failing_save(self, temporary):
        with open(temporary, "wb") as handle:
            handle.write(b"\x89HDF" * 100)
        raise OSError(H5PY_ENOSPC)

    monkeypatch.setattr(type(model), "save_weights", failing_save)
    with pytest.raises(files.DiskFullError) as error:
        common.save_weights_atomic(model, path)
    assert error.value.filename == path and leftovers(tmp_path) == []
    monkeypatch.undo()

    # Any other failure: its own error, and still no temporary.
    def broken_save(self, temporary):
        open(temporary, "wb").close()
        raise RuntimeError("something else")

    monkeypatch.setattr(type(model), "save_weights", broken_save)
    with pytest.raises(RuntimeError, match="something else"):
        common.save_weights_atomic(model, path)
    assert leftovers(tmp_path) == []


def test_any_enospc_is_one_line_naming_the_path(capsys, tmp_path):
    metrics = str(tmp_path / "metrics.jsonl")
    line = one_line_error(capsys, OSError(errno.ENOSPC, "No space left on device", metrics))
    assert metrics in line and "free in" in line and "run the same command again" in line
    line = one_line_error(capsys, RuntimeError("Write failed\nNo space left on device\n..."))
    assert "no space left on device" in line
    with pytest.raises(ValueError, match="not ENOSPC"):  # other errors keep their trace
        common.run_main(lambda argv: (_ for _ in ()).throw(ValueError("not ENOSPC")),
                        "launch.train")(["launch.train"])


def test_sweep_removes_temporaries_of_dead_writers_only(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    (tmp_path / "checkpoints" / "ckpt-000000004").mkdir(parents=True)
    stale = [tmp_path / f"model.tmp{dead}.weights.h5", tmp_path / f"config.json.tmp{dead}",
             tmp_path / "samples" / f"samples.png.tmp{dead}",
             tmp_path / "checkpoints" / f"latest.json.tmp{dead}"]
    kept = [tmp_path / f"eval.json.tmp{alive}", tmp_path / "model.weights.h5",
            tmp_path / "notes.tmp.txt", tmp_path / "checkpoints" / "ckpt-000000004" / "x"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    removed = files.sweep_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(path) for path in stale)
    assert all(path.exists() for path in kept)


def test_latest_json_name_must_be_a_checkpoint_name(tmp_path):
    checkpoints = train_lib.Checkpoints(str(tmp_path))
    os.makedirs(checkpoints.directory)
    for name in ("../../elsewhere", "/etc", "ckpt-12", 7, None):
        with open(checkpoints.pointer, "w") as handle:
            json.dump({"name": name, "step": 4, "epoch": 1}, handle)
        with pytest.raises(LaunchError, match="ckpt-<9 digits>"):
            checkpoints.latest()
    with open(checkpoints.pointer, "w") as handle:
        handle.write("")
    with pytest.raises(LaunchError, match="not a readable checkpoint pointer"):
        checkpoints.latest()


# ----------------------------------------------------------------------- a training run
def test_enospc_in_a_checkpoint_keeps_the_last_one_and_the_rerun_finishes(tmp_path,
                                                                         monkeypatch, capsys):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    dead = dead_pid()  # what a run killed mid-write left, and a 0-byte config of a full disk
    (model_dir / f"model.tmp{dead}.weights.h5").write_bytes(b"\0" * 4096)
    (model_dir / f"config.json.tmp{dead}").write_bytes(b"")
    (model_dir / "checkpoints" / "ckpt-000000001.tmp").mkdir(parents=True)
    config = vlae_tf.presets.get("mnist_cpu").replace(**TINY)
    options = train_lib.TrainOptions(
        dataset="mnist5k_binary", model_dir=str(model_dir), batch_size=16, epochs=2,
        max_train_examples=32, log_every=1, eval_max_images=8, eval_num_images=0,
        select="last", diagnostics_images=0, validation_max_images=16, verbose="0")

    real_save = vlae_tf.VLAE.save_weights
    checkpoint_saves = []

    def save_weights(self, path, *args, **kwargs):
        if f"{os.sep}checkpoints{os.sep}" in path:
            checkpoint_saves.append(path)
            if len(checkpoint_saves) == 2:  # the epoch-2 checkpoint: the disk fills up
                with open(path, "wb") as handle:
                    handle.write(b"\x89HDF" * 1000)
                raise OSError(H5PY_ENOSPC)
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(vlae_tf.VLAE, "save_weights", save_weights)
    messages = []
    with pytest.raises(files.DiskFullError) as error:
        train_lib.train(config, options, log=messages.append)
    assert any("Removed 3 temporary file(s)" in message for message in messages), messages
    assert "ckpt-000000004" in error.value.filename and error.value.needed_bytes > 0
    assert leftovers(model_dir) == []
    line = one_line_error(capsys, error.value)
    assert "ckpt-000000004" in line and "needs about" in line
    checkpoints = train_lib.Checkpoints(str(model_dir))
    state = checkpoints.latest()
    assert state["name"] == "ckpt-000000002" and state["epoch"] == 1
    assert sorted(os.listdir(checkpoints.directory)) == ["ckpt-000000002", "latest.json"]

    monkeypatch.undo()  # space freed: the same command resumes from epoch 1 and finishes
    messages = []
    result = train_lib.train(config, options, log=messages.append)
    assert any("Resuming" in message and "after epoch 1" in message for message in messages)
    assert result["step"] == 4 and np.isfinite(result["eval"]["elbo"]["negative_elbo_nats"])
    assert checkpoints.latest()["name"] == "ckpt-000000004"
    assert leftovers(model_dir) == []
