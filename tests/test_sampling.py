"""Samplers: the cached (fast) sampler draws the naive (reference) sampler's images.

Same seed -> same random numbers -> identical images, for binary and 8-bit colour data,
several windows (incl. the empty, the global and the grayscale ones), with and without
z, for sampling and lossy decompression, with temperature. The models have randomised
weights (gains, biases, sharp head) so that every pixel depends strongly on its window
and on z: a cached sampler that reads a wrong neighbour, a stale cache row or the wrong
noise would draw different images.

Why the images can be compared exactly: both samplers call `likelihood.sample` with the
same seed on [B, 1, 1, P] parameters, and both evaluate the decoder and the draw in
float64: their parameters agree to ~1e-15 (checked below, and against the model's own
float32 decoder to float32 precision), so no draw can sit close enough to a threshold to
come out differently (see vlae_tf/fast_sampling.py).
"""

import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import decoder, decoders, fast_sampling, sampling
from vlae_tf.config import VLAEConfig
from vlae_tf.flows import AutoregressiveFlowPrior

BINARY_WINDOWS = [(1, 1), (5, 3), (7, 4), None, (1, 0)]


@pytest.fixture(autouse=True)
def cached_sampler_without_xla(request, monkeypatch):
    """The cached sampler runs without XLA here unless a test is marked `xla` or asks
    for `jit_compile=True`: compiling it costs ~5 s per model, and XLA == no XLA is pinned
    per decoder family by test_cached_parameters_are_a_full_decoder_pass (parameters, both
    settings) and test_unconditional_model_and_xla_on_off (images, both settings)."""
    if request.node.get_closest_marker("xla") is None:
        monkeypatch.setattr(sampling, "auto_jit_compile", lambda model, batch: False)


def tiny_config(**changes):
    base = VLAEConfig(image_shape=(7, 8, 1), latent_size=4, encoder_filters=(4,),
                      encoder_hidden=8, prior="af", prior_steps=2, prior_hidden=(8,),
                      prior_mean_only=False, decoder_layers=3, decoder_filters=6,
                      decoder_residual_blocks=1, z_map_channels=3, ema_momentum=None)
    return base.replace(**changes)


def masked_config(**changes):
    """The paper's masked ResNet PixelCNN family, tiny (paper z path: symmetric map)."""
    return tiny_config(**{"decoder": "masked_resnet", "window": None,
                          "z_conditioning": "concat", "latent_map": "symmetric",
                          "residual_placement": "interleaved", "decoder_residual_blocks": 2,
                          **changes})


def colour_config(**changes):
    return tiny_config(**{"image_shape": (6, 6, 3), "likelihood": "logistic_mixture",
                          "num_mixtures": 2, **changes})


def randomise(model, seed=0):
    """Random weights everywhere; a sharp decoder head (and small mixture scales)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if not variable.trainable:
            continue
        name = variable.path
        shape = tuple(variable.shape)
        if name.endswith("gain"):
            value = rng.uniform(0.6, 1.6, shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.3, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        variable.assign(value.astype(np.float32))
    head = model.pixelcnn.get_layer("head")
    head.gain.assign(np.full(head.gain.shape, 3.0, np.float32))
    if model.config.likelihood == "logistic_mixture":
        mixtures, channels = model.config.num_mixtures, model.config.image_shape[-1]
        bias = head.bias.numpy()
        start = mixtures * (1 + channels)  # log-scales: [logits | means | log_scales | ...]
        bias[start:start + channels * mixtures] = -3.0
        head.bias.assign(bias)
        head.gain.assign(np.full(head.gain.shape, 0.7, np.float32))
    return model


_MODELS = {}


def model_for(config, seed=0):
    key = (config.to_json(), seed)
    if key not in _MODELS:
        _MODELS[key] = randomise(vlae_tf.VLAE(config), seed)
    return _MODELS[key]


def assert_same_images(naive, cached, what):
    naive, cached = np.asarray(naive), np.asarray(cached)
    assert naive.shape == cached.shape and naive.dtype == cached.dtype == np.uint8, what
    differ = np.argwhere(naive != cached)
    assert differ.size == 0, (
        f"{what}: {len(differ)} values differ, first at {tuple(differ[0])}: "
        f"naive {naive[tuple(differ[0])]}, cached {cached[tuple(differ[0])]}")


def assert_not_degenerate(images, max_value):
    images = np.asarray(images)
    assert len(np.unique(images)) > (1 if max_value == 1 else 20)
    if images.shape[0] > 1:  # different images in the batch
        assert not np.array_equal(images[0], images[1])


# ------------------------------------------------------------------ cached == naive
@pytest.mark.parametrize("window", BINARY_WINDOWS, ids=str)
def test_binary_cached_equals_naive(window):
    model = model_for(tiny_config(window=window))
    for seed, temperature in [(0, 1.0), (1, 0.6)]:
        naive = model.sample(5, seed=seed, temperature=temperature, method="naive")
        cached = model.sample(5, seed=seed, temperature=temperature)  # default: cached
        assert_same_images(naive, cached, f"window={window}, seed={seed}, T={temperature}")
        assert_not_degenerate(cached, 1)
        # The seed matters (the draws are not degenerate).
        assert not np.array_equal(cached, model.sample(5, seed=seed + 10,
                                                       temperature=temperature))


MASKED_CONFIGS = {
    "paper_like": masked_config(),
    "tied_zmaskA_4layers": masked_config(tie_weights=True, z_concat_mask="A",
                                          decoder_layers=4, latent_map="dense_upsample"),
    "one_layer_blocks_at_end": masked_config(decoder_layers=1, residual_placement="end"),
    "no_latent": masked_config(use_latent=False),
}


@pytest.mark.parametrize("name", sorted(MASKED_CONFIGS))
def test_masked_resnet_cached_equals_naive(name):
    """The paper's masked ResNet PixelCNN: its incremental step draws the naive images."""
    model = model_for(MASKED_CONFIGS[name])
    for seed, temperature in [(0, 1.0), (2, 0.7)]:
        naive = model.sample(4, seed=seed, temperature=temperature, method="naive")
        cached = model.sample(4, seed=seed, temperature=temperature)
        assert_same_images(naive, cached, f"{name}, seed={seed}, T={temperature}")
        assert_not_degenerate(cached, 1)
    if model.config.use_latent:
        images = (np.random.default_rng(3).random((3, 7, 8, 1)) < 0.4).astype(np.uint8)
        assert_same_images(model.decompress(images, seed=1, method="naive"),
                           model.decompress(images, seed=1), f"{name} decompress")


def test_masked_resnet_colour_cached_equals_naive():
    model = model_for(colour_config(decoder="masked_resnet", window=None,
                                    z_conditioning="concat", latent_map="symmetric"))
    naive = model.sample(2, seed=5, method="naive")
    assert_same_images(naive, model.sample(2, seed=5), "masked colour")
    assert_not_degenerate(naive, 255)


@pytest.mark.parametrize("window,grayscale", [((5, 3), False), ((7, 4), True)], ids=str)
def test_colour_logistic_mixture_cached_equals_naive(window, grayscale):
    model = model_for(colour_config(window=window, grayscale_window=grayscale))
    for seed, temperature in [(2, 1.0), (3, 0.8)]:
        naive = model.sample(3, seed=seed, temperature=temperature, method="naive")
        cached = model.sample(3, seed=seed, temperature=temperature)
        assert_same_images(naive, cached, f"window={window} gray={grayscale}, seed={seed}")
        assert_not_degenerate(cached, 255)


def test_other_priors_share_z_between_the_samplers():
    for prior in ("standard_normal", "mog", "vamp"):
        model = model_for(tiny_config(window=(5, 3), prior=prior))
        assert_same_images(model.sample(2, seed=4, method="naive"), model.sample(2, seed=4),
                           f"prior={prior}")


def test_mixed_precision_model_samples_identically():
    """A mixed_bfloat16 model: both samplers still evaluate its float32 weights in float64."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = randomise(vlae_tf.VLAE(colour_config(window=(5, 3))), seed=1)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.pixelcnn.get_layer("head").dtype_policy.name == "mixed_bfloat16"
    naive = model.sample(2, seed=3, method="naive")
    assert_same_images(naive, model.sample(2, seed=3), "mixed_bfloat16")
    assert_not_degenerate(naive, 255)


def test_unconditional_model_and_xla_on_off():
    model = model_for(tiny_config(window=(5, 3), use_latent=False))
    naive = model.sample(4, seed=5, method="naive")
    for jit_compile in (False, True):
        cached = sampling.sample(model, 4, seed=5, jit_compile=jit_compile)
        assert_same_images(naive, cached, f"use_latent=False, jit_compile={jit_compile}")
    assert_not_degenerate(naive, 1)


def test_decompress_cached_equals_naive_and_keeps_z():
    model = model_for(tiny_config(window=(5, 3)))
    images = (np.random.default_rng(0).random((4, 7, 8, 1)) < 0.4).astype(np.uint8)
    for seed, temperature in [(0, 1.0), (4, 0.7)]:
        naive = model.decompress(images, seed=seed, temperature=temperature, method="naive")
        cached = model.decompress(images, seed=seed, temperature=temperature)
        assert_same_images(naive, cached, f"decompress seed={seed}")
    colour = model_for(colour_config(window=(5, 3)))
    pictures = np.random.default_rng(1).integers(0, 256, (2, 6, 6, 3)).astype(np.uint8)
    assert_same_images(colour.decompress(pictures, seed=1, method="naive"),
                       colour.decompress(pictures, seed=1), "colour decompress")
    with pytest.raises(ValueError, match="no latent code"):
        model_for(tiny_config(window=(5, 3), use_latent=False)).decompress(images)


# ---------------------------------------------------- parameters, temperature
# XLA (a compile of the whole pixel loop: the costly part) for one config of each kind of
# network: the gated binary decoder, the colour one with a grayscale window, the tied
# masked decoder. The others change the window, conditioning and depth, not the ops.
@pytest.mark.parametrize("config,with_xla", [
    (tiny_config(window=(7, 4)), True),
    (tiny_config(window=None, z_conditioning="concat"), False),
    (tiny_config(window=(3, 0), z_conditioning="gated", decoder_layers=1), False),
    (tiny_config(window=(4, 2), decoder_layers=4, decoder_residual_blocks=0), False),
    (colour_config(window=(7, 4), grayscale_window=True), True),
    (masked_config(), False), (masked_config(tie_weights=True, decoder_layers=4), True)],
    ids=lambda c: f"{c.decoder}-{c.window}-{c.decoder_layers}" if hasattr(c, "decoder")
    else ("xla" if c else "no_xla"))
def test_cached_parameters_are_a_full_decoder_pass(config, with_xla):
    """The parameters the cached sampler used for pixel i = a full pass over the image it
    returned (pixel i only sees pixels < i, already final): to float64 rounding for the
    naive sampler's float64 pass of the model's decoder, to float32 rounding for the
    model's float32 decoder -- without XLA, and with it where `with_xla`."""
    model = model_for(config)
    z = sampling.prior_sampler(model)(tf.constant(3), tf.constant([1, 2]), tf.constant(1.0))
    reference = tf.function(lambda values, z: _full_pass64(model, values, z))
    for jit_compile in (False, True) if with_xla else (False,):
        values, params = tf.function(lambda z: fast_sampling.pixel_loop(
            model, sampling.latent_map64(model, z), tf.constant(3), tf.constant([3, 4]),
            tf.constant(1.0), record_params=True), jit_compile=jit_compile)(z)
        assert params.dtype == tf.float64
        full32 = model.decoder_params(values, z).numpy()
        assert np.abs(full32).max() > 1.0  # the randomised decoder is far from zero
        np.testing.assert_allclose(params.numpy(), full32, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(params.numpy(), reference(values, z).numpy(),
                                   rtol=1e-12, atol=1e-12)


def _full_pass64(model, values, z):
    """What the naive sampler computes: the model's pixelcnn traced in float64."""
    scaled = fast_sampling.scale_values(model, values)
    with fast_sampling.float64_compute(model.pixelcnn):
        if z is None:
            return model.pixelcnn(scaled)
        return model.pixelcnn([scaled, sampling.latent_map64(model, z)])


def test_float64_compute_runs_the_model_code_and_restores_it():
    model = model_for(colour_config(window=(5, 3)))
    rng = np.random.default_rng(2)
    values = rng.integers(0, 256, (2, 6, 6, 3)).astype(np.float32)
    z = rng.normal(size=(2, 4)).astype(np.float32)
    policies = [layer.dtype_policy.name for layer in model.pixelcnn._flatten_layers()]
    params = tf.function(lambda values, z: _full_pass64(model, values, z))(values, z)
    assert params.dtype == tf.float64
    assert [layer.dtype_policy.name for layer in model.pixelcnn._flatten_layers()] == policies
    np.testing.assert_allclose(params, model.decoder_params(values, z), rtol=1e-5, atol=1e-5)
    assert model.decoder_params(values, z).dtype == tf.float32


def test_generate_values_embeds_in_other_graphs():
    """The pure-tensor core (what an exported graph runs), without autograph, gives the
    images of `sample` for the same z and seeds."""
    model = model_for(tiny_config(window=(7, 4)))
    latent_seed, pixel_seed = sampling._split_seed(model, 8)
    z = sampling.prior_sampler(model)(tf.constant(3), latent_seed, tf.constant(0.9))
    for method in ("naive", "cached"):
        graph = tf.function(lambda z: sampling.generate_values(
            model, z, tf.constant(3), pixel_seed, tf.constant(0.9), method), autograph=False)
        images = tf.cast(tf.round(graph(z)), tf.uint8)
        assert_same_images(model.sample(3, seed=8, temperature=0.9, method=method), images,
                           f"generate_values {method}")


def test_temperature_sharpens_decoder_and_prior():
    model = model_for(tiny_config(window=(5, 3)))
    z = sampling.prior_sampler(model)(tf.constant(4), tf.constant([1, 2]), tf.constant(1.0))
    values, params = tf.function(lambda z: fast_sampling.pixel_loop(
        model, sampling.latent_map64(model, z), tf.constant(4), tf.constant([5, 6]),
        tf.constant(0.01), record_params=True))(z)
    # T -> 0: the draw is the most likely value wherever the logit is not tiny.
    confident = np.abs(params.numpy()) > 0.2
    assert confident.mean() > 0.8
    np.testing.assert_array_equal(values.numpy()[confident], (params.numpy() > 0)[confident])
    # The prior's temperature scales its base noise: z(T=0) = f(0) for every seed.
    prior = sampling.prior_sampler(model)
    np.testing.assert_allclose(prior(tf.constant(3), tf.constant([7, 8]), tf.constant(0.0)),
                               prior(tf.constant(3), tf.constant([9, 9]), tf.constant(0.0)))


# ----------------------------------------------------------------------- AF prior
def test_prior_sampler_is_compiled_and_matches_eager_and_log_prob():
    prior = AutoregressiveFlowPrior(2, num_steps=3, hidden_units=(16,), mean_only=False)
    rng = np.random.default_rng(7)
    for variable in prior.weights:
        fan_in = variable.shape[0] if len(variable.shape) == 2 else 1
        variable.assign(rng.normal(0, 0.6 / np.sqrt(fan_in), variable.shape).astype(np.float32))
    holder = type("Holder", (), {})()
    holder.prior = prior
    compiled = sampling.prior_sampler(holder)  # graph eps + XLA-compiled flow
    seed = tf.constant([4, 2])
    for temperature in (1.0, 0.5):
        z = compiled(tf.constant(50), seed, tf.constant(temperature)).numpy()
        np.testing.assert_allclose(z, prior.sample(50, seed, temperature), atol=1e-5)
        eps, _ = prior.inverse_and_log_det(z)  # the inverse recovers T * N(0, I)(seed)
        np.testing.assert_allclose(eps, temperature * tf.random.stateless_normal([50, 2], seed),
                                   atol=1e-4)
    # Sample histogram against exp(log_prob) integrated over the same cells (chi-square).
    samples = compiled(tf.constant(100_000), tf.constant([5, 5]), tf.constant(1.0)).numpy()
    low, high = np.percentile(samples, 0.5, axis=0), np.percentile(samples, 99.5, axis=0)
    edges = [np.linspace(low[d], high[d], 9) for d in range(2)]
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=edges)
    fine = [np.linspace(low[d], high[d], 8 * 40 + 1) for d in range(2)]
    centres = [0.5 * (f[:-1] + f[1:]) for f in fine]
    grid = np.stack(np.meshgrid(*centres, indexing="ij"), -1).reshape(-1, 2)
    cell = (fine[0][1] - fine[0][0]) * (fine[1][1] - fine[1][0])
    density = np.exp(prior.log_prob(grid.astype(np.float32)).numpy()) * cell
    expected = density.reshape(8, 40, 8, 40).sum(axis=(1, 3)) * len(samples)
    keep = expected > 20
    assert keep.sum() > 30
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    z_score = (chi2 - keep.sum()) / np.sqrt(2 * keep.sum())
    assert abs(z_score) < 5, f"chi-square z = {z_score:.2f} over {keep.sum()} cells"


# ------------------------------------------------------------------ speed, errors
@pytest.mark.xla
def test_cached_sampler_is_much_faster_than_naive():
    """16x16 colour: the speed sanity check, and identity on 3 x 768 8-bit draws. (Relative
    perturbations of 1e-6 of the cached parameters -- the float32 discrepancy -- changed 3
    of 18 such images in a trial; the float64 evaluation is what keeps them identical.)"""
    model = model_for(colour_config(image_shape=(16, 16, 3), window=(5, 3),
                                    decoder_filters=16, num_mixtures=3))
    timings = {}
    for method in ("naive", "cached"):
        model.sample(3, seed=0, method=method)  # trace and compile
        start = time.perf_counter()
        images = model.sample(3, seed=1, method=method)
        timings[method] = time.perf_counter() - start
        timings[method + "_images"] = images.numpy()
    assert_same_images(timings["naive_images"], timings["cached_images"], "16x16x3")
    assert_not_degenerate(timings["cached_images"], 255)
    assert timings["naive"] > 5 * timings["cached"], timings


def test_arguments_are_checked():
    model = model_for(tiny_config(window=(5, 3)))
    with pytest.raises(ValueError, match="method"):
        model.sample(2, method="fast-ish")
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="num"):
        model.sample(0)
    with pytest.raises(ValueError, match="naive"):
        sampling.sample(model, 2, method="naive", jit_compile=True)


def test_unknown_decoder_is_refused_by_the_cached_sampler():
    """A pixelcnn that is not the one the config describes (here: 4 layers, config: 3)."""
    for config in (tiny_config(window=(5, 3)),
                   masked_config(decoder_layers=3)):
        impostor = types.SimpleNamespace(
            config=config, pixelcnn=decoder.build_pixelcnn(config.replace(decoder_layers=4)))
        with pytest.raises(decoders.UnsupportedDecoder, match="naive"):
            decoders.incremental(impostor)
        decoders.incremental(types.SimpleNamespace(
            config=config, pixelcnn=decoder.build_pixelcnn(config)))
