"""Hierarchical latents: a VLAE with two stochastic layers (config.latent_layers = 2).

Generative model (Sønderby et al. 2016, Ladder VAE; Gulrajani et al. 2017, PixelVAE):

    p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1),

p(z2) any of the package's priors over the top_latent_size-dimensional z2 (`config.prior`:
standard Normal, MAF, mixture of Gaussians), p(z1 | z2) = N(mu_p(z2), diag sigma_p(z2)^2) and
p(x | z1) the model's (windowed PixelCNN) decoder. Inference is bottom-up,

    q(z1, z2 | x) = q(z1 | x) q(z2 | z1),    q(z2 | z1) = N(mu_q(z1), diag sigma_q(z1)^2),

q(z1 | x) the encoder's diagonal Gaussian. This is the simplest correct inference network
(it is what the Ladder VAE calls the "bottom-up" baseline; the ladder's top-down
precision-weighted merge is not built). The bound, one reparameterised sample per layer,

    ELBO = E_q[log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1)]
         = -(recon + KL1 + KL2),
    KL1 = log q(z1|x) - log p(z1|z2),     KL2 = log q(z2|z1) - log p(z2),

with z1 = mu(x) + sigma(x) * eps1, z2 = mu_q(z1) + sigma_q(z1) * eps2, and the model's
noise one flat vector eps = [eps1, eps2] of `latent_size + top_latent_size` N(0, 1) values
(`VLAE.noise_size`), so training, the importance-sampling estimator and the ELBO draw it
the same way as for one layer. Both MLPs have one hidden layer of `hierarchy_hidden` ELU
units (weight-normalised `vlae_tf.nn.layers.Dense`); scales are softplus + 1e-4, as the
encoder's.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from vlae_tf import diagnostics
from vlae_tf.encoder import MIN_SCALE
from vlae_tf.nn import layers as nn

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(z, mean, scale):
    """sum_d log N(z_d; mean_d, scale_d^2): [B, D] -> [B]."""
    standardised = (z - mean) / scale
    return tf.reduce_sum(-0.5 * tf.square(standardised) - tf.math.log(scale)
                         - HALF_LOG_TWO_PI, axis=-1)


@keras.saving.register_keras_serializable(package="vlae_tf")
class GaussianMLP(keras.layers.Layer):
    """inputs [B, n] -> (mean, scale) [B, units] of a diagonal Gaussian:

        h = ELU(W_h x + b_h),  mean = W_m h + b_m,  scale = softplus(W_s h + b_s) + 1e-4.
    """

    def __init__(self, units, hidden_units, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.units, self.hidden_units, self.weight_norm = units, hidden_units, weight_norm
        self.hidden = nn.Dense(hidden_units, use_weight_norm=weight_norm, name="hidden")
        # Small initial outputs (init_scale 0.1), as the encoder's heads.
        self.mean = nn.Dense(units, use_weight_norm=weight_norm, init_scale=0.1, name="mean")
        self.raw_scale = nn.Dense(units, use_weight_norm=weight_norm, init_scale=0.1,
                                  name="raw_scale")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        hidden_shape = tuple(input_shape[:-1]) + (self.hidden_units,)
        self.mean.build(hidden_shape)
        self.raw_scale.build(hidden_shape)
        self.built = True

    def call(self, inputs):
        hidden = tf.nn.elu(self.hidden(inputs))
        return self.mean(hidden), tf.nn.softplus(self.raw_scale(hidden)) + MIN_SCALE

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "hidden_units": self.hidden_units, "weight_norm": self.weight_norm}


@keras.saving.register_keras_serializable(package="vlae_tf")
class LatentHierarchy(keras.layers.Layer):
    """The two conditionals of the hierarchy (see the module docstring):

    * `posterior(z1)`: q(z2 | z1) = N(mu_q(z1), diag sigma_q(z1)^2), (mean, scale) [B, D2];
    * `conditional_prior(z2)`: p(z1 | z2) = N(mu_p(z2), diag sigma_p(z2)^2), [B, D1];
    * `call(z1, eps2)`: z2 = mu_q(z1) + sigma_q(z1) * eps2 and log q(z2 | z1) [B];
    * `log_prob_z1(z1, z2)`: log p(z1 | z2) [B].
    """

    def __init__(self, latent_size, top_latent_size, hidden_units, weight_norm=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.latent_size, self.top_latent_size = latent_size, top_latent_size
        self.hidden_units, self.weight_norm = hidden_units, weight_norm
        self.q_z2 = GaussianMLP(top_latent_size, hidden_units, weight_norm, name="q_z2_given_z1")
        self.p_z1 = GaussianMLP(latent_size, hidden_units, weight_norm, name="p_z1_given_z2")

    def build(self, input_shape=None):
        self.q_z2.build((None, self.latent_size))
        self.p_z1.build((None, self.top_latent_size))
        self.built = True

    def posterior(self, z1):
        return self.q_z2(z1)

    def conditional_prior(self, z2):
        return self.p_z1(z2)

    def call(self, z1, eps2):
        mean, scale = self.q_z2(z1)
        # log N(mean + scale * eps; mean, scale) written with eps, as inputs.posterior_sample.
        log_q = tf.reduce_sum(-0.5 * tf.square(eps2) - tf.math.log(scale) - HALF_LOG_TWO_PI,
                              axis=-1)
        return mean + scale * eps2, log_q

    def log_prob_z1(self, z1, z2):
        mean, scale = self.p_z1(z2)
        return gaussian_log_prob(z1, mean, scale)

    def sample_z1(self, z2, eps1, temperature=1.0):
        """z1 ~ p(z1 | z2) with the noise scaled by `temperature`: mu_p + T sigma_p eps1."""
        mean, scale = self.p_z1(z2)
        return mean + scale * (eps1 * tf.cast(temperature, eps1.dtype))

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "top_latent_size": self.top_latent_size, "hidden_units": self.hidden_units,
                "weight_norm": self.weight_norm}


def build(config):
    """The model's LatentHierarchy for `config.latent_layers == 2`, else None."""
    if config.latent_layers != 2:
        return None
    layer = LatentHierarchy(config.latent_size, config.top_latent_size,
                            config.hierarchy_hidden, weight_norm=config.weight_norm,
                            name="hierarchy")
    layer.build()
    return layer


def latent_terms(hierarchy, prior, z1, log_q1, eps2):
    """The two-layer latent part of the bound for z1 ~ q(z1|x) with log q(z1|x) = log_q1.

    Returns z2 ~ q(z2|z1) (noise eps2), log q(z1, z2 | x), log p(z1, z2) and the per-layer
    KL terms [B, 2]: KL1 = log q(z1|x) - log p(z1|z2), KL2 = log q(z2|z1) - log p(z2).
    """
    z2, log_q2 = hierarchy(z1, eps2)
    log_p1 = hierarchy.log_prob_z1(z1, z2)
    log_p2 = prior.log_prob(z2)
    kl_per_layer = tf.stack([log_q1 - log_p1, log_q2 - log_p2], axis=-1)
    return z2, log_q1 + log_q2, log_p1 + log_p2, kl_per_layer


def sample_prior(hierarchy, top_sampler, num, seed, temperature):
    """z1 of the generative model: z2 ~ p(z2) (`top_sampler(num, seed_a, temperature)`,
    the prior's own sampler), then z1 ~ p(z1|z2) with N(0, 1) noise from seed_b, both noises
    scaled by `temperature`; (seed_a, seed_b) = stateless_split(seed)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2)
    z2 = top_sampler(num, seeds[0], temperature)
    eps1 = tf.random.stateless_normal(tf.stack([num, hierarchy.latent_size]), seeds[1])
    return hierarchy.sample_z1(z2, eps1, temperature)


def encode_layers(model, images_scaled):
    """Both layers' Gaussians for scaled images: {"mean", "scale"} of q(z1|x) and
    {"top_mean", "top_scale"} of q(z2 | z1 = mean of q(z1|x)) (a deterministic summary:
    q(z2|x) = E_{q(z1|x)} q(z2|z1) has no closed form)."""
    posterior = model.encoder(images_scaled)
    top_mean, top_scale = model.hierarchy.posterior(posterior[0])
    return {"mean": posterior[0], "scale": posterior[1], "top_mean": top_mean,
            "top_scale": top_scale}


def model_diagnostics(model, images, seed, batch_size=256, samples_per_image=1,
                      threshold=0.01):
    """`vlae_tf.diagnostics.model_diagnostics` for a two-layer model.

    Per-layer Monte Carlo KL (`kl_z1`, `kl_z2`, means over images and samples of KL1, KL2
    at the same draws as the ELBO's), active units of each layer (Burda et al. 2016:
    Var_x of E[z1|x] for z1, Var_x of E[z2 | z1 = E[z1|x]] for z2; `active_units`,
    `active_units_z2`) and ELBO surgery of the whole code: because q(z2|z1) does not
    depend on x, q(z1, z2 | x_i) / q(z1, z2 | x_j) = q(z1|x_i) / q(z1|x_j), so

        I(i; (z1, z2)) = I(i; z1) = mean [log q(z1|x_i) - log q(z1)],   q(z1) the mixture,
        marginal_kl = average_kl - I,   average_kl = mean (KL1 + KL2),

    with z1 = mean + scale * eps1 and z2 ~ q(z2|z1), eps = stateless_normal([N, M,
    noise_size], seed) split as the model splits it.
    """
    from vlae_tf import inputs

    images = diagnostics.checked_batch(images, batch_size, samples_per_image)
    latent_size = model.config.latent_size
    parts = {key: [] for key in ("mean", "scale", "top_mean", "top_scale")}
    for start in range(0, len(images), batch_size):
        batch = inputs.check_images(model.config, images[start:start + batch_size])
        for key, value in encode_layers(model, inputs.scale(model.config, batch)).items():
            parts[key].append(np.asarray(value, np.float32))
    layers = {key: np.concatenate(value) for key, value in parts.items()}
    num = len(images)
    eps = tf.random.stateless_normal([num, samples_per_image, model.noise_size],
                                     seed=tf.constant(seed, tf.int32), dtype=tf.float32)
    eps = tf.reshape(eps, [num * samples_per_image, model.noise_size])
    means = np.repeat(layers["mean"], samples_per_image, axis=0)  # image-major rows
    scales = np.repeat(layers["scale"], samples_per_image, axis=0)
    eps1, eps2 = eps[:, :latent_size], eps[:, latent_size:]
    z1 = means + scales * eps1  # float32, as the model samples
    log_q1 = tf.reduce_sum(-0.5 * tf.square(eps1) - tf.math.log(scales) - HALF_LOG_TWO_PI,
                           axis=-1)
    _, _, _, kl_per_layer = latent_terms(model.hierarchy, model.prior, z1, log_q1, eps2)
    kl_per_layer = kl_per_layer.numpy().astype(np.float64)

    # log q(z1_s | x_j) for all pairs, in blocks (diagnostics' bounded-memory helpers).
    means64, scales64 = diagnostics._gaussian_posteriors(layers["mean"], layers["scale"])
    z64 = np.asarray(z1, np.float64)
    owner = np.repeat(np.arange(num), samples_per_image)
    log_norm = np.sum(np.log(scales64), axis=-1) + latent_size * HALF_LOG_TWO_PI
    chunk = max(1, diagnostics._MAX_BLOCK_ENTRIES // (num * latent_size))
    own, marginal = [], []
    for start in range(0, len(z64), chunk):
        log_q_all = diagnostics._log_q_block(z64[start:start + chunk], means64, scales64,
                                             log_norm)
        own.append(log_q_all[np.arange(len(log_q_all)), owner[start:start + chunk]])
        marginal.append(diagnostics._logsumexp(log_q_all, axis=1) - math.log(num))
    mutual_information = float(np.mean(np.concatenate(own) - np.concatenate(marginal)))
    average_kl = float(np.mean(kl_per_layer.sum(axis=-1)))
    count1, variances1 = diagnostics.active_units(layers["mean"], threshold)
    count2, variances2 = diagnostics.active_units(layers["top_mean"], threshold)
    return {
        "kl_z1": float(np.mean(kl_per_layer[:, 0])),
        "kl_z2": float(np.mean(kl_per_layer[:, 1])),
        "active_units": count1, "active_unit_variances": variances1,
        "active_units_z2": count2, "active_unit_variances_z2": variances2,
        "active_unit_threshold": float(threshold),
        "average_kl": average_kl, "mutual_information": mutual_information,
        "marginal_kl": average_kl - mutual_information, "log_n": math.log(num),
        "num_images": int(num), "samples_per_image": int(samples_per_image),
    }
