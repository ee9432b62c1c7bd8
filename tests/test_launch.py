"""End-to-end tests of the launch/ entry points: train (with exact resume), evaluate,
sample, flag parsing and flagfiles, and clean one-line errors.

Everything runs on 72 real digits of mnist5k_binary with a tiny config (a few thousand
parameters), in-process except where the exit behaviour itself is tested. One 2-epoch run
(the module fixture) is shared; the resume test restores a copy of it to its epoch-1
checkpoint, as a crash during epoch 2 would leave it, and re-runs training.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import pipelines
import vlae_tf
from launch import common
from launch import evaluate as evaluate_lib
from launch import sample as sample_lib
from launch import summaries
from launch import train as train_lib
from launch.common import LaunchError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "launch" / "configs").glob("*.flags"))
TINY = dict(latent_size=4, encoder_filters=(8,), encoder_hidden=16, prior_steps=1,
            prior_hidden=(16,), decoder_layers=2, decoder_filters=8,
            decoder_residual_blocks=0, z_map_channels=4, ema_momentum=0.9)
STEPS_PER_EPOCH = 4  # 72 train images // batch 16: batches straddle passes of the data


def tiny_config():
    return vlae_tf.presets.get("mnist_cpu").replace(**TINY)


def tiny_options(model_dir, **changes):
    values = dict(dataset="mnist5k_binary", model_dir=str(model_dir), batch_size=16,
                  epochs=2, max_train_examples=72, log_every=2, eval_max_images=16,
                  eval_num_images=3, eval_num_importance_samples=4,
                  validation_max_images=16, verbose="0")  # (all 500 at every epoch end: slow)
    values.update(changes)
    return train_lib.TrainOptions(**values)


def h5_values(path):
    values = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: values.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return values


def metric_lines(model_dir):
    with open(os.path.join(model_dir, common.METRICS_FILE)) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return [{key: value for key, value in line.items() if key not in ("time", "epoch_seconds")}
            for line in lines]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted 2-epoch run (8 steps) with TensorBoard images at steps 4 and 8."""
    model_dir = tmp_path_factory.mktemp("run") / "uninterrupted"
    messages = []
    result = train_lib.train(tiny_config(), tiny_options(model_dir, image_every=4, image_num=4),
                             log=messages.append)
    return model_dir, result, messages


# ------------------------------------------------------------------------------- training
def test_train_writes_config_metrics_checkpoints_and_eval(trained):
    model_dir, result, messages = trained
    assert vlae_tf.VLAEConfig.from_dict(
        json.loads((model_dir / "config.json").read_text())) == tiny_config()
    run = json.loads((model_dir / "run.json").read_text())
    assert (run["dataset"], run["batch_size"], run["steps_per_epoch"]) == (
        "mnist5k_binary", 16, STEPS_PER_EPOCH)

    lines = metric_lines(model_dir)
    latent = [line for line in lines if line["kind"] == "latent"]
    lines = [line for line in lines if line["kind"] != "latent"]
    assert [(line["kind"], line["step"]) for line in lines] == [
        ("step", 2), ("step", 4), ("epoch", 4), ("step", 6), ("step", 8), ("epoch", 8)]
    # Per-epoch latent diagnostics: the ELBO surgery terms add up to the average KL.
    assert [line["step"] for line in latent] == [4, 8]
    for line in latent:
        assert line["mutual_information_nats"] + line["marginal_kl_nats"] == pytest.approx(
            line["kl_nats"], abs=1e-6)
        assert 0 <= line["active_units"] <= tiny_config().latent_size
    for line in lines:
        assert np.isfinite([line[key] for key in train_lib.METRIC_NAMES]).all()
        assert line["bits_per_dim"] == pytest.approx(
            -line["elbo_nats"] / (784 * np.log(2)), rel=1e-4)
    assert lines[-1]["elbo_nats"] > lines[0]["elbo_nats"]  # it learns, even in 8 steps

    checkpoints = sorted(os.listdir(model_dir / "checkpoints"))
    assert checkpoints == ["ckpt-000000004", "ckpt-000000008", "latest.json"]
    latest = json.loads((model_dir / "checkpoints" / "latest.json").read_text())
    assert (latest["epoch"], latest["step"], latest["name"]) == (2, 8, "ckpt-000000008")
    assert not glob.glob(str(model_dir / "**" / "*.tmp*"), recursive=True)

    evaluation = json.loads((model_dir / "eval.json").read_text())
    assert evaluation == result["eval"]
    elbo, nll = evaluation["elbo"], evaluation["importance_sampled"]
    assert elbo["num_images"] == 16 and nll["num_images"] == 3
    assert nll["num_importance_samples"] == 4
    # A barely trained model: between a perfect model (0) and coin flips (784 ln 2).
    assert 0 < nll["nll_nats"] < 784 * np.log(2)
    assert 0 < elbo["negative_elbo_nats"] < 784 * np.log(2)
    assert elbo["negative_elbo_nats"] == pytest.approx(elbo["recon_nats"] + elbo["kl_nats"],
                                                       abs=1e-3)
    assert nll["bits_per_dim"] == pytest.approx(nll["nll_nats"] / (784 * np.log(2)))
    assert evaluation["weights"] == "polyak_average"
    assert any("Importance-sampled NLL (K=4, 3 images)" in message for message in messages)


def test_train_writes_tensorboard_scalars_and_images(trained):
    model_dir, _, _ = trained
    found = summaries.read_summaries(str(model_dir / "tensorboard"))
    tags = {(step, tag, kind) for step, tag, kind, _ in found}
    for step in (2, 4, 6, 8):
        assert (step, "train/loss", "simple_value") in tags
    assert (8, "epoch/elbo_nats", "simple_value") in tags
    assert {(4, "samples", "image"), (8, "samples", "image"),
            (8, "decompressions", "image")} <= tags
    assert (8, "eval/negative_elbo_nats", "simple_value") in tags
    logged = {step: value for step, tag, _, value in found if tag == "epoch/loss"}
    epochs = [line for line in metric_lines(model_dir) if line["kind"] == "epoch"]
    assert logged[8] == pytest.approx(epochs[-1]["loss"])
    assert (8, "latent/active_units", "simple_value") in tags


def test_resume_after_a_crash_in_epoch_two_is_exact(trained, tmp_path):
    """Roll a copy of the run back to what a crash during epoch 2 leaves behind (latest.json
    at the epoch-1 checkpoint, a half-written checkpoint, metrics lines past the
    checkpoint), re-run the same command, and compare with the uninterrupted run: every
    weight, optimizer slot, EMA average and counter, and every metrics line, bit for bit.
    The uninterrupted run also drew TensorBoard images (EMA swapped in and out): the
    resumed one did not, so this also shows that drawing them does not disturb training."""
    reference, _, _ = trained
    model_dir = tmp_path / "resumed"
    shutil.copytree(reference, model_dir)
    checkpoints = model_dir / "checkpoints"
    first = json.loads((checkpoints / "ckpt-000000004" / "state.json").read_text())
    common.write_json_atomic(str(checkpoints / "latest.json"), dict(first, name="ckpt-000000004"))
    os.rename(checkpoints / "ckpt-000000008", checkpoints / "ckpt-000000008.tmp")
    half_written = checkpoints / "ckpt-000000008.tmp" / "train_state.weights.h5"
    half_written.write_bytes(half_written.read_bytes()[:1000])
    (model_dir / "eval.json").unlink()
    (model_dir / "model.weights.h5").unlink()  # must be written anew, not merely kept
    assert len(metric_lines(model_dir)) == 8  # steps 6 and 8 (+2 latent lines) survived

    messages = []
    result = train_lib.train(tiny_config(), tiny_options(model_dir), log=messages.append)
    assert any("Resuming" in message and "step 4" in message for message in messages)
    assert (result["epochs"], result["step"]) == (2, 8)

    for relative in ("checkpoints/ckpt-000000008/train_state.weights.h5",
                     "model.weights.h5"):
        expected, got = h5_values(reference / relative), h5_values(model_dir / relative)
        assert expected.keys() == got.keys()
        assert any("optimizer" in key for key in got)  # slots, EMA and step counter
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{relative}:{key}")
    assert metric_lines(model_dir) == metric_lines(reference)
    assert result["eval"]["elbo"] == json.loads((reference / "eval.json").read_text())["elbo"]
    assert not glob.glob(str(checkpoints / "*.tmp"))


def test_rerun_of_a_finished_run_trains_nothing(trained, tmp_path):
    reference, _, _ = trained
    model_dir = tmp_path / "again"
    shutil.copytree(reference, model_dir)
    before = h5_values(model_dir / "model.weights.h5")
    messages = []
    result = train_lib.train(tiny_config(), tiny_options(model_dir), log=messages.append)
    assert any("already trained 2 epochs" in message for message in messages)
    assert any("already in" in message for message in messages)  # eval.json reused
    assert result["step"] == 8
    # More epochs under a spent time budget: nothing is trained either.
    messages.clear()
    train_lib.train(tiny_config(), tiny_options(model_dir, epochs=3, max_minutes=1e-6),
                    log=messages.append)
    assert any("max_minutes" in message for message in messages)
    after = h5_values(model_dir / "model.weights.h5")
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_resume_refuses_a_different_config_or_data_stream(trained):
    model_dir, _, _ = trained
    with pytest.raises(LaunchError, match=r"different config \(latent_size: 4 -> 5\)"):
        train_lib.train(tiny_config().replace(latent_size=5), tiny_options(model_dir))
    with pytest.raises(LaunchError, match="batch_size=16, not 8"):
        train_lib.train(tiny_config(), tiny_options(model_dir, batch_size=8))


def test_mixed_precision_flag_trains_like_float32_and_restores_the_policy(trained, tmp_path):
    """--mixed_precision=mixed_float16: layers compute in float16 behind a loss-scaling
    optimizer, the run follows the float32 run (the `trained` fixture: same seed, data and
    steps) within 1%, and the global Keras policy is float32 again afterwards."""
    reference, reference_result, _ = trained
    model_dir = tmp_path / "float16"
    messages = []
    result = train_lib.train(tiny_config(), tiny_options(model_dir,
                                                         mixed_precision="mixed_float16"),
                             log=messages.append)
    assert keras.config.dtype_policy().name == "float32"
    assert any("mixed_float16" in message for message in messages)
    assert json.loads((model_dir / "run.json").read_text())["mixed_precision"] == "mixed_float16"
    model = vlae_tf.VLAE(tiny_config())  # built after the run: float32 again
    assert model.pixelcnn.get_layer("head").dtype_policy.name == "float32"
    half, full = metric_lines(model_dir), metric_lines(reference)
    losses = [[line["loss"] for line in lines if line["kind"] == "step"] for lines in (half, full)]
    assert len(losses[0]) == len(losses[1]) == 4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-2)
    assert losses[0] != losses[1]  # it did compute in float16
    np.testing.assert_allclose(result["eval"]["elbo"]["negative_elbo_nats"],
                               reference_result["eval"]["elbo"]["negative_elbo_nats"], rtol=1e-2)


def test_strategy_options_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(LaunchError, match="--strategy: expected one of default, mirrored"):
        tiny_options(tmp_path, strategy="tpu")
    with pytest.raises(LaunchError, match="--mixed_precision: expected one of none"):
        tiny_options(tmp_path, mixed_precision="float16")
    with pytest.raises(LaunchError, match="max_minutes cannot be used with --strategy=multi_worker"):
        tiny_options(tmp_path, strategy="multi_worker", max_minutes=5)
    with pytest.raises(LaunchError, match="TF_CONFIG"):
        train_lib.setup_runtime(tiny_options(tmp_path, strategy="multi_worker"))


def test_config_dataset_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(LaunchError, match=r"8-bit .*likelihood is .bernoulli..*"
                                          r"--likelihood=logistic_mixture"):
        train_lib.train(tiny_config(), tiny_options(tmp_path / "a", dataset="fashion_mnist"))
    colour = tiny_config().replace(image_shape=(32, 32, 3))
    with pytest.raises(LaunchError, match=r"images are 28x28x1 but config.image_shape is "
                                          r"32x32x3"):
        train_lib.train(colour, tiny_options(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_plan_rounds_steps_up_to_whole_epochs():
    def plan(data_steps=62, **changes):
        return train_lib._plan(tiny_options("x", epochs=None, **changes), {}, data_steps)
    assert plan(steps=100) == (50, 2)  # epochs of <= one pass, dividing the steps evenly
    assert plan(steps=10) == (10, 1)
    assert plan(steps=101) == (51, 2)  # 102 steps: rounded up
    assert plan(steps=100, steps_per_epoch=30) == (30, 4)
    assert plan() == (62, train_lib.DEFAULT_EPOCHS)
    assert train_lib._plan(tiny_options("x", epochs=3), {"steps_per_epoch": 7}, 62) == (7, 3)
    with pytest.raises(LaunchError, match="not both"):
        tiny_options("x", epochs=2, steps=5)


# ---------------------------------------------------------------------- evaluate and sample
def run_main(module, *arguments):
    """`python -m launch.<module> arguments`, in-process: parse flags, then main()."""
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    module.main(flag_values([module.__name__, *arguments]), flag_values)


def test_evaluate_writes_importance_sampled_nll(trained, tmp_path, capsys):
    model_dir, _, _ = trained
    output = tmp_path / "is.json"
    run_main(evaluate_lib, f"--model_dir={model_dir}", "--num_importance_samples=8",
             "--max_images=4", "--chunk_size=3", "--batch_size=2", f"--output={output}")
    result = json.loads(output.read_text())
    assert (result["num_images"], result["num_importance_samples"]) == (4, 8)
    assert (result["dataset"], result["split"], result["step"]) == ("mnist5k_binary", "test", 8)
    assert 0 < result["nll_nats"] < 784 * np.log(2)
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (784 * np.log(2)))
    # K=8 importance samples give a tighter bound than the ELBO (by a little, on average).
    assert result["nll_nats"] <= result["elbo"]["negative_elbo_nats"] + 1.0
    printed = capsys.readouterr().out
    assert f"NLL (K=8, 4 images): {result['nll_nats']:.2f}" in printed
    latent = result["latent"]  # the diagnostics: surgery terms add up to the average KL
    assert latent["mutual_information"] + latent["marginal_kl"] == pytest.approx(
        latent["average_kl"], abs=1e-6)
    assert 0 <= latent["active_units"] <= len(latent["per_dimension_kl"])
    assert "active units" in printed
    assert f"{result['bits_per_dim']:.4f} bits/dim" in printed
    assert "4/4" in printed  # the progress bar
    assert "Expected time: about" in printed  # printed before the evaluation starts
    # Reproducible, and independent of how the samples are chunked.
    again = evaluate_lib.evaluate(str(model_dir), num_importance_samples=8, max_images=4,
                                  chunk_size=8, batch_size=2, output=str(tmp_path / "b.json"),
                                  progress=False, log=lambda _: None)
    assert again["nll_nats"] == pytest.approx(result["nll_nats"], abs=1e-4)


def test_sample_writes_png_grids(trained, tmp_path):
    model_dir, _, _ = trained
    run_main(sample_lib, f"--model_dir={model_dir}", "--num=4", "--seed=1",
             f"--out_dir={tmp_path}", "--num_images=2", "--decompressions=2", "--zoom=1")
    samples = tf.io.decode_png(tf.io.read_file(str(tmp_path / "samples.png"))).numpy()
    rows = tf.io.decode_png(tf.io.read_file(str(tmp_path / "decompressions.png"))).numpy()
    assert samples.shape == (2 * 30 + 2, 2 * 30 + 2, 1)  # 2x2 images of 28 + 2 px borders
    assert rows.shape == (2 * 30 + 2, 3 * 30 + 2, 1)  # per row: original + 2 decompressions
    assert set(np.unique(samples)) <= {0, 128, 255}  # binary pixels, grey borders
    originals = pipelines.showcase_images("mnist5k_binary", "test", 2, seed=1)
    for index in range(2):  # each row starts with its test image
        top = 2 + index * 30
        np.testing.assert_array_equal(rows[top:top + 28, 2:30], originals[index] * 255)


# ------------------------------------------------------------------------------- the flags
def parse(*arguments):
    return train_lib.parse(["launch.train", *arguments])


def test_flagfile_then_command_line_overrides_last_wins(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("# a comment\n--preset=mnist_cpu\n--dataset=mnist5k_binary\n"
                        "--latent_size=16\n--window=7x4\n--epochs=3\n")
    config, options = parse(f"--flagfile={flagfile}", "--latent_size=8",
                            "--encoder_filters=8,16", "--ema_momentum=none", "--seed=3",
                            "--nouse_latent", "--free_bits_mode=soft", "--batch_size=32")
    preset = vlae_tf.presets.get("mnist_cpu")
    assert config == preset.replace(latent_size=8, window=(7, 4), encoder_filters=(8, 16),
                                    ema_momentum=None, seed=3, use_latent=False,
                                    free_bits_mode="soft")
    assert (options.dataset, options.epochs, options.batch_size) == ("mnist5k_binary", 3, 32)
    assert options.model_dir == os.path.join("runs", "mnist_cpu")
    config, _ = parse("--latent_size=8", f"--flagfile={flagfile}")  # the file comes last
    assert config.latent_size == 16
    config, _ = parse(f"--flagfile={flagfile}", "--window=none")
    assert config.window is None
    config, options = parse("--preset=fashion_mnist_cpu")  # the preset's usual dataset
    assert options.dataset == "fashion_mnist" and config == vlae_tf.presets.get(
        "fashion_mnist_cpu")


def test_every_config_field_has_a_flag_and_bad_values_are_refused():
    flag_values = flags.FlagValues()
    train_lib.define_flags(flag_values)
    fields = {field for field in vlae_tf.VLAEConfig.__dataclass_fields__} - {"seed"}
    assert fields <= set(flag_values)
    for bad in ("--window=7by4", "--encoder_filters=8,x", "--image_shape=28,28",
                "--ema_momentum=high", "--likelihood=gaussian", "--preset=nope"):
        with pytest.raises(flags.Error):
            train_lib.parse(["launch.train", "--preset=mnist_cpu", bad])
    with pytest.raises(LaunchError, match="VLAEConfig.latent_size"):
        parse("--preset=mnist_cpu", "--latent_size=0")


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_flagfile_parses_and_fits_its_dataset(path):
    config, options = parse(f"--flagfile={path}")
    common.check_dataset(config, options.dataset)
    assert options.model_dir == f"runs/{path.stem}"
    assert options.epochs is not None


def test_there_is_a_flagfile_for_each_paper_and_cpu_setting():
    stems = {path.stem for path in CONFIGS}
    assert {"mnist_paper", "binarized_mnist_paper", "omniglot_paper", "caltech101_paper",
            "cifar10_paper", "cifar10_paper_4x2", "cifar10_paper_5x3", "cifar10_paper_7x4",
            "cifar10_paper_7x4_gray", "cifar10_paper_resnet", "cifar10_paper_resnet_4x2",
            "cifar10_paper_resnet_5x3", "cifar10_paper_resnet_7x4",
            "cifar10_paper_resnet_7x4_gray", "cifar10_gated", "mnist5k_cpu", "fashion_mnist_cpu",
            "factorized_vae_cpu", "unconditional_cpu", "global_cpu",
            "standard_normal_prior_cpu", "iaf_posterior_cpu"} <= stems


def test_command_line_errors_are_one_line_and_quick(tmp_path):
    """Run as real programs: the exit status and stderr are what is tested."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    commands = {
        "preset": ["--preset=nope"],
        "mismatch": ["--preset=mnist_cpu", "--dataset=fashion_mnist",
                     f"--model_dir={tmp_path / 'never'}"],
        "missing": ["--model_dir=" + str(tmp_path / "nothing")],
    }
    processes = {}
    for name, arguments in commands.items():
        module = "launch.evaluate" if name == "missing" else "launch.train"
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", module, *arguments], cwd=REPO, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {name: process.communicate(timeout=180) for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode != 0, name
        assert "Traceback" not in outputs[name][1], outputs[name][1]

    stderr = _meaningful(outputs["preset"][1])
    assert "--preset=nope" in stderr[0] and "mnist_cpu" in stderr[0] and "global_cpu" in stderr[0]
    stderr = _meaningful(outputs["mismatch"][1])
    assert len(stderr) == 1 and stderr[0].startswith("launch.train: error: config does not "
                                                     "match dataset 'fashion_mnist'")
    assert processes["mismatch"].returncode == 2 and not (tmp_path / "never").exists()
    stderr = _meaningful(outputs["missing"][1])
    assert len(stderr) == 1 and "config.json not found" in stderr[0]


def _meaningful(stderr):
    """stderr without TensorFlow/absl start-up chatter and warnings."""
    noise = ("WARNING", "I0000", "E0000", "W0000", "To enable", "Pass --helpshort", "  ")
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(noise) and "UserWarning" not in line]
