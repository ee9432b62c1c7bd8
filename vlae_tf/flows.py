"""Autoregressive flows for the VLAE: the AF prior and the IAF posterior.

References:
  X. Chen, D. P. Kingma, T. Salimans, Y. Duan, P. Dhariwal, J. Schulman,
    I. Sutskever, P. Abbeel, "Variational Lossy Autoencoder", ICLR 2017
    (arXiv:1611.02731), section 3.2.
  G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for
    Density Estimation", NeurIPS 2017 (arXiv:1705.07057).
  D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling,
    "Improved Variational Inference with Inverse Autoregressive Flow",
    NeurIPS 2016 (arXiv:1606.04934).

All computations are float32 regardless of the global Keras dtype policy:
inputs are cast to float32 and the layers use a float32 policy, because flow
log-determinants and sequential inversions are not float16-safe.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vlae_tf.nn.layers import CheckpointListsMixin
from vlae_tf.nn.made import (MADE, validate_hidden_units, validate_non_negative_int,
                             validate_positive_int)

tfb = tfp.bijectors
tfd = tfp.distributions

_HALF_LOG_TWO_PI = 0.5 * np.log(2.0 * np.pi)

__all__ = ["make_maf_bijector", "AutoregressiveFlowPrior", "IAFPosterior",
           "validate_sample_args"]


LOG_SCALE_BOUND = 5.0


def bounded_log_scale(raw):
    """B * tanh(raw / B): identity near 0, |log_scale| < B, so exp(+-log_scale) never
    overflows far from the training region (affine steps only)."""
    return LOG_SCALE_BOUND * tf.tanh(raw / LOG_SCALE_BOUND)


def make_maf_bijector(made: MADE, mean_only: bool, name: str | None = None
                      ) -> tfb.MaskedAutoregressiveFlow:
    """One MAF step ``y = x * exp(log_scale(y)) + shift(y)`` driven by ``made``.

    ``shift_d`` and ``log_scale_d`` depend on ``y_{<d}`` only (the MADE's
    autoregressive property), so:

      * inverse (density direction) ``x = (y - shift(y)) * exp(-log_scale(y))`` is
        one parallel MADE pass;
      * forward (sampling direction) is sequential: TFP iterates D MADE passes;
      * ``log|det dy/dx| = sum_d log_scale_d``.

    With ``mean_only=True`` the step is volume preserving (``log_scale = 0``,
    ``y = x + shift(y)``) and the MADE must output 1 parameter per dimension;
    otherwise 2 (shift, log_scale).

    The MADE is a Keras 3 layer owned by the caller (a Keras layer), so Keras
    tracks and trains its variables; the bijector is a cheap stateless wrapper.
    """
    expected_params = 1 if mean_only else 2
    if made.num_outputs_per_dim != expected_params:
        raise ValueError(
            f"`made.num_outputs_per_dim` must be {expected_params} for mean_only={mean_only}, "
            f"got {made.num_outputs_per_dim}.")
    if made.context_size != 0:
        raise ValueError(f"MAF steps take an unconditional MADE (context_size=0), "
                         f"got context_size={made.context_size}.")

    def shift_and_log_scale_fn(y):
        params = made(y)  # [..., D, P]
        if mean_only:
            return params[..., 0], None  # None: TFP skips the Scale bijector entirely.
        return params[..., 0], bounded_log_scale(params[..., 1])

    return tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale_fn,
                                        name=name or "maf")


def validate_sample_args(num, temperature):
    """Checks python-valued ``num`` (int >= 1) and ``temperature`` (>= 0); tensors pass."""
    if not tf.is_tensor(num):
        validate_positive_int("num", num)
    if not tf.is_tensor(temperature) and not (
            isinstance(temperature, (int, float, np.floating, np.integer))
            and not isinstance(temperature, bool) and temperature >= 0):
        raise ValueError(f"`temperature` must be a number >= 0, got {temperature!r}.")


def check_last_dim(owner: str, what: str, tensor: tf.Tensor, expected: int):
    """Raises ValueError if ``tensor`` is a scalar or its static last dim is not ``expected``."""
    got = tensor.shape[-1] if tensor.shape.rank else None
    if tensor.shape.rank == 0 or (got is not None and got != expected):
        raise ValueError(f"{owner}: {what} last dimension must be {expected}, "
                         f"got shape {tensor.shape}.")


@keras.saving.register_keras_serializable(package="vlae_tf")
class LatentDensity(keras.layers.Layer):
    """Base of the priors: a layer whose call is `log_prob(z)` -> [...], one value per z."""

    def call(self, z):
        return self.log_prob(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


class AutoregressiveFlowPrior(CheckpointListsMixin, LatentDensity):
    """Autoregressive-flow prior ``p(z)`` of the VLAE (Chen et al. 2017, sec. 3.2).

    ``z = f(eps)``, ``eps ~ N(0, I)``, ``f = g_K o P o g_{K-1} o ... o P o g_1`` where
    each ``g_k`` is a MAF step (``make_maf_bijector``) and ``P`` reverses the
    dimension order so every dimension gets conditioned on every other one
    across steps. By change of variables

        log p(z) = log N(f^{-1}(z); 0, I) + log|det d f^{-1}(z) / dz|,

    which needs only the MAF inverses: one parallel MADE pass per step (cheap,
    used in training; see ``inverse_and_log_det``). Sampling runs ``f`` forward,
    sequentially over the D dimensions within each step (generation only).

    Paper setting (binary MNIST/OMNIGLOT/Caltech-101): 4 steps, MADE with 640
    hidden units, ReLU, mean-only (volume-preserving) steps. For the KL term /
    encoder path, an AF prior is equivalent to an IAF posterior with the same
    parameterisation, but the generative (decoder) path gets deeper:
    ``x ~ p(x | f(eps))`` instead of ``p(x | z)`` -- why the paper prefers it.
    Affine steps (``mean_only=False``) bound the MADE's log-scale softly to
    (-5, 5) (``bounded_log_scale``) so that ``exp(-log_scale)`` cannot overflow.

    Args:
      latent_size: D.
      num_steps: K, number of MAF steps.
      hidden_units: MADE hidden layer sizes.
      mean_only: volume-preserving steps (``log_scale = 0``) if True, affine if False.
      activation: MADE hidden activation.

    Methods:
      log_prob(z): ``[..., D] -> [...]``.
      sample(num, seed, temperature=1.0): ``[num, D]`` with
        ``eps = temperature * stateless_normal(seed)``, ``z = f(eps)``.
      call(z): same as log_prob(z).

    Variables are created in the constructor (all shapes are known), so a model
    that owns this layer lists every MADE variable in ``trainable_weights``
    even if it only ever calls ``log_prob`` / ``sample``.
    """

    def __init__(self, latent_size, num_steps=4, hidden_units=(640,), mean_only=True,
                 activation="relu", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.num_steps = validate_positive_int("num_steps", num_steps)
        self.hidden_units = validate_hidden_units("hidden_units", hidden_units)
        if not isinstance(mean_only, (bool, np.bool_)):
            raise ValueError(f"`mean_only` must be a bool, got {mean_only!r}.")
        self.mean_only = bool(mean_only)
        # Normalised so get_config() is serialisable even for callables.
        self.activation = keras.activations.serialize(keras.activations.get(activation))
        self.mades = [
            MADE(self.latent_size, self.hidden_units,
                 num_outputs_per_dim=1 if self.mean_only else 2,
                 activation=activation, name=f"made_{step}", dtype=self.dtype_policy)
            for step in range(self.num_steps)
        ]
        self.build()

    def build(self, input_shape=None):
        for made in self.mades:
            made.build((None, self.latent_size))

    @property
    def bijector(self) -> tfb.Bijector:
        """``f``: maps ``eps`` (forward) to ``z``; ``inverse`` maps ``z`` back to ``eps``.

        Rebuilt on every access (cheap Python objects, no variables), which
        keeps TFP's bijector cache from holding tensors across tf.function graphs.
        """
        reverse = tfb.Permute(permutation=np.arange(self.latent_size)[::-1].copy(),
                              name="reverse")
        steps_in_application_order = []
        for step, made in enumerate(self.mades):
            if step > 0:
                steps_in_application_order.append(reverse)
            steps_in_application_order.append(
                make_maf_bijector(made, self.mean_only, name=f"maf_{step}"))
        # tfb.Chain applies its list right to left in the forward direction.
        return tfb.Chain(steps_in_application_order[::-1], name="af_prior_flow")

    @property
    def base_distribution(self) -> tfd.Distribution:
        """``N(0, I_D)`` over ``eps``."""
        return tfd.Sample(tfd.Normal(loc=tf.constant(0.0, tf.float32), scale=1.0),
                          sample_shape=[self.latent_size], name="standard_normal")

    @property
    def distribution(self) -> tfd.Distribution:
        """The prior as a TFP ``TransformedDistribution`` (fresh object per access)."""
        return tfd.TransformedDistribution(self.base_distribution, self.bijector,
                                           name="af_prior")

    def inverse_and_log_det(self, z):
        """``eps = f^{-1}(z)`` ``[..., D]`` and ``log|det d eps / dz|`` ``[...]``.

        Written out instead of ``self.distribution.log_prob``: TFP's MAF evaluates
        the MADE once for the inverse and again for its log-det, so this halves
        the cost of affine steps. Per step (undoing ``y = x * exp(a(y)) + b(y)``):
        ``x = (y - b(y)) * exp(-a(y))``, ``log|det| -= sum_d a_d(y)``.
        Equality with the TFP distribution is checked in tests/test_flows.py.
        """
        x = tf.cast(z, tf.float32)
        check_last_dim(self.name, "z", x, self.latent_size)
        log_det = tf.zeros(tf.shape(x)[:-1], tf.float32)
        for step in reversed(range(self.num_steps)):
            params = self.mades[step](x)  # one parallel pass, [..., D, P]
            if self.mean_only:
                x = x - params[..., 0]
            else:
                log_scale = bounded_log_scale(params[..., 1])
                x = (x - params[..., 0]) * tf.exp(-log_scale)
                log_det = log_det - tf.reduce_sum(log_scale, axis=-1)
            if step > 0:
                x = tf.reverse(x, axis=[-1])  # undo the reversal applied before this step
        return x, log_det

    def log_prob(self, z):
        """``log p(z) = log N(f^{-1}(z); 0, I) + log|det d f^{-1}/dz|``; ``[..., D] -> [...]``."""
        eps, log_det = self.inverse_and_log_det(z)
        return (-0.5 * tf.reduce_sum(tf.square(eps), axis=-1)
                - self.latent_size * _HALF_LOG_TWO_PI + log_det)

    def sample(self, num, seed, temperature=1.0):
        """``num`` samples ``[num, D]``: ``z = f(temperature * eps)``, ``eps ~ N(0, I)``.

        ``seed`` is an int32 tensor of shape [2]; same seed -> same samples. No
        hidden RNG state is used, so this is safe inside tf.function / XLA.
        (Note: under XLA, TF's stateless_normal returns different numbers than
        eagerly for the same seed; each mode is deterministic on its own.)
        ``temperature < 1`` shrinks the base noise (sharper samples).
        """
        validate_sample_args(num, temperature)
        eps = tf.random.stateless_normal([num, self.latent_size], seed=seed, dtype=tf.float32)
        eps = eps * tf.cast(temperature, tf.float32)
        return self.bijector.forward(eps)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, num_steps=self.num_steps,
                      hidden_units=list(self.hidden_units), mean_only=self.mean_only,
                      activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="vlae_tf")
class IAFPosterior(CheckpointListsMixin, keras.layers.Layer):
    """Inverse autoregressive flow on top of a diagonal-Gaussian posterior.

    Kingma et al. 2016, numerically stable LSTM-style form. Given
    ``z_0 = mu + sigma * eps`` and ``log q_0 = sum_d log N(z_0,d; mu_d, sigma_d)``
    (both computed by the caller), each step t = 1..T does

        [m_t, s_t] = MADE_t(z_{t-1}, h)           (autoregressive in z_{t-1})
        v_t        = sigmoid(s_t + forget_bias)
        z_t        = v_t * z_{t-1} + (1 - v_t) * m_t
        log q_t    = log q_{t-1} - sum_d log v_t,d

    ``dz_t / dz_{t-1}`` is triangular with diagonal ``v_t`` (``m_t,d``, ``v_t,d``
    depend on ``z_{t-1,<d}`` only), so ``log|det| = sum_d log v_t,d``, evaluated
    with ``log_sigmoid`` for stability. The gate is a convex combination, so a
    step can never blow ``z`` up; ``forget_bias > 0`` starts ``v`` near 1
    (IAF paper: "initialize s_t to sufficiently positive values, such as +1 or +2").

    Between steps the dimension order is reversed (a permutation: |det| = 1,
    log q unchanged) so that every dimension conditions on every other one.
    The returned ``z`` is in the order produced by the last step; since its
    density ``log_q`` is exact for that vector, no reordering is needed.

    Args:
      latent_size: D.
      num_steps: T.
      hidden_units: MADE hidden layer sizes.
      context_size: size of the context ``h`` from the encoder (0: unconditional).
      activation: MADE hidden activation.
      forget_bias: added to ``s_t`` before the sigmoid.

    call(z0, log_q0, context=None) -> (z, log_q) with shapes ``[..., D]``, ``[...]``.
    """

    def __init__(self, latent_size, num_steps=2, hidden_units=(640,), context_size=0,
                 activation="relu", forget_bias=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.num_steps = validate_positive_int("num_steps", num_steps)
        self.hidden_units = validate_hidden_units("hidden_units", hidden_units)
        self.context_size = validate_non_negative_int("context_size", context_size)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.number)) \
                or not np.isfinite(forget_bias):
            raise ValueError(f"`forget_bias` must be a finite number, got {forget_bias!r}.")
        self.forget_bias = float(forget_bias)
        # Normalised so get_config() is serialisable even for callables.
        self.activation = keras.activations.serialize(keras.activations.get(activation))
        self.mades = [
            MADE(self.latent_size, self.hidden_units, num_outputs_per_dim=2,
                 activation=activation, context_size=self.context_size,
                 name=f"made_{step}", dtype=self.dtype_policy)
            for step in range(self.num_steps)
        ]
        self.build()

    def build(self, z0_shape=None, log_q0_shape=None, context_shape=None):
        context_shape = (None, self.context_size) if self.context_size else None
        for made in self.mades:
            made.build((None, self.latent_size), context_shape)

    def step(self, step_index, z, context=None):
        """One IAF step (no reordering): returns ``(z_t, sum_d log v_t,d)``."""
        params = self.mades[step_index](z, context)  # [..., D, 2]
        gate_logits = params[..., 1] + self.forget_bias
        log_gate = tf.math.log_sigmoid(gate_logits)
        gate = tf.exp(log_gate)
        # 1 - sigmoid(a) == sigmoid(-a), accurate when the gate saturates at 1.
        z_next = gate * z + tf.sigmoid(-gate_logits) * params[..., 0]
        return z_next, tf.reduce_sum(log_gate, axis=-1)

    def call(self, z0, log_q0, context=None):
        z = tf.cast(z0, tf.float32)
        log_q = tf.cast(log_q0, tf.float32)
        check_last_dim(self.name, "z0", z, self.latent_size)
        if self.context_size > 0:
            if context is None:
                raise ValueError(f"{self.name}: context_size={self.context_size} "
                                 f"so `context` is required.")
            context = tf.cast(context, tf.float32)
            check_last_dim(self.name, "context", context, self.context_size)
        elif context is not None:
            raise ValueError(f"{self.name}: context_size=0 but a context was given.")
        for step_index in range(self.num_steps):
            if step_index > 0:
                z = tf.reverse(z, axis=[-1])  # permutation: log-det 0
            z, log_det = self.step(step_index, z, context)
            log_q = log_q - log_det
        return z, log_q

    def compute_output_shape(self, z0_shape, log_q0_shape, context_shape=None):
        return tuple(z0_shape), tuple(log_q0_shape)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, num_steps=self.num_steps,
                      hidden_units=list(self.hidden_units), context_size=self.context_size,
                      activation=self.activation, forget_bias=self.forget_bias)
        return config
