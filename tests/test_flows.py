"""Tests for vlae_tf/nn/made.py and vlae_tf/flows.py (MADE, MAF steps, AF prior, IAF).

Fresh MADEs have a zero output layer (flows start at the identity), which would
make most checks vacuous, so tests first overwrite every weight with random
values (`randomise`).
"""
import numpy as np
import pytest
import tensorflow as tf
import keras

from vlae_tf.flows import AutoregressiveFlowPrior, IAFPosterior, make_maf_bijector
from vlae_tf.nn.made import MADE, MaskedDense, made_masks


def randomise(layer, scale=0.5, seed=0):
    """Overwrite all weights of `layer` with N(0, scale^2 / fan_in) draws."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        fan_in = variable.shape[0] if len(variable.shape) == 2 else 1
        variable.assign(
            rng.normal(0.0, scale / np.sqrt(fan_in), size=variable.shape).astype(np.float32))


def log_abs_det(jacobian):
    return tf.linalg.slogdet(jacobian)[1]


def random_normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=[seed, 7], dtype=tf.float32)


# ---------------------------------------------------------------------------
# MADE
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("event_size,hidden_units,num_outputs", [
    (5, (24,), 2), (5, (16, 16), 1), (1, (4,), 2), (7, (3,), 2)])
@pytest.mark.parametrize("with_context", [False, True])
def test_made_mask_connectivity_is_strictly_autoregressive(event_size, hidden_units,
                                                           num_outputs, with_context):
    masks = made_masks(event_size, hidden_units, num_outputs, include_degree_zero=with_context)
    paths = masks[0]
    for mask in masks[1:]:
        paths = paths @ mask  # number of paths input k -> output column
    output_dim = np.repeat(np.arange(event_size), num_outputs)
    input_dim = np.arange(event_size)[:, None]
    # With >= D-1 hidden units per layer every allowed connection has a path.
    expected = input_dim < output_dim[None, :]
    if min(hidden_units) >= event_size - 1:
        np.testing.assert_array_equal(paths > 0, expected)
    else:  # too few units: still never a forbidden path
        assert not np.any((paths > 0) & ~expected)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden_units,num_outputs,context_size", [
    ((32,), 2, 0), ((32, 32), 1, 0), ((32,), 2, 3)])
def test_made_gradients_are_autoregressive(activation, hidden_units, num_outputs, context_size):
    event_size, batch = 5, 16
    made = MADE(event_size, hidden_units, num_outputs_per_dim=num_outputs,
                activation=activation, context_size=context_size)
    made.build((None, event_size))
    randomise(made, scale=1.0, seed=1)
    inputs = random_normal([batch, event_size], 1)
    context = random_normal([batch, context_size], 2) if context_size else None
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        if context is not None:
            tape.watch(context)
        outputs = made(inputs, context)  # [B, D, P]
    assert outputs.shape == (batch, event_size, num_outputs)
    jac = tape.batch_jacobian(outputs, inputs).numpy()  # [B, D, P, D]
    for d in range(event_size):
        for k in range(event_size):
            block = np.abs(jac[:, d, :, k])
            if k >= d:
                assert np.all(block == 0.0), f"output {d} depends on input {k}"
            else:
                assert block.max() > 0.0, f"output {d} ignores input {k}"
    if context is not None:
        jac_context = np.abs(tape.batch_jacobian(outputs, context).numpy())  # [B, D, P, C]
        # Every output, including output 0, sees the context (degree-0 hidden units).
        assert np.all(jac_context.max(axis=(0, 2, 3)) > 0.0)


def test_made_fresh_output_is_zero_and_layers_serialise():
    made = MADE(4, (8,), num_outputs_per_dim=2, context_size=3, name="made_cfg")
    inputs, context = random_normal([3, 4], 3), random_normal([3, 3], 4)
    np.testing.assert_array_equal(made(inputs, context).numpy(), 0.0)
    clone = MADE.from_config(made.get_config())
    assert clone.get_config() == made.get_config()
    clone(inputs, context)  # MADE builds lazily, on first call
    assert [w.shape for w in clone.weights] == [w.shape for w in made.weights]
    dense = MaskedDense(2, [[1, 0], [1, 1]], activation="tanh")
    clone_dense = MaskedDense.from_config(dense.get_config())
    np.testing.assert_array_equal(clone_dense.kernel_mask, dense.kernel_mask)


def test_made_input_checks():
    made = MADE(4, (8,), context_size=2)
    with pytest.raises(ValueError, match="inputs last dimension must be 4"):
        made(tf.zeros([2, 5]), tf.zeros([2, 2]))
    with pytest.raises(ValueError, match="context"):
        made(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match="context_size=0"):
        MADE(4, (8,))(tf.zeros([2, 4]), tf.zeros([2, 2]))
    with pytest.raises(ValueError, match="mask"):
        MaskedDense(3, np.ones([2, 2]))


# ---------------------------------------------------------------------------
# MAF step (TFP bijector around our MADE)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mean_only", [True, False])
def test_maf_bijector_inverts_and_log_det_matches_autodiff(mean_only):
    event_size = 4
    made = MADE(event_size, (24,), num_outputs_per_dim=1 if mean_only else 2)
    made.build((None, event_size))
    randomise(made, scale=0.7, seed=2)
    # A fresh bijector per direction: TFP caches forward/inverse pairs per object,
    # which would make a round trip on one object trivially exact.
    new_bijector = lambda: make_maf_bijector(made, mean_only)
    eps = random_normal([8, event_size], 5)
    z = random_normal([8, event_size], 6)

    z_from_eps = new_bijector().forward(eps)
    assert not np.allclose(z_from_eps.numpy(), eps.numpy(), atol=1e-3)  # not the identity
    np.testing.assert_allclose(new_bijector().inverse(z_from_eps), eps, atol=1e-5)
    np.testing.assert_allclose(new_bijector().forward(new_bijector().inverse(z)), z, atol=1e-5)

    with tf.GradientTape() as tape:
        tape.watch(eps)
        z_out = new_bijector().forward(eps)
    jac = tape.batch_jacobian(z_out, eps)
    fldj = new_bijector().forward_log_det_jacobian(eps, event_ndims=1)
    np.testing.assert_allclose(fldj, log_abs_det(jac), atol=1e-5)
    if mean_only:
        np.testing.assert_allclose(fldj, 0.0, atol=1e-6)
    else:
        assert np.abs(fldj.numpy()).max() > 1e-2  # the affine version really scales

    with tf.GradientTape() as tape:
        tape.watch(z)
        eps_out = new_bijector().inverse(z)
    jac_inverse = tape.batch_jacobian(eps_out, z).numpy()
    # Inverse is one parallel MADE pass, hence lower triangular in natural order.
    assert np.all(np.triu(jac_inverse, k=1) == 0.0)
    ildj = new_bijector().inverse_log_det_jacobian(z, event_ndims=1)
    np.testing.assert_allclose(ildj, log_abs_det(jac_inverse), atol=1e-5)


def test_maf_bijector_rejects_mismatched_made():
    with pytest.raises(ValueError, match="num_outputs_per_dim"):
        make_maf_bijector(MADE(3, (8,), num_outputs_per_dim=2), mean_only=True)
    with pytest.raises(ValueError, match="context_size"):
        make_maf_bijector(MADE(3, (8,), num_outputs_per_dim=1, context_size=2), mean_only=True)


# ---------------------------------------------------------------------------
# AF prior
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mean_only,scale", [(True, 1.0), (False, 0.5)])
def test_af_prior_2d_density_integrates_to_one(mean_only, scale):
    prior = AutoregressiveFlowPrior(2, num_steps=3, hidden_units=(16,), mean_only=mean_only)
    randomise(prior, scale=scale, seed=3)
    num_cells, half_width = 400, 8.0
    edges = np.linspace(-half_width, half_width, num_cells + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    grid = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(prior.log_prob(grid.astype(np.float32)).numpy())
    integral = density.sum() * (2 * half_width / num_cells) ** 2
    assert abs(integral - 1.0) < 1e-2
    # The flow is far from N(0, I) (otherwise the check above is weak).
    standard = np.exp(-0.5 * (grid ** 2).sum(-1)) / (2 * np.pi)
    assert np.abs(density - standard).max() > 1e-2


@pytest.mark.parametrize("mean_only", [True, False])
def test_af_prior_log_prob_matches_tfp_distribution_and_sample_inverts(mean_only):
    prior = AutoregressiveFlowPrior(5, num_steps=3, hidden_units=(24,), mean_only=mean_only)
    randomise(prior, scale=0.5, seed=4)
    z = random_normal([16, 5], 8)
    np.testing.assert_allclose(prior.log_prob(z), prior.distribution.log_prob(z),
                               rtol=1e-5, atol=1e-5)
    eps, _ = prior.inverse_and_log_det(z)
    np.testing.assert_allclose(prior.bijector.forward(eps), z, atol=1e-5)

    # sample(seed) = f(temperature * stateless_normal(seed)).
    seed = tf.constant([11, 12], tf.int32)
    samples = prior.sample(32, seed, temperature=0.7)
    eps_expected = 0.7 * tf.random.stateless_normal([32, 5], seed=seed)
    eps_recovered, log_det_inverse = prior.inverse_and_log_det(samples)
    np.testing.assert_allclose(eps_recovered, eps_expected, atol=1e-5)
    # log p(f(eps)) = log N(eps) - log|det df/deps| with the Jacobian from autodiff.
    with tf.GradientTape() as tape:
        tape.watch(eps_expected)
        samples_again = prior.bijector.forward(eps_expected)
    log_det_forward = log_abs_det(tape.batch_jacobian(samples_again, eps_expected))
    base = -0.5 * tf.reduce_sum(eps_expected ** 2, -1) - 2.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(prior.log_prob(samples), base - log_det_forward, atol=1e-4)
    np.testing.assert_allclose(log_det_inverse, -log_det_forward, atol=1e-4)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_af_prior_fresh_is_standard_normal(num_steps):
    # Zero-initialised MADE outputs: every MAF step starts as the identity, so
    # f is the identity up to the order reversals between steps.
    prior = AutoregressiveFlowPrior(3, num_steps=num_steps, hidden_units=(8,), mean_only=False)
    z = random_normal([4, 3], 9)
    expected = -0.5 * tf.reduce_sum(z ** 2, -1) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(prior.log_prob(z), expected, atol=1e-6)
    seed = tf.constant([1, 2], tf.int32)
    eps = 0.5 * tf.random.stateless_normal([4, 3], seed=seed)
    if num_steps % 2 == 0:
        eps = eps[:, ::-1]
    np.testing.assert_allclose(prior.sample(4, seed, temperature=0.5), eps, atol=1e-6)


def test_af_prior_in_tf_function_and_xla():
    prior = AutoregressiveFlowPrior(4, num_steps=2, hidden_units=(16,), mean_only=True)
    randomise(prior, seed=5)

    @tf.function(jit_compile=True)
    def sample_and_score(seed):
        samples = prior.sample(6, seed)
        # XLA's stateless_normal draws different numbers than the TF kernel for
        # the same seed, so return the XLA base noise to compare against.
        eps = tf.random.stateless_normal([6, 4], seed=seed)
        return samples, prior.log_prob(samples), eps

    seed = tf.constant([3, 4], tf.int32)
    samples, log_prob, eps = sample_and_score(seed)
    np.testing.assert_allclose(samples, prior.bijector.forward(eps), atol=1e-5)
    np.testing.assert_allclose(log_prob, prior.log_prob(samples), atol=1e-5)
    again, _, _ = sample_and_score(seed)
    np.testing.assert_array_equal(again, samples)
    other, _, _ = sample_and_score(tf.constant([5, 6], tf.int32))
    assert not np.allclose(other, samples)

    graph_fn = tf.function(lambda seed: prior.sample(6, seed))  # no XLA
    np.testing.assert_allclose(graph_fn(seed), prior.sample(6, seed), atol=1e-6)


# ---------------------------------------------------------------------------
# IAF posterior
# ---------------------------------------------------------------------------
def test_iaf_single_step_jacobian_is_triangular_and_log_det_matches():
    latent, context_size = 5, 3
    iaf = IAFPosterior(latent, num_steps=1, hidden_units=(24,), context_size=context_size)
    randomise(iaf, scale=1.0, seed=6)
    z0, context = random_normal([8, latent], 10), random_normal([8, context_size], 11)
    log_q0 = random_normal([8], 12)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z, log_q = iaf(z0, log_q0, context)
    jac = tape.batch_jacobian(z, z0).numpy()
    assert np.all(np.triu(jac, k=1) == 0.0)  # z_d depends on z0_{<=d} only
    assert np.abs(np.tril(jac, k=-1)).max() > 1e-3  # ... and really on z0_{<d}
    diag = np.diagonal(jac, axis1=1, axis2=2)
    assert np.all((diag > 0) & (diag < 1))  # diagonal = sigmoid gate v
    np.testing.assert_allclose(log_q0 - log_q, log_abs_det(jac), atol=1e-5)


def test_iaf_multi_step_log_q_matches_independent_computation():
    latent, context_size, num_steps = 4, 2, 3
    iaf = IAFPosterior(latent, num_steps=num_steps, hidden_units=(16,),
                       context_size=context_size, forget_bias=0.5)
    randomise(iaf, scale=1.0, seed=7)
    z0, context = random_normal([6, latent], 13), random_normal([6, context_size], 14)
    log_q0 = random_normal([6], 15)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z, log_q = iaf(z0, log_q0, context)
    total_jac = tape.batch_jacobian(z, z0)
    np.testing.assert_allclose(log_q0 - log_q, log_abs_det(total_jac), atol=1e-4)

    # Re-derive each step from the MADE outputs with an autodiff Jacobian.
    z_step, sum_log_det = z0, 0.0
    for step, made in enumerate(iaf.mades):
        if step > 0:
            z_step = tf.reverse(z_step, axis=[-1])
        with tf.GradientTape() as tape:
            tape.watch(z_step)
            params = made(z_step, context)
            gate = tf.sigmoid(params[..., 1] + 0.5)
            z_next = gate * z_step + (1.0 - gate) * params[..., 0]
        step_jac = tape.batch_jacobian(z_next, z_step)
        assert np.all(np.triu(step_jac.numpy(), k=1) == 0.0)  # triangular in step order
        sum_log_det += log_abs_det(step_jac)
        z_step = z_next
    np.testing.assert_allclose(z, z_step, atol=1e-5)
    np.testing.assert_allclose(log_q, log_q0 - sum_log_det, atol=1e-4)


def test_iaf_context_is_used_and_checked():
    iaf = IAFPosterior(3, num_steps=2, hidden_units=(8,), context_size=2)
    randomise(iaf, seed=8)
    z0, log_q0 = random_normal([4, 3], 16), tf.zeros([4])
    z_a, _ = iaf(z0, log_q0, random_normal([4, 2], 17))
    z_b, _ = iaf(z0, log_q0, random_normal([4, 2], 18))
    assert np.abs(z_a - z_b).max() > 1e-3
    with pytest.raises(ValueError, match="context"):
        iaf(z0, log_q0)
    with pytest.raises(ValueError, match="z0 last dimension must be 3"):
        iaf(tf.zeros([4, 2]), log_q0, tf.zeros([4, 2]))
    with pytest.raises(ValueError, match="context_size=0"):
        IAFPosterior(3, hidden_units=(8,))(z0, log_q0, tf.zeros([4, 2]))


# ---------------------------------------------------------------------------
# Keras integration: tracking, training, saving, config
# ---------------------------------------------------------------------------
class PriorModel(keras.Model):
    def __init__(self, prior, **kwargs):
        super().__init__(**kwargs)
        self.prior = prior

    def call(self, z):
        return self.prior.log_prob(z)


class PosteriorModel(keras.Model):
    """Toy encoder: context h = Dense(x); z0 = x; IAF on top."""

    def __init__(self, iaf, **kwargs):
        super().__init__(**kwargs)
        self.context_net = keras.layers.Dense(iaf.context_size)
        self.iaf = iaf

    def call(self, x):
        log_q0 = -0.5 * tf.reduce_sum(x ** 2, -1)
        return self.iaf(x, log_q0, self.context_net(x))


def made_variables(flow):
    return [v for made in flow.mades for v in made.trainable_weights]


def one_sgd_step(model, loss_fn):
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))


@pytest.mark.parametrize("mean_only", [True, False])
def test_af_prior_weights_tracked_and_trained(mean_only):
    prior = AutoregressiveFlowPrior(4, num_steps=2, hidden_units=(16,), mean_only=mean_only)
    model = PriorModel(prior)
    z = random_normal([32, 4], 19)
    model(z)
    expected = made_variables(prior)
    assert len(expected) == 2 * 4  # per MADE: hidden kernel/bias, output kernel/bias
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in expected}
    randomise(prior, seed=9)  # zero output layers would give the hidden layers zero grads
    before = [v.numpy().copy() for v in expected]
    one_sgd_step(model, lambda: -tf.reduce_mean(model(z)))
    for old, variable in zip(before, expected):
        assert not np.allclose(old, variable.numpy()), variable.path


def test_iaf_weights_tracked_and_trained():
    iaf = IAFPosterior(4, num_steps=2, hidden_units=(16,), context_size=3)
    model = PosteriorModel(iaf)
    x = random_normal([32, 4], 20)
    model(x)
    expected = made_variables(iaf)
    assert len(expected) == 2 * 5  # + context kernel per MADE
    tracked = {id(v) for v in model.trainable_weights}
    assert {id(v) for v in expected} <= tracked
    assert len(tracked) == len(expected) + 2  # + the toy context Dense
    randomise(iaf, seed=10)
    before = [v.numpy().copy() for v in expected]

    def loss():  # KL(q || N(0, I)) Monte Carlo estimate
        z, log_q = model(x)
        return tf.reduce_mean(log_q + 0.5 * tf.reduce_sum(z ** 2, -1))

    one_sgd_step(model, loss)
    for old, variable in zip(before, expected):
        assert not np.allclose(old, variable.numpy()), variable.path


def test_save_and_restore_weights(tmp_path):
    kwargs = dict(num_steps=2, hidden_units=(16,), mean_only=False)
    model = PriorModel(AutoregressiveFlowPrior(4, **kwargs))
    z = random_normal([8, 4], 21)
    model(z)
    randomise(model.prior, seed=11)
    path = str(tmp_path / "af_prior.weights.h5")
    model.save_weights(path)
    restored = PriorModel(AutoregressiveFlowPrior(4, **kwargs))
    restored(z)
    assert not np.allclose(restored(z), model(z))
    restored.load_weights(path)
    np.testing.assert_array_equal(restored(z).numpy(), model(z).numpy())

    iaf_model = PosteriorModel(IAFPosterior(4, num_steps=2, hidden_units=(8,), context_size=3))
    iaf_model(z)
    randomise(iaf_model, seed=12)
    iaf_path = str(tmp_path / "iaf.weights.h5")
    iaf_model.save_weights(iaf_path)
    iaf_restored = PosteriorModel(IAFPosterior(4, num_steps=2, hidden_units=(8,), context_size=3))
    iaf_restored(z)
    iaf_restored.load_weights(iaf_path)
    for got, want in zip(iaf_restored(z), iaf_model(z)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_flow_layers_config_round_trip():
    prior = AutoregressiveFlowPrior(3, num_steps=2, hidden_units=(8, 8), mean_only=False,
                                    activation="tanh", name="af")
    clone = AutoregressiveFlowPrior.from_config(prior.get_config())
    assert clone.get_config() == prior.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in prior.weights]
    iaf = IAFPosterior(3, num_steps=3, hidden_units=(8,), context_size=2, forget_bias=2.0)
    iaf_clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(iaf))
    assert isinstance(iaf_clone, IAFPosterior)
    assert iaf_clone.get_config() == iaf.get_config()


def test_flows_compute_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        prior = AutoregressiveFlowPrior(3, num_steps=2, hidden_units=(8,))
        iaf = IAFPosterior(3, num_steps=1, hidden_units=(8,), context_size=2)
        z16 = tf.cast(random_normal([4, 3], 22), tf.float16)
        assert prior.log_prob(z16).dtype == tf.float32
        assert prior.sample(2, tf.constant([1, 2])).dtype == tf.float32
        z, log_q = iaf(z16, tf.zeros([4], tf.float16), tf.zeros([4, 2], tf.float16))
        assert z.dtype == tf.float32 and log_q.dtype == tf.float32
        assert all(v.dtype == "float32" for v in prior.weights + iaf.weights)
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("factory,arg_name", [
    (lambda: MADE(0), "event_size"),
    (lambda: MADE(3, hidden_units=()), "hidden_units"),
    (lambda: MADE(3, hidden_units=(8, 0)), "hidden_units"),
    (lambda: MADE(3, hidden_units=64), "hidden_units"),
    (lambda: MADE(3, num_outputs_per_dim=0), "num_outputs_per_dim"),
    (lambda: MADE(3, context_size=-1), "context_size"),
    (lambda: MADE(2.0), "event_size"),
    (lambda: AutoregressiveFlowPrior(0), "latent_size"),
    (lambda: AutoregressiveFlowPrior(4, num_steps=0), "num_steps"),
    (lambda: AutoregressiveFlowPrior(4, num_steps=True), "num_steps"),
    (lambda: AutoregressiveFlowPrior(4, hidden_units=[]), "hidden_units"),
    (lambda: AutoregressiveFlowPrior(4, mean_only="yes"), "mean_only"),
    (lambda: IAFPosterior(-2), "latent_size"),
    (lambda: IAFPosterior(4, num_steps=0), "num_steps"),
    (lambda: IAFPosterior(4, context_size=1.5), "context_size"),
    (lambda: IAFPosterior(4, forget_bias=float("nan")), "forget_bias"),
])
def test_bad_constructor_args_raise(factory, arg_name):
    with pytest.raises(ValueError, match=arg_name):
        factory()


def test_bad_call_args_raise():
    prior = AutoregressiveFlowPrior(4, num_steps=1, hidden_units=(8,))
    with pytest.raises(ValueError, match="last dimension must be 4"):
        prior.log_prob(tf.zeros([2, 3]))
    with pytest.raises(ValueError, match="num"):
        prior.sample(0, tf.constant([1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, tf.constant([1, 2]), temperature=-1.0)


def test_affine_prior_stays_finite_with_huge_weights():
    """The soft log-scale bound keeps log p(z) finite where raw scales would overflow."""
    import numpy as np
    from vlae_tf.flows import AutoregressiveFlowPrior
    prior = AutoregressiveFlowPrior(2, num_steps=2, hidden_units=(8,), mean_only=False)
    prior.log_prob(np.zeros((1, 2), np.float32))
    for variable in prior.trainable_weights:
        variable.assign(np.random.default_rng(0).normal(0, 30.0, variable.shape))
    grid = np.stack(np.meshgrid(np.linspace(-8, 8, 41), np.linspace(-8, 8, 41)), -1)
    log_probs = prior.log_prob(grid.reshape(-1, 2).astype(np.float32)).numpy()
    assert np.all(np.isfinite(log_probs))
