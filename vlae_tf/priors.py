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
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from vlae_tf.flows import AutoregressiveFlowPrior, check_last_dim, validate_sample_args
from vlae_tf.nn.made import validate_positive_int

__all__ = ["StandardNormalPrior", "AutoregressiveFlowPrior", "PRIORS", "get_prior"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="vlae_tf")
class StandardNormalPrior(keras.layers.Layer):
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

    def call(self, z):
        return self.log_prob(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size)
        return config


PRIORS = {
    "standard_normal": StandardNormalPrior,
    "af": AutoregressiveFlowPrior,
}


def get_prior(name: str, latent_size: int, **kwargs) -> keras.layers.Layer:
    """Builds the prior called ``name`` (a key of ``PRIORS``).

    ``kwargs`` go to the constructor, e.g.
    ``get_prior("af", 32, num_steps=4, hidden_units=(640,), mean_only=True)``.
    """
    if name not in PRIORS:
        raise ValueError(f"Unknown prior {name!r}; valid names: {sorted(PRIORS)}.")
    return PRIORS[name](latent_size, **kwargs)
