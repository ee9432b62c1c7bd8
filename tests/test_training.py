"""Training machinery: IWAE / beta / warm-up objectives, non-finite steps, mixed precision,
and MirroredStrategy equivalence with a single device."""

import functools
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

    # One MirroredStrategy for every model: with a new instance per model, a later model's
    # all-reduce met another one's in the same collective instance (shape-mismatch abort).
    two_cpus = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = run(tf.distribute.get_strategy())
    mirrored = run(two_cpus)

    # Free bits over the global batch: the first half of the batch (replica 0) and the
    # second half (replica 1) get very different KLs, and lambda lies between them.
    rng = np.random.default_rng(0)
    sparse = (rng.random((4, 8, 8, 1)) < 0.05).astype(np.uint8)
    dense = (rng.random((4, 8, 8, 1)) < 0.9).astype(np.uint8)
    base = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                      encoder_hidden=16, prior="standard_normal", window=(3, 2),
                      decoder_layers=2, decoder_filters=8, decoder_residual_blocks=0,
                      z_map_channels=4, ema_momentum=None, weight_norm=False)

    def free_bits_run(strategy, config, batch):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            model = vlae_tf.VLAE(config)
            # The posterior mean projects the hidden features onto (dense - sparse): about
            # 0 for the sparse images (KL ~0.9 nats), large for the dense ones (~12 nats).
            hidden = keras.Model(model.encoder.input,
                                 model.encoder.get_layer("hidden_elu").output)
            h_sparse, h_dense = (hidden(model._scale(tf.cast(x, tf.float32))).numpy()
                                 .mean(axis=0) for x in (sparse, dense))
            direction = (h_dense - h_sparse) / np.sum((h_dense - h_sparse) ** 2)
            mean_layer = model.encoder.get_layer("mean")
            mean_layer.kernel.assign(np.outer(direction, [3.0, -3.0, 2.0, -2.0]))
            mean_layer.bias.assign(-h_sparse @ mean_layer.kernel.numpy())
            model.compile(optimizer=keras.optimizers.SGD(1e-4))
        kl = model.elbo(batch)["kl"].numpy()
        steps = []
        record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda step, logs: (
            steps.append([float(logs["loss"]), float(model.soft_kl_weight.numpy())])))
        model.fit(tf.data.Dataset.from_tensors(batch).repeat(2), epochs=1, verbose=0,
                  callbacks=[record])
        return dict(halves_kl=[float(kl[:4].mean()), float(kl[4:].mean())], steps=steps,
                    weights=[w.numpy().tolist() for w in model.trainable_weights])

    free_bits = []
    for mode, free_bits_lambda, first in json.loads(sys.argv[1]):
        config = base.replace(free_bits_mode=mode, free_bits=free_bits_lambda)
        batch = np.concatenate([sparse, dense] if first == "sparse" else [dense, sparse])
        free_bits.append([free_bits_run(tf.distribute.get_strategy(), config, batch),
                          free_bits_run(two_cpus, config, batch)])
    # The schedules (a free-bits floor being annealed, the capacity objective) on the same
    # split batch: they read the same global-batch KL.
    schedules = []
    for changes in json.loads(sys.argv[2]):
        config = base.replace(**changes)
        batch = np.concatenate([sparse, dense])
        schedules.append([free_bits_run(tf.distribute.get_strategy(), config, batch),
                          free_bits_run(two_cpus, config, batch)])
    print(json.dumps({"default": default, "mirrored": mirrored, "free_bits": free_bits,
                      "schedules": schedules}))
""")

# (mode, lambda, the half of the batch replica 0 gets). Halves' KLs are ~0.9 and ~12 nats
# (mean ~6.5): hard 3 / 10 put the global mean above / below lambda; soft 3 with the
# sparse half first has replica 0 lowering gamma where the batch keeps it, soft 10 with
# the dense half first has replica 0 keeping gamma where the batch lowers it.
FREE_BITS_CASES = [["hard", 3.0, "sparse"], ["hard", 10.0, "sparse"],
                   ["soft", 3.0, "sparse"], ["soft", 10.0, "dense"]]
# lambda(1) = 5 nats, lambda(2) = 0; C = 5 nats: between the halves' KLs (~0.9, ~12), below
# their mean, so replica-local terms would give other losses (8.5 vs 6.5; 5.6 vs 1.5 nats).
SCHEDULE_CASES = [{"free_bits_mode": "hard", "free_bits": 10.0, "free_bits_hold_steps": 0,
                   "free_bits_anneal_steps": 2},
                  {"capacity_gamma": 2.0, "capacity_start": 5.0, "capacity_end": 5.0}]


@functools.lru_cache(maxsize=None)
def mirrored_outcome():
    """One subprocess (two logical CPUs) for both mirrored tests: it costs ~30-60 s."""
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT,
                             json.dumps(FREE_BITS_CASES), json.dumps(SCHEDULE_CASES)],
                            capture_output=True,
                            text=True, cwd=REPO, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_matches_single_device():
    outcome = mirrored_outcome()
    (default_losses, default_weights, one), (mirrored_losses, mirrored_weights, two) = \
        outcome["default"], outcome["mirrored"]
    assert (one, two) == (1, 2)
    assert len(default_losses) == len(mirrored_losses) == 6
    # Float tolerance: the replicas' gradient sum adds in another order.
    np.testing.assert_allclose(mirrored_losses, default_losses, rtol=1e-5)
    for mirrored, default in zip(mirrored_weights, default_weights):
        np.testing.assert_allclose(mirrored, default, rtol=1e-4, atol=1e-6)


def test_free_bits_under_mirrored_strategy_match_single_device():
    # Replica-local hinges would give (1/2) sum_r max(lambda, KL_r) and replica 0's gamma
    # rule: losses differed by 0.1-2 nats, gamma by a step, weights by 1e-4..1e-2.
    for (mode, free_bits, first), (single, mirrored) in zip(FREE_BITS_CASES,
                                                            mirrored_outcome()["free_bits"]):
        low, high = sorted(single["halves_kl"])
        assert low < free_bits < high, (mode, free_bits, single["halves_kl"])
        assert low < 1.5 and high > 10.0, single["halves_kl"]  # the halves differ a lot
        single_steps, mirrored_steps = np.array(single["steps"]), np.array(mirrored["steps"])
        assert single_steps.shape == mirrored_steps.shape == (2, 2)
        np.testing.assert_allclose(mirrored_steps[:, 0], single_steps[:, 0], rtol=1e-5,
                                   err_msg=f"loss, {mode} free bits {free_bits}")
        np.testing.assert_allclose(mirrored_steps[:, 1], single_steps[:, 1], rtol=1e-6,
                                   err_msg=f"gamma, {mode} free bits {free_bits}")
        for one, two in zip(single["weights"], mirrored["weights"]):
            np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5,
                                       err_msg=f"weights, {mode} free bits {free_bits}")
    # The soft cases move gamma differently (what replica 0 alone would not do).
    gammas = [np.array(single["steps"])[:, 1] for single, _ in mirrored_outcome()["free_bits"]]
    np.testing.assert_allclose(gammas[2][0], 1.0)  # batch KL > 1.05 * 3: kept at 1
    np.testing.assert_allclose(gammas[3][0], 1 / 1.1, rtol=1e-6)  # batch KL < 10: lowered


def test_schedules_under_mirrored_strategy_match_single_device():
    """A free-bits floor being annealed and the capacity objective read the global batch's
    KL too: two replicas with very different KLs follow the single device."""
    for changes, (single, mirrored) in zip(SCHEDULE_CASES, mirrored_outcome()["schedules"]):
        low, high = sorted(single["halves_kl"])
        assert low < 5.0 < high, (changes, single["halves_kl"])
        single_steps, mirrored_steps = np.array(single["steps"]), np.array(mirrored["steps"])
        assert single_steps.shape == mirrored_steps.shape == (2, 2)
        np.testing.assert_allclose(mirrored_steps[:, 0], single_steps[:, 0], rtol=1e-5,
                                   err_msg=f"loss, {changes}")
        for one, two in zip(single["weights"], mirrored["weights"]):
            np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5, err_msg=f"{changes}")


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
