"""Tests for vlae_tf.likelihoods: normalization, float64 / TFP references, numerical safety,
reproducible and correctly distributed samples, argument validation."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vlae_tf import likelihoods

PIXEL_VALUES = np.arange(256, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def pack_logistic_params(logits, means, log_scales, coupling=None):
    """Inverse of the documented layout: logits [..., K], means / log_scales [..., C, K],
    coupling (pre-tanh) [..., C(C-1)/2, K] -> params [..., P]."""
    batch_shape = logits.shape[:-1]
    blocks = [logits, means.reshape(batch_shape + (-1,)), log_scales.reshape(batch_shape + (-1,))]
    if coupling is not None:
        blocks.append(coupling.reshape(batch_shape + (-1,)))
    return np.concatenate(blocks, axis=-1).astype(np.float32)


def random_logistic_params(rng, num_pixels, channels, num_mixtures, extreme):
    """Params [num_pixels, 1, 1, P] plus their unpacked float64 pieces."""
    num_pairs = channels * (channels - 1) // 2
    logits = rng.normal(0.0, 2.0, size=(num_pixels, num_mixtures))
    means = rng.uniform(-1.0, 1.0, size=(num_pixels, channels, num_mixtures))
    log_scales = rng.uniform(-4.5, 0.0, size=(num_pixels, channels, num_mixtures))
    coupling = rng.normal(0.0, 1.0, size=(num_pixels, num_pairs, num_mixtures))
    if extreme:
        logits = rng.choice([-60.0, 0.0, 45.0], size=logits.shape) + logits
        means = rng.choice([-40.0, -3.0, 0.0, 2.5, 30.0], size=means.shape) + means
        log_scales = rng.choice([-10.0, -7.0, -3.0, 0.0, 5.0], size=log_scales.shape)
        coupling = rng.choice([-20.0, 0.0, 20.0], size=coupling.shape) + coupling
    params = pack_logistic_params(logits, means, log_scales, coupling if num_pairs else None)
    pieces = dict(logits=logits, means=means, log_scales=log_scales, coupling=coupling)
    pieces = {key: value.astype(np.float32).astype(np.float64) for key, value in pieces.items()}
    return params.reshape(num_pixels, 1, 1, -1), pieces


def log_sigmoid64(z):
    return -np.logaddexp(0.0, -z)


def reference_logistic_log_prob(pieces, x):
    """Float64 PixelCNN++ log-likelihood straight from the definition: CDF differences (taken
    on the side of the mean where they do not cancel), coupling, mixture. x: [N, C]."""
    logits, means, coupling = pieces["logits"], pieces["means"], pieces["coupling"]
    log_scales = np.maximum(pieces["log_scales"], -7.0)
    channels = x.shape[-1]
    x_rescaled = x.astype(np.float64) * 2.0 / 255.0 - 1.0
    total = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)   # [N, K]
    pair = 0
    for channel in range(channels):
        mean = means[:, channel, :].copy()
        for source in range(channel):
            mean += np.tanh(coupling[:, pair, :]) * x_rescaled[:, source:source + 1]
            pair += 1
        scale = np.exp(log_scales[:, channel, :])
        value = x[:, channel:channel + 1]
        upper = (x_rescaled[:, channel:channel + 1] + 1.0 / 255.0 - mean) / scale
        lower = (x_rescaled[:, channel:channel + 1] - 1.0 / 255.0 - mean) / scale
        with np.errstate(divide="ignore"):
            below = np.log(np.exp(log_sigmoid64(upper)) - np.exp(log_sigmoid64(lower)))
            above = np.log(np.exp(log_sigmoid64(-lower)) - np.exp(log_sigmoid64(-upper)))
        interior = np.where(lower > 0.0, above, below)
        channel_log_prob = np.where(value == 0, log_sigmoid64(upper),
                                    np.where(value == 255, log_sigmoid64(-lower), interior))
        total = total + channel_log_prob
    return np.logaddexp.reduce(total, axis=-1)


def chi_square_z(samples, probability_of, min_expected=5.0):
    """Pearson chi-square of observed samples (rows = outcomes) against exact probabilities.

    Cells: every observed outcome with expected count >= min_expected; everything else (rare
    or never observed outcomes) is pooled into one cell with the remaining probability.
    Returns (chi2 - df) / sqrt(2 df), ~N(0, 1) if the sampler is right.
    """
    num_samples = len(samples)
    outcomes, counts = np.unique(samples, axis=0, return_counts=True)
    probabilities = probability_of(outcomes)
    keep = probabilities * num_samples >= min_expected
    observed = np.append(counts[keep], num_samples - counts[keep].sum())
    expected = np.append(probabilities[keep], max(1.0 - probabilities[keep].sum(), 0.0))
    expected = expected * num_samples
    if expected[-1] < min_expected:  # nothing sizeable left over: drop the pooled cell
        observed, expected = observed[:-1], expected[:-1]
    assert len(observed) >= 5, "test design error: too few cells"
    chi2 = np.sum((observed - expected) ** 2 / expected)
    dof = len(observed) - 1
    return (chi2 - dof) / np.sqrt(2.0 * dof)


def exact_log_prob_fn(likelihood, params_one_pixel):
    """Outcomes [N, C] -> exact probabilities from likelihood.log_prob for one pixel's params."""
    def probability_of(outcomes):
        tiled = np.broadcast_to(params_one_pixel, (len(outcomes), 1, 1, params_one_pixel.shape[-1]))
        x = outcomes.reshape(len(outcomes), 1, 1, -1).astype(np.float32)
        return np.exp(likelihood.log_prob(tiled, x).numpy().astype(np.float64)).reshape(-1)
    return probability_of


# ----------------------------------------------------------------------------------------------
# 1. Normalization
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extreme", [False, True])
def test_logistic_mixture_c1_sums_to_one_over_all_256_values(extreme):
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=4)
    params, _ = random_logistic_params(np.random.default_rng(1), 64, 1, 4, extreme)
    # Batch axis enumerates x = 0..255, height axis the 64 parameter sets.
    tiled = np.broadcast_to(params.reshape(1, 64, 1, -1), (256, 64, 1, params.shape[-1]))
    x = np.broadcast_to(PIXEL_VALUES.reshape(256, 1, 1, 1), (256, 64, 1, 1))
    log_probs = likelihood.log_prob(tiled, x).numpy()
    assert log_probs.shape == (256, 64, 1)
    total = np.exp(np.logaddexp.reduce(log_probs.astype(np.float64), axis=0))
    np.testing.assert_allclose(total, 1.0, atol=1e-4)


@pytest.mark.parametrize("extreme", [False, True])
def test_logistic_mixture_each_channel_conditional_normalizes(extreme):
    """For C=3 every component's conditional P(x_c | x_<c, k) sums to 1 over x_c = 0..255,
    whatever the (fixed, random) values of the other channels, which enter via the coupling."""
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    rng = np.random.default_rng(2)
    params, _ = random_logistic_params(rng, 32, 3, 3, extreme)
    for channel in range(3):
        x = rng.integers(0, 256, size=(1, 32, 1, 3)).astype(np.float32)
        x = np.repeat(x, 256, axis=0)
        x[:, :, :, channel] = PIXEL_VALUES[:, None, None]
        tiled = np.broadcast_to(params.reshape(1, 32, 1, -1), (256, 32, 1, params.shape[-1]))
        per_channel, _ = likelihood._channel_component_log_probs(tiled, x)  # [256, 32, 1, 3, K]
        total = np.exp(np.logaddexp.reduce(per_channel.numpy()[..., channel, :], axis=0))
        np.testing.assert_allclose(total, 1.0, atol=1e-4, err_msg=f"channel {channel}")


def test_logistic_mixture_c3_joint_marginalizes_to_the_red_marginal():
    """sum_{g,b} p(r, g, b) over all 256^2 (g, b) equals the red marginal p(r), which is the
    C=1 mixture with the same logits and red means / scales. Together with the C=1 test
    (sum_r p(r) = 1) this means the colour joint sums to 1; unlike the per-component test it
    goes through log_prob itself, mixture weights included. Components: extreme (scales below
    the clamp and huge, means far outside [-1, 1], saturated coupling) and ordinary."""
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    logits = np.array([[0.3, -0.4, 0.1]])
    means = np.array([[[-3.0, 0.2, 0.8], [2.5, -0.3, -40.0], [0.3, 0.5, 0.0]]])
    log_scales = np.array([[[-10.0, -3.0, 5.0], [5.0, -4.0, -3.0], [-10.0, -2.0, -7.0]]])
    coupling = np.array([[[20.0, 0.8, -1.0], [-20.0, -0.5, 2.0], [3.0, 1.5, -20.0]]])
    params = pack_logistic_params(logits, means, log_scales, coupling).reshape(1, 1, 1, -1)
    assert params.shape[-1] == likelihood.num_params(3) == 30
    red_params = pack_logistic_params(logits, means[:, :1], log_scales[:, :1])
    red_values = np.array([0, 1, 2, 60, 120, 140, 150, 153, 155, 160, 170, 200, 253, 254, 255],
                          np.float32)

    green, blue = np.meshgrid(PIXEL_VALUES, PIXEL_VALUES, indexing="ij")
    x = np.stack([np.broadcast_to(red_values[:, None, None], (len(red_values), 256, 256)),
                  np.broadcast_to(green, (len(red_values), 256, 256)),
                  np.broadcast_to(blue, (len(red_values), 256, 256))], axis=-1)
    tiled = np.broadcast_to(params, x.shape[:3] + (30,))
    log_joint = likelihood.log_prob(tiled, x).numpy().astype(np.float64)
    log_marginal_summed = np.logaddexp.reduce(log_joint.reshape(len(red_values), -1), axis=-1)

    red_log_prob = likelihood.log_prob(
        np.broadcast_to(red_params.reshape(1, 1, 1, -1), (len(red_values), 1, 1, 9)),
        red_values.reshape(-1, 1, 1, 1)).numpy().reshape(-1)
    assert red_log_prob.max() - red_log_prob.min() > 10.0  # edges, bulk and tails of p(r)
    np.testing.assert_allclose(log_marginal_summed, red_log_prob, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# 2. References
# ----------------------------------------------------------------------------------------------
def test_logistic_single_component_matches_tfp_quantized_distribution():
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=1)
    rng = np.random.default_rng(3)
    num = 4096
    mean = rng.uniform(-1.0, 1.0, size=num)
    log_scale = rng.uniform(-4.5, 0.0, size=num)
    x = rng.integers(0, 256, size=num)
    x[:16], x[16:32] = 0, 255  # both edge bins
    params = pack_logistic_params(np.zeros((num, 1)), mean.reshape(num, 1, 1),
                                  log_scale.reshape(num, 1, 1)).reshape(num, 1, 1, 3)
    ours = likelihood.log_prob(params, x.reshape(num, 1, 1, 1)).numpy().reshape(-1)

    # Pixel units: bin x = (x - 1/2, x + 1/2]; QuantizedDistribution gives P(ceil(Y) = x), so
    # Y = pixel-unit logistic shifted down by 1/2; low/high put the tails on the edge bins.
    mean64, scale64 = mean.astype(np.float32).astype(np.float64), np.exp(
        log_scale.astype(np.float32).astype(np.float64))
    reference = tfp.distributions.QuantizedDistribution(
        tfp.distributions.Logistic(loc=(mean64 + 1.0) * 127.5 - 0.5, scale=scale64 * 127.5),
        low=np.float64(0.0), high=np.float64(255.0)).log_prob(x.astype(np.float64)).numpy()
    assert np.all(np.isfinite(reference))
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_logistic_mixture_matches_float64_reference(channels):
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=5)
    rng = np.random.default_rng(4 + channels)
    num = 2048
    params, pieces = random_logistic_params(rng, num, channels, 5, extreme=False)
    x = rng.integers(0, 256, size=(num, channels))
    x[:64] = rng.choice([0, 255], size=(64, channels))
    ours = likelihood.log_prob(params, x.reshape(num, 1, 1, channels)).numpy().reshape(-1)
    reference = reference_logistic_log_prob(pieces, x)
    assert np.all(np.isfinite(reference))
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-6)


def test_logistic_far_tail_bins_are_exact_not_a_density_approximation():
    """Bins hundreds of nats out in the tail of a narrow logistic: log probabilities must still
    be the exact CDF differences (a pdf-at-bin-centre approximation is off by ~0.1 nat here)."""
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=1)
    x = np.arange(1, 255)
    num = len(x)
    mean = np.full((num, 1, 1), 0.1)
    log_scale = np.full((num, 1, 1), -5.5)
    params = pack_logistic_params(np.zeros((num, 1)), mean, log_scale).reshape(num, 1, 1, 3)
    ours = likelihood.log_prob(params, x.reshape(num, 1, 1, 1)).numpy().reshape(-1)
    pieces = dict(logits=np.zeros((num, 1)), means=mean.astype(np.float32).astype(np.float64),
                  log_scales=log_scale, coupling=np.zeros((num, 0, 1)))
    reference = reference_logistic_log_prob(pieces, x.reshape(num, 1))
    assert reference.min() < -250.0  # the test really reaches far into the tails
    np.testing.assert_allclose(ours, reference, rtol=2e-6, atol=1e-4)
    # The PixelCNN++ fallback, log pdf(bin centre) + log(bin width), would fail this test.
    centred = (x * 2.0 / 255.0 - 1.0 - mean.reshape(-1)) / np.exp(-5.5)
    log_pdf_approximation = (log_sigmoid64(centred) + log_sigmoid64(-centred) + 5.5
                             + np.log(2.0 / 255.0))
    assert np.max(np.abs(log_pdf_approximation - reference)) > 0.1


def test_logistic_low_precision_params_and_integer_x_are_computed_in_float32():
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    rng = np.random.default_rng(6)
    params, _ = random_logistic_params(rng, 16, 3, 3, extreme=False)
    x = rng.integers(0, 256, size=(16, 1, 1, 3))
    reference = likelihood.log_prob(tf.cast(tf.cast(params, tf.float16), tf.float32),
                                    x.astype(np.float32))
    for dtype in (tf.float16, tf.bfloat16):
        low_precision = tf.cast(params, dtype)
        result = likelihood.log_prob(low_precision, tf.constant(x, tf.uint8))
        assert result.dtype == tf.float32
        expected = likelihood.log_prob(tf.cast(low_precision, tf.float32), x.astype(np.float32))
        np.testing.assert_array_equal(result.numpy(), expected.numpy())
    np.testing.assert_allclose(
        likelihood.log_prob(tf.cast(params, tf.float16), tf.constant(x, tf.int32)).numpy(),
        reference.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# 3. Numerical safety
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_logistic_extreme_params_give_finite_log_prob_and_gradient(channels):
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=5)
    rng = np.random.default_rng(7 + channels)
    params, _ = random_logistic_params(rng, 4096, channels, 5, extreme=True)
    # Also absurd values that a diverging network could emit.
    params[:8] = rng.choice([-1e4, -300.0, 80.0, 300.0, 1e4], size=params[:8].shape)
    x = rng.choice([0, 1, 2, 127, 128, 253, 254, 255], size=(4096, 1, 1, channels))
    params = tf.constant(params)
    with tf.GradientTape() as tape:
        tape.watch(params)
        log_probs = likelihood.log_prob(params, x)
        loss = -tf.reduce_sum(log_probs)
    gradient = tape.gradient(loss, params)
    assert log_probs.shape == (4096, 1, 1)
    assert np.all(np.isfinite(log_probs.numpy()))
    assert np.all(log_probs.numpy() <= 1e-6)  # log of a probability
    assert np.all(np.isfinite(gradient.numpy()))


def test_bernoulli_extreme_logits_finite_log_prob_and_gradient():
    likelihood = likelihoods.Bernoulli()
    logits = tf.constant([[[[-1e4, 1e4, -88.0, 88.0, 0.0]]]])
    x = tf.constant([[[[1.0, 0.0, 1.0, 0.0, 1.0]]]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        log_probs = likelihood.log_prob(logits, x)
    gradient = tape.gradient(log_probs, logits)
    assert np.all(np.isfinite(log_probs.numpy())) and np.all(np.isfinite(gradient.numpy()))
    np.testing.assert_allclose(log_probs.numpy(),
                               [[[-(1e4 + 1e4 + 88.0 + 88.0 + np.log(2.0))]]], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# 4. Bernoulli
# ----------------------------------------------------------------------------------------------
def test_bernoulli_log_prob_is_negative_cross_entropy_summed_over_channels():
    likelihood = likelihoods.Bernoulli()
    rng = np.random.default_rng(8)
    logits = rng.normal(0.0, 4.0, size=(4, 5, 6, 3)).astype(np.float32)
    x = rng.integers(0, 2, size=(4, 5, 6, 3))
    ours = likelihood.log_prob(logits, x)
    assert ours.shape == (4, 5, 6) and ours.dtype == tf.float32
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=x.astype(np.float32), logits=logits)
    np.testing.assert_allclose(ours.numpy(), -tf.reduce_sum(cross_entropy, -1).numpy(),
                               rtol=1e-6)
    logits64 = logits.astype(np.float64)
    reference = np.sum(np.where(x == 1, log_sigmoid64(logits64), log_sigmoid64(-logits64)), -1)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-5, atol=1e-5)


def test_bernoulli_probabilities_of_zero_and_one_sum_to_one():
    likelihood = likelihoods.Bernoulli()
    logits = np.random.default_rng(9).normal(0.0, 10.0, size=(2, 3, 4, 1)).astype(np.float32)
    log_p0 = likelihood.log_prob(logits, np.zeros_like(logits)).numpy()
    log_p1 = likelihood.log_prob(logits, np.ones_like(logits)).numpy()
    np.testing.assert_allclose(np.exp(log_p0) + np.exp(log_p1), 1.0, atol=1e-6)
    np.testing.assert_allclose(likelihood.mean(logits).numpy()[..., 0], np.exp(log_p1), rtol=1e-5)
    assert likelihood.num_params(3) == 3 and likelihood.max_value == 1


# ----------------------------------------------------------------------------------------------
# 5. Sampling
# ----------------------------------------------------------------------------------------------
def _sample_cases():
    rng = np.random.default_rng(10)
    mixture = likelihoods.DiscretizedLogisticMixture(num_mixtures=4)
    params_c3, _ = random_logistic_params(rng, 96, 3, 4, extreme=True)
    params_c1, _ = random_logistic_params(rng, 96, 1, 4, extreme=False)
    bernoulli_logits = rng.normal(0.0, 2.0, size=(96, 1, 1, 2)).astype(np.float32)
    return [(mixture, params_c3.reshape(4, 4, 6, -1)), (mixture, params_c1.reshape(4, 4, 6, -1)),
            (likelihoods.Bernoulli(), bernoulli_logits.reshape(4, 4, 6, 2))]


@pytest.mark.parametrize("case", range(3))
def test_sample_reproducible_seeded_in_range_and_integer(case):
    likelihood, params = _sample_cases()[case]
    seed = tf.constant([12, 34], tf.int32)
    first = likelihood.sample(params, seed)
    channels = {40: 3, 12: 1, 2: 2}[params.shape[-1]]
    assert first.shape == (4, 4, 6, channels) and first.dtype == tf.float32
    values = first.numpy()
    assert np.all(values == np.round(values))
    assert values.min() >= 0 and values.max() <= likelihood.max_value
    np.testing.assert_array_equal(likelihood.sample(params, seed).numpy(), values)
    compiled = tf.function(likelihood.sample, jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.constant(params), seed).numpy(), values)
    np.testing.assert_array_equal(tf.function(likelihood.sample)(params, seed).numpy(), values)
    other = likelihood.sample(params, tf.constant([12, 35], tf.int32)).numpy()
    assert np.mean(other != values) > 0.05


def test_logistic_mixture_c1_sample_frequencies_match_log_prob():
    """Single component near the top edge (edge bin gets mass), then a 3-component mixture."""
    single = likelihoods.DiscretizedLogisticMixture(num_mixtures=1)
    mixture = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    cases = [
        (single, pack_logistic_params(np.zeros((1, 1)), np.full((1, 1, 1), 0.95),
                                      np.full((1, 1, 1), -3.5))),
        (mixture, pack_logistic_params(np.array([[0.5, -0.2, 1.0]]),
                                       np.array([[[-0.6, 0.1, -1.1]]]),
                                       np.array([[[-3.0, -4.0, -3.5]]]))),
    ]
    num_samples = 100_000
    for index, (likelihood, params) in enumerate(cases):
        params = params.reshape(1, 1, 1, -1)
        tiled = np.broadcast_to(params, (num_samples, 1, 1, params.shape[-1]))
        samples = likelihood.sample(tiled, tf.constant([index, 7])).numpy().reshape(-1, 1)
        z_score = chi_square_z(samples, exact_log_prob_fn(likelihood, params))
        assert abs(z_score) < 4.0, f"case {index}: chi-square z = {z_score:.2f}"


def test_logistic_mixture_c3_sample_joint_frequencies_match_log_prob():
    """Joint (r, g, b) frequencies of a coupled 2-component colour mixture against
    exp(log_prob): catches a wrong coupling direction, order or unquantized conditioning."""
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=2)
    params = pack_logistic_params(
        np.array([[0.2, -0.1]]),
        np.array([[[-0.5, 0.4], [0.1, -0.2], [0.3, 0.0]]]),
        np.array([[[-4.2, -4.4], [-5.0, -4.8], [-4.9, -5.2]]]),
        np.array([[[1.5, -1.0], [-0.8, 2.0], [1.2, 0.7]]])).reshape(1, 1, 1, -1)
    num_samples = 120_000
    tiled = np.broadcast_to(params, (num_samples, 1, 1, params.shape[-1]))
    samples = likelihood.sample(tiled, tf.constant([5, 6])).numpy().reshape(-1, 3)
    z_score = chi_square_z(samples, exact_log_prob_fn(likelihood, params))
    assert abs(z_score) < 4.0, f"chi-square z = {z_score:.2f}"


def test_logistic_mixture_c3_sample_coupling_is_sequential_on_sampled_values():
    """With G, B scales at the clamp (s = e^-7, a quarter of a bin), G and B lie within one
    bin of the coupled mean computed from the *sampled* R (and G); a wrong coupling direction
    or coefficient order would be off by tens of bins."""
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=1)
    coefficients = np.array([0.5, -0.25, 0.75])  # tanh(coupling): G<-R, B<-R, B<-G
    base = np.array([0.0, -0.3, 0.2])
    params = pack_logistic_params(
        np.zeros((1, 1)), base.reshape(1, 3, 1), np.array([[[-2.0], [-7.0], [-7.0]]]),
        np.arctanh(coefficients).reshape(1, 3, 1)).reshape(1, 1, 1, -1)
    samples = likelihood.sample(np.broadcast_to(params, (4000, 1, 1, 10)),
                                tf.constant([1, 1])).numpy().reshape(-1, 3)
    red, green, blue = samples.T
    assert len(np.unique(red)) > 50  # R really varies, so the coupling is exercised

    def to_pixel_units(value):
        return (value + 1.0) * 127.5

    def rescale(pixel):
        return pixel / 127.5 - 1.0

    coupled_green = to_pixel_units(base[1] + coefficients[0] * rescale(red))
    coupled_blue = to_pixel_units(base[2] + coefficients[1] * rescale(red)
                                  + coefficients[2] * rescale(green))
    # Rounding moves a sample at most half a bin from its mean and s = 0.12 pixel units of
    # logistic noise rarely adds a full bin; swapping, dropping or reversing a coupling term
    # moves the mean by tens of pixels.
    for sampled, coupled_mean in ((green, coupled_green), (blue, coupled_blue)):
        assert np.max(np.abs(sampled - coupled_mean)) < 2.5
        assert np.mean(np.abs(sampled - coupled_mean)) < 0.4


def test_bernoulli_sample_frequencies_match_probabilities():
    likelihood = likelihoods.Bernoulli()
    logits = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0], np.float32)
    num_samples = 40_000
    tiled = np.broadcast_to(logits.reshape(1, 1, 1, -1), (num_samples, 1, 1, 6))
    for temperature in (1.0, 2.5):
        samples = likelihood.sample(tiled, tf.constant([3, 4]), temperature=temperature).numpy()
        frequency = samples.reshape(num_samples, 6).mean(axis=0)
        probability = 1.0 / (1.0 + np.exp(-logits / temperature))
        standard_error = np.sqrt(probability * (1 - probability) / num_samples)
        z_scores = (frequency - probability) / standard_error
        assert np.all(np.abs(z_scores) < 5.0), (temperature, z_scores)


def test_small_temperature_makes_samples_deterministic():
    rng = np.random.default_rng(11)
    bernoulli_logits = rng.normal(0.0, 2.0, size=(2, 8, 8, 1)).astype(np.float32)
    bernoulli_logits[np.abs(bernoulli_logits) < 0.05] = 0.5
    for seed in ([1, 2], [3, 4]):
        samples = likelihoods.Bernoulli().sample(bernoulli_logits, tf.constant(seed),
                                                 temperature=1e-3)
        np.testing.assert_array_equal(samples.numpy(), (bernoulli_logits > 0).astype(np.float32))

    # Logistic: the most probable component, its (coupled) mean rounded to the nearest bin.
    likelihood = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    params, pieces = random_logistic_params(rng, 64, 3, 3, extreme=False)
    # Logit gaps of 2 >> temperature * Gumbel noise; the best component varies by pixel.
    pieces["logits"] = np.stack([rng.permutation(3) * 2.0 for _ in range(64)])
    params = pack_logistic_params(pieces["logits"], pieces["means"], pieces["log_scales"],
                                  pieces["coupling"]).reshape(64, 1, 1, -1)
    samples = likelihood.sample(params, tf.constant([9, 9]), temperature=1e-6).numpy()
    best = np.argmax(pieces["logits"], axis=-1)
    rows = np.arange(64)
    sampled_rescaled, expected = [], []
    for channel, sources in enumerate([[], [(0, 0)], [(1, 0), (2, 1)]]):
        mean = pieces["means"][rows, channel, best]
        for pair, source in sources:
            mean = mean + np.tanh(pieces["coupling"][rows, pair, best]) * sampled_rescaled[source]
        pixel = np.clip(np.round((mean + 1.0) * 127.5), 0, 255)
        expected.append(pixel)
        sampled_rescaled.append(pixel / 127.5 - 1.0)
    np.testing.assert_array_equal(samples.reshape(64, 3), np.stack(expected, -1))


# ----------------------------------------------------------------------------------------------
# 6. Registry and argument validation
# ----------------------------------------------------------------------------------------------
def test_get_returns_configured_instances():
    assert isinstance(likelihoods.get("bernoulli"), likelihoods.Bernoulli)
    mixture = likelihoods.get("logistic_mixture", num_mixtures=5)
    assert isinstance(mixture, likelihoods.DiscretizedLogisticMixture)
    assert mixture.num_mixtures == 5 and mixture.max_value == 255
    assert mixture.num_params(1) == 15 and mixture.num_params(3) == 50
    assert likelihoods.DiscretizedLogisticMixture().num_params(3) == 100


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="bernoulli.*logistic_mixture"):
        likelihoods.get("gaussian")


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True, None])
def test_num_mixtures_validation(bad):
    with pytest.raises(ValueError, match="num_mixtures.*>= 1.*got"):
        likelihoods.DiscretizedLogisticMixture(num_mixtures=bad)
    with pytest.raises(ValueError, match="num_mixtures"):
        likelihoods.get("logistic_mixture", num_mixtures=bad)


def test_bad_channels_params_temperature_and_seed_raise():
    mixture = likelihoods.DiscretizedLogisticMixture(num_mixtures=2)
    bernoulli = likelihoods.Bernoulli()
    for likelihood in (mixture, bernoulli):
        with pytest.raises(ValueError, match="channels"):
            likelihood.num_params(0)
    x = np.zeros((1, 2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="expected num_params\\(3\\) = 20, got 19"):
        mixture.log_prob(np.zeros((1, 2, 2, 19), np.float32), x)
    with pytest.raises(ValueError, match="expected num_params\\(3\\) = 3, got 1"):
        bernoulli.log_prob(np.zeros((1, 2, 2, 1), np.float32), x)
    with pytest.raises(ValueError, match="params last dimension.*got 7"):
        mixture.sample(np.zeros((1, 2, 2, 7), np.float32), tf.constant([1, 2]))
    params = np.zeros((1, 2, 2, 20), np.float32)
    for likelihood, likelihood_params in ((mixture, params), (bernoulli, x)):
        with pytest.raises(ValueError, match="temperature"):
            likelihood.sample(likelihood_params, tf.constant([1, 2]), temperature=0.0)
        with pytest.raises(ValueError, match="seed"):
            likelihood.sample(likelihood_params, tf.constant([1, 2, 3]))
