"""Two stochastic layers (config.latent_layers=2, vlae_tf.hierarchy): the per-layer KL terms
against hand-computed Gaussian densities, the importance sampler, training, the samplers,
the export's encode, the diagnostics, and the config's refusals."""

import math

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import export, objectives
from vlae_tf.config import VLAEConfig
from vlae_tf.model import make_seed

LATENT, TOP = 6, 3


def tiny_config(**changes):
    """tests/test_model.py's tiny sizes, with a standard-Normal top prior by default."""
    base = VLAEConfig(image_shape=(8, 8, 1), latent_size=LATENT, encoder_filters=(8,),
                      encoder_hidden=16, prior="standard_normal", prior_steps=1,
                      prior_hidden=(8,), prior_mean_only=False, window=(3, 2),
                      decoder_layers=2, decoder_filters=8, decoder_residual_blocks=1,
                      z_map_channels=4, ema_momentum=None, latent_layers=2,
                      top_latent_size=TOP, hierarchy_hidden=8)
    return base.replace(**changes)


def binary_images(count=8, seed=0, shape=(8, 8, 1)):
    generator = np.random.default_rng(seed)
    images = generator.random((count,) + shape) < 0.2
    images[: count // 2, : shape[0] // 2] |= generator.random(
        (count // 2, shape[0] // 2) + shape[1:]) < 0.8
    return images.astype(np.uint8)


def perturbed_model(config, seed=0, scale=0.3):
    """Every weight moved off its initial value, so that both layers' networks matter."""
    model = vlae_tf.VLAE(config)
    generator = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(variable + generator.normal(0, scale, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def model():
    return perturbed_model(tiny_config())


def log_normal(z, mean, scale):
    """sum_d log N(z_d; mean_d, scale_d^2) in float64 numpy."""
    z, mean, scale = (np.asarray(v, np.float64) for v in (z, mean, scale))
    return np.sum(-0.5 * ((z - mean) / scale) ** 2 - np.log(scale)
                  - 0.5 * math.log(2 * math.pi), axis=-1)


# ------------------------------------------------------------------------ the KL terms
def test_layer_kls_are_the_gaussian_log_density_differences(model):
    """KL1 = log q(z1|x) - log p(z1|z2), KL2 = log q(z2|z1) - log N(z2; 0, I), per sample,
    with z1 = mu + s eps1, z2 = mu_q(z1) + s_q(z1) eps2 from the model's own networks."""
    images = binary_images(4)
    assert model.noise_size == LATENT + TOP
    noise = tf.random.stateless_normal([4, LATENT + TOP], [1, 2])
    terms = model._elbo_terms(tf.constant(images), make_seed(0), noise=noise)
    assert terms["kl_per_group"].shape == (4, 2)
    mean1, scale1 = (v.numpy() for v in model.encode(images))
    eps1, eps2 = noise.numpy()[:, :LATENT], noise.numpy()[:, LATENT:]
    z1 = mean1 + scale1 * eps1
    mean2, scale2 = (v.numpy() for v in model.hierarchy.posterior(tf.constant(z1)))
    z2 = mean2 + scale2 * eps2
    prior_mean, prior_scale = (v.numpy() for v in model.hierarchy.conditional_prior(
        tf.constant(z2, tf.float32)))
    kl1 = log_normal(z1, mean1, scale1) - log_normal(z1, prior_mean, prior_scale)
    kl2 = log_normal(z2, mean2, scale2) - log_normal(z2, 0.0, 1.0)
    np.testing.assert_allclose(terms["kl_per_group"][:, 0], kl1, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(terms["kl_per_group"][:, 1], kl2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(terms["kl"], kl1 + kl2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(terms["elbo"], -(terms["recon"] + terms["kl"]), rtol=1e-6)
    # p(z1|z2) really conditions on z2 (the perturbed MLP is not constant).
    assert np.std(prior_mean, axis=0).max() > 1e-3


def test_top_kl_monte_carlo_average_matches_the_closed_form(model):
    """At fixed z1, E_eps2[log q(z2|z1) - log N(z2; 0, I)] = KL(q(z2|z1) || N(0, I))
    = sum_d 0.5 (mu^2 + s^2 - 1) - log s: the draw of z2 and its log q are consistent."""
    draws = 20000
    z1 = tf.constant(np.random.default_rng(3).normal(size=(2, LATENT)), tf.float32)
    mean2, scale2 = (v.numpy().astype(np.float64) for v in model.hierarchy.posterior(z1))
    analytic = np.sum(0.5 * (mean2 ** 2 + scale2 ** 2 - 1) - np.log(scale2), axis=-1)
    tiled = tf.repeat(z1, draws, axis=0)
    eps2 = tf.random.stateless_normal([2 * draws, TOP], [4, 5])
    z2, log_q2 = model.hierarchy(tiled, eps2)
    samples = (log_q2 - model.prior.log_prob(z2)).numpy().reshape(2, draws).astype(np.float64)
    stderr = samples.std(axis=1) / math.sqrt(draws)
    assert np.all(np.abs(samples.mean(axis=1) - analytic) < 4 * stderr + 1e-4), (
        samples.mean(axis=1), analytic, stderr)


# ------------------------------------------------------------------- importance sampling
def test_importance_sampling_is_the_elbo_at_k1_and_a_tighter_bound(model):
    images = binary_images(4)
    seed = make_seed(7)
    elbo = model.elbo(images, seed=seed)["elbo"].numpy()
    np.testing.assert_allclose(model.importance_log_likelihood(images, 1, seed=seed),
                               elbo, rtol=1e-5, atol=1e-4)
    num = 6
    chunked = model.importance_log_likelihood(images, num, chunk_size=4, seed=seed).numpy()
    whole = model.importance_log_likelihood(images, num, chunk_size=num, seed=seed).numpy()
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-4)
    # Sample k is the ELBO's draw at fold_in(seed, k): log mean_k w_k >= mean_k log w_k.
    per_sample = np.stack([elbo] + [model.elbo(images, seed=tf.random.experimental
                                               .stateless_fold_in(seed, k))["elbo"].numpy()
                                    for k in range(1, num)])
    np.testing.assert_allclose(
        whole, np.log(np.mean(np.exp(per_sample - per_sample.max(0)), 0)) + per_sample.max(0),
        rtol=1e-5, atol=1e-3)
    assert np.all(whole >= per_sample.mean(axis=0) - 1e-4)
    assert np.all(whole > per_sample.mean(axis=0) + 1e-3)  # strictly tighter here


# ----------------------------------------------------------------------------- training
def test_every_weight_of_both_layers_is_trained_and_per_layer_kl_is_logged():
    model = vlae_tf.VLAE(tiny_config(prior="af"))  # a MAF top prior p(z2)
    before = {id(v): v.numpy().copy() for v in model.trainable_weights}
    model.compile()
    images = tf.constant(binary_images(8))
    # Two eager steps (the MADE's output layer starts at zero: its inputs move at step 2).
    for _ in range(2):
        logs = model.train_step(images)
    tracked = {id(v) for v in model.trainable_weights}
    components = {"q(z2|z1)": model.hierarchy.q_z2, "p(z1|z2)": model.hierarchy.p_z1,
                  "p(z2)": model.prior, "encoder": model.encoder}
    for name, component in components.items():
        weights = component.trainable_weights
        assert weights, name
        assert all(id(v) in tracked for v in weights), f"{name}: weights not tracked"
        moved = [not np.array_equal(before[id(v)], v.numpy()) for v in weights]
        assert all(moved), f"{name}: {[v.path for v, m in zip(weights, moved) if not m]}"
    for key in ("kl_z1_nats", "kl_z2_nats"):
        assert np.isfinite(logs[key])
    np.testing.assert_allclose(logs["kl_z1_nats"] + logs["kl_z2_nats"], logs["kl_nats"],
                               rtol=1e-4, atol=1e-4)
    from launch import train
    assert set(train.LAYER_METRIC_NAMES) <= set(logs)


def _first_step_terms(model, images):
    """The ELBO terms of the model's first training step (its seed and noise)."""
    step = tf.constant(1, tf.int64)
    seed = tf.random.experimental.stateless_fold_in(make_seed(model.config.seed), step)
    return model._elbo_terms(images, seed, training=True,
                             noise=model._replica_noise(seed, images.shape[0]))


def test_hard_free_bits_hinge_each_layer(model):
    """loss = E[recon] + sum_l max(lambda, E_batch KL_l), lambda between the two layers'
    batch KLs (so the per-layer hinge differs from one on the total)."""
    images = tf.constant(binary_images(8))
    mean_kl = _first_step_terms(model, images)["kl_per_group"].numpy().mean(axis=0)
    free_bits = float(mean_kl.mean())
    assert abs(mean_kl[0] - mean_kl[1]) > 0.5, mean_kl
    hinged = vlae_tf.VLAE(tiny_config(free_bits=free_bits, free_bits_mode="hard"))
    hinged.set_weights(model.get_weights())
    assert hinged.num_kl_groups == 2
    terms = _first_step_terms(hinged, images)
    loss = float(hinged._training_objective(terms, tf.constant(1, tf.int64)))
    expected = float(np.mean(terms["recon"])) + np.maximum(mean_kl, free_bits).sum()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert abs(np.maximum(mean_kl, free_bits).sum() - max(mean_kl.sum(), 2 * free_bits)) > 0.1


def test_soft_free_bits_target_is_lambda_per_layer(model):
    """gamma reads the total KL against lambda x 2 layers: with lambda = KL / 1.5 the KL
    is below 2 lambda, so gamma is lowered to 1/1.1 (a target of lambda would keep 1)."""
    images = tf.constant(binary_images(8))
    total = float(np.mean(_first_step_terms(model, images)["kl"]))
    assert total > 0
    soft = vlae_tf.VLAE(tiny_config(free_bits=total / 1.5, free_bits_mode="soft"))
    soft.set_weights(model.get_weights())
    soft.compile()
    soft.train_step(images)
    assert float(soft.soft_kl_weight) == pytest.approx(1 / objectives.SOFT_FREE_BITS_STEP)


def test_one_layer_config_is_unchanged_bit_for_bit():
    """latent_layers=1 ignores top_latent_size / hierarchy_hidden: same weights, same ELBO
    terms and IS estimate, bit for bit, as a config that does not set them."""
    plain = VLAEConfig(image_shape=(8, 8, 1), latent_size=LATENT, encoder_filters=(8,),
                       encoder_hidden=16, prior="af", prior_steps=1, prior_hidden=(8,),
                       window=(3, 2), decoder_layers=2, decoder_filters=8,
                       decoder_residual_blocks=1, z_map_channels=4, ema_momentum=None)
    reference = perturbed_model(plain)
    other = vlae_tf.VLAE(plain.replace(latent_layers=1, top_latent_size=5, hierarchy_hidden=7))
    assert other.hierarchy is None and other.noise_size == LATENT
    assert [v.shape for v in other.weights] == [v.shape for v in reference.weights]
    other.set_weights(reference.get_weights())
    images = binary_images(4)
    for seed in (0, 3):
        first, second = reference.elbo(images, seed=seed), other.elbo(images, seed=seed)
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])
    np.testing.assert_array_equal(reference.importance_log_likelihood(images, 3, chunk_size=3),
                                  other.importance_log_likelihood(images, 3, chunk_size=3))
    assert [m.name for m in other.metrics] == [m.name for m in reference.metrics]


# ----------------------------------------------------------------------------- sampling
def test_samplers_agree_and_z1_comes_from_p_z1_given_z2(model):
    from vlae_tf import sampling
    images = binary_images(3)
    # Without XLA (its compile time is not the point here): the same z path for both.
    cached = sampling.sample(model, 3, seed=2, temperature=0.7, jit_compile=False)
    naive = sampling.sample(model, 3, seed=2, temperature=0.7, method="naive")
    np.testing.assert_array_equal(cached, naive)
    # The export's sample draws z2 ~ p(z2), z1 ~ p(z1|z2) as model.sample does.
    exported = export.graph_sample(model, tf.constant(3), make_seed(2), tf.constant(0.7),
                                   generator=sampling._compiled(model, "naive"))
    np.testing.assert_array_equal(exported, naive)
    np.testing.assert_array_equal(
        sampling.decompress(model, images, seed=4, jit_compile=False),
        sampling.decompress(model, images, seed=4, method="naive"))
    # The prior sampler's z is z1 = mu_p(z2) + T s_p(z2) eps1 with z2 ~ p(z2).
    seed = make_seed(9)
    z1 = sampling.prior_sampler(model)(tf.constant(5), seed, tf.constant(0.5))
    seeds = tf.random.experimental.stateless_split(seed, 2)
    z2 = model.prior.sample(5, seeds[0], 0.5)
    mean, scale = model.hierarchy.conditional_prior(z2)
    eps1 = tf.random.stateless_normal([5, LATENT], seeds[1])
    assert z1.shape == (5, LATENT)
    np.testing.assert_allclose(z1, mean + scale * 0.5 * eps1, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ export, diagnostics
def test_export_encode_returns_both_layers(model):
    """The exported functions (`export.serving_functions`, traced as the export traces
    them; the SavedModel round trip itself is tests/test_export.py's)."""
    images = binary_images(4)
    function, input_signature = export.serving_functions(model, chunk_size=2)["encode"]
    encoded = tf.function(function, input_signature=input_signature,
                          autograph=False)(tf.constant(images))
    expected = model.encode_layers(images)
    assert set(encoded) == {"mean", "scale", "top_mean", "top_scale"} == set(expected)
    assert encoded["top_mean"].shape == (4, TOP)
    for key in expected:
        np.testing.assert_allclose(encoded[key], expected[key], rtol=1e-5, atol=1e-6)
    mean, scale = model.encode(images)  # encode() stays q(z1|x)'s (mean, scale)
    np.testing.assert_array_equal(mean, expected["mean"])
    top_mean, top_scale = model.hierarchy.posterior(mean)
    np.testing.assert_array_equal(top_scale, expected["top_scale"])
    table = export.signature_table(model)["encode"]["outputs"]
    assert table["top_scale"] == ["float32", [None, TOP]]
    assert table["mean"] == ["float32", [None, LATENT]]


def test_diagnostics_report_each_layer(model):
    from vlae_tf import diagnostics
    images = binary_images(8)
    seed = [5, 1]
    result = diagnostics.model_diagnostics(model, images, seed=seed)
    terms = model._elbo_terms(tf.constant(images), tf.constant(seed, tf.int32))
    np.testing.assert_allclose(result["kl_z1"], np.mean(terms["kl_per_group"][:, 0]),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result["kl_z2"], np.mean(terms["kl_per_group"][:, 1]),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result["average_kl"], result["kl_z1"] + result["kl_z2"],
                               rtol=1e-6)
    np.testing.assert_allclose(result["mutual_information"] + result["marginal_kl"],
                               result["average_kl"], rtol=1e-9)
    assert 0.0 <= result["mutual_information"] <= result["log_n"] + 1e-9
    means = model.encode_layers(images)
    assert result["active_unit_variances"].shape == (LATENT,)
    np.testing.assert_allclose(result["active_unit_variances_z2"],
                               np.var(means["top_mean"].numpy().astype(np.float64), axis=0),
                               rtol=1e-5)
    assert 0 <= result["active_units_z2"] <= TOP


# ------------------------------------------------------------------------ refused configs
@pytest.mark.parametrize("changes, field", [
    (dict(latent_layers=3), "latent_layers"),
    (dict(latent_layers=0), "latent_layers"),
    (dict(top_latent_size=0), "top_latent_size"),
    (dict(hierarchy_hidden=0), "hierarchy_hidden"),
    (dict(iaf_steps=1), "iaf_steps"),
    (dict(prior="vamp"), "prior"),
    (dict(latent_shape=(1, 2, 3)), "latent_shape"),
    (dict(use_latent=False), "use_latent"),
    (dict(free_bits_groups=2), "free_bits_groups"),
    (dict(top_latent_size=2.5), "top_latent_size"),
])
def test_bad_configs_are_refused_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"VLAEConfig\.{field}: expected"):
        tiny_config(**changes)


# ------------------------------------------------------------------- distribution strategy
MIRRORED_SCRIPT = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, vlae_tf
from vlae_tf.config import VLAEConfig
from vlae_tf.model import make_seed
base = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                  encoder_hidden=16, prior="standard_normal", window=(3, 2),
                  decoder_layers=2, decoder_filters=8, decoder_residual_blocks=0,
                  z_map_channels=4, ema_momentum=None, weight_norm=False, latent_layers=2,
                  top_latent_size=2, hierarchy_hidden=8, free_bits_mode="hard")
rng = np.random.default_rng(0)
# Sparse images first, dense last: replica 0 and replica 1 see different KLs.
images = (rng.random((16, 8, 8, 1)) < np.tile(np.repeat([0.05, 0.9], 4), 2)[:, None, None,
                                                                            None])
images = images.astype(np.uint8)
keras.utils.set_random_seed(7)
probe = vlae_tf.VLAE(base)
noise_rng = np.random.default_rng(1)
for variable in probe.trainable_weights:
    variable.assign(variable + noise_rng.normal(0, 0.1, variable.shape).astype("float32"))
weights = probe.get_weights()
# lambda between the lower half's batch KL of one layer (the first step's draw) and the
# global batch's: the global hinge is open, replica 0's would be closed.
seed = tf.random.experimental.stateless_fold_in(make_seed(base.seed), 1)
terms = probe._elbo_terms(tf.constant(images[:8]), seed, training=True,
                          noise=probe._replica_noise(seed, 8))
halves = terms["kl_per_group"].numpy().reshape(2, 4, 2).mean(axis=1)
layer = int(np.argmax(np.abs(halves[0] - halves[1]) / np.abs(halves).max(axis=0)))
config = base.replace(free_bits=float((halves[:, layer].min() + halves[:, layer].mean()) / 2))

def run(strategy):
    with strategy.scope():
        model = vlae_tf.VLAE(config)
        model.set_weights(weights)
        # SGD: see tests/test_training.py; eager: tracing the step would cost more here.
        model.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)
    data = tf.data.Dataset.from_tensor_slices(images).batch(8)
    history = model.fit(data, epochs=1, verbose=0)
    return {"kl": [history.history[k][-1] for k in ("kl_z1_nats", "kl_z2_nats")],
            "weights": [w.numpy().ravel().tolist() for w in model.trainable_weights]}

mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"default": run(tf.distribute.get_strategy()), "mirrored": mirrored,
                  "halves": halves.tolist(), "free_bits": config.free_bits}))
"""


def test_two_replicas_train_the_hierarchy_as_one_device():
    """Noise [B, noise_size] drawn for the global batch and the per-layer free-bits hinge
    on the global-batch KL: a MirroredStrategy step equals the single-device step."""
    import json
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=repo,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                 "PYTHONPATH": repo})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(runs["mirrored"]["kl"], runs["default"]["kl"], rtol=1e-4)
    for mirrored, default in zip(runs["mirrored"]["weights"], runs["default"]["weights"]):
        np.testing.assert_allclose(mirrored, default, rtol=1e-4, atol=1e-5)
