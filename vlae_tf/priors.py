"""Latent priors ``p(z)`` with a common interface, and a factory by name.

Every prior is a Keras 3 layer with

    log_prob(z) -> [...]                       z: [..., latent_size]
    sample(num, seed, temperature=1.0) -> [num, latent_size]
    call(z) == log_prob(z)

``seed`` is an int32 tensor of shape [2] (stateless RNG only, so sampling is
reproducible and tf.function / XLA safe). Everything is float32.

Priors:
  "standard_normal": ``N(0, I)`` (the usual VAE prior, no parameters).
  "af": ``AutoregressiveFlowPrior`` (VLAE, Chen et al. 2017, arXiv:1611.02731).
  "mog": ``MixtureOfGaussiansPrior``, K learnable diagonal Gaussians.
  "vamp": ``VampPrior`` (Tomczak & Welling 2018, arXiv:1705.07120), the mixture of
      the variational posteriors at K learnable pseudo-inputs.

Every variable is created in the constructor, so a model owning a prior lists
all of the prior's variables in ``trainable_weights`` before the first call.
"""
from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from vlae_tf.flows import (AutoregressiveFlowPrior, LatentDensity, bounded_log_scale,
                           check_last_dim, validate_sample_args)
from vlae_tf.nn import layers as nn_layers
from vlae_tf.nn.made import validate_positive_int

__all__ = ["StandardNormalPrior", "AutoregressiveFlowPrior", "MixtureOfGaussiansPrior",
           "VampPrior", "PRIORS", "get_prior"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="vlae_tf")
class StandardNormalPrior(LatentDensity):
    """``p(z) = N(z; 0, I_D)``:  ``log p(z) = -0.5 * sum_d z_d^2 - (D / 2) log(2 pi)``.

    Sampling: ``z = temperature * eps``, ``eps = stateless_normal(seed)``.
    Has no variables.
    """

    def __init__(self, latent_size, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.built = True  # nothing to build

    def log_prob(self, z):
        z = tf.cast(z, tf.float32)
        check_last_dim(self.name, "z", z, self.latent_size)
        return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - self.latent_size * _HALF_LOG_TWO_PI

    def sample(self, num, seed, temperature=1.0):
        validate_sample_args(num, temperature)
        eps = tf.random.stateless_normal([num, self.latent_size], seed=seed, dtype=tf.float32)
        return eps * tf.cast(temperature, tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size)
        return config


def _diagonal_gaussian_log_prob(z, means, scales):
    """``log N(z; means_k, diag(scales_k^2))`` for every component k.

    z: ``[..., D]``; means, scales: ``[K, D]``  ->  ``[..., K]``.
    """
    standardised = (z[..., None, :] - means) / scales  # [..., K, D]
    return (-0.5 * tf.reduce_sum(tf.square(standardised), axis=-1)
            - tf.reduce_sum(tf.math.log(scales), axis=-1)
            - means.shape[-1] * _HALF_LOG_TWO_PI)


def _split_seed(seed):
    """Two independent stateless seeds from one: (component choice, Gaussian noise)."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return seeds[0], seeds[1]


def _sample_diagonal_mixture(means, scales, component, noise_seed, temperature):
    """``z = means[k] + temperature * scales[k] * eps`` for each ``k`` in ``component [num]``."""
    chosen_means = tf.gather(means, component)  # [num, D]
    eps = tf.random.stateless_normal(tf.shape(chosen_means), seed=noise_seed, dtype=tf.float32)
    return chosen_means + tf.cast(temperature, tf.float32) * tf.gather(scales, component) * eps


@keras.saving.register_keras_serializable(package="vlae_tf")
class MixtureOfGaussiansPrior(LatentDensity):
    """Mixture of K diagonal Gaussians with learnable parameters:

        p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)),   pi = softmax(logits),
        log p(z) = logsumexp_k [log pi_k + log N(z; mu_k, sigma_k)].

    Variables (all created in the constructor): ``means`` ``[K, D]`` (initialised
    ``N(0, mean_init_stddev^2)`` so the components start apart and do not receive
    identical gradients), ``log_scales`` ``[K, D]`` (zeros: ``sigma = 1``) and
    ``logits`` ``[K]`` (zeros: uniform weights). The scale actually used is
    ``sigma = exp(5 tanh(log_scales / 5))`` (``flows.bounded_log_scale``): the
    identity near 0, but a component can neither collapse to a spike nor blow up,
    which keeps ``log p(z)`` and its gradients finite far from the data.

    Sampling (stateless): ``k ~ Categorical(pi)`` and ``eps ~ N(0, I)`` from two
    seeds split off ``seed``; ``z = mu_k + temperature * sigma_k * eps``. The
    temperature scales each component's spread, not the mixture weights, so
    ``temperature = 0`` returns component means.

    Args:
      latent_size: D.
      num_components: K.
      mean_init_stddev: standard deviation of the initial means.
    """

    def __init__(self, latent_size, num_components=16, mean_init_stddev=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.num_components = validate_positive_int("num_components", num_components)
        if isinstance(mean_init_stddev, bool) or not isinstance(
                mean_init_stddev, (int, float, np.number)) or not mean_init_stddev >= 0:
            raise ValueError(f"`mean_init_stddev` must be a number >= 0, "
                             f"got {mean_init_stddev!r}.")
        self.mean_init_stddev = float(mean_init_stddev)
        shape = (self.num_components, self.latent_size)
        self.means = self.add_weight(
            name="means", shape=shape,
            initializer=keras.initializers.RandomNormal(stddev=self.mean_init_stddev))
        self.log_scales = self.add_weight(name="log_scales", shape=shape, initializer="zeros")
        self.logits = self.add_weight(name="logits", shape=(self.num_components,),
                                      initializer="zeros")
        self.built = True

    @property
    def component_scales(self) -> tf.Tensor:
        """``sigma`` ``[K, D]``: ``exp(bounded_log_scale(log_scales))``."""
        return tf.exp(bounded_log_scale(tf.convert_to_tensor(self.log_scales)))

    @property
    def mixture_log_weights(self) -> tf.Tensor:
        """``log pi`` ``[K]`` (log-softmax of the logits)."""
        return tf.nn.log_softmax(tf.convert_to_tensor(self.logits))

    def log_prob(self, z):
        """``log p(z)``; ``[..., D] -> [...]``."""
        z = tf.cast(z, tf.float32)
        check_last_dim(self.name, "z", z, self.latent_size)
        component_log_probs = _diagonal_gaussian_log_prob(
            z, tf.convert_to_tensor(self.means), self.component_scales)
        return tf.reduce_logsumexp(component_log_probs + self.mixture_log_weights, axis=-1)

    def sample(self, num, seed, temperature=1.0):
        """``[num, D]`` samples; ``temperature`` multiplies the component scales."""
        validate_sample_args(num, temperature)
        component_seed, noise_seed = _split_seed(seed)
        component = tf.random.stateless_categorical(
            self.mixture_log_weights[None, :], num, seed=component_seed, dtype=tf.int32)[0]
        return _sample_diagonal_mixture(tf.convert_to_tensor(self.means), self.component_scales,
                                        component, noise_seed, temperature)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, num_components=self.num_components,
                      mean_init_stddev=self.mean_init_stddev)
        return config


class _UntrackedCallable:
    """Holds a callable where no tracking looks: Keras' attribute tracker, TF's
    checkpoint/SavedModel dependency tracking and Keras saving's attribute walk all
    ignore plain Python objects (and never look inside them)."""

    __slots__ = ("function",)

    def __init__(self, function):
        self.function = function


@contextlib.contextmanager
def _data_dependent_init_paused():
    """Suspends weight-norm data-dependent initialisation (``nn.data_dependent_init``).

    Inside that context every weight-normalised layer re-initialises its gain and bias
    from whatever batch reaches it. The VampPrior calls the encoder a second time, on
    the pseudo-inputs; without the pause that second call would overwrite the
    data-based initialisation of the encoder with one based on pseudo-inputs.
    """
    state = nn_layers._DATA_INIT
    was_active = state["active"]
    state["active"] = False
    try:
        yield
    finally:
        state["active"] = was_active


@keras.saving.register_keras_serializable(package="vlae_tf")
class VampPrior(LatentDensity):
    """VampPrior (Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018):

        p(z) = (1/K) sum_k q(z | u_k),
        log p(z) = logsumexp_k log N(z; mu(u_k), diag(sigma(u_k)^2)) - log K,

    the aggregate posterior approximated at K learnable pseudo-inputs ``u_k``
    (images ``[K, H, W, C]``). The encoder is shared with the model, so the prior
    moves with the posterior; gradients of ``log p(z)`` reach both the
    pseudo-inputs and the encoder's weights.

    The encoder comes in as ``posterior_fn(u) -> (mean [K, D], scale [K, D], ...)``
    (extra outputs, e.g. the IAF context, are ignored), a Python callable set by the
    owner, e.g. ``lambda u: model.encoder(u)[:2]`` or ``model.encoder`` itself. It
    is stored outside every tracking mechanism (``_UntrackedCallable``), so the
    encoder's variables are not part of this layer's ``weights`` /
    ``trainable_weights`` / checkpoint / ``.weights.h5`` entry: the model owning
    the encoder tracks them once. ``posterior_fn`` is not serialised either:
    after ``from_config`` (or if it was never set) it is None and ``log_prob`` /
    ``sample`` raise ValueError until the owner sets ``prior.posterior_fn = ...``.

    Components are the encoder's diagonal Gaussians: with an IAF posterior the
    prior uses the base Gaussian ``q_0(z|u_k)`` and ignores the flow (the flow's
    density at arbitrary ``z`` would need a sequential inversion per component).

    Pseudo-inputs: ``u = tanh(unconstrained_pseudo_inputs)``, so they always lie
    in the encoder's input range (-1, 1) and (unlike clipping) always receive a
    gradient. ``unconstrained_pseudo_inputs`` starts uniform in [-1, 1], i.e.
    ``u`` in (-0.76, 0.76), around the mid-grey image; ``set_pseudo_inputs``
    initialises them from data instead (e.g. random training images, an option
    of Tomczak & Welling).

    Cost: each ``log_prob`` / ``sample`` runs the encoder on the K pseudo-inputs.

    Sampling (stateless): ``k ~ Uniform{0..K-1}`` and ``eps ~ N(0, I)`` from two
    seeds split off ``seed``; ``z = mu(u_k) + temperature * sigma(u_k) * eps``.

    Args:
      latent_size: D.
      num_components: K, the number of pseudo-inputs.
      image_shape: (H, W, C) of the encoder's input.
      posterior_fn: the callable above, or None to set later.
    """

    def __init__(self, latent_size, num_components, image_shape, posterior_fn=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_size = validate_positive_int("latent_size", latent_size)
        self.num_components = validate_positive_int("num_components", num_components)
        try:
            validated_shape = tuple(validate_positive_int("image_shape", size)
                                    for size in image_shape)
        except (TypeError, ValueError):
            validated_shape = ()
        if len(validated_shape) != 3:
            raise ValueError(f"`image_shape` must be (height, width, channels) of ints >= 1; "
                             f"got {image_shape!r}.")
        self.image_shape = validated_shape
        self.posterior_fn = posterior_fn
        self.unconstrained_pseudo_inputs = self.add_weight(
            name="unconstrained_pseudo_inputs",
            shape=(self.num_components,) + self.image_shape,
            initializer=keras.initializers.RandomUniform(-1.0, 1.0))
        self.built = True

    def __setattr__(self, name, value):
        # Intercepted before Keras' own __setattr__, which would track a Layer passed as
        # posterior_fn (e.g. the encoder) as a sublayer of the prior: tracked twice.
        if name == "posterior_fn":
            if value is not None and not callable(value):
                raise ValueError(f"`posterior_fn` must be callable (pseudo-inputs -> "
                                 f"(mean, scale)) or None; got {value!r}.")
            name, value = "_posterior_fn_holder", _UntrackedCallable(value)
        super().__setattr__(name, value)

    @property
    def posterior_fn(self):
        return self._posterior_fn_holder.function

    @property
    def pseudo_inputs(self) -> tf.Tensor:
        """``u = tanh(unconstrained_pseudo_inputs)`` ``[K, H, W, C]`` in (-1, 1)."""
        return tf.tanh(tf.convert_to_tensor(self.unconstrained_pseudo_inputs))

    def set_pseudo_inputs(self, images_scaled, margin=0.05):
        """Initialises the pseudo-inputs from K images already scaled to [-1, 1].

        Values are first clipped to ``[-1 + margin, 1 - margin]``: ``atanh(+-1)`` is
        infinite, and a saturated tanh would pass almost no gradient (at the default
        margin, ``d tanh / d x = 0.1``).
        """
        images_scaled = np.asarray(images_scaled, np.float32)
        expected = (self.num_components,) + self.image_shape
        if images_scaled.shape != expected:
            raise ValueError(f"{self.name}: pseudo-inputs must have shape {expected}; got "
                             f"{images_scaled.shape}.")
        if not 0.0 < margin < 1.0:
            raise ValueError(f"`margin` must be in (0, 1); got {margin!r}.")
        clipped = np.clip(images_scaled, -1.0 + margin, 1.0 - margin)
        self.unconstrained_pseudo_inputs.assign(np.arctanh(clipped))

    def components(self):
        """``(means, scales)`` ``[K, D]``: ``q(z | u_k)`` for every pseudo-input."""
        posterior_fn = self.posterior_fn
        if posterior_fn is None:
            raise ValueError(
                f"{self.name}: posterior_fn is not set. The VampPrior needs the encoder: set "
                f"`prior.posterior_fn = lambda u: encoder(u)[:2]` (u: pseudo-inputs "
                f"[K, H, W, C] in [-1, 1] -> (mean, scale) [K, latent_size]).")
        with _data_dependent_init_paused():
            outputs = posterior_fn(self.pseudo_inputs)
        if not isinstance(outputs, (tuple, list)) or len(outputs) < 2:
            raise ValueError(f"{self.name}: posterior_fn must return (mean, scale, ...); "
                             f"got {type(outputs).__name__}.")
        means = tf.cast(outputs[0], tf.float32)
        scales = tf.cast(outputs[1], tf.float32)
        expected = [self.num_components, self.latent_size]
        for what, tensor in (("mean", means), ("scale", scales)):
            if tensor.shape.rank != 2 or not tensor.shape.is_compatible_with(expected):
                raise ValueError(f"{self.name}: posterior_fn's {what} must have shape "
                                 f"{expected} (num_components, latent_size); got "
                                 f"{tensor.shape}.")
        return means, scales

    def log_prob(self, z):
        """``log p(z) = logsumexp_k log q(z|u_k) - log K``; ``[..., D] -> [...]``."""
        z = tf.cast(z, tf.float32)
        check_last_dim(self.name, "z", z, self.latent_size)
        means, scales = self.components()
        return (tf.reduce_logsumexp(_diagonal_gaussian_log_prob(z, means, scales), axis=-1)
                - math.log(self.num_components))

    def sample(self, num, seed, temperature=1.0):
        """``[num, D]`` samples; ``temperature`` multiplies the component scales."""
        validate_sample_args(num, temperature)
        means, scales = self.components()
        component_seed, noise_seed = _split_seed(seed)
        component = tf.random.stateless_uniform([num], seed=component_seed, minval=0,
                                                maxval=self.num_components, dtype=tf.int32)
        return _sample_diagonal_mixture(means, scales, component, noise_seed, temperature)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, num_components=self.num_components,
                      image_shape=list(self.image_shape))
        return config


PRIORS = {
    "standard_normal": StandardNormalPrior,
    "af": AutoregressiveFlowPrior,
    "mog": MixtureOfGaussiansPrior,
    "vamp": VampPrior,
}


def get_prior(name: str, latent_size: int, **kwargs) -> keras.layers.Layer:
    """Builds the prior called ``name`` (a key of ``PRIORS``).

    ``kwargs`` go to the constructor, e.g.
    ``get_prior("af", 32, num_steps=4, hidden_units=(640,), mean_only=True)``,
    ``get_prior("mog", 32, num_components=16)`` or
    ``get_prior("vamp", 32, num_components=16, image_shape=(28, 28, 1),
    posterior_fn=lambda u: encoder(u)[:2])``.
    """
    if name not in PRIORS:
        raise ValueError(f"Unknown prior {name!r}; valid names: {sorted(PRIORS)}.")
    return PRIORS[name](latent_size, **kwargs)
