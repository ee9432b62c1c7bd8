"""vlae_tf.evaluation: ELBO and importance-sampled summaries, standard errors, EMA swapping.

A tiny model (7x8 binary images, a few hundred parameters) with its initial weights is
enough: these tests check the bookkeeping (batching, seeds, means, standard errors, which
weights the model holds), not how good the model is.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import evaluation, inputs
from vlae_tf.config import VLAEConfig

NUM_DIMS = 7 * 8


def tiny_config(**changes):
    base = VLAEConfig(image_shape=(7, 8, 1), latent_size=4, encoder_filters=(4,),
                      encoder_hidden=8, prior="af", prior_steps=1, prior_hidden=(8,),
                      prior_mean_only=False, decoder_layers=2, decoder_filters=6,
                      decoder_residual_blocks=0, z_map_channels=3, ema_momentum=None)
    return base.replace(**changes)


_MODELS = {}


def model_for(**changes):
    config = tiny_config(**changes)
    key = config.to_json()
    if key not in _MODELS:
        _MODELS[key] = vlae_tf.VLAE(config)
    return _MODELS[key]


def binary_images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (count, 7, 8, 1)).astype(np.uint8)


def test_mean_and_stderr_match_numpy():
    values = np.array([1.0, 2.0, 4.0, 8.0])
    mean, stderr = evaluation.mean_and_stderr(values)
    assert mean == pytest.approx(3.75)
    assert stderr == pytest.approx(np.std(values, ddof=1) / 2.0)
    assert evaluation.mean_and_stderr([5.0]) == (5.0, 0.0)  # one image: no spread to measure
    with pytest.raises(ValueError, match="values: expected at least one value"):
        evaluation.mean_and_stderr([])


def test_bits_per_dim_divides_by_dims_and_ln2():
    config = tiny_config()
    assert evaluation.bits_per_dim(NUM_DIMS * math.log(2.0), config) == pytest.approx(1.0)


def test_elbo_summary_is_numpys_mean_and_stderr_of_the_per_image_values():
    model = model_for()
    images = binary_images(12)
    # batch_size 5: two full batches and a ragged one, each with the same seed.
    summary, terms = evaluation.elbo_summary(model, images, batch_size=5, seed=3,
                                             return_per_image=True)
    assert set(terms) == {"elbo", "recon", "kl"}
    assert all(values.shape == (12,) for values in terms.values())
    negative = -terms["elbo"].astype(np.float64)
    assert summary["num_images"] == 12 and summary["seed"] == 3
    assert summary["negative_elbo_nats"] == pytest.approx(negative.mean(), rel=1e-12)
    assert summary["negative_elbo_stderr"] == pytest.approx(
        negative.std(ddof=1) / math.sqrt(12), rel=1e-12)
    assert summary["recon_nats"] == pytest.approx(float(np.mean(terms["recon"])), rel=1e-6)
    assert summary["kl_nats"] == pytest.approx(float(np.mean(terms["kl"])), rel=1e-6)
    assert summary["negative_elbo_nats"] == pytest.approx(
        summary["recon_nats"] + summary["kl_nats"], abs=1e-3)
    assert summary["bits_per_dim"] == pytest.approx(
        summary["negative_elbo_nats"] / (NUM_DIMS * math.log(2.0)), rel=1e-12)
    # The per-image values are model.elbo's on each batch with the one seed.
    for start in range(0, 12, 5):
        expected = model.elbo(images[start:start + 5], seed=inputs.make_seed(3))["elbo"]
        np.testing.assert_allclose(terms["elbo"][start:start + 5], expected.numpy(),
                                   rtol=1e-5, atol=1e-4)
    # Without return_per_image: the same summary alone.
    assert evaluation.elbo_summary(model, images, batch_size=5, seed=3) == summary


def test_importance_summary_with_one_sample_is_the_elbo_of_each_batch_seed(capsys):
    """K = 1 draws sample 0's noise from the batch seed [seed, start], which is the draw
    `model.elbo(batch, seed)` uses (vlae_tf.estimators): the estimates are that ELBO."""
    model = model_for()
    images = binary_images(7, seed=1)
    summary, per_image = evaluation.importance_summary(
        model, images, num_samples=1, batch_size=3, seed=5, progress=True,
        return_per_image=True)
    assert "7/7" in capsys.readouterr().out  # the progress bar reached the end
    expected = np.concatenate([
        -model.elbo(images[start:start + 3],
                    seed=evaluation.importance_batch_seed(5, start))["elbo"].numpy()
        for start in range(0, 7, 3)])
    np.testing.assert_allclose(per_image["nll"], expected, rtol=1e-5, atol=1e-4)
    mean, stderr = np.mean(per_image["nll"]), np.std(per_image["nll"], ddof=1) / math.sqrt(7)
    assert summary["nll_nats"] == pytest.approx(mean, rel=1e-12)
    assert summary["nll_stderr"] == pytest.approx(stderr, rel=1e-12)
    assert summary["bits_per_dim"] == pytest.approx(mean / (NUM_DIMS * math.log(2.0)))
    assert (summary["num_images"], summary["num_importance_samples"]) == (7, 1)
    # Batches draw different noise: with one seed for all of them, image 3 (the first of
    # the second batch) would get image 0's noise, and K=1 would not differ by batch seed.
    same_seed = -model.elbo(images[3:6], seed=evaluation.importance_batch_seed(5, 0))["elbo"]
    assert not np.allclose(per_image["nll"][3:6], same_seed.numpy())


def test_importance_progress_bar_shows_the_running_mean(monkeypatch):
    """After each batch the bar shows the mean NLL of the images so far. Fed as a plain
    metric, Progbar averaged the running means again (a mean of means)."""
    shown = []

    class Recording(keras.utils.Progbar):
        def update(self, current, values=None, finalize=None):
            super().update(current, values, finalize)
            value = self._values["nll_nats"]  # what Progbar displays, by its own rule:
            shown.append(value[0] / max(1, value[1]) if isinstance(value, list) else value)

    monkeypatch.setattr(keras.utils, "Progbar", Recording)
    images = binary_images(6, seed=2)
    images[:2] = 1  # very different NLLs per batch, so a mean of means is visibly off
    summary, per_image = evaluation.importance_summary(
        model_for(), images, num_samples=2, batch_size=2, seed=1, return_per_image=True)
    running = [np.mean(per_image["nll"][:end]) for end in (2, 4, 6)]
    np.testing.assert_allclose(shown, running, rtol=1e-6)
    assert shown[-1] == pytest.approx(summary["nll_nats"], rel=1e-6)


def test_importance_summary_is_silent_without_progress_and_checks_its_arguments(capsys):
    model = model_for()
    images = binary_images(2)
    summary = evaluation.importance_summary(model, images, num_samples=2, batch_size=2,
                                            progress=False)
    assert capsys.readouterr().out == ""
    assert summary["chunk_size"] == 2  # the default: all K at once for so few images
    for arguments, name in [(dict(num_samples=0), "num_samples"),
                            (dict(num_samples=2, batch_size=0), "batch_size"),
                            (dict(num_samples=2, chunk_size=0), "chunk_size")]:
        with pytest.raises(ValueError, match=f"{name}: expected an int >= 1"):
            evaluation.importance_summary(model, images, progress=False, **arguments)
    with pytest.raises(ValueError, match=r"images: expected a non-empty batch"):
        evaluation.importance_summary(model, images[0], 2, progress=False)


def test_polyak_weights_holds_the_ema_inside_and_restores_raw_weights_bit_for_bit():
    """Checked inside fit (as launch.train's callbacks use it): at the end of fit Keras
    writes the averages into the weights itself, which would hide a swap that did nothing."""
    model = vlae_tf.VLAE(tiny_config(ema_momentum=0.5))
    model.compile()
    assert evaluation.ema_optimizer(model) is model.optimizer.inner_optimizer  # unwrapped
    with evaluation.polyak_weights(model) as swapped:  # no step yet: nothing to swap
        assert swapped is False
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch != 2:
                return
            seen["raw"] = [variable.numpy() for variable in model.trainable_weights]
            seen["ema"] = [average.numpy() for average in
                           evaluation.ema_optimizer(model)._model_variables_moving_average]
            with pytest.raises(KeyError):  # an error inside the block still restores
                with evaluation.polyak_weights(model) as swapped:
                    seen["swapped"] = swapped
                    seen["inside"] = [variable.numpy() for variable in model.trainable_weights]
                    raise KeyError("inside")
            seen["after"] = [variable.numpy() for variable in model.trainable_weights]

    data = tf.data.Dataset.from_tensor_slices(binary_images(12)).batch(4)
    model.fit(data, epochs=1, callbacks=[Probe()], verbose=0, shuffle=False)
    assert seen["swapped"] is True
    assert any(not np.array_equal(raw, ema) for raw, ema in zip(seen["raw"], seen["ema"]))
    for inside, ema in zip(seen["inside"], seen["ema"]):
        np.testing.assert_array_equal(inside, ema)
    for after, raw in zip(seen["after"], seen["raw"]):
        np.testing.assert_array_equal(after, raw)
    state = evaluation.training_state(model)
    assert state["nonfinite_steps"] == 0.0 and isinstance(state["soft_kl_weight"], float)


def test_polyak_weights_without_ema_swaps_nothing():
    model = vlae_tf.VLAE(tiny_config(ema_momentum=None))
    model.compile()
    assert evaluation.ema_optimizer(model) is None
    before = [variable.numpy() for variable in model.trainable_weights]
    with evaluation.polyak_weights(model) as swapped:
        assert swapped is False
    for variable, value in zip(model.trainable_weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)
