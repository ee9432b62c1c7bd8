"""The paper's training protocol in launch.train: --train_on=train+validation (the final
retraining) really trains on both splits, and --select=best_validation makes evaluate /
sample / export load the epoch whose Polyak-averaged weights have the best validation
ELBO, across a resume.

Tiny models on a few real mnist5k digits, 4 steps per epoch, as in test_launch.py.
"""

import collections
import hashlib
import json

import numpy as np
import pytest
import tensorflow as tf

import pipelines
import vlae_tf
from launch import common
from launch import train as train_lib
from launch.common import LaunchError
from vlae_tf import evaluation

TINY = dict(latent_size=4, encoder_filters=(8,), encoder_hidden=16, prior_steps=1,
            prior_hidden=(16,), decoder_layers=2, decoder_filters=8,
            decoder_residual_blocks=0, z_map_channels=4, ema_momentum=0.9)


def options(model_dir, **changes):
    values = dict(dataset="mnist5k_binary", model_dir=str(model_dir), batch_size=16,
                  epochs=1, max_train_examples=64, log_every=0, eval_max_images=8,
                  eval_num_images=0, diagnostics_images=0,
                  validation_max_images=32, keep_checkpoints=3, verbose="0")
    values.update(changes)
    return train_lib.TrainOptions(**values)


def digests(images):
    return collections.Counter(hashlib.sha1(image.tobytes()).hexdigest() for image in images)


def run_json(model_dir):
    return json.loads((model_dir / common.RUN_FILE).read_text())


# ---------------------------------------------------------------------- train+validation
def test_train_plus_validation_trains_on_the_train_and_the_validation_images(tmp_path,
                                                                             monkeypatch):
    """Every image fit() trains on is recorded (in train_step, so exactly the batches
    consumed). 8-bit mnist5k, so an image is recognisable (no binarization draw)."""
    seen = []
    original = vlae_tf.VLAE.train_step

    def recording_train_step(self, data):
        tf.py_function(lambda images: seen.append(images.numpy()), [data], [])
        return original(self, data)

    monkeypatch.setattr(vlae_tf.VLAE, "train_step", recording_train_step)
    config = vlae_tf.presets.get("fashion_mnist_cpu").replace(**TINY, num_mixtures=2)
    model_dir = tmp_path / "final"
    result = train_lib.train(config, options(model_dir, dataset="mnist5k",
                                             train_on="train+validation"),
                             log=lambda _: None)
    assert result["step"] == 4
    trained_on = np.concatenate(seen)
    assert trained_on.shape == (64, 28, 28, 1)  # one epoch = one pass over 64 images
    # Exactly the first 64 images of the union, each once (shuffled) ...
    union, _ = pipelines.load_arrays("mnist5k", pipelines.TRAIN_AND_VALIDATION)
    assert digests(trained_on) == digests(union[:64])
    # ... and the union is train and validation: some of them are validation images.
    validation, _ = pipelines.load_arrays("mnist5k", "validation")
    train, _ = pipelines.load_arrays("mnist5k", "train")
    from_validation = sum((digests(trained_on) & digests(validation)).values())
    from_train = sum((digests(trained_on) & digests(train)).values())
    assert from_validation >= 1 and from_validation + from_train == 64
    # The whole stream (no max_train_examples): one pass is all 4,000 + 500 images.
    full = np.concatenate(list(train_lib.training_data(
        options(model_dir, dataset="mnist5k", train_on="train+validation",
                max_train_examples=None, batch_size=500), seed=0)))
    assert digests(full) == digests(train) + digests(validation)

    # Nothing was held out: the last epoch's weights are the selected ones, and run.json
    # says so; a best-validation choice is refused with the reason.
    run = run_json(model_dir)
    assert run["train_on"] == "train+validation" and run["select"] == "last"
    assert run["selection"]["weights"] == common.WEIGHTS_FILE
    assert "train+validation" in run["selection"]["reason"]
    assert not (model_dir / common.BEST_WEIGHTS_FILE).exists()
    assert common.selected_weights(str(model_dir)).endswith(common.WEIGHTS_FILE)
    with pytest.raises(LaunchError, match="no best-validation weights: it trained on "
                                          "train\\+validation"):
        common.selected_weights(str(model_dir), "best_validation")
    # Resuming must keep the data stream.
    with pytest.raises(LaunchError, match="--train_on=train\\+validation, not train"):
        train_lib.train(config, options(model_dir, dataset="mnist5k", epochs=2))


def test_train_on_and_select_options_are_checked(tmp_path):
    with pytest.raises(LaunchError, match="--train_on: expected one of train, "
                                          "train\\+validation; got 'validation'"):
        options(tmp_path, train_on="validation")
    with pytest.raises(LaunchError, match="--select=best_validation: expected "
                                          "--train_on=train"):
        options(tmp_path, train_on="train+validation", select="best_validation")
    with pytest.raises(LaunchError, match="--select: expected one of auto, best_validation, "
                                          "last; got 'best'"):
        options(tmp_path, select="best")
    with pytest.raises(LaunchError, match="--select: expected one of best_validation, last"):
        common.selected_weights(str(tmp_path), "best")


# ------------------------------------------------------------ best-validation selection
def test_selected_weights_are_the_best_validation_epoch_across_a_resume(tmp_path,
                                                                        monkeypatch):
    """The validation scores are forced to 500 / 400 / 450 nats for epochs 1 / 2 / 3 (the
    real ELBO of each epoch's Polyak-averaged weights is recorded alongside), so the best
    epoch is 2, not the last. Training stops after epoch 2 and resumes for epoch 3, with
    best.weights.h5 lost as a kill right after epoch 2's checkpoint would leave it."""
    forced = [500.0, 400.0, 450.0]
    real = []
    original = train_lib.validation_elbo

    def forced_validation_elbo(model, images, seed):
        summary = original(model, images, seed)
        real.append(summary["negative_elbo_nats"])
        return dict(summary, negative_elbo_nats=forced[len(real) - 1])

    monkeypatch.setattr(train_lib, "validation_elbo", forced_validation_elbo)
    config = vlae_tf.presets.get("mnist_cpu").replace(**TINY)
    model_dir = tmp_path / "tuned"
    first = train_lib.train(config, options(model_dir, epochs=2), log=lambda _: None)
    selection = run_json(model_dir)["selection"]
    assert (selection["epoch"], selection["step"]) == (2, 8)
    assert selection["validation_negative_elbo_nats"] == 400.0
    assert selection["validation_images"] == 32
    assert first["eval"]["settings"]["selected_step"] == 8
    latest = json.loads((model_dir / "checkpoints" / "latest.json").read_text())
    assert latest["selection"] == selection  # in the checkpoint state: survives a resume

    (model_dir / common.BEST_WEIGHTS_FILE).unlink()
    messages = []
    result = train_lib.train(config, options(model_dir, epochs=3), log=messages.append)
    assert result["step"] == 12 and len(real) == 3
    assert run_json(model_dir)["selection"] == selection  # epoch 3 (450) is not better
    lines = [json.loads(line) for line in (model_dir / common.METRICS_FILE).read_text()
             .splitlines() if '"epoch"' in line]
    assert [line["validation_negative_elbo_nats"] for line in lines
            if line["kind"] == "epoch"] == forced
    assert any("Evaluating the selected weights: epoch 2" in message for message in messages)

    # What evaluate / sample / export load is epoch 2's Polyak-averaged model: its
    # validation ELBO is the one recorded at epoch 2, not epoch 3's (the last weights).
    images = pipelines.eval_images("mnist5k_binary", "validation", 32, seed=config.seed)
    assert len(set(np.round(real, 4))) == 3  # the epochs' weights do differ
    model, _ = common.load_trained_model(str(model_dir))
    score = evaluation.elbo_summary(model, images, seed=config.seed)["negative_elbo_nats"]
    assert score == pytest.approx(real[1], abs=1e-4)
    last, _ = common.load_trained_model(str(model_dir), "last")
    score = evaluation.elbo_summary(last, images, seed=config.seed)["negative_elbo_nats"]
    assert score == pytest.approx(real[2], abs=1e-4)
    # The final evaluation is of the selected weights too.
    test_images = pipelines.eval_images("mnist5k_binary", "test", 8, seed=config.seed)
    assert result["eval"]["elbo"]["negative_elbo_nats"] == pytest.approx(
        evaluation.elbo_summary(model, test_images, seed=config.seed)["negative_elbo_nats"],
        abs=1e-4)
    assert result["eval"]["selection"] == selection

    # A resumed run keeps its selection rule and the images it scores.
    with pytest.raises(LaunchError, match="--select=best_validation, not last"):
        train_lib.train(config, options(model_dir, epochs=4, select="last"))
    with pytest.raises(LaunchError, match="--validation_max_images=32, not 16"):
        train_lib.train(config, options(model_dir, epochs=4, validation_max_images=16))
