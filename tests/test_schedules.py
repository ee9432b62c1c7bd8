"""Training schedules: free bits as a warm-up (a floor held, then annealed to 0) and the
capacity-controlled objective (Burgess et al. 2018), both functions of the step counter."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import evaluation, objectives
from vlae_tf.config import VLAEConfig
from vlae_tf.model import make_seed
from tests.test_training import small_config  # the same tiny model as the training tests


def binary_images(count=8, seed=0):
    return (np.random.default_rng(seed).random((count, 8, 8, 1)) < 0.3).astype(np.uint8)


def terms_of(model, images=None, seed=0):
    images = binary_images() if images is None else images
    return model._elbo_terms(tf.constant(images), make_seed(seed))


def shift_posterior_mean(model, shift):
    """Moves every posterior mean by `shift`: the KL grows by about latent_size * shift^2 / 2
    nats, so tests can place the schedules' floors on either side of a known KL."""
    mean_layer = model.encoder.get_layer("mean")
    mean_layer.bias.assign(tf.fill(mean_layer.bias.shape, float(shift)))
    return model


def scheduled_lambda(step, free_bits, hold, anneal):
    """The schedule by hand (float64): free_bits * clip(1 - (t - H) / M, 0, 1)."""
    if anneal == 0:
        return free_bits
    return free_bits * min(1.0, max(0.0, 1.0 - (step - hold) / anneal))


# ------------------------------------------------------------------------ free-bits schedule
def test_free_bits_lambda_is_held_then_annealed_to_zero():
    # lambda 4, held 10 steps, annealed over 20: steps are 1-based (the first step is t=1).
    expected = {0: 4.0, 1: 4.0, 10: 4.0, 11: 3.8, 20: 2.0, 25: 1.0, 29: 0.2, 30: 0.0,
                31: 0.0, 10 ** 6: 0.0}
    for step, value in expected.items():
        np.testing.assert_allclose(objectives.free_bits_lambda(step, 4.0, 10, 20), value,
                                   atol=1e-6, err_msg=f"step {step}")
    # anneal 0: no schedule, the permanent floor at every step.
    for step in (0, 1, 10 ** 6):
        assert float(objectives.free_bits_lambda(step, 4.0, 0, 0)) == np.float32(4.0)
    # anneal 1 after a hold of 3: the floor drops at once after step 3.
    assert [float(objectives.free_bits_lambda(t, 2.0, 3, 1)) for t in (3, 4)] == [2.0, 0.0]


def test_hard_loss_is_the_hinge_with_the_scheduled_lambda():
    plain = shift_posterior_mean(vlae_tf.VLAE(small_config()), 2.0)
    batch_kl = float(tf.reduce_mean(terms_of(plain)["kl"]))
    assert batch_kl > 1.0
    # lambda = 1.5 KL held 2 steps, then annealed over 12: below the KL from step 7 on.
    free_bits, hold, anneal = 1.5 * batch_kl, 2, 12
    model = vlae_tf.VLAE(small_config(free_bits_mode="hard", free_bits=free_bits,
                                      free_bits_hold_steps=hold, free_bits_anneal_steps=anneal))
    model.set_weights(plain.get_weights())
    terms = terms_of(model)
    recon = terms["recon"].numpy().astype(np.float64)
    kl = terms["kl"].numpy().astype(np.float64)
    regimes = set()
    for step in (1, 2, 4, 10, 13, 14, 20):
        floor = scheduled_lambda(step, free_bits, hold, anneal)
        if floor > 0:  # sum_j max(lambda(t), E_batch KL_j), one group
            expected = recon.mean() + max(floor, kl.mean())
            regimes.add("floor" if floor > kl.mean() else "kl above the floor")
        else:  # the floor is gone: the plain ELBO
            expected = recon.mean() + kl.mean()
            regimes.add("elbo")
        loss = model._training_objective(terms, tf.constant(step, tf.int64))
        np.testing.assert_allclose(loss, expected, rtol=1e-6, err_msg=f"step {step}")
    assert regimes == {"floor", "kl above the floor", "elbo"}, (regimes, kl.mean())


def test_default_loss_is_bit_identical_to_the_constant_floor():
    """The defaults (no schedule) compute exactly the objective of before the schedule, and
    a schedule still in its hold gives the same numbers bit for bit."""
    images = binary_images()
    for mode, free_bits in (("hard", 3.0), ("soft", 3.0), ("none", 0.0), ("hard", 0.0)):
        config = small_config(free_bits_mode=mode, free_bits=free_bits, kl_weight=2.0,
                              kl_warmup_steps=5)
        model = vlae_tf.VLAE(config)
        terms = terms_of(model, images)
        step = tf.constant(3, tf.int64)
        # The objective as it was written before the schedules existed.
        weight = objectives.kl_scale(step, 2.0, 5)
        if mode == "soft":
            weight = weight * model.soft_kl_weight
        weight = tf.stop_gradient(tf.cast(weight, tf.float32))
        mean_recon = tf.reduce_mean(terms["recon"])
        if mode == "hard" and free_bits > 0:
            before = mean_recon + weight * objectives.free_bits_kl(terms["kl_per_group"],
                                                                   free_bits)
        else:
            before = mean_recon + weight * tf.reduce_mean(terms["kl"])
        np.testing.assert_array_equal(model._training_objective(terms, step), before)
        if free_bits > 0:
            held = vlae_tf.VLAE(config.replace(free_bits_hold_steps=100,
                                               free_bits_anneal_steps=50))
            held.set_weights(model.get_weights())
            np.testing.assert_array_equal(held._training_objective(terms, step), before)


def test_soft_free_bits_target_follows_the_schedule(monkeypatch):
    """Soft free bits: gamma's rule reads lambda_total(t) = lambda(t) * groups."""
    targets = []
    update = objectives.update_soft_kl_weight

    def recording(kl_weight, mean_kl, target_kl):
        targets.append(float(target_kl))
        return update(kl_weight, mean_kl, target_kl)

    monkeypatch.setattr(objectives, "update_soft_kl_weight", recording)
    model = vlae_tf.VLAE(small_config(free_bits_mode="soft", free_bits=2.0, free_bits_groups=2,
                                      free_bits_hold_steps=1, free_bits_anneal_steps=2))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True)  # cheap steps
    model.fit(binary_images(32), batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(targets, [4.0, 2.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("changes, field", [
    ({"free_bits_hold_steps": -1, "free_bits_anneal_steps": 5}, "free_bits_hold_steps"),
    ({"free_bits_anneal_steps": -2}, "free_bits_anneal_steps"),
    ({"free_bits_anneal_steps": 2.5}, "free_bits_anneal_steps"),
    ({"free_bits_anneal_steps": True}, "free_bits_anneal_steps"),
    ({"free_bits_hold_steps": 10}, "free_bits_hold_steps"),  # a hold without an anneal
    ({"free_bits": 0.0, "free_bits_anneal_steps": 10}, "free_bits_anneal_steps"),
    ({"free_bits_mode": "none", "free_bits_anneal_steps": 10}, "free_bits_anneal_steps"),
])
def test_bad_free_bits_schedules_are_refused_by_name(changes, field):
    settings = {"free_bits_mode": "hard", "free_bits": 2.0, **changes}
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected"):
        small_config(**settings)


def test_resumed_model_continues_the_schedule(tmp_path):
    """lambda is a function of the saved step counter: a model at step k gives lambda(k), a
    step taken from there trains with lambda(k + 1), and restored weights carry the step."""
    free_bits, hold, anneal = 9.0, 2, 10
    config = small_config(free_bits_mode="hard", free_bits=free_bits,
                          free_bits_hold_steps=hold, free_bits_anneal_steps=anneal)
    model = vlae_tf.VLAE(config)
    images = binary_images(8)
    model.noise_step.assign(3)  # as after 3 steps (the counter is a saved weight)
    path = str(tmp_path / "state.weights.h5")
    model.save_weights(path)
    restored = vlae_tf.VLAE(config)
    restored.load_weights(path)
    restored.compile(optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True)  # cheap step
    assert int(restored.noise_step.numpy()) == 3
    np.testing.assert_allclose(restored.free_bits_lambda(), scheduled_lambda(3, 9.0, 2, 10),
                               rtol=1e-6)
    np.testing.assert_allclose(evaluation.training_state(restored)["free_bits_lambda"],
                               9.0 * 0.9, rtol=1e-6)

    step = 7  # the next step is 8: lambda(8) = 9 * (1 - 6/10) = 3.6
    restored.noise_step.assign(step)
    seed = tf.random.experimental.stateless_fold_in(  # train_step's: the int64 counter
        make_seed(config.seed), tf.constant(step + 1, tf.int64))
    terms = restored._elbo_terms(tf.constant(images), seed, training=True,
                                 noise=restored._replica_noise(seed, 8))
    floor = scheduled_lambda(step + 1, free_bits, hold, anneal)
    expected = (terms["recon"].numpy().astype(np.float64).mean()
                + max(floor, terms["kl"].numpy().astype(np.float64).mean()))
    history = restored.fit(images, batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(restored.free_bits_lambda(), floor, rtol=1e-6)


def test_schedules_are_logged_in_metrics_jsonl(tmp_path):
    from launch import train as train_lib
    model = vlae_tf.VLAE(small_config(free_bits_mode="hard", free_bits=4.0,
                                      free_bits_hold_steps=0, free_bits_anneal_steps=8))
    model.noise_step.assign(2)
    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard"))
    log = train_lib._TrainingLog(str(tmp_path), None, {}, None, 10, writer, None, print)
    log.set_model(model)
    log._record("step", 2, {"loss": 1.0})
    capacity = vlae_tf.VLAE(small_config(capacity_gamma=2.0, capacity_start=1.0,
                                         capacity_end=11.0, capacity_steps=10))
    capacity.noise_step.assign(4)
    log.set_model(capacity)
    log._record("step", 4, {"loss": 1.0})
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(lines[0]["free_bits_lambda"], 3.0, rtol=1e-6)  # 4 * (1 - 2/8)
    assert "capacity_nats" not in lines[0]
    np.testing.assert_allclose(lines[1]["capacity_nats"], 5.0, rtol=1e-6)  # 1 + 10 * 4/10
    assert "free_bits_lambda" not in lines[1]
    # Without free bits or capacity nothing new is logged.
    assert vlae_tf.VLAE(small_config()).schedule_values() == {}
    # The KL warm-up's weight (beta x min(1, t / N)) is logged when it is not constant 1.
    warming = vlae_tf.VLAE(small_config(kl_weight=2.0, kl_warmup_steps=8))
    warming.noise_step.assign(2)
    values = warming.schedule_values()
    assert set(values) == {"kl_weight"}
    np.testing.assert_allclose(values["kl_weight"], 0.5, rtol=1e-6)  # 2 * 2/8
    np.testing.assert_allclose(evaluation.training_state(warming)["kl_weight"], 0.5, rtol=1e-6)


# ------------------------------------------------------------------------ capacity objective
def capacity_config(**changes):
    settings = dict(capacity_gamma=5.0, capacity_start=2.0, capacity_end=12.0,
                    capacity_steps=10)
    settings.update(changes)
    return small_config(**settings)


def test_capacity_grows_linearly_then_stays():
    expected = {0: 2.0, 1: 3.0, 5: 7.0, 10: 12.0, 11: 12.0, 10 ** 6: 12.0}
    for step, value in expected.items():
        np.testing.assert_allclose(objectives.capacity_schedule(step, 2.0, 12.0, 10), value,
                                   rtol=1e-6, err_msg=f"step {step}")
    for step in (0, 7):  # no ramp: C_end from the start
        np.testing.assert_allclose(objectives.capacity_schedule(step, 2.0, 12.0, 0), 12.0)
    model = vlae_tf.VLAE(capacity_config())
    model.noise_step.assign(4)
    np.testing.assert_allclose(model.capacity_nats(), 6.0, rtol=1e-6)
    np.testing.assert_allclose(model.schedule_values()["capacity_nats"], 6.0, rtol=1e-6)


def test_capacity_loss_is_recon_plus_gamma_times_the_distance_to_c():
    plain = shift_posterior_mean(vlae_tf.VLAE(small_config()), 2.0)
    batch_kl = float(tf.reduce_mean(terms_of(plain)["kl"]))
    assert batch_kl > 1.0
    # C from KL / 4 to 2 KL over 10 steps: it passes the batch KL at step 3 to 4.
    start, end = batch_kl / 4, 2 * batch_kl
    model = vlae_tf.VLAE(capacity_config(capacity_start=start, capacity_end=end))
    model.set_weights(plain.get_weights())
    terms = terms_of(model)
    recon = terms["recon"].numpy().astype(np.float64).mean()
    kl = terms["kl"].numpy().astype(np.float64).mean()
    signs = set()
    for step in (0, 1, 3, 6, 10, 50):
        capacity = start + (end - start) * min(1.0, step / 10)
        signs.add(np.sign(kl - capacity))
        loss = model._training_objective(terms, tf.constant(step, tf.int64))
        np.testing.assert_allclose(loss, recon + 5.0 * abs(kl - capacity), rtol=1e-6,
                                   err_msg=f"step {step}")
    assert signs == {-1.0, 1.0}, kl  # C passes the batch KL within the tested steps


def test_capacity_gradient_flips_sign_when_the_kl_crosses_c():
    gamma = 5.0
    kl = tf.Variable([1.0, 3.0, 5.0, 7.0])  # mean 4
    recon = tf.constant([10.0, 20.0, 30.0, 40.0])
    for capacity, sign in ((2.0, 1.0), (6.0, -1.0)):
        with tf.GradientTape() as tape:
            loss = objectives.capacity_loss(recon, kl, capacity, gamma)
        np.testing.assert_allclose(tape.gradient(loss, kl), [sign * gamma / 4] * 4)
    # On a model: with C below the KL the loss pushes the KL down, above it up; the two
    # gradients differ by exactly 2 gamma grad KL and average to grad recon.
    model = vlae_tf.VLAE(capacity_config(capacity_gamma=gamma, capacity_start=0.0,
                                         capacity_end=1000.0, capacity_steps=1000))
    shift_posterior_mean(model, 3.0)  # KL ~ 0.5 * 9 * 4 nats
    images, variables = tf.constant(binary_images()), model.trainable_weights

    def gradients(function):
        with tf.GradientTape() as tape:
            terms = model._elbo_terms(images, make_seed(0))
            value = function(terms)
        return [tf.zeros_like(v) if g is None else g
                for v, g in zip(variables, tape.gradient(value, variables))], terms

    (grad_kl, terms) = gradients(lambda terms: tf.reduce_mean(terms["kl"]))
    mean_kl = float(tf.reduce_mean(terms["kl"]))
    assert mean_kl > 5.0
    below, above = (int(np.floor(mean_kl)) - 3, int(np.ceil(mean_kl)) + 3)  # C(t) = t nats
    grad_recon, _ = gradients(lambda terms: tf.reduce_mean(terms["recon"]))
    grad_below, _ = gradients(lambda terms: model._training_objective(
        terms, tf.constant(below, tf.int64)))
    grad_above, _ = gradients(lambda terms: model._training_objective(
        terms, tf.constant(above, tf.int64)))
    for g_below, g_above, g_kl, g_recon in zip(grad_below, grad_above, grad_kl, grad_recon):
        np.testing.assert_allclose(g_below - g_above, 2 * gamma * g_kl, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose((g_below + g_above) / 2, g_recon, rtol=1e-4, atol=1e-4)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grad_kl) > 1e-3


@pytest.mark.parametrize("changes, field", [
    ({"capacity_gamma": 0.0}, "capacity_gamma"),
    ({"capacity_gamma": -1.0}, "capacity_gamma"),
    ({"capacity_gamma": float("inf")}, "capacity_gamma"),
    ({"capacity_start": -1.0}, "capacity_start"),
    ({"capacity_end": 1.0}, "capacity_end"),  # below capacity_start = 2
    ({"capacity_end": float("nan")}, "capacity_end"),
    ({"capacity_steps": -1}, "capacity_steps"),
    ({"capacity_steps": 1.5}, "capacity_steps"),
    ({"free_bits_mode": "hard", "free_bits": 2.0}, "capacity_gamma"),
    ({"free_bits_mode": "soft", "free_bits": 2.0}, "capacity_gamma"),
    ({"kl_weight": 4.0}, "capacity_gamma"),
    ({"kl_warmup_steps": 100}, "capacity_gamma"),
    ({"num_train_samples": 4}, "capacity_gamma"),
    ({"use_latent": False}, "capacity_gamma"),
])
def test_bad_capacity_settings_are_refused_by_name(changes, field):
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected"):
        capacity_config(**changes)


@pytest.mark.parametrize("field, value", [("capacity_start", 1.0), ("capacity_end", 5.0),
                                          ("capacity_steps", 10)])
def test_capacity_fields_without_gamma_are_refused(field, value):
    with pytest.raises(ValueError, match=f"VLAEConfig.{field}: expected 0 unless "
                                         f"capacity_gamma"):
        small_config(**{field: value})


def test_capacity_model_trains_and_config_round_trips():
    config = capacity_config()
    assert VLAEConfig.from_dict(json.loads(config.to_json())) == config
    model = vlae_tf.VLAE(config)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True)  # cheap step
    history = model.fit(binary_images(8), batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_allclose(model.capacity_nats(), 3.0, rtol=1e-6)  # after 1 step


def test_a_run_from_before_the_new_fields_still_resumes():
    """launch.train compares config.json with the new config; a field missing from an old
    config.json (written before the field existed) counts as its default."""
    from launch import train as train_lib
    new = json.loads(small_config().to_json())
    old = {key: value for key, value in new.items()
           if not key.startswith(("free_bits_hold", "free_bits_anneal", "capacity_"))}
    assert train_lib._config_difference(old, new) == []
    scheduled = json.loads(small_config(free_bits_mode="hard", free_bits=2.0,
                                        free_bits_anneal_steps=5).to_json())
    assert train_lib._config_difference(old, scheduled) == [
        "free_bits: 0.0 -> 2.0", "free_bits_anneal_steps: 0 -> 5",
        "free_bits_mode: 'none' -> 'hard'"]
