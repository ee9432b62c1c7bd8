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

from vlae_tf.nn.latent_pixelcnn import (LatentPixelCNN, validate_kernel_size,
                                        validate_latent_shape)
from vlae_tf.nn.layers import CheckpointListsMixin
from vlae_tf.nn.made import (MADE, validate_hidden_units, validate_non_negative_int,
                             validate_positive_int)

tfb = tfp.bijectors
tfd = tfp.distributions

_HALF_LOG_TWO_PI = 0.5 * np.log(2.0 * np.pi)

__all__ = ["make_maf_bijector", "AutoregressiveFlowPrior", "IAFPosterior",
           "gate_bijector", "make_iaf_step_bijector", "diagonal_gaussian",
           "posterior_distribution", "validate_sample_args"]


LOG_SCALE_BOUND = 5.0


def bounded_log_scale(raw):
    """B * tanh(raw / B): identity near 0, |log_scale| < B, so exp(+-log_scale) never
    overflows far from the training region (affine steps only)."""
    return LOG_SCALE_BOUND * tf.tanh(raw / LOG_SCALE_BOUND)


def make_maf_bijector(made: "MADE | LatentPixelCNN", mean_only: bool, name: str | None = None
                      ) -> tfb.MaskedAutoregressiveFlow:
    """One MAF step ``y = x * exp(log_scale(y)) + shift(y)`` driven by ``made``.

    ``made`` is any autoregressive network with the MADE's interface ``[..., D] ->
    [..., D, P]`` (``num_outputs_per_dim``, ``context_size``): a ``MADE`` or a
    ``vlae_tf.nn.latent_pixelcnn.LatentPixelCNN``.

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

    The network of each step is a dense MADE (``network="made"``) or, for a spatial
    latent, a PixelCNN on the ``latent_shape`` map (``network="pixelcnn"``,
    ``vlae_tf.nn.latent_pixelcnn.LatentPixelCNN``; paper, CIFAR-10: 6 steps, 2 hidden
    layers of 128 feature maps on the 8x8x16 latent). Both map the flat z ``[..., D]`` to
    ``[..., D, P]``, autoregressive in z's flat (raster) order, so the chain, the reversal,
    ``log_prob`` and ``sample`` are one code path. ``tf.reverse`` of the flat vector
    reverses the position and the channel order at once: the next step's PixelCNN reads the
    reversed vector in raster order, i.e. the map turned by 180 degrees with its channels
    reversed, so its autoregressive order is the reverse of the previous step's.

    Args:
      latent_size: D.
      num_steps: K, number of MAF steps.
      hidden_units: the network's hidden layer sizes (PixelCNN: feature maps per layer).
      mean_only: volume-preserving steps (``log_scale = 0``) if True, affine if False.
      activation: hidden activation; None: the paper's, ReLU for the MADE (binary
        prior), ELU for the PixelCNN.
      weight_norm: weight-normalised network layers.
      network: "made" | "pixelcnn".
      latent_shape: ``(h, w, c)`` with ``h * w * c = D`` (required for "pixelcnn").
      kernel_size: the PixelCNN's (odd, >= 3) kernel size.

    Methods:
      log_prob(z): ``[..., D] -> [...]``.
      sample(num, seed, temperature=1.0): ``[num, D]`` with
        ``eps = temperature * stateless_normal(seed)``, ``z = f(eps)``.
      call(z): same as log_prob(z).

    Variables are created in the constructor (all shapes are known), so a model
    that owns this layer lists every network variable in ``trainable_weights``
    even if it only ever calls ``log_prob`` / ``sample``. The networks are the list
    ``mades`` (``made_0``, ...; the attribute weight files know) or ``pixelcnns``
    (``pixelcnn_0``, ...); ``networks`` is whichever is in use.
    """

    NETWORKS = ("made", "pixelcnn")

    def __init__(self, latent_size, num_steps=4, hidden_units=(640,), mean_only=True,
                 activation=None, weight_norm=False, network="made", latent_shape=None,
                 kernel_size=3, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.weight_norm = bool(weight_norm)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.num_steps = validate_positive_int("num_steps", num_steps)
        self.hidden_units = validate_hidden_units("hidden_units", hidden_units)
        if not isinstance(mean_only, (bool, np.bool_)):
            raise ValueError(f"`mean_only` must be a bool, got {mean_only!r}.")
        self.mean_only = bool(mean_only)
        if network not in self.NETWORKS:
            raise ValueError(f"`network` must be one of {self.NETWORKS}, got {network!r}.")
        self.network = network
        self.latent_shape = (None if latent_shape is None else
                             validate_latent_shape("latent_shape", latent_shape,
                                                   self.latent_size))
        if network == "pixelcnn" and self.latent_shape is None:
            raise ValueError("`latent_shape` must be (height, width, channels) with "
                             "height * width * channels == latent_size for "
                             "network='pixelcnn', got None.")
        self.kernel_size = validate_kernel_size("kernel_size", kernel_size)
        if activation is None:  # the paper's: ReLU MADE (binary), ELU everywhere else
            activation = "relu" if network == "made" else "elu"
        # Normalised so get_config() is serialisable even for callables.
        self.activation = keras.activations.serialize(keras.activations.get(activation))
        num_outputs_per_dim = 1 if self.mean_only else 2
        if network == "made":
            self.mades = [
                MADE(self.latent_size, self.hidden_units,
                     num_outputs_per_dim=num_outputs_per_dim,
                     activation=activation, weight_norm=self.weight_norm, name=f"made_{step}",
                     dtype=self.dtype_policy)
                for step in range(self.num_steps)
            ]
        else:
            self.pixelcnns = [
                LatentPixelCNN(self.latent_shape, self.hidden_units,
                               num_outputs_per_dim=num_outputs_per_dim,
                               kernel_size=self.kernel_size, activation=activation,
                               weight_norm=self.weight_norm, name=f"pixelcnn_{step}",
                               dtype=self.dtype_policy)
                for step in range(self.num_steps)
            ]
        self.build()

    @property
    def networks(self) -> list:
        """The step networks, step 0 first (``mades`` or ``pixelcnns``)."""
        return self.mades if self.network == "made" else self.pixelcnns

    def build(self, input_shape=None):
        for network in self.networks:
            network.build((None, self.latent_size))

    @property
    def bijector(self) -> tfb.Bijector:
        """``f``: maps ``eps`` (forward) to ``z``; ``inverse`` maps ``z`` back to ``eps``.

        Rebuilt on every access (cheap Python objects, no variables), which
        keeps TFP's bijector cache from holding tensors across tf.function graphs.
        """
        reverse = tfb.Permute(permutation=np.arange(self.latent_size)[::-1].copy(),
                              name="reverse")
        steps_in_application_order = []
        for step, network in enumerate(self.networks):
            if step > 0:
                steps_in_application_order.append(reverse)
            steps_in_application_order.append(
                make_maf_bijector(network, self.mean_only, name=f"maf_{step}"))
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
            params = self.networks[step](x)  # one parallel pass, [..., D, P]
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
                      activation=self.activation, weight_norm=self.weight_norm,
                      network=self.network,
                      latent_shape=None if self.latent_shape is None else list(self.latent_shape),
                      kernel_size=self.kernel_size)
        return config


def gate_bijector(params, forget_bias, name: str = "iaf_gate") -> tfb.Bijector:
    """The element-wise map of one IAF step, from its MADE outputs ``params`` ``[..., D, 2]``.

    Kingma et al. 2016, the numerically stable (LSTM-like) form, with
    ``m = params[..., 0]`` and ``s = params[..., 1] + forget_bias``:

        v            = sigmoid(s)
        z'           = v * z + (1 - v) * m  =  z * exp(log_sigmoid(s)) + sigmoid(-s) * m
        log|dz'/dz|  = log v = log_sigmoid(s)                     (per dimension)

    as ``tfb.Chain([tfb.Shift(sigmoid(-s) * m), tfb.Scale(log_scale=log_sigmoid(s))])``
    (forward: scale, then shift). Why this form: ``log_sigmoid`` stays finite where
    ``log(sigmoid(s))`` is ``-inf`` (s below about -88 in float32); ``sigmoid(-s)`` is
    ``1 - v`` without the cancellation of ``1 - sigmoid(s)`` when the gate saturates at 1;
    the forward (sampling) direction multiplies by ``v`` and never divides, and ``z'`` is a
    convex combination of ``z`` and ``m``, so a step cannot blow ``z`` up. The inverse
    (density) direction ``(z' - sigmoid(-s) * m) * exp(-log_sigmoid(s))`` multiplies by
    ``1 / v = 1 + exp(-s)``, large only where the step itself contracts that much.

    The ops are those of the hand-written step this replaced, in the same order, so the
    same weights give bit-identical ``z'`` (tests/test_flows.py).
    """
    gate_logits = params[..., 1] + forget_bias
    return tfb.Chain([tfb.Shift(tf.sigmoid(-gate_logits) * params[..., 0]),
                      tfb.Scale(log_scale=tf.math.log_sigmoid(gate_logits))],
                     validate_event_size=False, name=name)


def make_iaf_step_bijector(made: MADE, forget_bias: float, context=None,
                           name: str = "iaf_step") -> tfb.Bijector:
    """One IAF step as ``tfb.Invert(tfb.MaskedAutoregressiveFlow(bijector_fn=g))``.

    TFP's MAF with ``bijector_fn=g`` computes ``inverse(y) = g(y).inverse(y)`` in one
    parallel pass, with parameters from its *input*, and ``forward(x)`` by iterating
    ``y <- g(y).forward(x)`` D times. An IAF step computes its parameters from its input
    ``z_{t-1}`` (that is what makes sampling parallel), so it is the inverse of a MAF. With
    ``g(y) = tfb.Invert(gate_bijector(MADE(y, h)))``:

        forward(z)                    = gate_bijector(MADE(z, h)).forward(z)   one pass
        forward_log_det_jacobian(z)   = sum_d log_sigmoid(s_d)                 one more pass
        inverse(z')                   = D sequential MADE passes (the density of a given z')

    Why ``bijector_fn`` and not ``shift_and_log_scale_fn``: the MAF's affine inverse is
    ``(y - shift) * exp(-log_scale)``; matching ``v * z + (1 - v) * m`` forces
    ``log_scale = -log v`` and ``shift = -(1 - v) * m / v = -exp(-s) * m``, which overflows
    to inf for s below about -88 (then inf * 0 = nan) and rounds differently from the
    gated form, so existing weights would not give their z exactly. ``bijector_fn`` is TFP's
    general coupling hook and keeps the stable form (``gate_bijector``).

    ``made`` must output 2 parameters per dimension; the context ``h`` (the encoder's
    features; it reaches every output through the MADE's degree-0 units) is closed over
    when given here, otherwise each call passes it as TFP's ``conditional_input`` keyword
    (``step.forward(z, conditional_input=h)``, or through a ``tfb.Chain`` /
    ``TransformedDistribution`` as ``bijector_kwargs={name: {"conditional_input": h}}``).
    """
    if made.num_outputs_per_dim != 2:
        raise ValueError(f"IAF steps take a MADE with num_outputs_per_dim=2 (m, s), got "
                         f"{made.num_outputs_per_dim}.")

    def bijector_fn(y, conditional_input=None):
        if conditional_input is not None and context is not None:
            raise ValueError(f"{name}: the context was given twice (to the bijector and as "
                             f"`conditional_input`); give it once.")
        h = context if conditional_input is None else conditional_input
        if made.context_size > 0 and h is None:
            raise ValueError(f"{name}: this IAF step takes a context of size "
                             f"{made.context_size}: pass it to IAFPosterior.bijector(context) "
                             f"or as `conditional_input`.")
        if made.context_size == 0 and h is not None:
            raise ValueError(f"{name}: this IAF step has context_size=0 but got a context.")
        return tfb.Invert(gate_bijector(made(y, h), forget_bias))

    return tfb.Invert(tfb.MaskedAutoregressiveFlow(bijector_fn=bijector_fn, name=f"{name}_maf"),
                      name=name)


def diagonal_gaussian(mean, scale) -> tfd.Distribution:
    """``N(mean, diag(scale^2))`` over the last axis, as the posterior's base distribution."""
    return tfd.Independent(tfd.Normal(loc=tf.cast(mean, tf.float32),
                                      scale=tf.cast(scale, tf.float32)),
                           reinterpreted_batch_ndims=1, name="diagonal_gaussian")


def posterior_distribution(mean, scale, iaf: "IAFPosterior | None" = None, context=None
                           ) -> tfd.Distribution:
    """q(z|x) as a TFP distribution: ``N(mean, diag(scale^2))``, pushed through the IAF
    chain ``iaf.bijector(context)`` if ``iaf`` is given (``tfd.TransformedDistribution``)."""
    base = diagonal_gaussian(mean, scale)
    return base if iaf is None else iaf.distribution(base, context)


@keras.saving.register_keras_serializable(package="vlae_tf")
class IAFPosterior(CheckpointListsMixin, keras.layers.Layer):
    """Inverse autoregressive flow on top of a diagonal-Gaussian posterior, on TFP bijectors.

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

    As TFP objects: each step is ``make_iaf_step_bijector`` (the inverse of a TFP MAF whose
    element-wise coupling is ``gate_bijector``); ``bijector(context)`` chains them with
    ``tfb.Permute`` reversals, and ``distribution(base, context)`` is q(z|x).

    ``call`` (what training, the estimators, sampling and export use) runs the same steps
    with one MADE pass each: it applies each step's ``gate_bijector`` to the MADE output
    and takes the log-det from that same bijector. The chain's ``forward_log_det_jacobian``
    would evaluate every MADE a second time (TFP's MAF calls its ``bijector_fn`` again for
    the log-det). ``call`` and the chain agree exactly (tests/test_flows.py).

    The variables are those of ``self.mades`` (``made_0``, ``made_1``, ...), unchanged
    from the hand-written version, so its weight files load as they are.

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
        """One IAF step (no reordering), one MADE pass: returns ``(z_t, sum_d log v_t,d)``."""
        gate = gate_bijector(self.mades[step_index](z, context), self.forget_bias,
                             name=f"iaf_gate_{step_index}")
        return gate.forward(z), gate.forward_log_det_jacobian(z, event_ndims=1)

    def _checked_context(self, context, required):
        """float32 context, or None; ValueErrors for a missing, unexpected or wrong-size one."""
        if self.context_size == 0:
            if context is not None:
                raise ValueError(f"{self.name}: context_size=0 but a context was given.")
            return None
        if context is None:
            if required:
                raise ValueError(f"{self.name}: context_size={self.context_size} "
                                 f"so `context` is required.")
            return None
        context = tf.cast(context, tf.float32)
        check_last_dim(self.name, "context", context, self.context_size)
        return context

    def call(self, z0, log_q0, context=None):
        z = tf.cast(z0, tf.float32)
        log_q = tf.cast(log_q0, tf.float32)
        check_last_dim(self.name, "z0", z, self.latent_size)
        context = self._checked_context(context, required=True)
        for step_index in range(self.num_steps):
            if step_index > 0:
                z = tf.reverse(z, axis=[-1])  # permutation: log-det 0
            z, log_det = self.step(step_index, z, context)
            log_q = log_q - log_det
        return z, log_q

    def step_names(self) -> list[str]:
        """Names of the steps in ``bijector()``: the keys of its ``bijector_kwargs``."""
        return [f"iaf_step_{step}" for step in range(self.num_steps)]

    def bijector(self, context=None) -> tfb.Bijector:
        """The flow ``z_0 -> z_T`` conditioned on ``h``, as a ``tfb.Chain``.

        In application order: ``iaf_step_0, reverse, iaf_step_1, ..., iaf_step_{T-1}``
        (each step ``make_iaf_step_bijector``, ``reverse`` a ``tfb.Permute``). ``forward``
        is parallel (one MADE pass per step; two with its log-det), ``inverse`` sequential
        (D MADE passes per step).

        ``context`` ``[..., context_size]`` is closed over; with ``context=None`` on a
        conditional flow, pass it per call instead:
        ``bijector_kwargs={name: {"conditional_input": h} for name in self.step_names()}``.
        Rebuilt on every call (cheap Python objects, no variables), which keeps TFP's
        bijector cache from holding tensors across tf.function graphs.
        """
        context = self._checked_context(context, required=False)
        reverse = tfb.Permute(permutation=np.arange(self.latent_size)[::-1].copy(),
                              name="reverse")
        steps_in_application_order = []
        for made, name in zip(self.mades, self.step_names()):
            if steps_in_application_order:
                steps_in_application_order.append(reverse)
            steps_in_application_order.append(
                make_iaf_step_bijector(made, self.forget_bias, context, name=name))
        # tfb.Chain applies its list right to left in the forward direction.
        return tfb.Chain(steps_in_application_order[::-1], name="iaf_posterior_flow")

    def distribution(self, base: tfd.Distribution, context=None) -> tfd.Distribution:
        """``q(z|x)``: ``base`` (over ``z_0``, event ``[D]``) pushed through ``bijector(context)``.

        ``log_prob(z)`` inverts the flow (sequential; fine for evaluation, not for training)
        and equals the ``log_q`` that ``call`` returns for that ``z``; ``sample`` is parallel.
        """
        return tfd.TransformedDistribution(base, self.bijector(context), name="iaf_posterior")

    def compute_output_shape(self, z0_shape, log_q0_shape, context_shape=None):
        return tuple(z0_shape), tuple(log_q0_shape)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, num_steps=self.num_steps,
                      hidden_units=list(self.hidden_units), context_size=self.context_size,
                      activation=self.activation, forget_bias=self.forget_bias)
        return config
