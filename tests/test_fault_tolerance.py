"""launch.train under --strategy and kill -9: real processes, as a user would run them.

* A run killed with SIGKILL at a random moment after its first checkpoint and started
  again with the same command ends bit for bit where an uninterrupted run ends.
* --strategy=mirrored over 2 logical CPU devices follows the default strategy's losses.
* Two multi_worker processes on 127.0.0.1 under launch.supervise: one is killed with
  SIGKILL, both restart, resume from the chief's checkpoint and the job completes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from launch import supervise
from launch.train import PEER_FAILURE_EXIT_CODE
from tests.test_distribute import free_ports
from tests.test_launch import h5_values

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = [
    "--preset=mnist_cpu", "--dataset=mnist5k_binary", "--latent_size=4",
    "--encoder_filters=8", "--encoder_hidden=16", "--prior_steps=1", "--prior_hidden=16",
    "--decoder_layers=2", "--decoder_filters=8", "--decoder_residual_blocks=0",
    "--z_map_channels=4", "--ema_momentum=0.9", "--batch_size=16",
    "--max_train_examples=72", "--steps_per_epoch=3", "--log_every=1",
    "--eval_max_images=16", "--eval_num_images=3", "--eval_num_importance_samples=4",
    "--verbose=0", "--diagnostics_images=16", "--validation_max_images=16", "--deterministic"]
EPOCHS = 6
TIMEOUT = 600


def train_command(model_dir, *extra):
    return [sys.executable, "-m", "launch.train", *TINY_FLAGS, f"--epochs={EPOCHS}",
            f"--model_dir={model_dir}", *extra]


def start(command, log_path, environment=None):
    handle = open(log_path, "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(environment or {})}
    process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                               env=env)
    process.log_path = log_path
    return process


def finish(process):
    try:
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    with open(process.log_path) as handle:
        return process.returncode, handle.read()


def wait_for(path, process, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(f"{process.args} ended ({process.returncode}) before {path}")
        assert time.time() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def metric_lines(model_dir, kind):
    with open(os.path.join(model_dir, "metrics.jsonl")) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return [{key: value for key, value in line.items() if key not in ("time", "epoch_seconds")}
            for line in lines if line["kind"] == kind]


def latest_step(model_dir):
    with open(os.path.join(model_dir, "checkpoints", "latest.json")) as handle:
        return json.load(handle)["step"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three concurrent runs of the same command: uninterrupted (default strategy), on 2
    mirrored logical CPUs, and one killed with SIGKILL at a random moment after its first
    checkpoint (then re-run to the end)."""
    root = tmp_path_factory.mktemp("fault")
    paths = {name: str(root / name) for name in ("reference", "mirrored", "killed")}
    reference = start(train_command(paths["reference"]), str(root / "reference.log"))
    mirrored = start(train_command(paths["mirrored"], "--strategy=mirrored", "--cpu_devices=2"),
                     str(root / "mirrored.log"))
    victim = start(train_command(paths["killed"]), str(root / "killed.log"))
    wait_for(os.path.join(paths["killed"], "checkpoints", "latest.json"), victim)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.5))  # an arbitrary step
    victim.send_signal(signal.SIGKILL)
    killed_status, _ = finish(victim)
    killed_at = latest_step(paths["killed"])
    rerun = start(train_command(paths["killed"]), str(root / "rerun.log"))
    results = {"reference": finish(reference), "mirrored": finish(mirrored),
               "rerun": finish(rerun)}
    for name, (status, output) in results.items():
        assert status == 0, f"{name}:\n{output[-3000:]}"
    return paths, results, killed_status, killed_at


def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(runs):
    paths, results, killed_status, killed_at = runs
    assert killed_status == -signal.SIGKILL
    assert killed_at < 3 * EPOCHS, "the kill came after training ended: nothing was tested"
    _, output = results["rerun"]
    assert f"Resuming {paths['killed']} from its checkpoint" in output
    last = f"ckpt-{3 * EPOCHS:09d}"
    for relative in (os.path.join("checkpoints", last, "train_state.weights.h5"),
                     "model.weights.h5"):
        expected = h5_values(os.path.join(paths["reference"], relative))
        got = h5_values(os.path.join(paths["killed"], relative))
        assert expected.keys() == got.keys()
        assert any("optimizer" in key for key in got)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    for kind in ("step", "epoch", "latent"):  # lines past the checkpoint were redone once
        assert metric_lines(paths["killed"], kind) == metric_lines(paths["reference"], kind)
    assert not [name for name in os.listdir(os.path.join(paths["killed"], "checkpoints"))
                if name.endswith(".tmp")]


def test_mirrored_on_two_logical_cpus_follows_the_default_strategy(runs):
    paths, results, _, _ = runs
    with open(os.path.join(paths["mirrored"], "run.json")) as handle:
        run = json.load(handle)
    assert (run["strategy"], run["replicas"], run["batch_size"]) == ("mirrored", 2, 16)
    assert "2 replicas (mirrored) of 8 images each" in results["mirrored"][1]
    reference = metric_lines(paths["reference"], "step")
    mirrored = metric_lines(paths["mirrored"], "step")
    assert len(reference) == len(mirrored) == 3 * EPOCHS
    losses = np.array([[line["loss"] for line in reference], [line["loss"] for line in mirrored]])
    # Same global batch, same noise: only the order of float sums differs (Adamax amplifies
    # it a little: its first steps are lr * sign(gradient)).
    np.testing.assert_allclose(losses[1], losses[0], rtol=5e-4)
    assert not np.array_equal(losses[:, 0], losses[:, -1])  # it trained


def test_multi_worker_job_completes_after_a_worker_is_killed(tmp_path):
    model_dir = str(tmp_path / "job")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    supervisors = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, "-m", "launch.supervise", "--restart_delay=1",
                   "--max_restarts=5", "--", *train_command(model_dir, "--strategy=multi_worker")]
        supervisors.append(start(command, str(tmp_path / f"worker{index}.log"),
                                 {"TF_CONFIG": json.dumps(tf_config)}))
    try:
        wait_for(os.path.join(model_dir, "checkpoints", "latest.json"), supervisors[0])
        killed_at = latest_step(model_dir)
        # SIGKILL the training process of worker 1 (the supervisor's child), not the supervisor.
        children = subprocess.run(["pgrep", "-P", str(supervisors[1].pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGKILL)
        results = [finish(process) for process in supervisors]
    finally:
        for process in supervisors:
            if process.poll() is None:
                process.kill()
    for index, (status, output) in enumerate(results):
        assert status == 0, f"worker {index}:\n{output[-4000:]}"
        assert "launch.supervise: the command" in output, f"worker {index} never restarted"
        assert "Resuming" in output
    assert "killed by signal 9" in results[1][1]
    assert f"exited with status {PEER_FAILURE_EXIT_CODE}" in results[0][1]
    assert "lost contact with another worker" in results[0][1]
    assert killed_at < 3 * EPOCHS
    assert latest_step(model_dir) == 3 * EPOCHS
    steps = [line["step"] for line in metric_lines(model_dir, "step")]
    assert steps == list(range(1, 3 * EPOCHS + 1))  # no gap, no step logged twice
    with open(os.path.join(model_dir, "eval.json")) as handle:
        assert np.isfinite(json.load(handle)["elbo"]["negative_elbo_nats"])


def test_supervise_restarts_failures_but_not_usage_errors(tmp_path):
    counter = tmp_path / "attempts"
    script = (f"import sys; p = {str(counter)!r}; n = int(open(p).read()) if "
              f"__import__('os').path.exists(p) else 0; open(p, 'w').write(str(n + 1)); "
              f"sys.exit(int(sys.argv[1]) if n < 2 else 0)")
    messages = []
    status = supervise.supervise([sys.executable, "-c", script, "75"], max_restarts=5,
                                 restart_delay=0, log=messages.append)
    assert status == 0 and counter.read_text() == "3"
    assert len(messages) == 2 and "status 75" in messages[0]

    counter.unlink()
    messages.clear()
    status = supervise.supervise([sys.executable, "-c", script, "2"], max_restarts=5,
                                 restart_delay=0, log=messages.append)
    assert status == 2 and counter.read_text() == "1" and not messages

    counter.unlink()
    status = supervise.supervise([sys.executable, "-c", script, "1"], max_restarts=1,
                                 restart_delay=0, log=messages.append)
    assert status == 1 and counter.read_text() == "2" and "giving up" in messages[-1]
