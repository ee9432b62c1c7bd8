"""Tests for vlae_tf/diagnostics.py: per-dimension KL, active units, ELBO surgery."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import vlae_tf
from vlae_tf import diagnostics
from vlae_tf.config import VLAEConfig
from vlae_tf.priors import MixtureOfGaussiansPrior, StandardNormalPrior

tfd = tfp.distributions
LATENT = 3


def random_posteriors(num=40, latent_size=LATENT, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (num, latent_size))
    scales = np.exp(rng.uniform(-1.5, 0.3, (num, latent_size)))
    return means, scales


def posterior_samples(means, scales, samples_per_image, seed=1):
    eps = np.random.default_rng(seed).normal(size=(len(means), samples_per_image,
                                                   means.shape[1]))
    return means[:, None] + scales[:, None] * eps


def standard_normal_log_prob(z):
    return StandardNormalPrior(LATENT).log_prob(z)


def make_mog():
    prior = MixtureOfGaussiansPrior(LATENT, num_components=3)
    rng = np.random.default_rng(3)
    prior.means.assign(rng.normal(0, 1.5, (3, LATENT)).astype(np.float32))
    prior.logits.assign(np.array([0.5, 0.0, -0.5], np.float32))
    return prior


# ------------------------------------------------------------------------ per-dimension KL
def test_per_dimension_kl_matches_closed_form_and_sums_to_the_total():
    means, scales = random_posteriors(num=30, latent_size=5)
    per_dim = diagnostics.per_dimension_kl(tf.constant(means, tf.float32),
                                           tf.constant(scales, tf.float32))
    assert per_dim.shape == (5,)
    # Independent reference: TFP's KL between univariate normals, float64.
    reference = tfd.kl_divergence(tfd.Normal(means, scales),
                                  tfd.Normal(np.float64(0), np.float64(1))).numpy()
    np.testing.assert_allclose(per_dim, reference.mean(0), rtol=1e-5)
    total = tfd.kl_divergence(tfd.MultivariateNormalDiag(means, scales),
                              tfd.MultivariateNormalDiag(np.zeros(5), np.ones(5))).numpy()
    np.testing.assert_allclose(per_dim.sum(), total.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        diagnostics.per_dimension_kl(np.zeros((4, 2)), np.ones((4, 2))), 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- active units
def test_active_units_zero_for_an_encoder_that_ignores_the_input():
    means = np.tile(np.array([[0.3, -1.2, 2.0]]), (100, 1))  # same posterior for every x
    count, variances = diagnostics.active_units(means)
    assert count == 0
    np.testing.assert_allclose(variances, 0.0, atol=1e-20)


def test_active_units_all_dimensions_for_an_informative_encoder():
    index = np.arange(200)[:, None]
    # Posterior means that are distinct functions of the data index, one per dimension.
    means = np.concatenate([np.sin(0.1 * index), (index / 100.0) - 1.0,
                            np.cos(0.37 * index) ** 3, (index % 7) / 3.0], axis=1)
    count, variances = diagnostics.active_units(means)
    assert count == 4
    np.testing.assert_allclose(variances, means.var(0), rtol=1e-12)


def test_active_units_threshold():
    signs = np.tile([1.0, -1.0], 50)[:, None]  # mean 0, variance exactly 1 per column
    stddevs = np.array([1.0, 0.2, 0.05, 0.0])
    means = signs * stddevs + np.array([5.0, -3.0, 0.0, 7.0])  # offsets do not matter
    count, variances = diagnostics.active_units(means)
    np.testing.assert_allclose(variances, stddevs ** 2, atol=1e-12)
    assert count == 2  # 1 and 0.04 > 0.01; 0.0025 and 0 are not
    assert diagnostics.active_units(means, threshold=0.05)[0] == 1
    assert diagnostics.active_units(means, threshold=0.001)[0] == 3
    assert diagnostics.active_units(means, threshold=0.0)[0] == 3  # strictly greater
    assert diagnostics.active_units(means, threshold=2.0)[0] == 0
    with pytest.raises(ValueError, match="threshold"):
        diagnostics.active_units(means, threshold=-1)
    with pytest.raises(ValueError, match="rank 2"):
        diagnostics.active_units(means[:, 0])


# ----------------------------------------------------------------------------- ELBO surgery
@pytest.mark.parametrize("prior_name", ["standard_normal", "mog"])
def test_surgery_terms_add_up_to_the_average_kl(prior_name):
    means, scales = random_posteriors()
    z = posterior_samples(means, scales, samples_per_image=4)
    log_p_z = standard_normal_log_prob if prior_name == "standard_normal" else make_mog().log_prob
    result = diagnostics.elbo_surgery(means, scales, z, log_p_z)
    total = result["mutual_information"] + result["marginal_kl"]
    assert abs(total - result["average_kl"]) < 1e-10 * max(1.0, abs(result["average_kl"]))
    assert result["log_n"] == pytest.approx(math.log(40))
    assert -0.05 < result["mutual_information"] <= result["log_n"]
    assert (result["num_images"], result["samples_per_image"]) == (40, 4)
    # The average KL is the KL to *this* prior: independent Monte Carlo of log q - log p.
    log_q = tfd.MultivariateNormalDiag(means[:, None], scales[:, None]).log_prob(z).numpy()
    log_p = np.asarray(log_p_z(tf.constant(z.reshape(-1, LATENT), tf.float32)),
                       np.float64).reshape(z.shape[:2])
    assert result["average_kl"] == pytest.approx(np.mean(log_q - log_p), abs=1e-4)


def test_surgery_average_kl_estimates_the_analytic_kl():
    means, scales = random_posteriors(num=30)
    z = posterior_samples(means, scales, samples_per_image=300, seed=5)
    result = diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob)
    analytic = diagnostics.per_dimension_kl(means, scales).sum()
    assert result["average_kl"] == pytest.approx(analytic, abs=0.05)


def test_surgery_mutual_information_is_zero_for_identical_posteriors():
    means = np.tile([[0.5, -0.2, 1.0]], (25, 1))
    scales = np.tile([[0.3, 1.0, 2.0]], (25, 1))
    z = posterior_samples(means, scales, samples_per_image=3)
    result = diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob)
    assert abs(result["mutual_information"]) < 1e-10
    assert result["marginal_kl"] == pytest.approx(result["average_kl"], abs=1e-10)
    assert result["average_kl"] > 0.3  # the prior is not the posterior


def test_surgery_mutual_information_is_log_n_for_far_apart_narrow_posteriors():
    num = 30
    means = np.stack([np.arange(num) * 10.0, np.zeros(num), np.zeros(num)], 1)
    scales = np.full((num, LATENT), 0.01)
    z = posterior_samples(means, scales, samples_per_image=2)
    result = diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob)
    assert result["mutual_information"] == pytest.approx(math.log(num), abs=1e-8)
    assert result["marginal_kl"] == pytest.approx(result["average_kl"] - math.log(num),
                                                  abs=1e-6)


def test_surgery_mutual_information_is_log_n_minus_expected_index_entropy():
    """The estimator equals, in expectation, log N - E_q(z) H[q(i|z)] (brute force)."""
    means, scales = random_posteriors(num=12, spread=0.8)
    z = posterior_samples(means, scales, samples_per_image=400, seed=7)
    result = diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob)
    flat = z.reshape(-1, LATENT)
    log_q = tfd.MultivariateNormalDiag(means, scales).log_prob(flat[:, None]).numpy()  # [S, N]
    index_posterior = np.exp(log_q - log_q.max(1, keepdims=True))
    index_posterior /= index_posterior.sum(1, keepdims=True)
    entropy = -np.sum(index_posterior * np.log(np.maximum(index_posterior, 1e-300)), axis=1)
    expected = math.log(12) - entropy.mean()
    assert 0.3 < expected < math.log(12) - 0.3  # a case with partial overlap
    assert result["mutual_information"] == pytest.approx(expected, abs=0.03)


def test_surgery_does_not_depend_on_chunking_or_sample_layout():
    means, scales = random_posteriors(num=9)
    z = posterior_samples(means, scales, samples_per_image=1)
    reference = diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob)
    for chunk_size in (1, 4, 1000):
        chunked = diagnostics.elbo_surgery(means, scales, z[:, 0], standard_normal_log_prob,
                                           chunk_size=chunk_size)
        for key in ("average_kl", "mutual_information", "marginal_kl"):
            assert chunked[key] == pytest.approx(reference[key], abs=1e-12)


def test_surgery_bad_args_raise():
    means, scales = random_posteriors(num=5)
    z = posterior_samples(means, scales, 2)
    with pytest.raises(ValueError, match="same shape"):
        diagnostics.elbo_surgery(means, scales[:, :2], z, standard_normal_log_prob)
    with pytest.raises(ValueError, match="scales.*> 0"):
        diagnostics.elbo_surgery(means, -scales, z, standard_normal_log_prob)
    with pytest.raises(ValueError, match="z_samples"):
        diagnostics.elbo_surgery(means, scales, z[:4], standard_normal_log_prob)
    with pytest.raises(ValueError, match="callable"):
        diagnostics.elbo_surgery(means, scales, z, "prior")
    with pytest.raises(ValueError, match="must return shape"):
        diagnostics.elbo_surgery(means, scales, z, lambda z: tf.zeros([1]))
    with pytest.raises(ValueError, match="chunk_size"):
        diagnostics.elbo_surgery(means, scales, z, standard_normal_log_prob, chunk_size=0)


# ----------------------------------------------------------------------- model wrapper
class LinearEncoderModel:
    """Duck-typed model: encode() is a fixed linear Gaussian encoder, prior given."""

    def __init__(self, prior, iaf=None, image_shape=(4, 4, 1)):
        rng = np.random.default_rng(0)
        size = int(np.prod(image_shape))
        self.mean_weights = tf.constant(rng.normal(0, 0.5, (size, LATENT)), tf.float32)
        self.scale_weights = tf.constant(rng.normal(0, 0.2, (size, LATENT)), tf.float32)
        self.prior, self.iaf = prior, iaf
        self.encode_batches = []

    def encode(self, images):
        self.encode_batches.append(len(images))
        flat = tf.reshape(tf.cast(images, tf.float32), [len(images), -1])
        return flat @ self.mean_weights, tf.nn.softplus(flat @ self.scale_weights) + 0.05


def test_model_diagnostics_combines_the_pure_functions():
    model = LinearEncoderModel(make_mog())
    images = np.random.default_rng(1).integers(0, 2, (20, 4, 4, 1)).astype(np.uint8)
    seed = tf.constant([3, 4], tf.int32)
    result = diagnostics.model_diagnostics(model, images, seed, batch_size=8,
                                           samples_per_image=2)
    assert model.encode_batches == [8, 8, 4]
    means, scales = (t.numpy() for t in model.encode(images))
    np.testing.assert_allclose(result["per_dimension_kl"],
                               diagnostics.per_dimension_kl(means, scales), rtol=1e-6)
    assert result["kl_to_standard_normal"] == pytest.approx(result["per_dimension_kl"].sum())
    count, variances = diagnostics.active_units(means)
    assert result["active_units"] == count
    np.testing.assert_allclose(result["active_unit_variances"], variances, rtol=1e-6)
    eps = tf.random.stateless_normal([20, 2, LATENT], seed=seed).numpy()
    surgery = diagnostics.elbo_surgery(means, scales, means[:, None] + scales[:, None] * eps,
                                       model.prior.log_prob)
    for key, value in surgery.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
    # Same seed, other batch size: same numbers. JSON-ready for logs.
    again = diagnostics.model_diagnostics(model, images, seed, batch_size=20,
                                          samples_per_image=2)
    assert again["mutual_information"] == pytest.approx(result["mutual_information"], abs=1e-9)
    encoded = json.loads(json.dumps(diagnostics.json_ready(result)))
    assert len(encoded["per_dimension_kl"]) == LATENT and encoded["active_units"] == count


def test_model_diagnostics_refuses_iaf_and_latent_free_models():
    images = np.zeros((4, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match="IAF posterior"):
        diagnostics.model_diagnostics(LinearEncoderModel(make_mog(), iaf=object()), images,
                                      [0, 0])
    with pytest.raises(ValueError, match="no latent code"):
        diagnostics.model_diagnostics(LinearEncoderModel(None), images, [0, 0])
    with pytest.raises(ValueError, match="samples_per_image"):
        diagnostics.model_diagnostics(LinearEncoderModel(make_mog()), images, [0, 0],
                                      samples_per_image=0)


def test_model_diagnostics_on_a_real_vlae():
    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=LATENT, encoder_filters=(8,),
                        encoder_hidden=16, prior="standard_normal", window=(3, 2),
                        decoder_layers=2, decoder_filters=8, decoder_residual_blocks=1,
                        z_map_channels=4, ema_momentum=None)
    model = vlae_tf.VLAE(config)
    images = np.random.default_rng(0).integers(0, 2, (24, 8, 8, 1)).astype(np.uint8)
    result = diagnostics.model_diagnostics(model, images, [1, 2], batch_size=10,
                                           samples_per_image=50)
    means, _ = model.encode(images)
    np.testing.assert_allclose(result["active_unit_variances"], np.var(means.numpy(), 0),
                               rtol=1e-4, atol=1e-9)
    # Standard-normal prior: the per-dimension KLs sum to the exact average KL, which the
    # Monte Carlo average KL of the surgery estimates.
    assert result["average_kl"] == pytest.approx(result["kl_to_standard_normal"],
                                                 abs=0.1 + 0.05 * result["average_kl"])
    assert result["mutual_information"] + result["marginal_kl"] == pytest.approx(
        result["average_kl"], abs=1e-9)
    assert result["mutual_information"] <= math.log(24)
