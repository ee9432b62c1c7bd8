"""Training objectives built from per-image ELBO terms (all in nats).

    ELBO(x) = E_q[log p(x|z)] - E_q[log q(z|x) - log p(z)] = -(recon + kl)

Free bits (Kingma et al. 2016, used by Chen et al. 2017): the KL is split into groups j of
latent dimensions and each group pays at least lambda nats on average over the batch,

    KL_free = sum_j max(lambda, E_batch[KL_j]),

so the optimiser has no gain from pushing a group's rate below lambda (which would invite
posterior collapse early in training). Soft free bits (Chen et al. 2017, CIFAR) instead
weight the KL by gamma in (0, 1]: gamma is raised 10% when KL > 1.05 * lambda_total and
lowered 10% when KL < lambda_total.

Both rules read the KL averaged over the *global* batch. Under a distribution strategy a
replica sees only its share, so `global_batch_mean` all-reduces the sums and counts first:
max(lambda, mean) of each replica's share is a different objective from max(lambda, mean)
of the batch whenever the replicas fall on different sides of lambda.

Free bits as a warm-up (`free_bits_lambda`): lambda may follow a schedule of the training
step t (1-based, the model's `noise_step`, the counter of `kl_scale`), held for H steps and
then annealed linearly to 0 over M steps,

    lambda(t) = lambda * clip(1 - (t - H) / M, 0, 1)      (M > 0),
    lambda(t) = lambda                                     (M = 0: a permanent floor),

and a step whose lambda(t) is 0 trains on the plain ELBO (soft free bits: the target is 0,
so gamma rises to 1).

The capacity-controlled objective (Burgess et al. 2018, `capacity_loss`) replaces the KL
term by a penalty on the distance of the global-batch KL from a capacity C(t) that grows
linearly from C_start to C_end nats over N steps:

    loss = E_batch[recon] + gamma * |E_batch[KL] - C(t)|,
    C(t) = C_start + (C_end - C_start) * min(1, t / N)     (N = 0: C(t) = C_end).
"""

from __future__ import annotations

import tensorflow as tf

SOFT_FREE_BITS_STEP = 1.1
SOFT_FREE_BITS_SLACK = 1.05
MIN_KL_WEIGHT = 1e-3


def global_batch_mean(values):
    """Mean over axis 0 of the global batch, `values` [B, ...] -> [...], in a replica.

    Without a strategy (or with one replica) this is `tf.reduce_mean(values, axis=0)`,
    unchanged. With R replicas the value is sum / count all-reduced over the replicas, the
    same on every replica, and the gradient with respect to this replica's values is R / N
    per image (N the global count). `VLAE.train_step` divides each replica's loss by R and
    the optimizer sums the replicas' gradients, so a term f(global_batch_mean(v)) gets
    sum_r (1/R) f'(m) (R/N) dv_r = f'(m) dm: the single-device gradient, also for a
    non-linear f such as the free-bits hinge and also when the replicas' shares differ.
    """
    replica = tf.distribute.get_replica_context()
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replica is None or replicas == 1:
        return tf.reduce_mean(values, axis=0)
    local_sum = tf.reduce_sum(values, axis=0)
    local_count = tf.cast(tf.shape(values)[0], values.dtype)
    # The all-reduced statistics are constants for the tape: each replica differentiates
    # only its own share (the gradient sum over replicas does the rest).
    total, count = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                      [tf.stop_gradient(local_sum), local_count])
    share = local_sum * (replicas / count)
    # value: total / count exactly (share - stop_gradient(share) is 0); gradient: share's.
    return tf.stop_gradient(total / count) + (share - tf.stop_gradient(share))


def free_bits_kl(kl_per_group, free_bits):
    """sum_j max(lambda, mean_batch KL_j) for `kl_per_group` [B, G] -> scalar (nats).

    The mean is over the global batch (`global_batch_mean`) when run in a replica."""
    mean_kl = global_batch_mean(kl_per_group)
    return tf.reduce_sum(tf.maximum(mean_kl, tf.cast(free_bits, mean_kl.dtype)))


def update_soft_kl_weight(kl_weight, mean_kl, target_kl):
    """New gamma: x1.1 if KL > 1.05*target, /1.1 if KL < target, clipped to [1e-3, 1].

    `mean_kl` must be the mean over the global batch (`global_batch_mean`), so that every
    replica computes the same gamma (the variable keeps the first replica's)."""
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


def free_bits_lambda(step, free_bits, hold_steps=0, anneal_steps=0):
    """The free-bits floor lambda(t) (nats per group) at training step t (1-based).

        lambda(t) = free_bits * clip(1 - (t - hold_steps) / anneal_steps, 0, 1),

    i.e. free_bits for t <= hold_steps, then linearly down to 0 at t = hold_steps +
    anneal_steps, 0 after. anneal_steps = 0 is no schedule: free_bits at every step (the
    permanent floor). A float32 scalar tensor; a function of the step only, so a resumed
    run (whose step counter is restored) continues the same schedule."""
    value = tf.constant(float(free_bits), tf.float32)
    if anneal_steps > 0:
        progress = (tf.cast(step, tf.float32) - float(hold_steps)) / float(anneal_steps)
        value = value * tf.clip_by_value(1.0 - progress, 0.0, 1.0)
    return value


def capacity_schedule(step, start, end, steps=0):
    """The capacity C(t) in nats at training step t (1-based) (Burgess et al. 2018):

        C(t) = start + (end - start) * min(1, t / steps),   steps = 0: C(t) = end.

    A float32 scalar tensor, a function of the step only (exact on resume)."""
    if steps == 0:
        return tf.constant(float(end), tf.float32)
    progress = tf.minimum(tf.cast(step, tf.float32) / float(steps), 1.0)
    return float(start) + (float(end) - float(start)) * progress


def capacity_loss(recon, kl, capacity, gamma):
    """The capacity-controlled objective (Burgess et al. 2018), nats per image:

        loss = E_batch[recon] + gamma * |KL_g - C|,

    KL_g the mean KL over the *global* batch (`global_batch_mean`: |.| is not linear, so
    per-replica terms would be another objective), C = `capacity` (`capacity_schedule`).
    Its gradient is grad E[recon] + gamma * sign(KL_g - C) * grad KL_g: the KL is pushed
    down while above C and up while below it. recon, kl: [B]."""
    mean_recon = tf.reduce_mean(recon)
    mean_kl = global_batch_mean(kl)
    capacity = tf.cast(capacity, mean_kl.dtype)
    return mean_recon + tf.cast(gamma, mean_recon.dtype) * tf.abs(mean_kl - capacity)


def training_loss(recon, kl, kl_per_group, mode, free_bits, kl_weight,
                  scheduled_free_bits=None):
    """Mean loss over the batch (nats per image) that the optimiser minimises.

        loss = E_batch[recon] + kl_weight * KL_term,
        KL_term = sum_j max(lambda, E_batch[KL_j])  (hard free bits) or E_batch[KL],

    recon, kl: [B]; kl_per_group: [B, G]; mode: "none" | "hard" | "soft"; kl_weight is the
    product of beta, the warm-up factor and (soft free bits) gamma. The reported ELBO is
    never modified; only the gradient signal changes.

    `scheduled_free_bits`: lambda(t) (`free_bits_lambda`, a tensor) for a free-bits
    schedule, used in the hinge instead of `free_bits` (which still says whether free bits
    are on); where lambda(t) = 0 the KL term is E_batch[KL], exactly the ELBO (a hinge at 0
    would clip a negative Monte Carlo batch KL). None: the constant `free_bits`, as before.
    """
    mean_recon = tf.reduce_mean(recon)
    kl_weight = tf.stop_gradient(tf.cast(kl_weight, mean_recon.dtype))
    if mode == "hard" and free_bits > 0:
        if scheduled_free_bits is None:
            return mean_recon + kl_weight * free_bits_kl(kl_per_group, free_bits)
        floor = tf.cast(scheduled_free_bits, mean_recon.dtype)
        kl_term = tf.where(floor > 0, free_bits_kl(kl_per_group, floor), tf.reduce_mean(kl))
        return mean_recon + kl_weight * kl_term
    return mean_recon + kl_weight * tf.reduce_mean(kl)


def iwae_bound(log_weights):
    """log (1/K) sum_k w_k for log_weights [K, B] -> [B] (Burda et al. 2016); K=1: ELBO."""
    num_samples = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_samples)
