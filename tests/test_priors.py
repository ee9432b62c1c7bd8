"""Tests for vlae_tf/priors.py: the common prior interface and get_prior."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from vlae_tf.flows import AutoregressiveFlowPrior
from vlae_tf.priors import PRIORS, StandardNormalPrior, get_prior

LATENT = 3
GAUSSIAN_ENTROPY = 0.5 * LATENT * np.log(2 * np.pi * np.e)  # of N(0, I_3)


def randomise(layer, scale=0.7, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        fan_in = variable.shape[0] if len(variable.shape) == 2 else 1
        variable.assign(
            rng.normal(0.0, scale / np.sqrt(fan_in), size=variable.shape).astype(np.float32))


ALL_PRIORS = ["standard_normal", "af", "af_affine"]


def make_prior(label):
    """A prior of each kind; flow weights randomised so the flow is not the identity."""
    if label == "standard_normal":
        return get_prior("standard_normal", LATENT)
    mean_only = label == "af"
    prior = get_prior("af", LATENT, num_steps=2, hidden_units=(16,), mean_only=mean_only)
    randomise(prior, scale=0.7 if mean_only else 0.5)
    return prior


def test_standard_normal_log_prob_closed_form():
    prior = StandardNormalPrior(LATENT)
    z = np.random.default_rng(0).normal(size=(7, LATENT)).astype(np.float32) * 2.0
    expected = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-6)
    np.testing.assert_allclose(prior(z), expected, rtol=1e-6)
    assert prior.log_prob(np.zeros([2, 4, LATENT], np.float32)).shape == (2, 4)
    seed = tf.constant([4, 2], tf.int32)
    np.testing.assert_allclose(prior.sample(5, seed, temperature=0.3),
                               0.3 * tf.random.stateless_normal([5, LATENT], seed=seed))


@pytest.mark.parametrize("label", ALL_PRIORS)
def test_sample_shape_determinism_and_log_prob(label):
    prior = make_prior(label)
    seed = tf.constant([7, 8], tf.int32)
    samples = prior.sample(2000, seed)
    assert samples.shape == (2000, LATENT) and samples.dtype == tf.float32
    np.testing.assert_array_equal(samples, prior.sample(2000, seed))
    assert not np.allclose(samples[:10], prior.sample(10, tf.constant([7, 9], tf.int32)))
    log_prob = prior.log_prob(samples).numpy()
    assert log_prob.shape == (2000,) and np.all(np.isfinite(log_prob))
    stderr = log_prob.std() / np.sqrt(len(log_prob))
    if label == "af_affine":
        # log p(z) = log N(eps) + log|det d eps/dz| and E[log N(eps)] = -H(N(0, I)):
        # the base part must match the Gaussian entropy, the volume change is not 0.
        _, log_det_inverse = prior.inverse_and_log_det(samples)
        base_part = log_prob - log_det_inverse.numpy()
        assert abs(base_part.mean() + GAUSSIAN_ENTROPY) < 4 * base_part.std() / np.sqrt(2000)
        assert abs(log_det_inverse.numpy().mean()) > 4 * stderr
    else:
        # Volume-preserving flow (or none): H(z) = H(eps), so E[log p(z)] = -H(N(0, I)).
        assert abs(log_prob.mean() + GAUSSIAN_ENTROPY) < 4 * stderr


def test_mean_only_af_prior_log_prob_of_sample_is_base_log_prob():
    prior = make_prior("af")
    seed = tf.constant([5, 6], tf.int32)
    eps = 0.8 * tf.random.stateless_normal([64, LATENT], seed=seed)
    samples = prior.sample(64, seed, temperature=0.8)
    assert not np.allclose(samples, eps, atol=1e-2)  # flow is not the identity
    base = StandardNormalPrior(LATENT).log_prob(eps)
    np.testing.assert_allclose(prior.log_prob(samples), base, atol=1e-4)


@pytest.mark.parametrize("label", ALL_PRIORS)
def test_interface_inside_tf_function(label):
    prior = make_prior(label)

    @tf.function
    def sample_and_score(seed, temperature):
        samples = prior.sample(4, seed, temperature=temperature)
        return samples, prior.log_prob(samples)

    seed = tf.constant([1, 3], tf.int32)
    samples, log_prob = sample_and_score(seed, tf.constant(0.5))
    np.testing.assert_allclose(samples, prior.sample(4, seed, temperature=0.5), atol=1e-5)
    np.testing.assert_allclose(log_prob, prior.log_prob(samples), atol=1e-5)


@pytest.mark.parametrize("label", ALL_PRIORS)
def test_float16_input_gives_float32(label):
    prior = make_prior(label)
    z16 = tf.cast(prior.sample(3, tf.constant([0, 1])), tf.float16)
    assert prior.log_prob(z16).dtype == tf.float32


def test_get_prior_builds_the_named_prior():
    assert set(PRIORS) == {"standard_normal", "af"}
    assert isinstance(get_prior("standard_normal", 4), StandardNormalPrior)
    prior = get_prior("af", 4, num_steps=3, hidden_units=(8,), mean_only=False)
    assert isinstance(prior, AutoregressiveFlowPrior)
    assert (prior.latent_size, prior.num_steps, prior.hidden_units, prior.mean_only) == (
        4, 3, (8,), False)
    default = get_prior("af", 4)  # paper setting
    assert (default.num_steps, default.hidden_units, default.mean_only) == (4, (640,), True)
    assert StandardNormalPrior.from_config(get_prior("standard_normal", 4).get_config()
                                           ).latent_size == 4


def test_get_prior_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"'vamp'.*\['af', 'standard_normal'\]"):
        get_prior("vamp", 4)


def test_bad_args_raise():
    with pytest.raises(ValueError, match="latent_size"):
        StandardNormalPrior(0)
    with pytest.raises(ValueError, match="latent_size"):
        get_prior("af", -1)
    prior = StandardNormalPrior(4)
    with pytest.raises(ValueError, match="last dimension must be 4"):
        prior.log_prob(tf.zeros([2, 5]))
    with pytest.raises(ValueError, match="num"):
        prior.sample(-3, tf.constant([0, 0]))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(3, tf.constant([0, 0]), temperature="hot")


def test_priors_inside_a_keras_model_train():
    """One optimizer step on -log p(z) moves the AF prior's weights (none for N(0, I))."""

    class Model(keras.Model):
        def __init__(self, prior):
            super().__init__()
            self.prior = prior

        def call(self, z):
            return self.prior.log_prob(z)

    z = tf.random.stateless_normal([64, LATENT], seed=[9, 9]) * 2.0 + 1.0
    model = Model(make_prior("af_affine"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=lambda _, log_prob: -tf.reduce_mean(log_prob))
    before = -tf.reduce_mean(model(z)).numpy()
    model.fit(z, tf.zeros([64]), epochs=5, batch_size=64, verbose=0)
    after = -tf.reduce_mean(model(z)).numpy()
    assert after < before - 1e-2
    assert Model(StandardNormalPrior(LATENT)).trainable_weights == []
