"""The paper's CIFAR-10 presets: their architecture as stated (Chen et al. 2017, Sec. 4.3,
App. B-C), and launch.train -> evaluate -> sample -> export end to end on TFDS mock CIFAR-10
at tiny widths (nothing is read from disk or downloaded)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from launch import evaluate as evaluate_lib
from launch import export as export_lib
from launch import sample as sample_lib
from launch import train as train_lib
from vlae_tf import presets

PAPER_PRESETS = [name for name in presets.names() if name.startswith("cifar10_paper")]
# Tiny widths with the paper's structure: two stride-2 stages onto an 8x8 latent map.
TINY = dict(latent_shape=(8, 8, 2), latent_size=128, encoder_filters=(4, 8, 8),
            encoder_blocks=(1, 1, 1), z_map_channels=4, prior_steps=2, prior_hidden=(8, 8),
            decoder_filters=8, decoder_residual_blocks=1, num_mixtures=2)
# The mock's splits have this many images: train = 5,016 - the 5,000 carved out for validation.
MOCK_EXAMPLES = 5_016


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_every_cifar_paper_preset_is_the_papers_architecture(name):
    config = presets.get(name)
    assert presets.default_dataset(name) == "cifar10"
    assert (config.image_shape, config.latent_shape, config.latent_size) == (
        (32, 32, 3), (8, 8, 16), 1024)
    assert config.encoder == ("resnet" if "_resnet" in name else "densenet")
    assert (config.encoder_filters, config.encoder_blocks) == ((48, 96, 96), (2, 2, 3))
    assert config.latent_map == "symmetric" and config.iaf_steps == 0
    assert (config.prior, config.prior_network, config.prior_steps, config.prior_hidden) == (
        "af", "pixelcnn", 6, (128, 128))
    assert (config.decoder, config.decoder_filters, config.decoder_residual_blocks) == (
        "pixelcnnpp", 64, 4)
    label = name.split("_")[-1] if name[-1] in "0123456789" or name.endswith("gray") else "7x4"
    window = {"4x2": (4, 2), "5x3": (5, 3), "7x4": (7, 4), "gray": (7, 4)}[label]
    assert (config.window, config.grayscale_window) == (window, label == "gray")
    assert (config.likelihood, config.num_mixtures) == ("logistic_mixture", 10)
    assert config.free_bits_mode == "soft" and config.free_bits > 0


# Both backbones and two windows train (with the final evaluation: the importance-sampled
# NLL of the trained model); the diagnostics, launch.evaluate, sampling and decompression,
# and the SavedModel export (each a costly trace) run for the first only. The 4x2 window's
# cached sampler is pinned against the naive one in tests/test_pixelcnnpp_decoder.py.
@pytest.mark.parametrize("name,full", [("cifar10_paper", True),
                                       ("cifar10_paper_resnet_4x2", False)])
def test_train_evaluate_sample_export_on_mock_cifar(name, full, tmp_path):
    config = presets.get(name).replace(**TINY)
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES,
                                policy=tfds.testing.MockPolicy.USE_CODE):
        options = train_lib.TrainOptions(
            dataset="cifar10", model_dir=str(model_dir), batch_size=8, epochs=1,
            log_every=1, validation_max_images=4, diagnostics_images=8 if full else 0,
            eval_max_images=4,
            eval_num_images=2, eval_num_importance_samples=2, eval_batch_size=2,
            verbose="0")
        train_lib.train(config, options, log=lambda message: None)
        lines = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text()
                 .splitlines() if line.strip()]
        steps = [line for line in lines if line["kind"] == "step"]
        assert [line["step"] for line in steps] == [1, 2]
        assert all(np.isfinite(line["loss"]) for line in steps)
        evaluation = json.loads((model_dir / "eval.json").read_text())
        nll = evaluation["importance_sampled"]["nll_nats"]
        # Random mock images after 2 steps: finite, and within a few nats per sub-pixel of
        # the uniform distribution's 3072 * log(256) nats (an untrained model is worse).
        assert np.isfinite(nll) and 0 < nll < 2 * 32 * 32 * 3 * np.log(256)

        if not full:
            return
        again = evaluate_lib.evaluate(str(model_dir), num_importance_samples=2, max_images=2,
                                      batch_size=2, output=str(tmp_path / "is.json"),
                                      diagnostics_images=0)
        assert np.isfinite(again["nll_nats"]) and again["num_images"] == 2
        sample_lib.sample(str(model_dir), num=2, num_images=1, decompressions=1,
                          out_dir=str(tmp_path / "samples"), log=lambda m: None)
    assert (tmp_path / "samples" / "samples.png").stat().st_size > 0
    assert (tmp_path / "samples" / "decompressions.png").stat().st_size > 0
    version = export_lib.export(str(model_dir), str(tmp_path / "export"),
                                log=lambda message: None)
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    # Served as TF Serving would: a process that has TensorFlow but not vlae_tf.
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, version,
                             str(tmp_path / "images.npy")], capture_output=True, text=True,
                            timeout=600, cwd=str(tmp_path),
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.isfinite(served["elbo"]).all() and len(served["elbo"]) == 2
    assert served["mean"] == [2, 128] and served["mean_map"] == [2, 8, 8, 2]
    assert served["sample"] == [1, 32, 32, 3]
    loaded = tf.saved_model.load(version)
    np.testing.assert_allclose(loaded.signatures["elbo"](images=tf.constant(images))["elbo"],
                               served["elbo"], rtol=1e-6)


FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
images = tf.constant(np.load(sys.argv[2]))
elbo = model.signatures["elbo"](images=images)["elbo"].numpy()
encoded = model.signatures["encode"](images=images)
sample = model.signatures["sample"](num=tf.constant([1]), seed=tf.constant([[3, 4]]),
                                    temperature=tf.constant([1.0]))["images"]
leaked = [name for name in sys.modules if name.split(".")[0] in ("vlae_tf",
                                                                  "tensorflow_probability")]
assert not leaked, leaked
print(json.dumps({"elbo": elbo.tolist(), "mean": list(encoded["mean"].shape),
                  "mean_map": list(encoded["mean_map"].shape), "sample": list(sample.shape)}))
"""
