"""Training machinery: IWAE / beta / warm-up objectives, non-finite steps, mixed precision,
and MirroredStrategy equivalence with a single device."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import objectives
from vlae_tf.callbacks import NonFiniteLossError
from vlae_tf.config import VLAEConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**changes):
    base = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                      encoder_hidden=16, prior="standard_normal", window=(3, 2),
                      decoder_layers=2, decoder_filters=8, decoder_residual_blocks=0,
                      z_map_channels=4, ema_momentum=None, free_bits_mode="none")
    return base.replace(**changes)


def binary_images(count=16, seed=0):
    return (np.random.default_rng(seed).random((count, 8, 8, 1)) < 0.3).astype(np.uint8)


def test_iwae_bound_formula_and_ordering():
    log_weights = tf.constant(np.random.default_rng(0).normal(-50, 3, (16, 5)), tf.float32)
    bound = objectives.iwae_bound(log_weights).numpy()
    expected = np.log(np.mean(np.exp(log_weights.numpy().astype(np.float64)), axis=0))
    np.testing.assert_allclose(bound, expected, rtol=1e-5)
    assert np.all(bound >= log_weights.numpy().mean(axis=0))  # Jensen: IWAE >= mean ELBO
    np.testing.assert_allclose(objectives.iwae_bound(log_weights[:1]), log_weights[0])


def test_iwae_training_loss_uses_k_samples_and_k1_equals_elbo_loss():
    images = tf.constant(binary_images(4))
    model = vlae_tf.VLAE(small_config(num_train_samples=3))
    tiled = tf.tile(images, [3, 1, 1, 1])
    terms = model._elbo_terms(tiled, vlae_tf.model.make_seed(0))
    loss = model._training_objective(terms, tf.constant(1, tf.int64))
    log_weights = tf.reshape(terms["elbo"], [3, 4])
    np.testing.assert_allclose(loss, -np.mean(objectives.iwae_bound(log_weights)), rtol=1e-6)
    assert loss.numpy() <= -np.mean(terms["elbo"].numpy()) + 1e-4

    single = vlae_tf.VLAE(small_config())
    terms = single._elbo_terms(images, vlae_tf.model.make_seed(0))
    np.testing.assert_allclose(single._training_objective(terms, tf.constant(1, tf.int64)),
                               -np.mean(terms["elbo"]), rtol=1e-6)


def test_iwae_model_trains():
    model = vlae_tf.VLAE(small_config(num_train_samples=4))
    model.compile()
    history = model.fit(binary_images(16), batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_beta_and_linear_warmup():
    np.testing.assert_allclose(objectives.kl_scale(5, 4.0, 0), 4.0)
    np.testing.assert_allclose(objectives.kl_scale(0, 1.0, 10), 0.0)
    np.testing.assert_allclose(objectives.kl_scale(5, 2.0, 10), 1.0)
    np.testing.assert_allclose(objectives.kl_scale(50, 2.0, 10), 2.0)
    model = vlae_tf.VLAE(small_config(kl_weight=3.0, kl_warmup_steps=4))
    terms = model._elbo_terms(tf.constant(binary_images(4)), vlae_tf.model.make_seed(0))
    loss = model._training_objective(terms, tf.constant(2, tf.int64))
    expected = np.mean(terms["recon"]) + 3.0 * 0.5 * np.mean(terms["kl"])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_incompatible_objective_settings_are_refused():
    with pytest.raises(ValueError, match="num_train_samples"):
        small_config(num_train_samples=2, kl_weight=2.0)
    with pytest.raises(ValueError, match="num_train_samples"):
        small_config(num_train_samples=2, free_bits_mode="hard", free_bits=1.0)


class PoisonedVLAE(vlae_tf.VLAE):
    """Returns a NaN reconstruction for any batch whose first image is all ones."""

    def _elbo_terms(self, images, seed, **kwargs):
        terms = super()._elbo_terms(images, seed, **kwargs)
        poisoned = tf.reduce_all(tf.equal(images[0], 1))
        recon = tf.where(poisoned, tf.fill(tf.shape(terms["recon"]), np.nan), terms["recon"])
        return {**terms, "recon": recon, "elbo": -(recon + terms["kl"])}


def poisoned_dataset(pattern):
    batches = [np.ones((4, 8, 8, 1), np.uint8) if poisoned else binary_images(4, index)
               for index, poisoned in enumerate(pattern)]
    return tf.data.Dataset.from_tensor_slices(np.concatenate(batches)).batch(4)


def test_nonfinite_steps_are_skipped_and_counted():
    model = PoisonedVLAE(small_config())
    model.compile()
    history = model.fit(poisoned_dataset([False, True, False]), epochs=1, verbose=0)
    assert int(model.nonfinite_steps.numpy()) == 1
    assert history.history["nonfinite_steps"][-1] == 1
    assert int(model.optimizer.iterations.numpy()) == 2  # only the finite steps applied
    assert all(np.all(np.isfinite(variable.numpy())) for variable in model.weights)


def test_nonfinite_step_leaves_every_weight_untouched():
    model = PoisonedVLAE(small_config())
    model.compile()
    before = [variable.numpy().copy() for variable in model.trainable_weights]
    model.fit(poisoned_dataset([True]), epochs=1, verbose=0)
    for old, variable in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, variable.numpy())


def test_too_many_nonfinite_steps_in_a_row_stop_with_a_message():
    model = PoisonedVLAE(small_config(max_consecutive_nonfinite=3))
    model.compile()
    with pytest.raises(NonFiniteLossError, match="3 non-finite .* in a row"):
        model.fit(poisoned_dataset([False, True, True, True, True, True]), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1


@pytest.mark.parametrize("policy, tolerance", [("mixed_bfloat16", 0.02),
                                               ("mixed_float16", 0.005)])
def test_mixed_precision_loss_matches_float32(policy, tolerance):
    """Convs run in low precision; likelihood, KL and flow log-dets stay float32, so the
    ELBO matches float32 to within `tolerance` (relative)."""
    config = small_config(prior="af", prior_steps=2, prior_hidden=(16,), iaf_steps=1,
                          iaf_hidden=(16,), iaf_context_size=8)
    images = binary_images(8)
    reference = vlae_tf.VLAE(config)
    for variable in reference.trainable_weights:  # non-trivial flows
        variable.assign(variable + np.random.default_rng(1).normal(0, 0.05, variable.shape))
    expected = reference.elbo(images, seed=1)
    keras.config.set_dtype_policy(policy)
    try:
        model = vlae_tf.VLAE(config)
        model.set_weights(reference.get_weights())
        assert model.pixelcnn.get_layer("layer1_h_conv").compute_dtype != "float32"
        terms = model.elbo(images, seed=1)
        for key in ("elbo", "recon", "kl"):
            assert terms[key].dtype == tf.float32
        np.testing.assert_allclose(terms["elbo"], expected["elbo"], rtol=tolerance)
        model.compile()
        history = model.fit(images, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
    finally:
        keras.config.set_dtype_policy("float32")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, vlae_tf
    from vlae_tf.config import VLAEConfig

    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                        encoder_hidden=16, prior="af", prior_steps=1, prior_hidden=(8,),
                        prior_mean_only=False, window=(3, 2), decoder_layers=2,
                        decoder_filters=8, decoder_residual_blocks=0, z_map_channels=4,
                        free_bits=0.5, ema_momentum=None, weight_norm=False)
    images = (np.random.default_rng(0).random((24, 8, 8, 1)) < 0.3).astype(np.uint8)

    def run(strategy):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            model = vlae_tf.VLAE(config)
            # SGD, not Adamax: Adamax's first steps are lr * sign(g) wherever |g| is tiny, so
            # last-bit differences in the replicas' gradient sum flip whole steps. SGD keeps
            # float noise at float size and tests what matters here: loss scaling by the
            # number of replicas and per-image noise independent of the replica split.
            model.compile(optimizer=keras.optimizers.SGD(0.05))
        losses = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(float(logs["elbo_nats"])))
        data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
        model.fit(data, epochs=2, verbose=0, callbacks=[record])
        return losses, [w.numpy().tolist() for w in model.trainable_weights], \\
            strategy.num_replicas_in_sync

    default = run(tf.distribute.get_strategy())
    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps({"default": default, "mirrored": mirrored}))
""")


def test_mirrored_strategy_matches_single_device():
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                            text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    (default_losses, default_weights, one), (mirrored_losses, mirrored_weights, two) = \
        outcome["default"], outcome["mirrored"]
    assert (one, two) == (1, 2)
    assert len(default_losses) == len(mirrored_losses) == 6
    # Float tolerance: the replicas' gradient sum adds in another order.
    np.testing.assert_allclose(mirrored_losses, default_losses, rtol=1e-5)
    for mirrored, default in zip(mirrored_weights, default_weights):
        np.testing.assert_allclose(mirrored, default, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_mixture_priors_train_inside_the_model(prior):
    model = vlae_tf.VLAE(small_config(prior=prior, prior_components=3))
    own = model.prior.trainable_weights
    assert own and all(any(variable is tracked for tracked in model.trainable_weights)
                       for variable in own)
    assert len({id(v) for v in model.trainable_weights}) == len(model.trainable_weights)
    before = [variable.numpy().copy() for variable in own]
    model.compile()
    model.fit(binary_images(16), batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(old, variable.numpy()) for old, variable in zip(before, own))
    samples = model.sample(2, seed=0)
    assert samples.shape == (2, 8, 8, 1)
