"""The paper's binary decoder (decoder="masked_resnet"): field, tied weights, z path.

* The receptive field is the masked stack's (69 pixels for 6 layers of 3x3, blind spot
  included), probed pixel by pixel by gradients, for several depths.
* z reaches the PixelCNN only through its input: with the z slice of the first layer's
  kernel zeroed, the output does not depend on z at all.
* Tied weights: one kernel for every mask-B layer, whose gradient is the sum of the
  gradients each layer would get on its own; untied: one kernel per layer.
* Every weight (decoder, generation network, MADE prior) is tracked and trains.
"""

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import decoders, window as window_lib
from vlae_tf.config import VLAEConfig


def masked_config(**changes):
    base = VLAEConfig(image_shape=(14, 13, 1), latent_size=4, encoder_filters=(4, 4),
                      encoder_hidden=8, prior="af", prior_steps=2, prior_hidden=(8, 8),
                      prior_mean_only=True, prior_weight_norm=True, decoder="masked_resnet",
                      window=None, z_conditioning="concat", latent_map="symmetric",
                      decoder_layers=6, decoder_filters=4, decoder_residual_blocks=4,
                      residual_placement="interleaved", z_map_channels=2, ema_momentum=None)
    return base.replace(**changes)


def randomise(model, seed=0):
    """Random kernels, gains and biases, so that every connection has a nonzero gradient."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("gain"):
            value = rng.uniform(0.6, 1.6, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        variable.assign(value.astype(np.float32))
    return model


def inputs_for(config, seed=0):
    height, width, channels = config.image_shape
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 2, (1, height, width, channels)).astype(np.float32)
    z = rng.normal(size=(1, config.latent_size)).astype(np.float32)
    return images, z


def image_and_map_dependence(model, row, col, images, z):
    """Boolean [H, W] maps: which image pixels and which z-map positions the output at
    (row, col) depends on (nonzero gradients)."""
    images = tf.Variable(images)
    z_map = tf.Variable(model.latent_map(z))
    with tf.GradientTape() as tape:
        params = model.pixelcnn([model._scale(images), z_map])
        target = tf.reduce_sum(params[0, row, col])
    image_gradient, map_gradient = tape.gradient(target, [images, z_map],
                                                 unconnected_gradients="zero")
    return (np.abs(image_gradient.numpy()[0]).sum(-1) > 0,
            np.abs(map_gradient.numpy()[0]).sum(-1) > 0)


def test_the_paper_stack_has_the_69_pixel_field_with_its_blind_spot():
    offsets = window_lib.masked_stack_offsets(6)
    assert len(offsets) == 69
    rows = {}
    for d_row, d_col in offsets:
        rows.setdefault(d_row, []).append(d_col)
    assert sorted(rows) == [-6, -5, -4, -3, -2, -1, 0]
    for k in range(1, 7):  # row k above spans columns -6 .. +k
        assert sorted(rows[-k]) == list(range(-6, k + 1)), k
    assert sorted(rows[0]) == list(range(-6, 0))
    assert (-1, 2) not in offsets  # the blind spot: before the pixel, but never seen


@pytest.mark.parametrize("layers", [1, 2, 3, 6])
def test_receptive_field_is_the_masked_stack_pixel_by_pixel(layers):
    config = masked_config(decoder_layers=layers)
    model = randomise(vlae_tf.VLAE(config))
    images, z = inputs_for(config)
    height, width, _ = config.image_shape
    probes = [(0, 0), (0, 12), (3, 1), (7, 6), (13, 12), (13, 0), (10, 11)]
    for row, col in probes:
        on_image, on_map = image_and_map_dependence(model, row, col, images, z)
        expected = decoders.receptive_field(config, row, col)
        np.testing.assert_array_equal(
            on_image, expected, err_msg=f"{layers} layers, pixel ({row}, {col})")
        # z_concat_mask="B": the z map is seen on the field and at the pixel itself.
        expected_map = expected.copy()
        expected_map[row, col] = True
        np.testing.assert_array_equal(on_map, expected_map, err_msg=f"z map, ({row}, {col})")
    if layers == 6:  # interior pixel: the whole 69-pixel field
        assert decoders.receptive_field(config, 7, 6).sum() == 69


def test_mask_a_on_the_z_channels_hides_the_pixels_own_z():
    config = masked_config(decoder_layers=2, z_concat_mask="A")
    model = randomise(vlae_tf.VLAE(config))
    images, z = inputs_for(config)
    on_image, on_map = image_and_map_dependence(model, 5, 5, images, z)
    np.testing.assert_array_equal(on_map, on_image)
    assert not on_map[5, 5]


def test_z_enters_only_through_the_input_concatenation():
    """Zero the z channels of the first (mask-A) kernel: nothing else reads z, so the
    decoder's output no longer depends on z anywhere; with them, it does."""
    config = masked_config(decoder_layers=3)
    model = randomise(vlae_tf.VLAE(config))
    images, z = inputs_for(config)
    scaled = model._scale(images)

    def z_gradient():
        z_map = tf.Variable(model.latent_map(z))
        with tf.GradientTape() as tape:
            target = tf.reduce_sum(model.pixelcnn([scaled, z_map]) ** 2)
        return tape.gradient(target, z_map, unconnected_gradients="zero").numpy()

    assert np.abs(z_gradient()).max() > 1e-3
    first = model.pixelcnn.first
    kernel = first.kernel.numpy()
    assert kernel.shape[2] == 1 + config.z_map_channels  # 28x28x(1+4) in the paper
    kernel[:, :, 1:] = 0.0  # the z part of the concatenated input
    first.kernel.assign(kernel)
    np.testing.assert_array_equal(z_gradient(), 0.0)


def mask_b_kernels(model):
    return [variable for variable in model.pixelcnn.trainable_weights
            if variable.path.endswith("kernel") and "masked" in variable.path
            and "masked0" not in variable.path]


def test_tied_weights_are_one_variable_with_gradient_from_every_layer():
    layers = 5
    tied = randomise(vlae_tf.VLAE(masked_config(decoder_layers=layers, tie_weights=True)))
    untied = vlae_tf.VLAE(masked_config(decoder_layers=layers, tie_weights=False))
    assert len(mask_b_kernels(tied)) == 1
    assert len(mask_b_kernels(untied)) == layers - 1
    # Give the untied model the tied model's weights: every mask-B layer the shared ones.
    tied_layer = tied.pixelcnn.masked_layer(1)

    def key(variable):  # path within the pixelcnn ("masked0/kernel", "head/bias", ...)
        return variable.path.split("/", 1)[1]

    tied_by_key = {key(v): v for v in tied.pixelcnn.trainable_weights}
    shared = {id(getattr(untied.pixelcnn.masked_layer(index), name)): getattr(tied_layer, name)
              for index in range(1, layers) for name in ("kernel", "gain", "bias")}
    for variable in untied.pixelcnn.trainable_weights:
        source = shared[id(variable)] if id(variable) in shared else tied_by_key[key(variable)]
        variable.assign(source)
    images, z = inputs_for(tied.config)
    scaled, z_map = tied._scale(images), tied.latent_map(z)

    def gradients(model, variables):
        with tf.GradientTape() as tape:
            target = tf.reduce_sum(tf.sin(model.pixelcnn([scaled, z_map])))
        return [g.numpy() for g in tape.gradient(target, variables)]

    np.testing.assert_allclose(tied.pixelcnn([scaled, z_map]), untied.pixelcnn([scaled, z_map]),
                               rtol=1e-5, atol=1e-6)
    (tied_gradient,) = gradients(tied, [tied_layer.kernel])
    per_layer = gradients(untied, [untied.pixelcnn.masked_layer(l).kernel
                                   for l in range(1, layers)])
    for layer_index, gradient in enumerate(per_layer, start=1):
        assert np.abs(gradient).max() > 1e-4, f"mask-B layer {layer_index} adds no gradient"
    np.testing.assert_allclose(tied_gradient, np.sum(per_layer, axis=0), rtol=1e-4, atol=1e-6)
    # Masked-out kernel entries never receive gradient, and the variable is never masked.
    mask = tied_layer.kernel_mask[..., 0]
    assert np.all(tied_gradient[mask == 0] == 0)
    assert np.abs(tied_layer.kernel.numpy()[mask == 0]).max() > 0


def test_stage_plan_interleaves_the_1x1_blocks_between_mask_b_layers():
    plan = decoders.masked.stage_plan(masked_config())
    assert plan == [("masked", 0), ("masked", 1), ("block", 0), ("masked", 2), ("block", 1),
                    ("masked", 3), ("block", 2), ("masked", 4), ("block", 3), ("masked", 5)]
    at_end = decoders.masked.stage_plan(masked_config(residual_placement="end"))
    assert at_end[:6] == [("masked", index) for index in range(6)]
    assert at_end[6:] == [("block", index) for index in range(4)]


def test_generation_network_mirrors_the_encoder():
    config = masked_config(image_shape=(28, 28, 1), encoder_filters=(16, 32, 32),
                           z_map_channels=4)
    assert vlae_tf.decoder.encoder_sizes(config) == [(28, 28), (14, 14), (7, 7), (4, 4)]
    latent_map = vlae_tf.decoder.build_latent_map(config)
    assert tuple(latent_map.output.shape) == (None, 28, 28, 4)
    transposed = [layer.name for layer in latent_map.layers
                  if isinstance(layer, vlae_tf.nn.layers.Conv2D) and layer.transpose]
    assert len(transposed) == 2 * 3  # each level: a transposed conv and a transposed skip


@pytest.mark.parametrize("changes, field", [
    (dict(decoder="gated", window=(5, 3), z_conditioning="both", tie_weights=True),
     "tie_weights"),
    (dict(window=(5, 3)), "window"),
    (dict(z_conditioning="both"), "z_conditioning"),
    (dict(decoder="pixelsnail"), "decoder"),
    (dict(z_concat_mask="C"), "z_concat_mask"),
    (dict(decoder="gated", window=(5, 3), z_conditioning="both",
          residual_placement="interleaved"), "residual_placement"),
    (dict(latent_map="mlp"), "latent_map"),
])
def test_bad_decoder_settings_name_the_field(changes, field):
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected"):
        masked_config(**changes)


def test_every_part_is_tracked_and_trains():
    config = masked_config(tie_weights=True)
    model = vlae_tf.VLAE(config)
    images = (np.random.default_rng(0).random((8, 14, 13, 1)) < 0.3).astype(np.uint8)
    assert model.data_dependent_init(images) > 10  # (gains start at 0: the 2nd step moves v)
    before = {id(v): v.numpy().copy() for v in model.trainable_weights}
    tracked = set(before)
    model.compile()
    model.fit(images, batch_size=4, epochs=1, verbose=0)  # 2 steps: the MADEs' zero output
    for name in ("encoder", "pixelcnn", "latent_map", "prior"):
        weights = getattr(model, name).trainable_weights
        assert weights and all(id(v) in tracked for v in weights), name
        moved = [not np.array_equal(before[id(v)], v.numpy()) for v in weights]
        assert np.mean(moved) > 0.5, f"{name}: {np.mean(moved):.0%} of weights moved"


def test_weights_round_trip(tmp_path):
    config = masked_config(decoder_layers=3, tie_weights=True)
    model = randomise(vlae_tf.VLAE(config))
    images = (np.random.default_rng(1).random((3, 14, 13, 1)) < 0.3).astype(np.uint8)
    path = str(tmp_path / "masked.weights.h5")
    model.save_weights(path)
    restored = vlae_tf.VLAE(config)
    restored.load_weights(path)
    np.testing.assert_array_equal(model.elbo(images, seed=3)["elbo"],
                                  restored.elbo(images, seed=3)["elbo"])
    checkpoint = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    again = vlae_tf.VLAE(config)
    tf.train.Checkpoint(model=again).restore(checkpoint).assert_consumed()
    np.testing.assert_array_equal(model.elbo(images, seed=3)["elbo"],
                                  again.elbo(images, seed=3)["elbo"])
