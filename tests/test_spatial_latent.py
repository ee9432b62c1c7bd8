"""The spatial latent and the paper's CIFAR ResNet / DenseNet VLAE (vlae_tf/spatial.py):
shapes and parameter counts of the paper's networks, the raster order of the flat z, the
estimators, training, diagnostics, export and sampling on a tiny spatial VLAE, and the
config checks."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import decoder as decoder_lib
from vlae_tf import diagnostics, export, sampling, spatial
from vlae_tf import encoder as encoder_lib
from vlae_tf.config import VLAEConfig

LATENT_SHAPE = (3, 3, 2)  # 12x12 images / 4


def paper_config(encoder="resnet", **changes):
    """The paper's CIFAR-10 encoder / generation network (Chen et al. 2017, App. B)."""
    config = VLAEConfig(image_shape=(32, 32, 3), likelihood="logistic_mixture",
                        latent_size=1024, latent_shape=(8, 8, 16), encoder=encoder,
                        encoder_filters=(48, 96, 96), encoder_blocks=(2, 2, 3),
                        latent_map="symmetric", z_map_channels=16, prior="standard_normal")
    return config.replace(**changes)


def tiny_config(encoder="resnet", **changes):
    config = VLAEConfig(image_shape=(12, 12, 1), latent_size=18, latent_shape=LATENT_SHAPE,
                        encoder=encoder, encoder_filters=(4, 8, 8), encoder_blocks=(1, 1, 1),
                        latent_map="symmetric", prior="af", prior_steps=1,
                        prior_hidden=(16,), prior_mean_only=False, window=(3, 2),
                        decoder_layers=2, decoder_filters=4, decoder_residual_blocks=1,
                        z_map_channels=4, ema_momentum=None)
    return config.replace(**changes)


def binary_images(count=8, seed=0, shape=(12, 12, 1)):
    generator = np.random.default_rng(seed)
    images = generator.random((count,) + shape) < 0.25
    images[: count // 2, : shape[0] // 2] |= generator.random(
        (count // 2, shape[0] // 2) + shape[1:]) < 0.7
    return images.astype(np.uint8)


def conv_params(kernel, inputs, outputs):
    """A weight-normalised conv: kernel v, bias b and gain g (one per output map)."""
    return kernel * kernel * inputs * outputs + 2 * outputs


def resnet_block_params(width):
    return 2 * conv_params(3, width, width)


def dense_block_params(inputs, growth):
    return sum(conv_params(3, inputs + step * growth, growth) for step in range(3))


# The two tiny models of the module, each with another part of the objective on the flat
# spatial z: hard free bits per feature map (2 groups of h*w = 9 units, standard normal
# prior) and soft free bits with the AF prior (lambda far above the KL: gamma must fall).
TRAINED_CONFIGS = {
    "resnet": dict(prior="standard_normal", free_bits=0.05, free_bits_groups=2,
                   free_bits_grouping="feature_map", free_bits_mode="hard"),
    "densenet": dict(free_bits=1000.0, free_bits_mode="soft"),
}


@pytest.fixture(scope="module")
def trained():
    """{encoder: (model, weights before, images)} after a data-dependent init and one
    training step (`train_step` on a batch of 8, run eagerly: what `fit` runs, without
    its minute of tracing on this machine)."""
    models = {}
    images = binary_images(8)
    for encoder, changes in TRAINED_CONFIGS.items():
        model = vlae_tf.VLAE(tiny_config(encoder, **changes))
        model.data_dependent_init(images)
        before = {id(v): v.numpy().copy() for v in model.trainable_weights}
        model.compile()
        logs = model.train_step(tf.constant(images))
        assert np.isfinite(float(logs["loss"]))
        models[encoder] = (model, before, images)
    return models


# --------------------------------------------------------------- the paper's networks
def test_paper_resnet_vlae_shapes_and_parameter_count():
    config = paper_config("resnet")
    encoder = encoder_lib.build_encoder(config)
    generation = decoder_lib.build_latent_map(config)
    assert [tuple(output.shape) for output in encoder.outputs] == [(None, 1024)] * 2
    assert tuple(encoder.get_layer("posterior_mean").output.shape) == (None, 8, 8, 16)
    assert tuple(generation.input.shape) == (None, 1024)
    assert tuple(generation.output.shape) == (None, 32, 32, 16)
    # The stated plan, block by block: stem 3 -> 48; 2 blocks at 48; stride-2 conv 48 -> 96;
    # 2 blocks at 96; stride-2 conv 96 -> 96; 3 blocks at 96; two 1x1 convs 96 -> 16.
    expected_encoder = (conv_params(3, 3, 48) + 2 * resnet_block_params(48)
                        + conv_params(3, 48, 96) + 2 * resnet_block_params(96)
                        + conv_params(3, 96, 96) + 3 * resnet_block_params(96)
                        + 2 * conv_params(1, 96, 16))
    # Mirrored: 1x1 conv 16 -> 96; 3 blocks; up 96 -> 96; 2 blocks; up 96 -> 48; 2 blocks
    # at 48; 3x3 conv 48 -> z_map_channels.
    expected_generation = (conv_params(1, 16, 96) + 3 * resnet_block_params(96)
                           + conv_params(3, 96, 96) + 2 * resnet_block_params(96)
                           + conv_params(3, 96, 48) + 2 * resnet_block_params(48)
                           + conv_params(3, 48, 16))
    assert encoder.count_params() == expected_encoder == 1_044_016
    assert generation.count_params() == expected_generation == 1_048_064
    # A batch runs (the shapes above are symbolic) and the scale is positive.
    mean, scale = encoder(tf.zeros([2, 32, 32, 3]))
    assert mean.dtype == scale.dtype == tf.float32 and np.all(scale.numpy() > 0)
    assert generation(mean).shape == (2, 32, 32, 16)


def test_paper_densenet_vlae_widths_and_parameter_count():
    config = paper_config("densenet")
    plan = spatial.stage_plan(config)
    # One dense block per pair of ResNet blocks (2, 2, 3 -> 1, 1, 2), growth floor(F/3)+1.
    assert [(s.size, s.filters, s.units, s.growth, s.output_width) for s in plan] == [
        ((32, 32), 48, 1, 17, 51), ((16, 16), 96, 1, 33, 99), ((8, 8), 96, 2, 33, 99)]
    encoder = encoder_lib.build_encoder(config)
    generation = decoder_lib.build_latent_map(config)
    for name, width in (("stage0_block0_out", 51), ("stage1_block0_out", 99),
                        ("stage2_block0_out", 99), ("stage2_block1_out", 99),
                        ("down1", 96), ("down2", 96)):
        assert encoder.get_layer(name).output.shape[-1] == width, name
    assert tuple(encoder.get_layer("posterior_mean").output.shape) == (None, 8, 8, 16)
    assert tuple(generation.output.shape) == (None, 32, 32, 16)
    expected_encoder = (conv_params(3, 3, 48) + dense_block_params(48, 17)
                        + conv_params(3, 51, 96) + dense_block_params(96, 33)
                        + conv_params(3, 99, 96) + dense_block_params(96, 33)
                        + dense_block_params(99, 33) + 2 * conv_params(1, 99, 16))
    expected_generation = (conv_params(1, 16, 96) + dense_block_params(96, 33)
                           + dense_block_params(99, 33) + conv_params(3, 99, 96)
                           + dense_block_params(96, 33) + conv_params(3, 99, 48)
                           + dense_block_params(48, 17) + conv_params(3, 51, 16))
    assert encoder.count_params() == expected_encoder == 512_629
    assert generation.count_params() == expected_generation == 515_717


def test_densenet_growth_and_block_counts_follow_the_config():
    config = tiny_config("densenet", encoder_blocks=(1, 2, 3), densenet_growth=(2, 5, 7))
    plan = spatial.stage_plan(config)
    assert [(s.units, s.output_width) for s in plan] == [(1, 6), (1, 15), (2, 21)]
    encoder = encoder_lib.build_encoder(config)
    widths = {layer.name: layer.output.shape[-1] for layer in encoder.layers
              if layer.name.endswith("_out")}
    assert widths == {"stage0_block0_out": 6, "stage1_block0_out": 15,
                      "stage2_block0_out": 21, "stage2_block1_out": 21}
    # Step k of a block reads the block input and the k-1 earlier steps.
    assert encoder.get_layer("stage2_block1_conv2").kernel.shape == (3, 3, 21 + 2 * 7, 7)


# -------------------------------------------------------------------- flat raster order
def test_flat_posterior_is_the_map_in_raster_order(trained):
    model, _, images = trained["resnet"]
    scaled = tf.cast(images, tf.float32) * 2.0 - 1.0
    maps = keras.Model(model.encoder.input,
                       [model.encoder.get_layer("posterior_mean").output,
                        model.encoder.get_layer("posterior_raw_scale").output])(scaled)
    mean, scale = model.encode(images)
    height, width, channels = LATENT_SHAPE
    for row in range(height):
        for column in range(width):
            for channel in range(channels):
                unit = (row * width + column) * channels + channel
                np.testing.assert_allclose(mean[:, unit], maps[0][:, row, column, channel],
                                           rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(
                    scale[:, unit], tf.nn.softplus(maps[1][:, row, column, channel]) + 1e-4,
                    rtol=1e-5, atol=1e-7)
    assert np.std(mean.numpy()) > 1e-3  # distinct units, so a permutation would be seen
    np.testing.assert_array_equal(spatial.to_map(mean.numpy(), LATENT_SHAPE), maps[0])
    np.testing.assert_array_equal(spatial.to_flat(spatial.to_map(mean, LATENT_SHAPE)), mean)


def test_generation_network_reads_z_in_raster_order():
    """z unit k = (row, column, channel) is entry (row, column, channel) of the map that the
    1x1 input conv reads: d gen_in[:, r, c] / d z_k is zero unless (r, c) is k's position."""
    config = tiny_config()
    generation = decoder_lib.build_latent_map(config)
    first = keras.Model(generation.input, generation.get_layer("gen_in").output)
    z = tf.random.stateless_normal([1, 18], [1, 2])
    _, width, channels = LATENT_SHAPE
    for unit in (0, 5, 13, 17):
        # gen_in is a 1x1 conv (affine per position): a change of z_k moves exactly the
        # outputs at k's position.
        change = (first(z + tf.one_hot([unit], 18)) - first(z)).numpy()[0]  # [h, w, F]
        moved = np.argwhere(np.abs(change).sum(axis=-1) > 1e-6)
        assert [tuple(p) for p in moved] == [divmod(unit // channels, width)], unit


def test_to_map_refuses_a_wrong_size():
    with pytest.raises(ValueError, match="values: expected a last axis of h\\*w\\*c = 18"):
        spatial.to_map(np.zeros([2, 16]), LATENT_SHAPE)


# -------------------------------------------------------------------- the tiny VLAE
def test_importance_sampling_bounds_and_chunking(trained):
    model, _, images = trained["resnet"]
    images, seed = images[:4], vlae_tf.model.make_seed(7)
    num_samples = 6
    # The ELBO of each importance sample k, with sample k's own noise (seed folded with k).
    elbos = np.stack([model.elbo(images, seed=seed if k == 0 else
                                 tf.random.experimental.stateless_fold_in(seed, k))["elbo"]
                      for k in range(num_samples)])
    by_chunk = [model.importance_log_likelihood(images, num_samples, chunk_size=chunk,
                                                seed=seed).numpy() for chunk in (2, 6)]
    for estimate in by_chunk[1:]:
        np.testing.assert_allclose(estimate, by_chunk[0], rtol=1e-5)
    # log mean_k w_k >= mean_k log w_k on the same draws (Jensen): IS >= ELBO per image.
    log_mean_weights = np.log(np.mean(np.exp(elbos - elbos.max(0)), axis=0)) + elbos.max(0)
    np.testing.assert_allclose(by_chunk[0], log_mean_weights, rtol=1e-5)
    assert np.all(by_chunk[0] >= elbos.mean(axis=0) - 1e-4)
    assert np.all(by_chunk[0] > elbos.mean(axis=0))  # strictly: the weights differ


@pytest.mark.parametrize("encoder", ["resnet", "densenet"])
def test_encoder_and_generation_weights_are_tracked_and_trained(trained, encoder):
    model, before, _ = trained[encoder]
    tracked = {id(v) for v in model.trainable_weights}
    for component in (model.encoder, model.latent_map):
        assert component.trainable_weights
        for variable in component.trainable_weights:
            assert id(variable) in tracked, variable.path
            assert not np.array_equal(before[id(variable)], variable.numpy()), \
                f"{variable.path} did not move in a fit step"
    # The spatial networks are the ones built (not the dense encoder / its mirror).
    assert model.encoder.get_layer("posterior_mean") is not None
    assert model.latent_map.get_layer("gen_in") is not None


def test_free_bits_groups_of_the_map():
    """"feature_map": group k is map k's units; "contiguous" with h*w groups: the map's
    positions (raster chunks of c units)."""
    units = spatial.to_map(np.arange(18), LATENT_SHAPE)  # [h, w, c] of flat indices
    by_map = spatial.free_bits_group_indices(tiny_config(
        prior="standard_normal", free_bits_groups=2, free_bits_grouping="feature_map"))
    assert [sorted(group) for group in by_map] == [sorted(units[..., k].ravel())
                                                   for k in range(2)]
    by_position = spatial.free_bits_group_indices(tiny_config(
        prior="standard_normal", free_bits_groups=9))
    assert [list(group) for group in by_position] == [list(units[r, c]) for r in range(3)
                                                      for c in range(3)]


def test_free_bits_per_map_and_soft_free_bits_on_the_flat_latent(trained):
    """The model's KL per group (grouping "feature_map") is the KL of each latent map and
    the groups sum to the KL; soft free bits' gamma follows the rule after a step."""
    model = trained["resnet"][0]
    images = binary_images(4)
    terms = model._elbo_terms(tf.constant(images, tf.int32), vlae_tf.model.make_seed(3))
    np.testing.assert_allclose(tf.reduce_sum(terms["kl_per_group"], -1), terms["kl"],
                               rtol=1e-5, atol=1e-4)
    mean, scale = model.encode(images)
    eps = tf.random.stateless_normal([4, 18], vlae_tf.model.make_seed(3))
    z = mean + scale * eps
    kl_dims = (-0.5 * eps ** 2 - tf.math.log(scale)) + 0.5 * z ** 2  # log q - log p per unit
    map_kl = tf.reduce_sum(spatial.to_map(kl_dims, LATENT_SHAPE), axis=[1, 2])  # [B, c]
    np.testing.assert_allclose(terms["kl_per_group"], map_kl, rtol=1e-4, atol=1e-4)
    soft = trained["densenet"][0]
    assert float(soft.kl_tracker.result()) < 1000.0  # KL < lambda: gamma decreases
    np.testing.assert_allclose(float(soft.soft_kl_weight.numpy()), 1.0 / 1.1, rtol=1e-5)


def test_diagnostics_export_encode_and_samples(trained):
    model, _, images = trained["resnet"]
    result = diagnostics.model_diagnostics(model, images, seed=[1, 2])
    assert result["per_dimension_kl"].shape == (18,)
    assert spatial.to_map(result["active_unit_variances"], LATENT_SHAPE).shape == LATENT_SHAPE
    function, signature = export.serving_functions(model, limits={"max_images": 8})["encode"]
    outputs = tf.function(function, input_signature=signature)(tf.constant(images))
    mean, scale = model.encode(images)
    np.testing.assert_allclose(outputs["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["scale"], scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["mean_map"], spatial.to_map(mean, LATENT_SHAPE),
                               rtol=1e-5, atol=1e-6)
    assert outputs["scale_map"].shape == (8,) + LATENT_SHAPE
    table = export.signature_table(model)["encode"]["outputs"]
    assert table["mean_map"] == ["float32", [None, *LATENT_SHAPE]]



def test_prior_samples_reach_the_decoder_through_the_generation_network(trained):
    """The samplers' path: z ~ p(z) (flat) -> the generation network in float64
    (`sampling.latent_map64`, which both samplers use) = the float32 map to rounding."""
    model = trained["densenet"][0]  # AF prior; dense blocks (concatenations) in float64
    z = model.prior.sample(3, vlae_tf.model.make_seed(4), 1.0)
    assert z.shape == (3, 18)
    map64 = sampling.latent_map64(model, z)
    assert map64.dtype == tf.float64 and map64.shape == (3, 12, 12, 4)
    np.testing.assert_allclose(map64, model.latent_map(z), rtol=1e-4, atol=1e-5)
    params = model.decoder_params(np.zeros([3, 12, 12, 1], np.uint8), z)
    assert params.shape[:3] == (3, 12, 12)


# ----------------------------------------------------------------------- config checks
@pytest.mark.parametrize("changes, field", [
    (dict(latent_shape=None), "latent_shape"),
    (dict(image_shape=(16, 16, 1), latent_shape=(3, 3, 2)), "latent_shape"),
    (dict(image_shape=(13, 12, 1)), "latent_shape"),
    (dict(latent_map="dense_upsample"), "latent_map"),
    (dict(iaf_steps=1), "iaf_steps"),
    (dict(encoder="vgg"), "encoder"),
    (dict(encoder_blocks=(1, 1)), "encoder_blocks"),
    (dict(encoder_blocks=(1, 0, 1)), "encoder_blocks"),
    (dict(encoder="densenet", densenet_growth=(2, 3)), "densenet_growth"),
    (dict(densenet_growth=(2, 0, 3)), "densenet_growth"),
    (dict(free_bits_grouping="maps"), "free_bits_grouping"),
    (dict(prior="standard_normal", free_bits_groups=3, free_bits_grouping="feature_map"),
     "free_bits_groups"),
])
def test_bad_spatial_configs_name_the_field(changes, field):
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected"):
        tiny_config(**changes)


def test_dense_encoder_is_unchanged_by_the_new_fields():
    config = VLAEConfig()
    assert (config.encoder, config.encoder_blocks, config.densenet_growth) == (
        "dense", (2, 2, 3), None)
    # encoder="dense" needs no latent_shape and ignores encoder_blocks' length.
    VLAEConfig(encoder_filters=(8,), encoder_blocks=(1, 2, 3, 4))
    round_trip = VLAEConfig.from_dict(tiny_config("densenet", densenet_growth=[2, 3, 4])
                                      .to_dict())
    assert round_trip.densenet_growth == (2, 3, 4)
    assert math.prod(round_trip.latent_shape) == round_trip.latent_size
