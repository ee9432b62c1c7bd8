"""Importance-sampled marginal log-likelihood, in chunks with bounded memory.

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)   (Burda et al. 2016)

The estimate is a stochastic lower bound on log p(x) that tightens as K grows; K = 1 is the
single-sample ELBO (the same draw as `VLAE.elbo` with the same seed). Samples are processed
`chunk_size` at a time and folded into a running logsumexp, so memory is
O(chunk_size * batch) whatever K is. Sample k's noise depends only on (seed, k), so the
result does not depend on chunk_size.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

from vlae_tf import inputs

DEFAULT_CHUNK_SIZE = 64


def sample_noise(seed, sample_index, shape):
    """The noise of importance sample k depends only on (seed, k): results do not depend
    on chunk_size, and sample 0 is the draw `VLAE.elbo(x, seed)` uses."""
    sample_seed = tf.cond(
        sample_index > 0,
        lambda: tf.random.experimental.stateless_fold_in(seed, sample_index),
        lambda: seed)
    return tf.random.stateless_normal(shape, sample_seed)


def _chunk_log_weights(model, images, posterior, seed, start, num_in_chunk):
    """log w = log p(x|z) + log p(z) - log q(z|x) for samples start..start+k-1: [k, B]."""
    batch = tf.shape(images)[0]
    latent_size = model.config.latent_size
    eps = tf.map_fn(lambda index: sample_noise(seed, index, tf.stack([batch, latent_size])),
                    tf.range(start, start + num_in_chunk),
                    fn_output_signature=tf.TensorSpec([None, latent_size], tf.float32))
    eps = tf.reshape(eps, [-1, latent_size])

    def tile(tensor):  # [B, ...] -> [k*B, ...], sample-major to match eps
        return tf.reshape(tf.tile(tensor[None], [num_in_chunk] + [1] * tensor.shape.rank),
                          [-1] + tensor.shape[1:].as_list())

    z, log_q, _ = inputs.posterior_sample([tile(tensor) for tensor in posterior], eps,
                                          model.iaf)
    log_p_z = model.prior.log_prob(z)
    values = tile(tf.cast(images, tf.float32))
    params = model.pixelcnn([inputs.scale(model.config, values), model.latent_map(z)])
    log_p_x_given_z = tf.reduce_sum(model.likelihood.log_prob(params, values), axis=[1, 2])
    return tf.reshape(log_p_x_given_z + log_p_z - log_q, [num_in_chunk, batch])


def importance_log_likelihood(model, images, num_samples, chunk_size=None, seed=None):
    """Per-image log p(x) estimate in nats, [B] float32. See the module docstring."""
    if not _is_count(num_samples):  # numpy integers count; bools do not
        raise ValueError(f"num_samples: expected an int >= 1; got {num_samples!r}")
    num_samples = int(num_samples)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if not _is_count(chunk_size):
        raise ValueError(f"chunk_size: expected an int >= 1 or None; got {chunk_size!r}")
    chunk_size = int(chunk_size)
    chunk_size = min(chunk_size, num_samples)
    images = inputs.check_images(model.config, images)
    seed = inputs.make_seed(model.config.seed if seed is None else seed)
    if not model.config.use_latent:  # no latent: the likelihood is exact
        return model.elbo(images)["elbo"]

    function = _compiled_chunk(model)
    posterior = model.encoder(inputs.scale(model.config, images))
    total = None
    for start in range(0, num_samples, chunk_size):
        num_in_chunk = min(chunk_size, num_samples - start)
        log_weights = function(images, posterior, seed, tf.constant(start),
                               tf.constant(num_in_chunk))
        chunk_total = tf.reduce_logsumexp(log_weights, axis=0)
        total = chunk_total if total is None else tf.reduce_logsumexp(
            tf.stack([total, chunk_total]), axis=0)
    return total - math.log(num_samples)


def _is_count(value) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and value >= 1)


def _compiled_chunk(model):
    """One tf.function per model (retraced only per chunk length)."""
    function = getattr(model, "_importance_chunk_function", None)
    if function is None:
        function = tf.function(
            lambda images, posterior, seed, start, num: _chunk_log_weights(
                model, images, posterior, seed, start, num),
            reduce_retracing=True)
        model._importance_chunk_function = function
    return function
