"""VLAE model: training wiring, estimators, objectives, input validation, persistence."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import objectives
from vlae_tf.config import VLAEConfig


def tiny_config(**changes):
    base = VLAEConfig(image_shape=(8, 8, 1), latent_size=6, encoder_filters=(8,),
                      encoder_hidden=16, prior="af", prior_steps=2, prior_hidden=(16,),
                      prior_mean_only=False, iaf_steps=2, iaf_hidden=(16,), iaf_context_size=8,
                      window=(3, 2), decoder_layers=2, decoder_filters=8,
                      decoder_residual_blocks=1, z_map_channels=4, ema_momentum=None)
    return base.replace(**changes)


def binary_images(count=16, seed=0, shape=(8, 8, 1)):
    generator = np.random.default_rng(seed)
    # Structured data (half the images have a bright top half) so z has something to carry.
    images = generator.random((count,) + shape) < 0.2
    images[: count // 2, : shape[0] // 2] |= generator.random((count // 2, shape[0] // 2) +
                                                             shape[1:]) < 0.8
    return images.astype(np.uint8)


@pytest.fixture(scope="module")
def trained_once():
    model = vlae_tf.VLAE(tiny_config())
    before = {id(variable): variable.numpy().copy() for variable in model.trainable_weights}
    model.compile()
    history = model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0, shuffle=False)
    return model, before, history


def test_every_component_is_tracked_and_trained(trained_once):
    model, before, _ = trained_once
    tracked = {id(variable) for variable in model.trainable_weights}
    components = {"encoder": model.encoder, "pixelcnn": model.pixelcnn,
                  "latent_map": model.latent_map, "prior": model.prior, "iaf": model.iaf}
    for name, component in components.items():
        weights = component.trainable_weights
        assert weights, f"{name} has no trainable weights"
        missing = [variable.path for variable in weights if id(variable) not in tracked]
        assert not missing, f"{name} weights not tracked by the model: {missing}"
        changed = [not np.array_equal(before[id(variable)], variable.numpy())
                   for variable in weights]
        assert any(changed), f"no weight of {name} changed after a fit step"
        # Every weight that receives a gradient moves: at most biases of unused paths stay.
        assert np.mean(changed) > 0.5, f"{name}: only {np.mean(changed):.0%} of weights moved"


def test_fit_reports_metrics_in_nats_and_bits(trained_once):
    _, _, history = trained_once
    for key in ("loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim"):
        assert key in history.history, f"missing metric {key}"
        assert np.isfinite(history.history[key][-1])
    elbo = history.history["elbo_nats"][-1]
    np.testing.assert_allclose(history.history["bits_per_dim"][-1],
                               -elbo / (64 * math.log(2)), rtol=1e-4)


def test_elbo_terms_add_up_and_are_reproducible():
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(4)
    terms = model.elbo(images, seed=3)
    np.testing.assert_allclose(terms["elbo"], -(terms["recon"] + terms["kl"]), rtol=1e-6)
    again = model.elbo(images, seed=3)
    np.testing.assert_array_equal(terms["elbo"], again["elbo"])
    other = model.elbo(images, seed=4)
    assert not np.array_equal(terms["elbo"], other["elbo"])
    assert np.all(terms["recon"].numpy() > 0)


def test_importance_sampling_bounds():
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(6)
    single = model.importance_log_likelihood(images, num_samples=1, seed=11)
    elbo_same_draw = model.elbo(images, seed=11)["elbo"]
    np.testing.assert_allclose(single, elbo_same_draw, rtol=1e-5, atol=1e-4)

    elbo_mean = np.mean([model.elbo(images, seed=s)["elbo"].numpy() for s in range(64)], axis=0)
    estimate = model.importance_log_likelihood(images, num_samples=64, chunk_size=16, seed=5)
    assert np.all(estimate.numpy() >= elbo_mean - 1e-3), (estimate, elbo_mean)
    # On average over seeds the K=64 bound is higher than the K=1 bound.
    k1 = np.mean([model.importance_log_likelihood(images, 1, seed=s).numpy() for s in range(8)])
    assert estimate.numpy().mean() > k1


def test_importance_sampling_does_not_depend_on_chunk_size():
    """Sample k's noise depends on (seed, k) only: chunking changes memory, not the result."""
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(4)
    one_chunk = model.importance_log_likelihood(images, 40, chunk_size=40, seed=1).numpy()
    many_chunks = model.importance_log_likelihood(images, 40, chunk_size=7, seed=1).numpy()
    np.testing.assert_allclose(one_chunk, many_chunks, rtol=1e-5)
    other_seed = model.importance_log_likelihood(images, 40, chunk_size=7, seed=2).numpy()
    assert not np.array_equal(many_chunks, other_seed)


def test_unconditional_model_is_exact():
    model = vlae_tf.VLAE(tiny_config(use_latent=False))
    images = binary_images(4)
    terms = model.elbo(images)
    np.testing.assert_array_equal(terms["kl"], np.zeros(4))
    np.testing.assert_allclose(model.importance_log_likelihood(images, 8), terms["elbo"])


def test_probabilities_of_all_binary_images_sum_to_one():
    """Exact check on a 2x2 image with no latent: sum_x p(x) over all 16 images is 1."""
    model = vlae_tf.VLAE(tiny_config(image_shape=(2, 2, 1), use_latent=False, window=None,
                                     decoder_layers=2))
    every_image = np.array([[(index >> bit) & 1 for bit in range(4)] for index in range(16)],
                           dtype=np.uint8).reshape(16, 2, 2, 1)
    log_probs = model.elbo(every_image)["elbo"].numpy()
    np.testing.assert_allclose(np.exp(log_probs).sum(), 1.0, rtol=1e-5)


def test_free_bits_objective():
    kl_per_group = tf.constant([[0.5, 3.0], [1.5, 1.0]])
    # group means are 1.0 and 2.0; with lambda 1.5 -> 1.5 + 2.0
    np.testing.assert_allclose(objectives.free_bits_kl(kl_per_group, 1.5), 3.5)
    recon, kl = tf.constant([10.0, 20.0]), tf.reduce_sum(kl_per_group, axis=1)
    hard = objectives.training_loss(recon, kl, kl_per_group, "hard", 1.5, 1.0)
    np.testing.assert_allclose(hard, 15.0 + 3.5)
    plain = objectives.training_loss(recon, kl, kl_per_group, "none", 1.5, 1.0)
    np.testing.assert_allclose(plain, 15.0 + 3.0)
    soft = objectives.training_loss(recon, kl, kl_per_group, "soft", 1.5, 0.5)
    np.testing.assert_allclose(soft, 15.0 + 1.5)


def test_soft_free_bits_weight_rule():
    update = objectives.update_soft_kl_weight
    np.testing.assert_allclose(update(tf.constant(0.5), 2.0, 1.0), 0.55)  # KL > 1.05 lambda
    np.testing.assert_allclose(update(tf.constant(0.5), 0.5, 1.0), 0.5 / 1.1)  # KL < lambda
    np.testing.assert_allclose(update(tf.constant(0.5), 1.02, 1.0), 0.5)  # in between
    np.testing.assert_allclose(update(tf.constant(1.0), 9.0, 1.0), 1.0)  # capped at 1


def test_soft_free_bits_adapts_during_fit():
    model = vlae_tf.VLAE(tiny_config(free_bits_mode="soft", free_bits=1e4, prior="standard_normal",
                                     iaf_steps=0))
    model.compile()
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0)
    # KL is far below the target, so every step lowers gamma by 1.1.
    np.testing.assert_allclose(model.soft_kl_weight.numpy(), 1.1 ** -2, rtol=1e-5)


def test_free_bits_groups_split_the_kl():
    model = vlae_tf.VLAE(tiny_config(prior="standard_normal", iaf_steps=0, free_bits_groups=3,
                                     free_bits=0.1))
    terms = model._elbo_terms(tf.constant(binary_images(4)), vlae_tf.model.make_seed(1))
    assert terms["kl_per_group"].shape == (4, 3)
    np.testing.assert_allclose(tf.reduce_sum(terms["kl_per_group"], axis=1), terms["kl"],
                               rtol=1e-5, atol=1e-5)


def test_data_dependent_init_normalises_preactivations():
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(32)
    assert model.data_dependent_init(images) > 10
    stem = model.encoder.get_layer("stem")
    probe = keras.Model(model.encoder.inputs, stem.output)
    outputs = probe(model._scale(images)).numpy()
    np.testing.assert_allclose(outputs.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(outputs.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


@pytest.mark.parametrize("prior", ["af", "standard_normal"])
def test_data_dependent_init_on_a_degenerate_batch_keeps_the_model_sane(prior):
    # Identical images give the dense layers zero variance: 1/sqrt(0 + 1e-6) scaled them
    # by 1000 per layer and the ELBO afterwards was about -1e11.
    images = binary_images(16)
    keras.utils.set_random_seed(0)
    model = vlae_tf.VLAE(tiny_config(prior=prior))
    before = -model.elbo(images)["elbo"].numpy().mean()
    assert model.data_dependent_init(np.zeros((8, 8, 8, 1), np.uint8)) > 10
    gains = [variable.numpy() for variable in model.weights if variable.path.endswith("gain")]
    assert gains and all(np.all(np.isfinite(gain)) and np.all(np.abs(gain) < 1e3)
                         for gain in gains)
    terms = {key: value.numpy() for key, value in model.elbo(images).items()}
    assert all(np.all(np.isfinite(value)) for value in terms.values())
    assert -terms["elbo"].mean() < 2 * before, (before, terms)
    assert terms["kl"].mean() < 100.0, terms["kl"]


def test_sampling_and_decompression():
    model = vlae_tf.VLAE(tiny_config())
    samples = model.sample(3, seed=7)
    assert samples.shape == (3, 8, 8, 1) and samples.dtype == tf.uint8
    assert set(np.unique(samples.numpy())) <= {0, 1}
    np.testing.assert_array_equal(samples, model.sample(3, seed=7))
    assert not np.array_equal(samples, model.sample(3, seed=8))
    images = binary_images(2)
    decompressed = model.decompress(images, seed=1)
    assert decompressed.shape == images.shape and decompressed.dtype == tf.uint8
    np.testing.assert_array_equal(decompressed, model.decompress(images, seed=1))


def test_naive_sampler_draws_from_the_model():
    """With no latent and a 1x2 image, sample frequencies match the model's exact p(x)."""
    model = vlae_tf.VLAE(tiny_config(image_shape=(1, 2, 1), use_latent=False, window=(3, 1)))
    head = model.pixelcnn.get_layer("head")
    head.bias.assign(head.bias.numpy() + 0.7)  # move p(x) away from uniform
    every_image = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.uint8).reshape(4, 1, 2, 1)
    exact = np.exp(model.elbo(every_image)["elbo"].numpy())
    samples = model.sample(2000, seed=3).numpy().reshape(2000, 2)
    frequencies = np.bincount(samples[:, 0] * 2 + samples[:, 1], minlength=4) / 2000
    np.testing.assert_allclose(frequencies, exact, atol=0.04)


def test_colour_logistic_model_trains_without_nans():
    config = tiny_config(image_shape=(8, 8, 3), likelihood="logistic_mixture", num_mixtures=2,
                         grayscale_window=True)
    model = vlae_tf.VLAE(config)
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3)).astype(np.uint8)
    images[0] = 0
    images[1] = 255  # the edge bins
    model.compile()
    history = model.fit(images, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # 8-bit data: the bound is below the uniform model's 8 bits/dim after a step or two.
    assert history.history["bits_per_dim"][-1] < 8.5


@pytest.mark.parametrize("images, message", [
    (np.zeros((8, 8, 1), np.uint8), "4-D"),
    (np.zeros((2, 8, 9, 1), np.uint8), "shape"),
    (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
    (np.zeros((2, 8, 8, 1), np.float32), "dtype"),
    (np.full((2, 8, 8, 1), 255, np.uint8), r"\[0, 1\].*binarize"),
    (np.full((2, 8, 8, 1), -1, np.int32), r"\[0, 1\]"),
])
def test_bad_images_raise_clear_errors(images, message):
    model = vlae_tf.VLAE(tiny_config())
    with pytest.raises(ValueError, match=message):
        model.elbo(images)


def test_bad_values_inside_fit_fail_with_the_message_not_a_nan():
    model = vlae_tf.VLAE(tiny_config(prior="standard_normal", iaf_steps=0))
    model.compile()
    data = tf.data.Dataset.from_tensor_slices(np.full((4, 8, 8, 1), 7, np.uint8)).batch(2)
    with pytest.raises(Exception, match=r"values must be in \[0, 1\]"):
        model.fit(data, epochs=1, verbose=0)


def test_bad_arguments():
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(2)
    with pytest.raises(ValueError, match="num_samples"):
        model.importance_log_likelihood(images, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        model.importance_log_likelihood(images, 4, chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, temperature=0.0)
    with pytest.raises(ValueError, match="method"):
        model.sample(1, method="magic")
    with pytest.raises(ValueError, match="config"):
        vlae_tf.VLAE("mnist_cpu")


def test_weights_round_trip(tmp_path):
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images(4)
    for variable in model.trainable_weights:  # move every weight off its initial value
        variable.assign(variable + np.random.default_rng(0).normal(0, 0.01, variable.shape))
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    restored = vlae_tf.VLAE(tiny_config())
    restored.load_weights(path)
    np.testing.assert_array_equal(model.elbo(images, seed=2)["elbo"],
                                  restored.elbo(images, seed=2)["elbo"])
    np.testing.assert_array_equal(model.sample(2, seed=1), restored.sample(2, seed=1))
