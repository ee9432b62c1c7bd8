"""bench.disentanglement: every model is the base with the one change it names; a 2-step
run on a tiny subset writes its results and is not redone on a second call; the VLAE's
traversal rows are samples of its decoder."""

import dataclasses
import json
import os

import numpy as np
import pytest

import vlae_tf
from bench import disentanglement as bench

TINY_RUN = ["--models=vae", "--steps=2", "--batch_size=8", "--max_train_examples=16", "--tiny",
            "--eval_images=8", "--mig_samples=64", "--beta_vae_train=8", "--beta_vae_eval=8",
            "--beta_vae_pairs=2", "--traversal_steps=3"]


def _changed(config, base):
    return {field.name for field in dataclasses.fields(config)
            if getattr(config, field.name) != getattr(base, field.name)}


def test_each_model_is_the_base_with_its_one_change():
    options = bench.parse_args(["--seed=3", "--steps=120"])
    base = vlae_tf.presets.get(bench.BASE_PRESET).replace(**bench.BASE, seed=3)
    expected = {"vae": {"window"}, "beta_vae": {"window", "kl_weight"}, "vlae_3x2": {"window"}}
    if bench.HAS_CAPACITY:
        expected["capacity"] = {"window", "capacity_gamma", "capacity_end", "capacity_steps"}
    assert set(bench._models(options)) == set(expected)
    for name, fields in expected.items():
        config = bench.model_config(options, name)
        assert _changed(config, base) == fields, name
        assert (config.image_shape, config.latent_size, config.prior) == (
            (64, 64, 1), 10, "standard_normal")
        assert config.free_bits_mode == "none" and config.seed == 3
    assert bench.model_config(options, "vlae_3x2").window == (3, 2)
    assert bench.model_config(options, "beta_vae").kl_weight == 4.0
    if bench.HAS_CAPACITY:
        capacity = bench.model_config(options, "capacity")
        assert (capacity.capacity_gamma, capacity.capacity_end, capacity.capacity_steps) == (
            100.0, 25.0, 120)
    training = bench.train_options(options, "vae")
    assert (training.dataset, training.steps, training.select) == ("dsprites", 120, "last")
    assert training.model_dir.endswith(os.path.join("dsprites-120steps-batch32-seed3", "vae"))
    assert training.steps_per_epoch == 120  # a checkpoint at least every 500 steps:
    assert bench.train_options(bench.parse_args(["--steps=1201"]), "vae").steps_per_epoch == 401
    with pytest.raises(SystemExit):
        bench.parse_args(["--models=vae,nope"])


def test_a_two_step_run_writes_results_and_is_not_redone(tmp_path, monkeypatch):
    argv = TINY_RUN + [f"--work_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'out'}"]
    rows, references = bench.main(argv)
    out = tmp_path / "out" / "dsprites-2steps-batch8-seed0-first16-tiny"
    row = json.loads((out / "vae.json").read_text())
    assert row == rows[0] and row["train_steps"] == 2
    for key in ("negative_elbo_nats", "recon_nats", "kl_nats", "mig", "beta_vae_accuracy"):
        assert np.isfinite(row[key]), key
    assert 0 <= row["mig"] <= 1 and 0 <= row["beta_vae_accuracy"] <= 1
    assert len(row["per_unit_kl_nats"]) == 3 and sorted(row["traversal_rows"]) == [0, 1, 2]
    assert (out / "vae_traversal.png").stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "| vae |" in summary and "true_factors" in summary and "--steps=2" in summary
    assert [reference["model"] for reference in references] == ["true_factors", "random_codes"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(bench.train_lib, "train", no_training)
    again, _ = bench.main(argv)
    assert again[0] == row


def test_vlae_traversal_rows_are_decoder_samples():
    options = bench.parse_args(["--tiny", "--traversal_steps=3"])
    config = bench.model_config(options, "vlae_3x2")
    model = vlae_tf.VLAE(config)
    grid, order = bench.traversal(model, config, options, per_unit_kl=[0.1, 0.5, 0.2])
    assert order == [1, 2, 0]  # largest KL first
    assert grid.shape == (3 * 66 + 2, 3 * 66 + 2, 1)  # 3 x 3 images of 64 + 2-pixel padding
    cells = np.stack([grid[2 + 66 * row:66 * (row + 1), 2 + 66 * column:66 * (column + 1)]
                      for row in range(3) for column in range(3)])
    assert set(np.unique(cells)) <= {0, 255}  # binary samples, not grey means
