"""Keras-native persistence: `.keras` files and `tf.train.Checkpoint` round trips give a
model with identical outputs (and training state) to the one saved."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf.config import VLAEConfig


def tiny_config(**changes):
    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                        encoder_hidden=16, prior="af", prior_steps=2, prior_hidden=(16,),
                        prior_mean_only=False, iaf_steps=1, iaf_hidden=(16,),
                        iaf_context_size=8, window=(3, 2), decoder_layers=2,
                        decoder_filters=8, decoder_residual_blocks=1, z_map_channels=4,
                        ema_momentum=None)
    return config.replace(**changes)


def binary_images(count=4, seed=0):
    generator = np.random.default_rng(seed)
    images = generator.random((count, 8, 8, 1)) < 0.3
    images[: count // 2, :4] |= generator.random((count // 2, 4, 8, 1)) < 0.7
    return images.astype(np.uint8)


def perturb(model, seed=0, scale=0.3):
    """Moves every weight off its initial value: the MADEs' output layers start at zero
    (identity flows), so a restore that missed them would otherwise go unnoticed."""
    generator = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(variable + generator.normal(0, scale, variable.shape).astype("float32"))


def outputs(model, images):
    """The model's computations with fixed seeds: ELBO terms, the importance-sampled
    likelihood, the posterior, and samples (prior, flows and the pixel loop)."""
    mean, scale = model.encode(images)
    terms = model.elbo(images, seed=3)
    return {
        "elbo": terms["elbo"].numpy(), "kl": terms["kl"].numpy(),
        "log_likelihood": model.importance_log_likelihood(images, 4, seed=1).numpy(),
        "mean": mean.numpy(), "scale": scale.numpy(),
        "sample": model.sample(2, seed=4).numpy(),
    }


def assert_same_outputs(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def assert_same_variables(actual, expected):
    """Same values in the same order (paths differ: a second model's layers get
    uniquified names such as autoregressive_flow_prior_1)."""
    assert len(actual) == len(expected)
    for ours, theirs in zip(actual, expected):
        assert ours.shape == theirs.shape, (ours.path, theirs.path)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


@pytest.fixture(scope="module")
def trained():
    """A compiled model with perturbed weights, optimizer state and training counters as
    after some training (set directly: a real `fit` step is slow to compile), and its
    outputs."""
    model = vlae_tf.VLAE(tiny_config())
    images = binary_images()
    perturb(model)
    model.compile()
    model.optimizer.build(model.trainable_variables)
    generator = np.random.default_rng(1)
    for variable in model.optimizer.variables:
        if variable.dtype == "float32" and "scale" not in variable.path:
            variable.assign(np.abs(generator.normal(0, 0.01, variable.shape)).astype("float32"))
    model.optimizer.iterations.assign(7)
    model.noise_step.assign(7)
    return model, images, outputs(model, images)


def test_keras_file_round_trip(trained, tmp_path):
    model, images, expected = trained
    path = str(tmp_path / "vlae.keras")
    model.save(path)
    restored = keras.models.load_model(path)  # custom objects are registered: no arguments
    assert type(restored) is vlae_tf.VLAE
    assert restored.config == model.config
    assert_same_outputs(outputs(restored, images), expected)
    assert_same_variables(restored.variables, model.variables)
    # Training resumes where it stopped: the optimizer comes back compiled, with its state
    # (step count, slots), and so does the counter that seeds the next step's noise.
    assert int(restored.optimizer.iterations) == 7 and int(restored.noise_step) == 7
    assert_same_variables(restored.optimizer.variables, model.optimizer.variables)


def test_checkpoint_round_trip_restores_every_variable(trained, tmp_path):
    model, images, expected = trained
    prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(
        str(tmp_path / "ckpt"))

    restored = vlae_tf.VLAE(model.config)
    assert not np.allclose(restored.elbo(images, seed=3)["elbo"], expected["elbo"])
    restored.compile()
    restored.optimizer.build(restored.trainable_variables)
    status = tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).read(prefix)
    status.assert_consumed()
    assert_same_variables(restored.variables, model.variables)
    assert_same_outputs(outputs(restored, images), expected)
    assert int(restored.optimizer.iterations) == 7
    assert_same_variables(restored.optimizer.variables, model.optimizer.variables)


def test_checkpoint_of_the_model_alone(trained, tmp_path):
    """What a checkpoint for inference holds: an uncompiled model under the key "model"."""
    model, images, expected = trained
    plain = vlae_tf.VLAE(model.config)
    plain.set_weights(model.get_weights())
    prefix = tf.train.Checkpoint(model=plain).write(str(tmp_path / "model"))
    saved = [name for name, _ in tf.train.list_variables(prefix) if name.startswith("model/")]
    # Every variable, including the flows' MADEs, which Keras 3 keeps in Python lists and
    # a checkpoint used to skip silently.
    assert len(saved) == len(model.variables)
    assert any(name.startswith("model/prior/mades_1/hidden_layers_0/kernel") for name in saved)
    assert any(name.startswith("model/iaf/mades_0/context_layer/") for name in saved)
    restored = vlae_tf.VLAE(model.config)
    tf.train.Checkpoint(model=restored).read(prefix).assert_consumed()
    assert_same_variables(restored.variables, model.variables)
    np.testing.assert_array_equal(restored.elbo(images, seed=3)["elbo"], expected["elbo"])


def test_flow_layers_checkpoint_on_their_own(tmp_path):
    """The fix lives in the layers: a checkpoint of the AF prior alone has its MADEs."""
    from vlae_tf.flows import AutoregressiveFlowPrior

    prior = AutoregressiveFlowPrior(3, num_steps=2, hidden_units=(8,), mean_only=False)
    for variable in prior.trainable_variables:
        variable.assign(tf.random.stateless_normal(variable.shape, [1, 2]))
    z = tf.random.stateless_normal([5, 3], [3, 4])
    prefix = tf.train.Checkpoint(prior=prior).write(str(tmp_path / "prior"))
    restored = AutoregressiveFlowPrior(3, num_steps=2, hidden_units=(8,), mean_only=False)
    tf.train.Checkpoint(prior=restored).read(prefix).assert_consumed()
    np.testing.assert_array_equal(restored.log_prob(z), prior.log_prob(z))
    assert len(tf.train.list_variables(prefix)) - 1 == len(prior.variables)  # + save_counter
