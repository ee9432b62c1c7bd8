"""bench.paper_vs_gated: each model is its preset with only the stated changes, the runs sit
where the brief says, and the paired difference is the mean and s.e. of per-image
differences. No training."""

import dataclasses
import os

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

import vlae_tf
from bench import paper_vs_gated

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS(["bench.paper_vs_gated"])
    with flagsaver.flagsaver():
        yield


def test_each_model_is_its_preset_with_only_momentum_and_seed_changed():
    FLAGS.seed = 3
    for preset in paper_vs_gated.PRESETS:
        base = vlae_tf.presets.get(preset)
        config = paper_vs_gated.run_config(preset)
        changed = {field.name for field in dataclasses.fields(config)
                   if getattr(config, field.name) != getattr(base, field.name)}
        assert changed == {"ema_momentum", "seed"}, preset
        assert config.ema_momentum == 0.99 and config.seed == 3
        # Free bits are the preset's own: 0.01 nats x 784 dims, hard, one group.
        assert config.free_bits == pytest.approx(7.84) and config.free_bits_mode == "hard"
        assert config.free_bits_groups == base.free_bits_groups
    assert paper_vs_gated.run_config("mnist_paper").decoder == "masked_resnet"
    assert paper_vs_gated.run_config("mnist_gated").decoder == "gated"


def test_runs_share_bench_claims_budget_and_live_under_the_dataset_budget_name():
    FLAGS.dataset, FLAGS.work_dir = "fashion_mnist_binary", paper_vs_gated.WORK_DIR
    options = paper_vs_gated.claims.train_options(paper_vs_gated.claims.run_dir("mnist_paper"))
    assert options.model_dir == os.path.join(
        "runs", "paper_vs_gated", "fashion_mnist_binary-800steps-seed0", "mnist_paper")
    assert (options.steps, options.batch_size, options.select) == (800, 32, "last")
    assert (options.eval_max_images, options.eval_num_images,
            options.eval_num_importance_samples) == (500, 200, 128)


def test_paired_difference_on_made_up_numbers():
    first, second = [1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 1.0, 5.0]  # differences 1, 0, 2, -1
    result = paper_vs_gated.paired_difference(first, second)
    assert result["num_images"] == 4
    assert result["mean_nats"] == pytest.approx(0.5)
    # sample s.d. of (1, 0, 2, -1) is sqrt(5 / 3); s.e. = s.d. / sqrt(4)
    assert result["stderr_nats"] == pytest.approx(np.sqrt(5.0 / 3.0) / 2.0)
    # Pairing removes what the images share: a common per-image offset leaves the s.e. at 0.
    offsets = np.random.default_rng(0).normal(100.0, 20.0, size=50)
    shared = paper_vs_gated.paired_difference(offsets - 1.5, offsets)
    assert shared["mean_nats"] == pytest.approx(-1.5)
    assert shared["stderr_nats"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="same length"):
        paper_vs_gated.paired_difference([1.0, 2.0], [1.0])
