"""Memory-budgeted importance sampling, sharded evaluation with --merge, and
--strategy=mirrored evaluation (launch.evaluate, vlae_tf.estimators).

A tiny untrained model (its seeded initial weights) saved as a launch.train model_dir and 7
real mnist5k_binary test digits: these tests check the bookkeeping (which images, which
noise, which chunk), not the model. Per-image values are compared exactly: a shard or a
device computes the very batches of the single run with the very seeds.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from absl import flags

import vlae_tf
from launch import common
from launch import evaluate as evaluate_lib
from launch.common import LaunchError
from vlae_tf import estimators

REPO = Path(__file__).resolve().parents[1]
TINY = dict(latent_size=4, encoder_filters=(8,), encoder_hidden=16, prior_steps=1,
            prior_hidden=(16,), decoder_layers=2, decoder_filters=8,
            decoder_residual_blocks=0, z_map_channels=4, ema_momentum=None)
# 7 images in batches of 2: 4 batches, the last ragged; 2 shards hold images 0..3 and 4..6.
SETTINGS = dict(num_importance_samples=6, max_images=7, batch_size=2, chunk_size=6, seed=3,
                diagnostics_images=2, progress=False)
# Not the same in a single run and a merge of shards: timing and bookkeeping (the single
# run chose its chunk from the budget, the shards were given it).
NOT_COMPARED = ("seconds", "merged_from", "model_dir", "memory_budget_gb")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_model")
    config = vlae_tf.presets.get("mnist_cpu").replace(**TINY)
    model = vlae_tf.VLAE(config)
    model.build()
    model.save_weights(str(directory / common.WEIGHTS_FILE))
    (directory / common.CONFIG_FILE).write_text(config.to_json())
    (directory / common.RUN_FILE).write_text(json.dumps({"dataset": "mnist5k_binary"}))
    return directory


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory):
    """The single run, its two shards and their merge (JSON as written)."""
    out = tmp_path_factory.mktemp("evaluations")
    mirrored = start_mirrored(model_dir, out / "mirrored.json")  # runs meanwhile: 2 cores
    try:
        quiet = dict(log=lambda _: None, **SETTINGS)
        messages = []  # the single run chooses its chunk (6: K x batch is tiny); shards told
        evaluate_lib.evaluate(str(model_dir), output=str(out / "single.json"),
                              **{**quiet, "chunk_size": None, "log": messages.append})
        for index in range(2):
            evaluate_lib.evaluate(str(model_dir), num_shards=2, shard_index=index, **quiet)
        shard_files = sorted(model_dir.glob("eval_is.shard-*-of-00002.json"))
        run_main(f"--merge={model_dir}/eval_is.shard-*-of-00002.json",
                 f"--output={out / 'merged.json'}")
        read = lambda path: json.loads(Path(path).read_text())  # noqa: E731
        yield dict(single=read(out / "single.json"), merged=read(out / "merged.json"),
                   messages=messages, mirrored=mirrored,
                   shards=[read(path) for path in shard_files], files=shard_files, out=out)
    finally:
        if mirrored[1].poll() is None:  # not waited for (test deselected, or a failure)
            mirrored[1].kill()
            mirrored[1].communicate()


def start_mirrored(model_dir, output):
    """`launch.evaluate --strategy=mirrored --cpu_devices=2` with SETTINGS, as a real
    program: the logical devices must be made before TensorFlow starts."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    arguments = [f"--{key}={value}" for key, value in SETTINGS.items()
                 if key not in ("progress", "diagnostics_images")]
    return output, subprocess.Popen(
        [sys.executable, "-m", "launch.evaluate", f"--model_dir={model_dir}",
         "--strategy=mirrored", "--cpu_devices=2", "--diagnostics_images=0",
         f"--output={output}", *arguments],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_main(*arguments):
    flag_values = flags.FlagValues()
    evaluate_lib.define_flags(flag_values)
    evaluate_lib.main(flag_values(["launch.evaluate", *arguments]), flag_values)


# ---------------------------------------------------------------------------- sharding
def test_shard_range_splits_whole_batches_in_order():
    ranges = [evaluate_lib.shard_range(7, 2, 2, index) for index in range(2)]
    assert ranges == [(0, 4), (4, 7)]
    ranges = [evaluate_lib.shard_range(23, 4, 3, index) for index in range(3)]
    assert ranges == [(0, 8), (8, 16), (16, 23)]  # 6 batches: 2 each, the last one ragged
    ranges = [evaluate_lib.shard_range(10, 1, 3, index) for index in range(3)]
    assert ranges == [(0, 4), (4, 7), (7, 10)]  # the first N mod S shards one batch longer
    with pytest.raises(LaunchError, match=r"--num_shards: expected at most the number of "
                                          r"batches, ceil\(7 images / --batch_size=2\) = 4"):
        evaluate_lib.shard_range(7, 2, 5, 0)
    with pytest.raises(LaunchError, match=r"--shard_index: expected an int in \[0, "
                                          r"--num_shards=2\); got 2"):
        evaluate_lib.shard_range(7, 2, 2, 2)


def test_two_shards_merged_are_the_single_run_exactly(runs):
    single, merged, shards = runs["single"], runs["merged"], runs["shards"]
    assert [shard["per_image"]["image_index"] for shard in shards] == [
        [0, 1, 2, 3], [4, 5, 6]]
    assert single["per_image"]["image_index"] == list(range(7))
    assert merged["per_image"] == single["per_image"]  # every per-image value, exactly
    for key in set(single) | set(merged):
        if key not in NOT_COMPARED:
            assert merged.get(key) == single.get(key), key
    assert "latent" in single and "latent" not in shards[1]  # diagnostics: shard 0 only
    assert single["chunk_size"] == 6 and shards[0]["memory_budget_gb"] is None
    assert any(message.startswith("Chunk size: 6 importance samples x 2 images per decoder "
                                  "pass (all K in one pass") for message in runs["messages"])
    assert merged["seconds"] == pytest.approx(sum(shard["seconds"] for shard in shards),
                                              abs=0.11)
    assert [entry["file"] for entry in merged["merged_from"]] == [str(f) for f in runs["files"]]
    # The summary is the per-image values' mean and standard error.
    nll = -np.asarray(single["per_image"]["log_px_nats"])
    assert single["nll_nats"] == pytest.approx(nll.mean(), rel=1e-12)
    assert single["nll_stderr"] == pytest.approx(nll.std(ddof=1) / math.sqrt(7), rel=1e-12)
    assert single["elbo"]["negative_elbo_nats"] == pytest.approx(
        -np.mean(single["per_image"]["elbo_nats"]), rel=1e-6)
    # (If a shard seeded its batches by their place in the shard rather than in the whole
    # order, shard 1 would draw other noise and the per-image comparison above would fail.)


def test_merge_refuses_missing_duplicate_and_mismatched_shards(runs, tmp_path):
    first, second = (str(path) for path in runs["files"])
    output = str(tmp_path / "merged.json")

    def refused(files, match):
        with pytest.raises(LaunchError, match=match):
            evaluate_lib.merge(files, output, log=lambda _: None)
        assert not os.path.exists(output)

    refused([first], r"missing shard\(s\) 1 of 2")
    refused([first, first], r"shard 0 of 2 given twice")
    refused([str(tmp_path / "nothing-*.json")], r"no file matches")
    (tmp_path / "other.json").write_text(json.dumps({"nll_nats": 1.0}))
    refused([first, str(tmp_path / "other.json")], r"is not a shard written by launch.evaluate")
    for key, value, match in [
            ("num_importance_samples", 7, r"different evaluations: num_importance_samples 6 vs 7"),
            ("seed", 4, r"different evaluations: seed 3 vs 4"),
            ("weights_sha256", "0" * 64, r"different evaluations: weights_sha256"),
            ("config", {"latent_size": 5}, r"different evaluations: config differ"),
            ("split", "validation", r"different evaluations: split 'test' vs 'validation'")]:
        changed = dict(runs["shards"][1], **{key: value})
        path = tmp_path / f"changed_{key}.json"
        path.write_text(json.dumps(changed))
        refused([first, str(path)], match)
    changed = json.loads(Path(second).read_text())
    changed["shard"]["num_shards"] = 3
    (tmp_path / "split.json").write_text(json.dumps(changed))
    refused([first, str(tmp_path / "split.json")], r"different splits: num_shards 2 vs 3")
    changed = json.loads(Path(second).read_text())
    changed["per_image"]["image_index"] = [3, 4, 5]
    (tmp_path / "range.json").write_text(json.dumps(changed))
    refused([first, str(tmp_path / "range.json")], r"does not hold images 4..6 of 7")
    with pytest.raises(LaunchError, match="--merge: takes the shard files only"):
        run_main(f"--merge={first}", "--model_dir=x")


def test_mirrored_on_two_logical_cpus_gives_the_one_device_values(runs):
    output, process = runs["mirrored"]
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    mirrored = json.loads(output.read_text())
    assert (mirrored["strategy"], mirrored["replicas"]) == ("mirrored", 2)
    assert mirrored["per_image"] == runs["single"]["per_image"]
    assert mirrored["nll_nats"] == runs["single"]["nll_nats"]
    assert "on 2 devices (mirrored)" in stdout


# ------------------------------------------------------------------------ memory budget
def test_chunk_size_for_budget_is_the_largest_that_fits():
    # (10 MB - 4 MB) / (1.5 x 1000 B x 10 images) = 400 samples per pass.
    assert estimators.MEMORY_SAFETY_FACTOR == 1.5
    assert estimators.chunk_size_for_budget(10e6, 4e6, 1000, 10, 4096) == 400
    assert estimators.chunk_size_for_budget(5e6, 4e6, 1000, 10, 4096) == 66  # smaller budget
    assert estimators.chunk_size_for_budget(10e9, 4e6, 1000, 10, 4096) == 4096  # at most K
    assert estimators.chunk_size_for_budget(3e6, 4e6, 1000, 10, 4096) == 1  # at least one
    physical = estimators.physical_memory_bytes()
    assert estimators.default_memory_budget_gb() == max(1.0, round(physical / 8 / 2 ** 30, 1))


def test_budget_chunk_size_is_measured_and_gives_the_explicit_chunks_result(model_dir):
    model = vlae_tf.load(str(model_dir))[0]
    images = np.random.default_rng(0).integers(0, 2, (4, 28, 28, 1)).astype(np.uint8)
    resident = estimators.resident_bytes() / 2 ** 30
    roomy = estimators.budget_chunk_size(model, images, 200, resident + 50)
    tight = estimators.budget_chunk_size(model, images, 200, resident + 0.001)
    assert roomy["how"] == tight["how"] == "budget"
    assert roomy["bytes_per_decoder_image"] > 0
    assert (roomy["chunk_size"], tight["chunk_size"]) == (200, 1)
    budget_gb = resident + 1.5 * roomy["bytes_per_decoder_image"] * 4 * 30 / 2 ** 30
    middle = estimators.budget_chunk_size(model, images, 200, budget_gb)
    assert middle["chunk_size"] == estimators.chunk_size_for_budget(
        budget_gb * 2 ** 30, middle["baseline_bytes"], middle["bytes_per_decoder_image"], 4, 200)
    assert 0 < middle["chunk_size"] < 200
    assert evaluate_lib._chunk_message(dict(middle, memory_budget_gb=1.25), 4, 2) == (
        f"Chunk size: {middle['chunk_size']} importance samples x 4 images per decoder pass "
        f"(from --memory_budget_gb=2.5 shared by 2 devices: "
        f"{middle['bytes_per_decoder_image'] / 2 ** 20:.2f} MB measured per decoder image, "
        f"{middle['baseline_bytes'] / 2 ** 30:.2f} GB resident before; --chunk_size overrides)")
    budgeted = model.importance_log_likelihood(images, 20, seed=2,
                                               memory_budget_gb=resident + 0.001).numpy()
    explicit = model.importance_log_likelihood(images, 20, seed=2, chunk_size=1).numpy()
    np.testing.assert_array_equal(budgeted, explicit)  # the same chunks: bit for bit
    other = model.importance_log_likelihood(images, 20, seed=2, chunk_size=20).numpy()
    np.testing.assert_allclose(other, explicit, rtol=1e-5, atol=1e-4)  # any chunking
    small = estimators.budget_chunk_size(model, images, 3)  # 12 decoder images: no probe
    assert (small["how"], small["chunk_size"]) == ("all samples", 3)
    for bad in (0, -1.0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="memory_budget_gb: expected a number of GB > 0"):
            model.importance_log_likelihood(images, 2, memory_budget_gb=bad)


def test_evaluate_checks_the_new_flags(model_dir, tmp_path):
    for changes, match in [(dict(memory_budget_gb=0), "--memory_budget_gb: expected"),
                           (dict(num_shards=0), "--num_shards: expected an int >= 1"),
                           (dict(num_shards=2, shard_index=2), "--shard_index: expected"),
                           (dict(num_shards=3), "--num_shards: expected at most"),
                           (dict(strategy="multi_worker"), "--strategy: expected one of "
                                                           "default, mirrored")]:
        with pytest.raises(LaunchError, match=match):
            evaluate_lib.evaluate(str(model_dir), **{**dict(
                num_importance_samples=2, max_images=4, batch_size=2, diagnostics_images=0,
                progress=False, output=str(tmp_path / "x.json"), log=lambda _: None),
                **changes})
    with pytest.raises(LaunchError, match="--model_dir: expected a directory"):
        run_main()
