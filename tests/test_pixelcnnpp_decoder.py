"""The paper's CIFAR decoder (decoder="pixelcnnpp"): a channel-autoregressive PixelCNN++.

* Its window: the paper's table (4x2 = 1 + 2, 5x3 = 2 + 2, 7x4 = 3 + 3 layers) gives
  exactly "A wide x B rows above, plus ceil((A-1)/2) left", computed from the kernels and
  probed sub-pixel by sub-pixel by gradients: channel c at (i, j) depends on the window's
  pixels (all channels, or only their gray value) and on channels < c of (i, j), nothing else.
* Its likelihood: one discretized logistic mixture per sub-pixel (coupled=False); the 256
  probabilities of every sub-pixel sum to one given the earlier ones.
* z enters every gated ResNet block; every weight trains.
* Sampling draws sub-pixel by sub-pixel with a seed per sub-pixel; the cached sampler
  (the default) gives the naive sampler's images bit for bit.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import decoders, fast_sampling, sampling
from vlae_tf.config import VLAEConfig
from vlae_tf.decoders import base, pixelcnnpp
from vlae_tf.likelihoods import DiscretizedLogisticMixture

# The paper's windows, stated independently of the module: rows above, columns left and
# right of j in those rows, pixels left of j in row i; and its layer counts (V, H).
PAPER_WINDOWS = {
    (4, 2): dict(rows=2, left=2, right=1, pixels_left=2, layers=(1, 2)),
    (5, 3): dict(rows=3, left=2, right=2, pixels_left=2, layers=(2, 2)),
    (7, 4): dict(rows=4, left=3, right=3, pixels_left=3, layers=(3, 3)),
}


def ppp_config(window=(4, 2), **changes):
    config = VLAEConfig(
        image_shape=(10, 10, 3), likelihood="logistic_mixture", num_mixtures=2,
        use_latent=False, latent_size=4, encoder_filters=(4, 4), encoder_hidden=8,
        prior="standard_normal", decoder="pixelcnnpp", window=window, decoder_filters=8,
        decoder_residual_blocks=1, z_conditioning="gated", z_map_channels=2,
        ema_momentum=None)
    return config.replace(**changes)


def randomise(model, seed=0):
    """Random kernels, gains and biases: every connection has a nonzero gradient."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        shape = tuple(variable.shape)
        value = rng.uniform(0.6, 1.6, shape) if variable.path.endswith("gain") \
            else rng.normal(0.0, 0.5, shape)
        variable.assign(value.astype(np.float32))
    return model


def expected_field(window, height, width, row, col):
    """Boolean [H, W] from PAPER_WINDOWS (clipped at the borders)."""
    spec = PAPER_WINDOWS[window]
    mask = np.zeros((height, width), dtype=bool)
    mask[max(row - spec["rows"], 0):row,
         max(col - spec["left"], 0):min(col + spec["right"] + 1, width)] = True
    mask[row, max(col - spec["pixels_left"], 0):col] = True
    return mask


def test_the_paper_table_gives_exactly_its_windows():
    for window, spec in PAPER_WINDOWS.items():
        plan = pixelcnnpp.plan_window(window)
        assert (plan.vertical, plan.horizontal) == spec["layers"], window
        offsets = set(pixelcnnpp.stack_offsets(plan.vertical, plan.horizontal))
        expected = {(-r, c) for r in range(1, spec["rows"] + 1)
                    for c in range(-spec["left"], spec["right"] + 1)}
        expected |= {(0, -c) for c in range(1, spec["pixels_left"] + 1)}
        assert offsets == expected, window
        assert offsets == set(pixelcnnpp.window_offsets(*window)), window
    # 4x2 is 4 pixels wide (2 left of j to 1 right), not the gated family's 3.
    assert sorted({c for r, c in pixelcnnpp.window_offsets(4, 2) if r == -1}) == [-2, -1, 0, 1]
    # The general rule holds for every supported window, and only for those.
    supported = pixelcnnpp.supported_windows(11)
    for width in range(1, 12):
        for height in range(0, 8):
            if (width, height) in supported:
                plan = pixelcnnpp.plan_window((width, height))
                assert pixelcnnpp.stack_offsets(plan.vertical, plan.horizontal) == \
                    pixelcnnpp.window_offsets(width, height), (width, height)
            else:
                with pytest.raises(ValueError, match="window: expected"):
                    pixelcnnpp.plan_window((width, height))


def subpixel_gradients(model, image, probes):
    """For each probe (row, col, channel): d sum(params of that sub-pixel) / d image,
    [H, W, C]; one pass for all probes (batch element b carries probe b's target)."""
    images = tf.Variable(np.repeat(image, len(probes), axis=0))
    likelihood = model.likelihood
    with tf.GradientTape() as tape:
        params = model.pixelcnn(model._scale(images))
        target = tf.add_n([tf.reduce_sum(likelihood.channel_params(params[b, row, col], channel))
                           for b, (row, col, channel) in enumerate(probes)])
    return tape.gradient(target, images, unconnected_gradients="zero").numpy()


@pytest.mark.parametrize("window, gray", [((4, 2), False), ((5, 3), False), ((7, 4), False),
                                          ((7, 4), True)])
def test_receptive_field_of_every_subpixel(window, gray):
    config = ppp_config(window, grayscale_window=gray)
    model = randomise(vlae_tf.VLAE(config))
    height, width, channels = config.image_shape
    images = np.random.default_rng(1).integers(0, 256, (1, height, width, 3)).astype(np.float32)
    probes = [(row, col, channel) for row, col in [(6, 5), (1, 0), (3, 9)]
              for channel in range(channels)]
    gradients = subpixel_gradients(model, images, probes)
    for (row, col, channel), gradient in zip(probes, gradients):
        field = expected_field(window, height, width, row, col)
        np.testing.assert_array_equal(decoders.receptive_field(config, row, col), field)
        where = f"{window} gray={gray}, pixel ({row}, {col}), channel {channel}"
        expected = np.repeat(field[..., None], channels, axis=-1)
        expected[row, col, :channel] = True
        np.testing.assert_array_equal(
            pixelcnnpp.subpixel_receptive_field(config, row, col, channel), expected)
        # Nothing outside, everything inside.
        np.testing.assert_array_equal(gradient != 0, expected, err_msg=where)
        if gray:  # window pixels are seen only through 0.299R + 0.587G + 0.114B
            ratio = gradient[field] / np.array(base.GRAY_WEIGHTS)
            np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, 3)), rtol=1e-4,
                                       err_msg=where)


def test_the_256_probabilities_of_each_subpixel_sum_to_one():
    config = ppp_config((5, 3), grayscale_window=False)
    model = randomise(vlae_tf.VLAE(config), seed=3)
    height, width, channels = config.image_shape
    images = np.random.default_rng(2).integers(0, 256, (1, height, width, 3)).astype(np.float32)
    params = model.decoder_params(images)
    likelihood = model.likelihood
    assert likelihood.coupled is False
    assert params.shape[-1] == likelihood.num_params(3) == 3 * 2 * 3
    values = tf.reshape(tf.range(256, dtype=tf.float32), [256, 1, 1, 1])
    values = tf.broadcast_to(values, [256, height, width, 1])
    for channel in range(channels):
        # params of channel c were computed with this pixel's channels < c fixed (and,
        # as the field test shows, do not depend on channels >= c).
        channel_params = tf.broadcast_to(likelihood.channel_params(params, channel),
                                         [256, height, width, 6])
        log_probs = likelihood.log_prob(channel_params, values)  # [256, H, W]
        total = tf.reduce_logsumexp(log_probs, axis=0).numpy()
        np.testing.assert_allclose(total, 0.0, atol=1e-4, err_msg=f"channel {channel}")
    # The model's log-likelihood is the sum of the three conditionals.
    joint = likelihood.log_prob(params, images)
    parts = sum(likelihood.log_prob(likelihood.channel_params(params, c), images[..., c:c + 1])
                for c in range(channels))
    np.testing.assert_allclose(joint, parts, rtol=1e-6)


def test_uncoupled_mixture_is_one_mixture_per_channel():
    coupled, uncoupled = DiscretizedLogisticMixture(3), DiscretizedLogisticMixture(3, False)
    assert uncoupled.num_params(3) == 27 and uncoupled.num_params(1) == coupled.num_params(1)
    params = tf.random.stateless_normal([2, 4, 4, 27], seed=[0, 1])
    x = tf.random.stateless_uniform([2, 4, 4, 3], seed=[0, 2], maxval=256, dtype=tf.int32)
    expected = sum(coupled.log_prob(params[..., 9 * c:9 * (c + 1)], x[..., c:c + 1])
                   for c in range(3))
    np.testing.assert_allclose(uncoupled.log_prob(params, x), expected, rtol=1e-6)
    draw = uncoupled.sample(params, tf.constant([4, 5]))
    assert draw.shape == (2, 4, 4, 3)
    assert np.all((draw.numpy() >= 0) & (draw.numpy() <= 255))
    with pytest.raises(ValueError, match="coupled"):
        DiscretizedLogisticMixture(3, coupled="no")
    with pytest.raises(ValueError, match="params last dimension"):
        uncoupled.log_prob(params[..., :26], x)


def test_z_enters_every_gated_block_and_every_weight_trains():
    config = ppp_config((4, 2), use_latent=True, decoder_residual_blocks=2)
    model = vlae_tf.VLAE(config)
    blocks = {name[:-len("_conv")] for name in pixelcnnpp.layer_names(config)
              if name.endswith("_conv") and not name.startswith(("u1", "ul1"))}
    assert blocks == {"ul2", "res0", "res1", "head0", "head1", "head2"}
    z_layers = {name[:-len("_z")] for name in pixelcnnpp.layer_names(config)
                if name.endswith("_z")}
    assert z_layers == blocks
    images = np.random.default_rng(0).integers(0, 256, (4, 10, 10, 3)).astype(np.uint8)
    model.data_dependent_init(images)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.elbo(images, seed=1)["elbo"])
    kernels = [model.pixelcnn.get_layer(f"{block}_z").kernel for block in sorted(blocks)]
    for block, gradient in zip(sorted(blocks), tape.gradient(loss, kernels)):
        assert gradient is not None and np.abs(gradient.numpy()).max() > 0, block
    before = {id(v): v.numpy().copy() for v in model.trainable_weights}
    names = {id(v): v.path for v in model.trainable_weights}
    assert all(id(v) in before for v in model.pixelcnn.trainable_weights)
    model.compile()
    model.train_step(images)  # one step of `fit`, eagerly (no train-function trace)
    assert int(model.optimizer.iterations) == 1
    weights = {id(v): v for v in model.trainable_weights}
    still = [names[key] for key, value in before.items()
             if np.array_equal(value, weights[key].numpy())]
    assert not still, f"weights that did not move: {still}"


def test_dropout_is_active_only_in_training():
    config = ppp_config((4, 2), decoder_dropout=0.5)
    model = randomise(vlae_tf.VLAE(config))
    dropouts = [layer for layer in model.pixelcnn.layers
                if isinstance(layer, keras.layers.Dropout)]
    blocks = [name for name in pixelcnnpp.layer_names(config) if name.endswith("_out")]
    assert len(dropouts) == len(blocks) == 5  # ul2, res0, head0..2: one per gated block
    scaled = tf.random.stateless_uniform([1, 10, 10, 3], seed=[1, 1], minval=-1.0)
    np.testing.assert_array_equal(model.pixelcnn(scaled), model.pixelcnn(scaled))
    assert not np.array_equal(model.pixelcnn(scaled, training=True),
                              model.pixelcnn(scaled, training=False))


def test_sampling_draws_subpixel_by_subpixel_and_cached_equals_naive(monkeypatch):
    config = ppp_config((4, 2), image_shape=(4, 3, 3), decoder_residual_blocks=0)
    model = randomise(vlae_tf.VLAE(config), seed=5)
    naive = model.sample(2, seed=7, method="naive")
    assert naive.dtype == tf.uint8 and naive.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(naive, model.sample(2, seed=7, method="naive"))
    assert not np.array_equal(naive, model.sample(2, seed=8, method="naive"))
    # The cached sampler (the default) draws the very same images, bit for bit.
    np.testing.assert_array_equal(model.sample(2, seed=7), naive)
    np.testing.assert_array_equal(model.sample(2, seed=8), model.sample(2, seed=8,
                                                                        method="naive"))
    with pytest.raises(ValueError, match="jit_compile"):
        sampling.sample(model, 2, seed=7, jit_compile=True)
    impostor = types.SimpleNamespace(config=config, pixelcnn=keras.Sequential([]))
    with pytest.raises(decoders.UnsupportedDecoder, match="method='naive'"):
        decoders.incremental(impostor)
    # Every sub-pixel is the draw from its own params given the final image's earlier
    # sub-pixels, with its own seed: the loop conditioned on exactly what it had drawn.
    _, seed = sampling._split_seed(model, 7)  # the pixel seed `sample` used
    values = tf.cast(naive, tf.float32)
    with fast_sampling.float64_compute(model.pixelcnn):
        params = model.pixelcnn(fast_sampling.as_decoder_input(
            fast_sampling.scale_values(model, values)))
    height, width, channels = config.image_shape
    for index in range(height * width):
        row, col = divmod(index, width)
        for channel in range(channels):
            draw = model.likelihood.sample(
                model.likelihood.channel_params(params[:, row:row + 1, col:col + 1], channel),
                fast_sampling.subpixel_seed(seed, index, channel), 1.0)
            np.testing.assert_array_equal(draw[:, 0, 0, 0], values[:, row, col, channel])
    # A family without a cached step: the default method falls back to naive, loudly.
    monkeypatch.setattr(pixelcnnpp, "CACHED_SAMPLER", False)
    with pytest.warns(UserWarning, match="no cached sampler"):
        np.testing.assert_array_equal(model.sample(2, seed=7), naive)


def test_cached_step_is_the_network_for_7x4_gray_with_z():
    """The incremental step (u caches over 3 layers, ul buffers over 3, z in every block
    and in the first layers) gives the full network's params for the image it draws."""
    config = ppp_config((7, 4), image_shape=(5, 5, 3), grayscale_window=True,
                        use_latent=True, z_conditioning="both")
    model = randomise(vlae_tf.VLAE(config), seed=6)
    z_map = sampling.latent_map64(model, tf.random.stateless_normal([2, 4], seed=[3, 3]))
    values, params = fast_sampling.pixel_loop(model, z_map, 2, tf.constant([5, 6]), 1.0,
                                              record_params=True)
    inputs = [fast_sampling.as_decoder_input(fast_sampling.scale_values(model, values)),
              fast_sampling.as_decoder_input(z_map)]
    with fast_sampling.float64_compute(model.pixelcnn):
        full = model.pixelcnn(inputs)
    np.testing.assert_allclose(params, full, rtol=0, atol=1e-12)
    assert len(np.unique(values.numpy())) > 10  # a real image, not a constant


@pytest.mark.parametrize("changes, field", [
    (dict(window=(4, 4)), "window"),
    (dict(window=(6, 3)), "window"),
    (dict(window=(3, 2)), "window"),
    (dict(window=None), "window"),
    (dict(likelihood="bernoulli", image_shape=(10, 10, 1)), "likelihood"),
    (dict(z_conditioning="concat"), "z_conditioning"),
    (dict(tie_weights=True), "tie_weights"),
    (dict(residual_placement="interleaved"), "residual_placement"),
    (dict(decoder_dropout=1.0), "decoder_dropout"),
    (dict(decoder_dropout=-0.1), "decoder_dropout"),
    (dict(decoder="gated", window=(5, 3), decoder_dropout=0.5), "decoder_dropout"),
])
def test_bad_settings_name_the_field(changes, field):
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected"):
        ppp_config(**changes)


def test_the_window_error_lists_the_supported_windows():
    with pytest.raises(ValueError, match="4x2, 5x3, 6x4, 7x4"):
        ppp_config(window=(4, 3))
