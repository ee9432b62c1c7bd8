"""Training objectives built from per-image ELBO terms (all in nats).

    ELBO(x) = E_q[log p(x|z)] - E_q[log q(z|x) - log p(z)] = -(recon + kl)

Free bits (Kingma et al. 2016, used by Chen et al. 2017): the KL is split into groups j of
latent dimensions and each group pays at least lambda nats on average over the batch,

    KL_free = sum_j max(lambda, E_batch[KL_j]),

so the optimiser has no gain from pushing a group's rate below lambda (which would invite
posterior collapse early in training). Soft free bits (Chen et al. 2017, CIFAR) instead
weight the KL by gamma in (0, 1]: gamma is raised 10% when KL > 1.05 * lambda_total and
lowered 10% when KL < lambda_total.
"""

from __future__ import annotations

import tensorflow as tf

SOFT_FREE_BITS_STEP = 1.1
SOFT_FREE_BITS_SLACK = 1.05
MIN_KL_WEIGHT = 1e-3


def free_bits_kl(kl_per_group, free_bits):
    """sum_j max(lambda, mean_batch KL_j) for `kl_per_group` [B, G] -> scalar (nats)."""
    mean_kl = tf.reduce_mean(kl_per_group, axis=0)
    return tf.reduce_sum(tf.maximum(mean_kl, tf.cast(free_bits, mean_kl.dtype)))


def update_soft_kl_weight(kl_weight, mean_kl, target_kl):
    """New gamma: x1.1 if KL > 1.05*target, /1.1 if KL < target, clipped to [1e-3, 1]."""
    raised = tf.minimum(kl_weight * SOFT_FREE_BITS_STEP, 1.0)
    lowered = tf.maximum(kl_weight / SOFT_FREE_BITS_STEP, MIN_KL_WEIGHT)
    return tf.where(mean_kl > SOFT_FREE_BITS_SLACK * target_kl, raised,
                    tf.where(mean_kl < target_kl, lowered, kl_weight))


def kl_scale(step, kl_weight=1.0, warmup_steps=0):
    """beta * min(1, step / warmup_steps): beta-VAE weight with a linear KL warm-up."""
    scale = tf.constant(float(kl_weight), tf.float32)
    if warmup_steps > 0:
        progress = tf.cast(step, tf.float32) / float(warmup_steps)
        scale = scale * tf.minimum(progress, 1.0)
    return scale


def training_loss(recon, kl, kl_per_group, mode, free_bits, kl_weight):
    """Mean loss over the batch (nats per image) that the optimiser minimises.

        loss = E_batch[recon] + kl_weight * KL_term,
        KL_term = sum_j max(lambda, E_batch[KL_j])  (hard free bits) or E_batch[KL],

    recon, kl: [B]; kl_per_group: [B, G]; mode: "none" | "hard" | "soft"; kl_weight is the
    product of beta, the warm-up factor and (soft free bits) gamma. The reported ELBO is
    never modified; only the gradient signal changes.
    """
    mean_recon = tf.reduce_mean(recon)
    kl_weight = tf.stop_gradient(tf.cast(kl_weight, mean_recon.dtype))
    if mode == "hard" and free_bits > 0:
        return mean_recon + kl_weight * free_bits_kl(kl_per_group, free_bits)
    return mean_recon + kl_weight * tf.reduce_mean(kl)


def iwae_bound(log_weights):
    """log (1/K) sum_k w_k for log_weights [K, B] -> [B] (Burda et al. 2016); K=1: ELBO."""
    num_samples = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_samples)
