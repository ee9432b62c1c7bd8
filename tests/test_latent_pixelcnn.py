"""The PixelCNN autoregressive-flow prior on a spatial latent (the paper's CIFAR prior, App. B).

Pins: the network's output k depends on z_{<k} only in the flat raster order (gradient
probes), the reversal between steps really reverses that order, the flow's log-det is the
autodiff log|det| of its inverse, the prior equals TFP's TransformedDistribution, and a VLAE
with this prior trains all of it.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import sampling
from vlae_tf.config import VLAEConfig
from vlae_tf.flows import AutoregressiveFlowPrior
from vlae_tf.inputs import make_seed
from vlae_tf.nn.latent_pixelcnn import LatentPixelCNN, latent_conv_mask
from vlae_tf.nn.layers import causal_kernel_mask


def randomise(layer, seed, scale=0.7):
    """Every weight of `layer` <- N(0, scale^2 / fan_in) (fan_in of a conv kernel: kh*kw*in)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        fan_in = int(np.prod(variable.shape[:-1])) if len(variable.shape) > 1 else 1
        variable.assign(rng.normal(0.0, scale / np.sqrt(fan_in),
                                   variable.shape).astype(np.float32))


def random_z(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 3], dtype=tf.float32)


def network_jacobian(network, z):
    """d out[b, k, p] / d z[b, j] -> [B, D, P, D]."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = network(z)
    return tape.batch_jacobian(out, z).numpy()


def inverse_jacobian(prior, z):
    """d reverse(eps) / dz [B, D, D], eps = f^{-1}(z): reverse(eps)_k belongs to unit k."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        eps, _ = prior.inverse_and_log_det(z)
        eps_in_z_order = tf.reverse(eps, axis=[-1])
    return tape.batch_jacobian(eps_in_z_order, z).numpy()


# ---------------------------------------------------------------------------------- masks
def test_one_channel_masks_are_pixelcnns_mask_a_then_b():
    """c = 1: every map has degree 0 and the input degree 1, so the input layer's centre is
    closed (mask A) and the hidden/output layers' centre open (mask B)."""
    mask_a = causal_kernel_mask((3, 3), 1, "A")[:, :, 0, 0]
    mask_b = causal_kernel_mask((3, 3), 1, "B")[:, :, 0, 0]
    first = latent_conv_mask(3, [1], [0, 0, 0])
    hidden = latent_conv_mask(3, [0, 0], [0, 0, 0])
    for out in range(3):
        np.testing.assert_array_equal(first[:, :, 0, out], mask_a)
        for inp in range(2):
            np.testing.assert_array_equal(hidden[:, :, inp, out], mask_b)


def test_centre_tap_uses_channel_degrees():
    # in: channels 0, 1 (degrees 1, 2); out: maps of degrees 0, 1, 2 (c = 3 cycled).
    mask = latent_conv_mask(5, [1, 2], [0, 1, 2])
    np.testing.assert_array_equal(mask[2, 2], [[0, 1, 1], [0, 0, 1]])
    assert np.all(mask[:2] == 1) and np.all(mask[2, :2] == 1)  # before the centre: full
    assert np.all(mask[3:] == 0) and np.all(mask[2, 3:] == 0)  # after it: empty


# ------------------------------------------------------------------------ gradient probe
@pytest.mark.parametrize("latent_shape,hidden,outputs,kernel_size,weight_norm", [
    ((3, 3, 2), (8, 8), 2, 3, False),
    ((4, 4, 3), (6,), 1, 3, False),
    ((4, 4, 3), (5, 7), 2, 5, True),
    ((3, 3, 1), (4, 4), 1, 3, False),
])
def test_output_k_depends_only_on_earlier_units_in_raster_order(
        latent_shape, hidden, outputs, kernel_size, weight_norm):
    network = LatentPixelCNN(latent_shape, hidden, num_outputs_per_dim=outputs,
                             kernel_size=kernel_size, weight_norm=weight_norm)
    network.build((None, int(np.prod(latent_shape))))
    randomise(network, seed=1)  # the zero-initialised output layer would hide every path
    size = int(np.prod(latent_shape))
    jacobian = np.abs(network_jacobian(network, random_z([3, size], 5)))
    assert jacobian.shape == (3, size, outputs, size)
    height, width, channels = latent_shape
    for k in range(size):
        position, channel = divmod(k, channels)
        column = position % width
        # Exactly zero (masked kernels), not merely small: z_k and every later unit.
        assert np.all(jacobian[:, k, :, k:] == 0.0), k
        if k == 0:
            continue  # unit 0 has no predecessor: its parameters are constants
        assert jacobian[:, k, :, :k].max() > 1e-6, k  # the mask is not vacuous
        if channel > 0 or column > 0:
            # Its immediate predecessor (channel - 1 here, or the last channel of the left
            # neighbour) is always in the field; the up-right end of the previous row
            # (column 0) lies in PixelCNN's blind spot.
            assert jacobian[:, k, :, k - 1].min() > 0.0, k


def test_network_keeps_leading_batch_dimensions():
    network = LatentPixelCNN((2, 2, 2), (4,), num_outputs_per_dim=2)
    randomise(network, seed=2)
    z = random_z([2, 3, 8], 1)
    out = network(z)
    assert out.shape == (2, 3, 8, 2)
    np.testing.assert_allclose(out[1, 2], network(z[1, 2][None])[0], rtol=1e-6, atol=1e-6)


def test_fresh_network_outputs_zero_so_each_step_starts_as_the_identity():
    for weight_norm in (False, True):
        prior = AutoregressiveFlowPrior(8, num_steps=2, hidden_units=(4, 4), mean_only=False,
                                        network="pixelcnn", latent_shape=(2, 2, 2),
                                        weight_norm=weight_norm)
        z = random_z([4, 8], 9)
        eps, log_det = prior.inverse_and_log_det(z)
        # Two identity steps with one reversal between them.
        np.testing.assert_array_equal(eps.numpy(), z.numpy()[:, ::-1])
        np.testing.assert_array_equal(log_det.numpy(), np.zeros(4))


# ------------------------------------------------------------------------------ reversal
def test_the_second_step_sees_the_reversed_order():
    """rev(eps) = rev(g_0^{-1}(rev(g_1^{-1}(z)))), component k belonging to unit k:
    step 1 alone (step 0 the identity) makes d rev(eps)/dz lower triangular, step 0 alone
    upper triangular (its network reads z reversed), both together neither."""
    shape, size = (3, 3, 2), 18
    kwargs = dict(num_steps=2, hidden_units=(8, 8), mean_only=True, network="pixelcnn",
                  latent_shape=shape)
    z = random_z([2, size], 4)
    below = np.tril_indices(size, -1)
    above = np.triu_indices(size, 1)

    def jacobian_with(random_steps):
        prior = AutoregressiveFlowPrior(size, **kwargs)
        for step in random_steps:  # the others keep their zero output: identity steps
            randomise(prior.networks[step], seed=10 + step)
        return inverse_jacobian(prior, z)

    only_step_1 = np.abs(jacobian_with([1]))
    assert np.all(only_step_1[:, above[0], above[1]] == 0.0)
    assert only_step_1[:, below[0], below[1]].max() > 1e-3
    only_step_0 = np.abs(jacobian_with([0]))
    assert np.all(only_step_0[:, below[0], below[1]] == 0.0)
    assert only_step_0[:, above[0], above[1]].max() > 1e-3
    signed = jacobian_with([0, 1])
    both = np.abs(signed)
    assert both[:, below[0], below[1]].max() > 1e-3 and both[:, above[0], above[1]].max() > 1e-3
    # Mean-only steps: unit-diagonal triangular factors, so |det| = 1 for the product too.
    for triangular in (only_step_0, only_step_1):
        np.testing.assert_array_equal(np.diagonal(triangular, axis1=1, axis2=2), 1.0)
    np.testing.assert_allclose(np.linalg.slogdet(signed.astype(np.float64))[1], 0.0, atol=1e-4)


# ------------------------------------------------------------------------- flow algebra
@pytest.mark.parametrize("mean_only", [False, True])
def test_log_det_inverse_and_log_prob_are_exact(mean_only):
    shape, size = (2, 2, 3), 12
    prior = AutoregressiveFlowPrior(size, num_steps=2, hidden_units=(6, 6),
                                    mean_only=mean_only, network="pixelcnn", latent_shape=shape)
    randomise(prior, seed=21, scale=0.5)
    z = random_z([5, size], 8)
    with tf.GradientTape() as tape:
        tape.watch(z)
        eps, log_det = prior.inverse_and_log_det(z)
    jacobian = tape.batch_jacobian(eps, z)
    np.testing.assert_allclose(log_det, tf.linalg.slogdet(jacobian)[1], rtol=1e-4, atol=1e-4)
    if mean_only:
        np.testing.assert_array_equal(log_det.numpy(), np.zeros(5))
    else:
        assert np.abs(log_det.numpy()).min() > 1e-2  # an affine flow, not volume preserving
    # f(f^{-1}(z)) = z and f^{-1}(f(eps)) = eps (forward: TFP's sequential MAF loop).
    np.testing.assert_allclose(prior.bijector.forward(eps), z, rtol=1e-4, atol=1e-4)
    eps0 = random_z([5, size], 11)
    np.testing.assert_allclose(prior.inverse_and_log_det(prior.bijector.forward(eps0))[0],
                               eps0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(prior.log_prob(z), prior.distribution.log_prob(z),
                               rtol=1e-5, atol=1e-4)


def test_compiled_prior_sampler_matches_the_eager_flow():
    prior = AutoregressiveFlowPrior(8, num_steps=2, hidden_units=(4, 4), mean_only=False,
                                    network="pixelcnn", latent_shape=(2, 2, 2))
    randomise(prior, seed=31, scale=0.5)
    holder = types.SimpleNamespace(prior=prior)  # prior_sampler only needs `.prior`
    seed = tf.constant([3, 4], tf.int32)
    z = sampling.prior_sampler(holder)(tf.constant(5), seed, tf.constant(0.8))
    np.testing.assert_allclose(z, prior.sample(5, seed, temperature=0.8), rtol=1e-4, atol=1e-5)
    assert not np.allclose(z, 0.8 * tf.random.stateless_normal([5, 8], seed))  # not identity


# -------------------------------------------------------------------------- persistence
def test_config_round_trip_and_weight_files(tmp_path):
    prior = AutoregressiveFlowPrior(12, num_steps=2, hidden_units=(4,), mean_only=False,
                                    network="pixelcnn", latent_shape=(2, 2, 3), kernel_size=5,
                                    weight_norm=True)
    randomise(prior, seed=41, scale=0.5)
    config = prior.get_config()
    assert (config["network"], config["latent_shape"], config["kernel_size"],
            config["activation"]) == ("pixelcnn", [2, 2, 3], 5, "elu")
    clone = AutoregressiveFlowPrior.from_config(config)
    assert clone.get_config() == config
    z = random_z([3, 12], 2)
    assert not np.allclose(clone.log_prob(z), prior.log_prob(z))
    checkpoint = tf.train.Checkpoint(prior=prior).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(prior=clone).read(checkpoint).assert_existing_objects_matched()
    np.testing.assert_array_equal(clone.log_prob(z), prior.log_prob(z))
    # The MADE prior's configuration gained the new keys with their defaults.
    made_config = AutoregressiveFlowPrior(4, num_steps=1, hidden_units=(4,)).get_config()
    assert (made_config["network"], made_config["latent_shape"],
            made_config["activation"]) == ("made", None, "relu")


# --------------------------------------------------------------------------------- VLAE
def tiny_config(**changes):
    base = VLAEConfig(image_shape=(8, 8, 1), latent_size=8, latent_shape=(2, 2, 2),
                      encoder_filters=(8,), encoder_hidden=16, prior="af", prior_steps=2,
                      prior_hidden=(8, 8), prior_mean_only=False, prior_network="pixelcnn",
                      prior_weight_norm=True, iaf_steps=0, window=(3, 2), decoder_layers=2,
                      decoder_filters=8, decoder_residual_blocks=1, z_map_channels=4,
                      ema_momentum=None)
    return base.replace(**changes)


def test_vlae_with_the_pixelcnn_prior_trains_every_prior_weight():
    model = vlae_tf.VLAE(tiny_config())
    assert isinstance(model.prior, AutoregressiveFlowPrior)
    assert [type(n) for n in model.prior.networks] == [LatentPixelCNN] * 2
    prior_weights = model.prior.trainable_weights
    assert len(prior_weights) == 2 * 3 * 3  # steps x layers x (kernel, bias, gain)
    tracked = {id(variable) for variable in model.trainable_weights}
    assert all(id(variable) in tracked for variable in prior_weights)
    # The zero output layers would give the hidden layers zero gradients in the first step.
    randomise(model.prior, seed=51, scale=0.3)
    before = [variable.numpy().copy() for variable in prior_weights]
    images = (np.random.default_rng(0).random((8, 8, 8, 1)) < 0.3).astype(np.uint8)
    # run_eagerly: the same train_step without tracing the training graph (~30 s here).
    model.compile(run_eagerly=True)
    model.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False)  # one step
    for old, variable in zip(before, prior_weights):
        assert not np.array_equal(old, variable.numpy()), variable.path
    # log p(x) >= ELBO on the same draws: importance sample k is the ELBO's draw at
    # fold_in(seed, k) (k = 0: seed itself), so the K = 16 estimate is the log-mean-exp of
    # these 16 ELBOs, never below their mean (different draws would make it a coin toss).
    seed = make_seed(3)
    per_sample = np.stack([model.elbo(images[:4], seed=seed if k == 0 else tf.random
                                      .experimental.stateless_fold_in(seed, k))["elbo"]
                           .numpy() for k in range(16)])
    estimate = model.importance_log_likelihood(images[:4], num_samples=16, seed=3).numpy()
    top = per_sample.max(axis=0)
    np.testing.assert_allclose(
        estimate, np.log(np.mean(np.exp(per_sample - top), axis=0)) + top, rtol=1e-5, atol=1e-3)
    assert np.all(np.isfinite(estimate))
    assert np.all(estimate >= per_sample.mean(axis=0) - 1e-4), (estimate, per_sample.mean(0))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("changes,field", [
    (dict(prior_kernel_size=4), "prior_kernel_size"),
    (dict(prior_kernel_size=1), "prior_kernel_size"),
    (dict(prior_kernel_size=2.5), "prior_kernel_size"),
    (dict(prior_kernel_size=True), "prior_kernel_size"),
    (dict(latent_shape=None), "prior_network"),
    (dict(prior="standard_normal"), "prior_network"),
    (dict(prior_network="conv"), "prior_network"),
    (dict(latent_shape=(2, 2, 3)), "latent_shape"),
])
def test_bad_config_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"VLAEConfig\.{field}: expected"):
        tiny_config(**changes)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(network="conv"), "`network`"),
    (dict(latent_shape=None), "`latent_shape`"),
    (dict(latent_shape=(2, 2, 3)), "`latent_shape`"),
    (dict(latent_shape=(2, 4)), "`latent_shape`"),
    (dict(kernel_size=4), "`kernel_size`"),
    (dict(kernel_size=1), "`kernel_size`"),
    (dict(hidden_units=()), "`hidden_units`"),
])
def test_bad_prior_arguments_name_the_argument(kwargs, argument):
    arguments = dict(num_steps=1, hidden_units=(4,), network="pixelcnn", latent_shape=(2, 2, 2))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        AutoregressiveFlowPrior(8, **arguments)


def test_wrong_input_size_is_refused():
    network = LatentPixelCNN((2, 2, 2), (4,))
    with pytest.raises(ValueError, match="last dimension must be 8"):
        network(tf.zeros([3, 7]))
