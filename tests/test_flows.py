"""Tests for vlae_tf/nn/made.py and vlae_tf/flows.py (MADE, MAF steps, AF prior, IAF).

Fresh MADEs have a zero output layer (flows start at the identity), which would
make most checks vacuous, so tests first overwrite every weight with random
values (`randomise`).
"""
import numpy as np
import pytest
import tensorflow as tf
import keras

import tensorflow_probability as tfp

from vlae_tf.flows import (AutoregressiveFlowPrior, IAFPosterior, diagonal_gaussian,
                           make_iaf_step_bijector, make_maf_bijector, posterior_distribution)
from vlae_tf.nn.made import MADE, MaskedDense, made_masks

tfd = tfp.distributions


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
# IAF posterior as TFP bijectors / distributions
# ---------------------------------------------------------------------------
def hand_written_iaf(iaf, z0, log_q0, context):
    """The hand-written gated IAF that IAFPosterior was before it was built on TFP
    bijectors, kept here as the reference: the same weights must give exactly its z and
    log q (Kingma et al. 2016: z_t = v_t z_{t-1} + (1 - v_t) m_t, v_t = sigmoid(s_t + b),
    log q_t = log q_{t-1} - sum_d log v_t,d; reversal between steps)."""
    z, log_q = tf.cast(z0, tf.float32), tf.cast(log_q0, tf.float32)
    for step, made in enumerate(iaf.mades):
        if step > 0:
            z = tf.reverse(z, axis=[-1])
        params = made(z, context)
        gate_logits = params[..., 1] + iaf.forget_bias
        log_gate = tf.math.log_sigmoid(gate_logits)
        z = tf.exp(log_gate) * z + tf.sigmoid(-gate_logits) * params[..., 0]
        log_q = log_q - tf.reduce_sum(log_gate, axis=-1)
    return z, log_q


def random_iaf(latent, num_steps, context_size, forget_bias=1.0, seed=0, scale=1.0):
    iaf = IAFPosterior(latent, num_steps=num_steps, hidden_units=(16,),
                       context_size=context_size, forget_bias=forget_bias)
    randomise(iaf, scale=scale, seed=seed)
    return iaf


def iaf_inputs(batch, latent, context_size, seed):
    z0 = random_normal([batch, latent], seed)
    context = random_normal([batch, context_size], seed + 1) if context_size else None
    return z0, random_normal([batch], seed + 2), context


@pytest.mark.parametrize("num_steps,context_size,forget_bias", [
    (1, 3, 1.0), (3, 3, -0.5), (2, 0, 2.0)])
def test_iaf_gives_exactly_the_hand_written_z_and_log_q(num_steps, context_size, forget_bias):
    latent = 5
    iaf = random_iaf(latent, num_steps, context_size, forget_bias, seed=30)
    z0, log_q0, context = iaf_inputs(16, latent, context_size, 31)
    want_z, want_log_q = hand_written_iaf(iaf, z0, log_q0, context)
    assert np.abs(want_z - z0).max() > 1e-2  # the flow is far from the identity

    # What training, estimators, sampling and export call: bit for bit, eager and traced.
    z, log_q = iaf(z0, log_q0, context)
    np.testing.assert_array_equal(z.numpy(), want_z.numpy())
    np.testing.assert_array_equal(log_q.numpy(), want_log_q.numpy())
    traced = tf.function(lambda *args: iaf(*args))(z0, log_q0, context)
    traced_reference = tf.function(lambda *args: hand_written_iaf(iaf, *args))(
        z0, log_q0, context)
    for got, want in zip(traced, traced_reference):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    # The TFP chain: the same z; log q sums the steps' log-dets in another order.
    bijector = iaf.bijector(context)
    np.testing.assert_array_equal(bijector.forward(z0).numpy(), want_z.numpy())
    log_q_tfp = log_q0 - iaf.bijector(context).forward_log_det_jacobian(z0, event_ndims=1)
    np.testing.assert_allclose(log_q_tfp, want_log_q, rtol=1e-6, atol=1e-5)


def test_iaf_weight_paths_are_those_of_the_hand_written_version():
    # Weight files address variables by these paths, so files written before the move to
    # TFP bijectors load unchanged.
    iaf = IAFPosterior(4, num_steps=2, hidden_units=(8,), context_size=3, name="iaf_posterior")
    made_paths = ["masked_dense_0/kernel", "masked_dense_0/bias", "masked_dense_output/kernel",
                  "masked_dense_output/bias", "context_dense/kernel"]
    assert [w.path for w in iaf.weights] == [f"iaf_posterior/made_{step}/{path}"
                                             for step in range(2) for path in made_paths]


def test_iaf_bijector_log_dets_match_autodiff_and_it_inverts():
    latent, context_size = 4, 3
    iaf = random_iaf(latent, 2, context_size, seed=32, scale=0.7)
    z0, _, context = iaf_inputs(8, latent, context_size, 33)

    # A fresh bijector per evaluation: TFP caches forward/inverse pairs per object, which
    # would make a round trip on one object trivially exact.
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z = iaf.bijector(context).forward(z0)
    forward_jacobian = tape.batch_jacobian(z, z0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        z0_back = iaf.bijector(context).inverse(z)  # sequential: D MADE passes per step
        rows = [z0_back[:, d] for d in range(latent)]
    # Row by row (images are independent): 4x faster here than pfor through TFP's loop.
    inverse_jacobian = tf.stack([tape.gradient(row, z) for row in rows], axis=1)
    fldj = iaf.bijector(context).forward_log_det_jacobian(z0, event_ndims=1)
    ildj = iaf.bijector(context).inverse_log_det_jacobian(z, event_ndims=1)
    np.testing.assert_allclose(fldj, log_abs_det(forward_jacobian), atol=1e-5)
    assert float(tf.reduce_max(tf.abs(fldj))) > 1e-2  # the flow really changes volume
    np.testing.assert_allclose(z0_back, z0, atol=1e-5)
    np.testing.assert_allclose(ildj, log_abs_det(inverse_jacobian), atol=1e-4)
    np.testing.assert_allclose(ildj, -fldj, atol=1e-4)

    # One step alone: forward is a parallel pass with a lower-triangular Jacobian whose
    # diagonal is the gate v in (0, 1).
    step = make_iaf_step_bijector(iaf.mades[0], iaf.forget_bias, context)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z1 = step.forward(z0)
    step_jacobian = tape.batch_jacobian(z1, z0).numpy()
    assert np.all(np.triu(step_jacobian, k=1) == 0.0)
    diagonal = np.diagonal(step_jacobian, axis1=1, axis2=2)
    assert np.all((diagonal > 0) & (diagonal < 1))


def test_iaf_context_as_tfp_conditional_input():
    latent, context_size = 4, 3
    iaf = random_iaf(latent, 2, context_size, seed=34)
    z0, _, context = iaf_inputs(6, latent, context_size, 35)
    kwargs = {name: {"conditional_input": context} for name in iaf.step_names()}
    np.testing.assert_array_equal(iaf.bijector().forward(z0, **kwargs).numpy(),
                                  iaf.bijector(context).forward(z0).numpy())
    base = tfd.Independent(tfd.Normal(tf.zeros([6, latent]), 1.0), reinterpreted_batch_ndims=1)
    z = iaf.bijector(context).forward(z0)
    np.testing.assert_allclose(
        iaf.distribution(base).log_prob(z, bijector_kwargs=kwargs),
        iaf.distribution(base, context).log_prob(z), rtol=1e-6)
    # The context changes the flow, so a forgotten context cannot pass unnoticed.
    other = random_normal([6, context_size], 50)
    assert float(tf.reduce_max(tf.abs(iaf.bijector(other).forward(z0) - z))) > 1e-3

    with pytest.raises(ValueError, match="given twice"):
        iaf.bijector(context).forward(z0, **kwargs)
    with pytest.raises(ValueError, match="takes a context of size 3"):
        iaf.bijector().forward(z0)
    with pytest.raises(ValueError, match="context last dimension must be 3"):
        iaf.bijector(tf.zeros([6, 2]))
    with pytest.raises(ValueError, match="context_size=0"):
        IAFPosterior(latent, hidden_units=(8,)).bijector(context)
    with pytest.raises(ValueError, match="num_outputs_per_dim=2"):
        make_iaf_step_bijector(MADE(latent, (8,), num_outputs_per_dim=1), 1.0)


def test_iaf_distribution_log_prob_matches_call_and_samples_forward():
    latent, context_size, batch = 4, 3, 8
    iaf = random_iaf(latent, 2, context_size, seed=37)
    mean, context = random_normal([batch, latent], 38), random_normal([batch, context_size], 39)
    scale = tf.exp(0.3 * random_normal([batch, latent], 40))
    # z and log q as inputs.posterior_sample computes them for the ELBO.
    eps = random_normal([batch, latent], 41)
    log_q0 = tf.reduce_sum(-0.5 * eps ** 2 - tf.math.log(scale) - 0.5 * np.log(2 * np.pi), -1)
    z, log_q = iaf(mean + scale * eps, log_q0, context)
    q = posterior_distribution(mean, scale, iaf, context)
    assert q.batch_shape == [batch] and q.event_shape == [latent]
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-5, atol=1e-4)

    # sample = the flow applied to a base draw (parallel direction).
    seed = tf.constant([5, 6], tf.int32)
    samples = posterior_distribution(mean, scale, iaf, context).sample(seed=seed)
    z0_draw = diagonal_gaussian(mean, scale).sample(seed=seed)
    np.testing.assert_array_equal(samples.numpy(), iaf(z0_draw, tf.zeros([batch]), context)[0])

    # Without IAF steps, q is the diagonal Gaussian.
    gaussian = posterior_distribution(mean, scale)
    np.testing.assert_allclose(gaussian.log_prob(mean + scale * eps), log_q0, rtol=1e-6)


def test_iaf_tfp_path_in_tf_function_and_xla():
    latent, context_size = 4, 3
    iaf = random_iaf(latent, 2, context_size, seed=42)
    z0, _, context = iaf_inputs(6, latent, context_size, 43)
    base = tfd.Independent(tfd.Normal(tf.zeros([6, latent]), 1.0), reinterpreted_batch_ndims=1)
    z = iaf.bijector(context).forward(z0)
    want = iaf.distribution(base, context).log_prob(z)

    def score(z, context):
        return iaf.bijector(context).forward(z0), iaf.distribution(base, context).log_prob(z)

    for jit_compile in (False, True):
        forward, log_prob = tf.function(score, jit_compile=jit_compile)(z, context)
        np.testing.assert_allclose(forward, z, atol=1e-6)
        np.testing.assert_allclose(log_prob, want, rtol=1e-5, atol=1e-5)


def test_model_posterior_is_the_q_of_the_elbo():
    import vlae_tf
    from vlae_tf import inputs
    from vlae_tf.config import VLAEConfig

    config = VLAEConfig(image_shape=(8, 8, 1), latent_size=4, encoder_filters=(8,),
                        encoder_hidden=16, prior="standard_normal", iaf_steps=2,
                        iaf_hidden=(16,), iaf_context_size=8, window=(3, 2), decoder_layers=1,
                        decoder_filters=8, decoder_residual_blocks=0, z_map_channels=4,
                        ema_momentum=None, free_bits_mode="none")
    model = vlae_tf.VLAE(config)
    randomise(model.iaf, seed=14)
    images = (np.random.default_rng(0).random((6, 8, 8, 1)) < 0.3).astype(np.uint8)
    eps = random_normal([6, 4], 45)
    # The model's own z and log q(z|x) for this noise, and its KL = log q - log p.
    encoded = model.encoder(model._scale(images))
    z, log_q, _ = inputs.posterior_sample(encoded, eps, model.iaf)
    kl = model._elbo_terms(model._check_images(images), inputs.make_seed(0), noise=eps)["kl"]
    q = model.posterior(images)
    assert q.batch_shape == [6] and q.event_shape == [4]
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(q.log_prob(z) - model.prior.log_prob(z), kl, rtol=1e-5, atol=1e-4)

    plain = vlae_tf.VLAE(config.replace(iaf_steps=0))
    mean, scale = plain.encode(images)
    q_plain = plain.posterior(images)
    np.testing.assert_allclose(q_plain.mean(), mean, rtol=1e-6)
    np.testing.assert_allclose(q_plain.stddev(), scale, rtol=1e-6)
    with pytest.raises(ValueError, match="images"):
        plain.posterior(images[..., 0])


def test_iaf_weights_train_through_the_tfp_distribution():
    latent = 4
    model = PosteriorModel(IAFPosterior(latent, num_steps=2, hidden_units=(16,), context_size=3))
    x = random_normal([16, latent], 44)
    model(x)
    randomise(model, seed=13)  # zero output layers would give the hidden layers zero grads
    seed = tf.constant([7, 8], tf.int32)

    def loss():  # Monte Carlo KL(q || N(0, I)) with q(z|x) as a TFP distribution
        q = posterior_distribution(x, tf.ones_like(x), model.iaf, model.context_net(x))
        z = q.sample(seed=seed)
        return tf.reduce_mean(q.log_prob(z) + 0.5 * tf.reduce_sum(z ** 2, -1))

    with tf.GradientTape() as tape:
        value = loss()
    gradients = tape.gradient(value, model.trainable_weights)
    assert len(gradients) == 2 * 5 + 2  # every MADE variable and the toy context Dense
    for variable, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, variable.path
    before = [v.numpy().copy() for v in model.trainable_weights]
    one_sgd_step(model, loss)
    for old, variable in zip(before, model.trainable_weights):
        assert not np.allclose(old, variable.numpy()), variable.path


MIRRORED_IAF_SCRIPT = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from vlae_tf.flows import IAFPosterior, posterior_distribution

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    iaf = IAFPosterior(3, num_steps=2, hidden_units=(8,), context_size=2)
rng = np.random.default_rng(0)
for variable in iaf.weights:
    variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(np.float32))
z0 = rng.normal(size=(4, 3)).astype(np.float32)
context = rng.normal(size=(4, 2)).astype(np.float32)

def step(z0, context):
    with tf.GradientTape() as tape:
        z, log_q = iaf(z0, tf.zeros(tf.shape(z0)[:1]), context)
        loss = tf.reduce_sum(log_q + 0.5 * tf.reduce_sum(z ** 2, -1))
    gradients = tape.gradient(loss, iaf.trainable_weights)
    log_prob = posterior_distribution(z0, tf.ones_like(z0), iaf, context).log_prob(z)
    return z, log_q, log_prob, gradients

@tf.function
def mirrored(z0, context):
    z, log_q, log_prob, gradients = strategy.run(step, (z0, context))
    gather = lambda value: strategy.gather(value, axis=0)
    return (gather(z), gather(log_q), gather(log_prob),
            [strategy.reduce("SUM", gradient, axis=None) for gradient in gradients])

batch = next(iter(strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((z0, context)).batch(4))))
got = mirrored(*batch)
want = tf.function(step)(z0, context)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "max_diff": [float(np.abs(np.asarray(g) - np.asarray(w)).max())
                 for g, w in zip(list(got[:3]) + got[3], list(want[:3]) + want[3])]}))
"""


def test_iaf_under_mirrored_strategy_matches_single_device():
    import json, os, subprocess, sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", MIRRORED_IAF_SCRIPT], capture_output=True,
                            text=True, cwd=repo, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    assert len(outcome["max_diff"]) == 3 + 10
    assert max(outcome["max_diff"]) < 1e-5, outcome


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
