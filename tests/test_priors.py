"""Tests for vlae_tf/priors.py: the common prior interface and get_prior."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from vlae_tf import encoder as encoder_lib
from vlae_tf.config import VLAEConfig
from vlae_tf.flows import AutoregressiveFlowPrior
from vlae_tf.nn import layers as nn_layers
from vlae_tf.priors import (PRIORS, MixtureOfGaussiansPrior, StandardNormalPrior, VampPrior,
                            get_prior)

LATENT = 3
GAUSSIAN_ENTROPY = 0.5 * LATENT * np.log(2 * np.pi * np.e)  # of N(0, I_3)


def randomise(layer, scale=0.7, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        fan_in = variable.shape[0] if len(variable.shape) == 2 else 1
        variable.assign(
            rng.normal(0.0, scale / np.sqrt(fan_in), size=variable.shape).astype(np.float32))


ALL_PRIORS = ["standard_normal", "af", "af_affine"]
MIXTURE_PRIORS = ["mog", "vamp"]  # E[log p(z)] has no closed form: own moment tests below


def make_prior(label):
    """A prior of each kind; flow weights randomised so the flow is not the identity."""
    if label in MIXTURE_PRIORS:
        return make_mixture(label)
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


@pytest.mark.parametrize("label", ALL_PRIORS + MIXTURE_PRIORS)
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


@pytest.mark.parametrize("label", ALL_PRIORS + MIXTURE_PRIORS)
def test_float16_input_gives_float32(label):
    prior = make_prior(label)
    z16 = tf.cast(prior.sample(3, tf.constant([0, 1])), tf.float16)
    assert prior.log_prob(z16).dtype == tf.float32


def test_get_prior_builds_the_named_prior():
    assert set(PRIORS) == {"standard_normal", "af", "mog", "vamp"}
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
    with pytest.raises(ValueError,
                       match=r"'gumbel'.*\['af', 'mog', 'standard_normal', 'vamp'\]"):
        get_prior("gumbel", 4)


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


# ------------------------------------------------------------------ mixture priors (MoG, Vamp)
PSEUDO_SHAPE = (4, 4, 1)


def toy_encoder(latent_size=LATENT, image_shape=PSEUDO_SHAPE, stddev=0.5, seed=0):
    """A tiny Dense 'encoder' (functional Keras model): images -> [mean, scale] [B, D]."""
    images = keras.Input(image_shape)
    features = keras.layers.Flatten()(images)
    initializer = keras.initializers.RandomNormal(stddev=stddev, seed=seed)
    mean = keras.layers.Dense(latent_size, kernel_initializer=initializer,
                              bias_initializer=initializer)(features)
    raw_scale = keras.layers.Dense(latent_size, kernel_initializer=initializer,
                                   bias_initializer=initializer)(features)
    scale = keras.layers.Lambda(lambda raw: tf.nn.softplus(raw) + 0.2)(raw_scale)
    return keras.Model(images, [mean, scale])


def make_mog(latent_size=LATENT, num_components=3, seed=0):
    """A MoG prior with distinct random means, scales and (non-uniform) weights."""
    rng = np.random.default_rng(seed)
    prior = MixtureOfGaussiansPrior(latent_size, num_components)
    prior.means.assign(rng.normal(0, 1.5, (num_components, latent_size)).astype(np.float32))
    prior.log_scales.assign(rng.uniform(-0.7, 0.4, (num_components, latent_size))
                            .astype(np.float32))
    prior.logits.assign(rng.normal(0, 1.0, num_components).astype(np.float32))
    return prior


def make_vamp(latent_size=LATENT, num_components=4, encoder=None):
    encoder = encoder or toy_encoder(latent_size)
    return VampPrior(latent_size, num_components, PSEUDO_SHAPE,
                     posterior_fn=lambda u: encoder(u))


def numpy_mixture_log_prob(z, log_weights, means, scales):
    """log sum_k w_k prod_d N(z_d; mu_kd, s_kd), float64."""
    z, means, scales = (np.asarray(a, np.float64) for a in (z, means, scales))
    component = (-0.5 * (((z[:, None, :] - means[None]) / scales[None]) ** 2)
                 - np.log(scales[None]) - 0.5 * np.log(2 * np.pi)).sum(-1)
    weighted = component + np.asarray(log_weights, np.float64)[None]
    peak = weighted.max(-1, keepdims=True)
    return (peak + np.log(np.exp(weighted - peak).sum(-1, keepdims=True)))[:, 0]


def mixture_moments(weights, means, scales):
    """Mean [D] and covariance [D, D] of a mixture of diagonal Gaussians."""
    mean = weights @ means
    second = sum(w * (np.diag(s ** 2) + np.outer(m, m)) for w, m, s in zip(weights, means, scales))
    return mean, second - np.outer(mean, mean)


def vamp_components(prior):
    """(means, scales) of the VampPrior's components, from numpy pseudo-inputs."""
    pseudo_inputs = np.tanh(prior.unconstrained_pseudo_inputs.numpy())
    means, scales = prior.posterior_fn(tf.constant(pseudo_inputs))
    return means.numpy(), scales.numpy()


def integrate_2d(log_prob, half_width=9.0, step=0.03):
    grid = np.arange(-half_width, half_width, step) + step / 2
    points = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    return float(np.exp(log_prob(points.astype(np.float32)).numpy().astype(np.float64)).sum()
                 * step ** 2)


def make_mixture(label, latent_size=LATENT):
    return make_mog(latent_size) if label == "mog" else make_vamp(latent_size)


def test_mog_log_prob_matches_numpy_mixture():
    prior = make_mog(num_components=4)
    z = np.random.default_rng(1).normal(0, 2, (50, LATENT)).astype(np.float32)
    scales = np.exp(5 * np.tanh(prior.log_scales.numpy() / 5))  # documented bounding
    log_weights = prior.logits.numpy() - np.log(np.exp(prior.logits.numpy()).sum())
    expected = numpy_mixture_log_prob(z, log_weights, prior.means.numpy(), scales)
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prior(z), expected, rtol=1e-5, atol=1e-5)
    assert prior.log_prob(np.zeros([2, 5, LATENT], np.float32)).shape == (2, 5)
    # Bounded scales: an extreme raw log-scale gives sigma = e^(+-5), not inf / 0.
    prior.log_scales.assign(np.full(prior.log_scales.shape, 1e4, np.float32))
    np.testing.assert_allclose(prior.component_scales, np.exp(5.0), rtol=1e-5)
    assert np.all(np.isfinite(prior.log_prob(z * 1e3).numpy()))


def test_mog_density_integrates_to_one_in_2d():
    prior = make_mog(latent_size=2, num_components=3)
    assert abs(integrate_2d(prior.log_prob) - 1.0) < 2e-3


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_mog_sample_moments_match_the_mixture(temperature):
    prior = make_mog(latent_size=2, num_components=3)
    samples = prior.sample(40000, tf.constant([3, 4], tf.int32), temperature=temperature).numpy()
    weights = np.exp(prior.mixture_log_weights.numpy())
    mean, covariance = mixture_moments(weights, prior.means.numpy(),
                                       temperature * prior.component_scales.numpy())
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), covariance, atol=0.06)


def test_vamp_log_prob_is_the_mean_of_posterior_densities():
    prior = make_vamp(num_components=5)
    means, scales = vamp_components(prior)
    assert means.shape == scales.shape == (5, LATENT)
    assert np.ptp(means, axis=0).min() > 0.1  # the components differ
    z = np.random.default_rng(2).normal(0, 1.5, (40, LATENT)).astype(np.float32)
    log_density = np.stack([  # log q(z|u_k), one column per pseudo-input
        (-0.5 * ((z - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)).sum(-1)
        for m, s in zip(means.astype(np.float64), scales.astype(np.float64))], -1)
    expected = np.log(np.exp(log_density).mean(-1))
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prior(z), expected, rtol=1e-5, atol=1e-5)


def test_vamp_density_integrates_to_one_in_2d():
    prior = make_vamp(latent_size=2, num_components=4)
    assert abs(integrate_2d(prior.log_prob) - 1.0) < 2e-3


def test_vamp_sample_moments_match_the_mixture():
    prior = make_vamp(latent_size=2, num_components=4)
    means, scales = vamp_components(prior)
    samples = prior.sample(40000, tf.constant([5, 6], tf.int32), temperature=0.7).numpy()
    mean, covariance = mixture_moments(np.full(4, 0.25), means, 0.7 * scales)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), covariance, atol=0.06)


@pytest.mark.parametrize("label", MIXTURE_PRIORS)
def test_mixture_sample_determinism_and_zero_temperature(label):
    prior = make_mixture(label)
    seed = tf.constant([7, 8], tf.int32)
    samples = prior.sample(500, seed)
    assert samples.shape == (500, LATENT) and samples.dtype == tf.float32
    np.testing.assert_array_equal(samples, prior.sample(500, seed))
    assert not np.allclose(samples[:10], prior.sample(10, tf.constant([7, 9], tf.int32)))
    assert np.all(np.isfinite(prior.log_prob(samples).numpy()))
    # temperature 0: every sample is a component mean, and every component is used.
    means = prior.means.numpy() if label == "mog" else vamp_components(prior)[0]
    cold = prior.sample(500, seed, temperature=0.0).numpy()
    distances = np.abs(cold[:, None, :] - means[None]).max(-1)  # [500, K]
    assert np.all(distances.min(-1) < 1e-5)
    assert len(set(distances.argmin(-1))) == len(means)


def test_mog_weights_are_tracked_and_trained():
    class Model(keras.Model):
        def __init__(self, prior):
            super().__init__()
            self.prior = prior

        def call(self, z):
            return self.prior.log_prob(z)

    prior = MixtureOfGaussiansPrior(LATENT, num_components=3)
    model = Model(prior)
    # Complete before any call: means, log_scales, logits.
    assert {v.path.split("/")[-1] for v in model.trainable_weights} == {
        "means", "log_scales", "logits"}
    z = tf.random.stateless_normal([256, LATENT], seed=[9, 9]) * 0.5 + 2.0
    before = [v.numpy().copy() for v in prior.trainable_weights]
    optimizer = keras.optimizers.Adam(0.1)
    losses = []
    for _ in range(8):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model(z))
        gradients = tape.gradient(loss, model.trainable_weights)
        assert all(g is not None for g in gradients)
        optimizer.apply(gradients, model.trainable_weights)
        losses.append(float(loss))
    for old, variable in zip(before, prior.trainable_weights):
        assert not np.allclose(old, variable.numpy()), variable.path
    assert losses[-1] < losses[0] - 0.5


@pytest.mark.parametrize("pass_the_encoder_itself", [False, True])
def test_vamp_trains_pseudo_inputs_and_encoder_without_double_tracking(
        pass_the_encoder_itself, tmp_path):
    encoder = toy_encoder()
    posterior_fn = encoder if pass_the_encoder_itself else (lambda u: encoder(u))
    prior = VampPrior(LATENT, 4, PSEUDO_SHAPE, posterior_fn=posterior_fn)
    # The prior owns only its pseudo-inputs; the encoder is not a sublayer of it.
    assert [v.path for v in prior.trainable_weights] == [
        prior.unconstrained_pseudo_inputs.path]
    assert prior._flatten_layers(include_self=False) == []

    class Owner(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.prior = prior

        def call(self, z):
            return self.prior.log_prob(z)

    owner = Owner()
    ids = [id(v) for v in owner.trainable_weights]
    assert len(ids) == len(set(ids)) == len(encoder.trainable_weights) + 1
    # A checkpoint of the prior alone holds the pseudo-inputs and nothing of the encoder.
    path = tf.train.Checkpoint(prior=prior).write(str(tmp_path / "prior"))
    assert [name for name, _ in tf.train.list_variables(path)
            if not name.startswith("_")] == [
        "prior/unconstrained_pseudo_inputs/.ATTRIBUTES/VARIABLE_VALUE"]

    z = tf.random.stateless_normal([64, LATENT], seed=[1, 1]) + 1.0
    before = {v.path: v.numpy().copy() for v in owner.trainable_weights}
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(owner(z))
    gradients = tape.gradient(loss, owner.trainable_weights)
    for variable, gradient in zip(owner.trainable_weights, gradients):
        assert gradient is not None and np.any(gradient.numpy() != 0), variable.path
    keras.optimizers.SGD(0.1).apply(gradients, owner.trainable_weights)
    for variable in owner.trainable_weights:
        assert not np.allclose(before[variable.path], variable.numpy()), variable.path


def test_vamp_does_not_redo_data_dependent_init_on_pseudo_inputs():
    """Inside nn.data_dependent_init the encoder is initialised from data only."""
    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=LATENT, encoder_filters=(4,),
                        encoder_hidden=8, prior="standard_normal", window=(3, 2))
    encoder = encoder_lib.build_encoder(config)
    prior = VampPrior(LATENT, 3, (8, 8, 1), posterior_fn=lambda u: encoder(u)[:2])
    data = tf.random.stateless_uniform([16, 8, 8, 1], seed=[2, 2], minval=-1.0, maxval=1.0)
    with nn_layers.data_dependent_init() as state:
        mean, _ = encoder(data)
        count_from_data = state["count"]
        gains = [v.numpy().copy() for v in encoder.weights if "gain" in v.path]
        prior.log_prob(mean)
        assert state["count"] == count_from_data > 0
    assert all(np.array_equal(old, v.numpy())
               for old, v in zip(gains, [v for v in encoder.weights if "gain" in v.path]))
    assert nn_layers._DATA_INIT["active"] is False


def test_vamp_pseudo_inputs_stay_in_range_and_can_be_set_from_data():
    prior = make_vamp(num_components=3)
    prior.unconstrained_pseudo_inputs.assign(
        np.full(prior.unconstrained_pseudo_inputs.shape, 50.0, np.float32))
    assert np.all(np.abs(prior.pseudo_inputs.numpy()) <= 1.0)
    images = np.random.default_rng(0).choice([-1.0, 0.0, 0.5, 1.0], (3,) + PSEUDO_SHAPE)
    prior.set_pseudo_inputs(images)
    np.testing.assert_allclose(prior.pseudo_inputs, np.clip(images, -0.95, 0.95), atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4, 1\)"):
        prior.set_pseudo_inputs(images[:2])


def test_mixture_priors_get_config_round_trip():
    mog = get_prior("mog", 5, num_components=7)
    assert isinstance(mog, MixtureOfGaussiansPrior) and mog.num_components == 7
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(mog))
    assert isinstance(clone, MixtureOfGaussiansPrior)
    assert (clone.latent_size, clone.num_components) == (5, 7)
    encoder = toy_encoder(5)
    vamp = get_prior("vamp", 5, num_components=2, image_shape=PSEUDO_SHAPE,
                     posterior_fn=encoder)
    assert isinstance(vamp, VampPrior) and vamp.posterior_fn is encoder
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(vamp))
    assert isinstance(clone, VampPrior)
    assert (clone.latent_size, clone.num_components, clone.image_shape) == (5, 2, PSEUDO_SHAPE)
    assert clone.posterior_fn is None  # not serialised: the owner sets it again
    with pytest.raises(ValueError, match="posterior_fn is not set"):
        clone.log_prob(tf.zeros([1, 5]))
    clone.posterior_fn = encoder
    assert clone.log_prob(tf.zeros([1, 5])).shape == (1,)
    assert clone._flatten_layers(include_self=False) == []  # set later: still untracked


def test_mixture_prior_bad_args_raise():
    with pytest.raises(ValueError, match="num_components"):
        MixtureOfGaussiansPrior(3, num_components=0)
    with pytest.raises(ValueError, match="mean_init_stddev"):
        MixtureOfGaussiansPrior(3, mean_init_stddev=-1.0)
    with pytest.raises(ValueError, match="last dimension must be 3"):
        make_mog().log_prob(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match="image_shape"):
        VampPrior(3, 2, (4, 4))
    with pytest.raises(ValueError, match="num_components"):
        VampPrior(3, 0, PSEUDO_SHAPE)
    with pytest.raises(ValueError, match="callable"):
        VampPrior(3, 2, PSEUDO_SHAPE, posterior_fn="encoder")
    unset = VampPrior(3, 2, PSEUDO_SHAPE)
    for use in (lambda: unset.log_prob(tf.zeros([1, 3])),
                lambda: unset.sample(2, tf.constant([0, 0]))):
        with pytest.raises(ValueError, match="posterior_fn is not set"):
            use()
    wrong_size = VampPrior(3, 2, PSEUDO_SHAPE, posterior_fn=toy_encoder(latent_size=4))
    with pytest.raises(ValueError, match=r"mean must have shape \[2, 3\]"):
        wrong_size.log_prob(tf.zeros([1, 3]))
    single = VampPrior(3, 2, PSEUDO_SHAPE, posterior_fn=lambda u: tf.zeros([2, 3]))
    with pytest.raises(ValueError, match=r"must return \(mean, scale"):
        single.log_prob(tf.zeros([1, 3]))
    with pytest.raises(ValueError, match="temperature"):
        make_mog().sample(3, tf.constant([0, 0]), temperature=-1.0)
