"""Latent-code diagnostics: per-dimension KL, active units and ELBO surgery.

Pure functions on arrays (numpy or tensors; computed in float64 numpy) plus
``model_diagnostics``, a thin wrapper that takes a VLAE and a set of images.

    per_dimension_kl(mean, scale)            -> [D]  KL(q(z_d|x) || N(0, 1)), batch average
    active_units(means, threshold=0.01)      -> (count, variances [D])
    elbo_surgery(means, scales, z, log_p_z)  -> {average_kl, mutual_information,
                                                 marginal_kl, log_n, ...}
    model_diagnostics(model, images, seed)   -> all of the above for a model

All quantities are in nats. ``json_ready`` turns a result into plain Python values
(lists / floats / ints) for JSON logs.

References:
  Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
    ICLR 2016 (arXiv:1509.00519), sec. 5.2 (active units).
  M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
    variational evidence lower bound", NIPS 2016 Workshop on Advances in
    Approximate Bayesian Inference (index-code mutual information).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import numpy as np
import tensorflow as tf

__all__ = ["per_dimension_kl", "active_units", "elbo_surgery", "model_diagnostics",
           "json_ready"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
# log q(z_s | x_j) is evaluated for all sample/posterior pairs in blocks of at most this
# many float64 entries of [samples, N, D] (32 MiB), so memory stays bounded for any N.
_MAX_BLOCK_ENTRIES = 1 << 22


def _as_float64(name, values, rank=None):
    array = np.asarray(values.numpy() if tf.is_tensor(values) else values, dtype=np.float64)
    if rank is not None and array.ndim != rank:
        raise ValueError(f"`{name}` must have rank {rank}; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains non-finite values.")
    return array


def _gaussian_posteriors(means, scales):
    """Validated float64 ``(means, scales)`` of shape [N, D] with scales > 0."""
    means = _as_float64("means", means, rank=2)
    scales = _as_float64("scales", scales, rank=2)
    if means.shape != scales.shape:
        raise ValueError(f"`means` and `scales` must have the same shape [N, D]; got "
                         f"{means.shape} and {scales.shape}.")
    if means.shape[0] < 1:
        raise ValueError("`means` and `scales` must hold at least one posterior (N >= 1).")
    if np.any(scales <= 0):
        raise ValueError("`scales` must be > 0.")
    return means, scales


def per_dimension_kl(mean, scale) -> np.ndarray:
    """Average over the batch of ``KL(N(mean_d, scale_d^2) || N(0, 1))`` per dimension.

        KL_d = 0.5 * (mean_d^2 + scale_d^2 - 1) - log scale_d        (closed form)

    mean, scale: ``[B, D]`` (diagonal Gaussian posteriors)  ->  ``[D]`` (nats).
    The sum over d is the total analytic ``KL(q(z|x) || N(0, I))`` averaged over the
    batch. This is exact only for the standard-normal prior: for a learnt prior
    (AF, MoG, VampPrior) ``p(z)`` does not factorise over dimensions, so no exact
    per-dimension split exists; the values then say how far each dimension's
    posterior is from N(0, 1) (a per-dimension usage indicator), and only the
    total Monte Carlo KL of ``elbo_surgery`` is the model's KL.
    """
    mean, scale = _gaussian_posteriors(mean, scale)
    kl = 0.5 * (np.square(mean) + np.square(scale) - 1.0) - np.log(scale)
    return kl.mean(axis=0)


def active_units(means, threshold: float = 0.01) -> Tuple[int, np.ndarray]:
    """Number of active latent units (Burda et al. 2016, sec. 5.2):

        A_d = Var_x( E_{q(z|x)}[z_d] ),   unit d is active iff A_d > threshold.

    means: ``[N, D]`` posterior means ``E_q[z | x_n]`` over a data set (population
    variance over the N images, ``ddof=0``). Returns ``(count, A [D])``. An
    inactive unit's posterior mean does not depend on x: it carries no
    information about the image.
    """
    means = _as_float64("means", means, rank=2)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
            or not threshold >= 0:
        raise ValueError(f"`threshold` must be a number >= 0; got {threshold!r}.")
    variances = means.var(axis=0)
    return int(np.sum(variances > threshold)), variances


def _log_q_block(z, means, scales, log_norm):
    """``log N(z_s; means_j, diag(scales_j^2))`` for all pairs: z [S, D] -> [S, N]."""
    standardised = (z[:, None, :] - means[None]) / scales[None]  # [S, N, D]
    return -0.5 * np.sum(np.square(standardised), axis=-1) - log_norm[None]


def _logsumexp(values, axis):
    peak = np.max(values, axis=axis, keepdims=True)
    return np.squeeze(peak, axis) + np.log(np.sum(np.exp(values - peak), axis=axis))


def elbo_surgery(means, scales, z_samples, log_p_z: Callable, chunk_size: int = None
                 ) -> Dict[str, float]:
    """ELBO surgery (Hoffman & Johnson 2016) on a data subset of N images.

    With the aggregate posterior ``q(z) = (1/N) sum_j q(z|x_j)`` and the index
    posterior ``q(i|z) = q(z|x_i) / (N q(z))``, the average KL term of the ELBO splits
    into the index-code mutual information and the marginal KL:

        (1/N) sum_i KL(q(z|x_i) || p(z)) = I(i; z) + KL(q(z) || p(z)),
        I(i; z) = log N - E_{q(z)} H[q(i|z)]  (in [0, log N]).

    Monte Carlo with samples ``z_im ~ q(z|x_i)``, the same draws in every term:

        average_kl         = mean_im [log q(z_im|x_i) - log p(z_im)]
        mutual_information = mean_im [log q(z_im|x_i) - log q(z_im)]
                           = log N + mean_im log q(i|z_im)       (<= log N exactly)
        marginal_kl        = mean_im [log q(z_im) - log p(z_im)]

    so ``mutual_information + marginal_kl == average_kl`` up to float64 rounding.
    ``log q(z)`` is the exact mixture over the N posteriors (no subsampling), so the
    terms are unbiased for the N-image empirical data distribution. The MI of the
    full data set can exceed ``log N``; pick N well above ``exp(MI)``. Individual
    estimates can fall slightly below 0 (Monte Carlo noise) when a term is ~0.

    Args:
      means, scales: ``[N, D]`` diagonal-Gaussian posteriors ``q(z|x_i)``.
      z_samples: ``[N, D]`` or ``[N, M, D]``; ``z_samples[i]`` ~ ``q(z|x_i)``.
      log_p_z: the prior's log-density, e.g. ``model.prior.log_prob``; called on
        float32 tensors ``[S, D]``, must return ``[S]``.
      chunk_size: samples per block (default: so a block holds <= 4M entries).

    Returns (floats, nats): ``average_kl``, ``mutual_information``, ``marginal_kl``,
    ``log_n`` (the MI's upper bound), ``num_images`` N, ``samples_per_image`` M.
    """
    means, scales = _gaussian_posteriors(means, scales)
    num_images, latent_size = means.shape
    z = _as_float64("z_samples", z_samples)
    if z.ndim == 2:
        z = z[:, None, :]
    if z.ndim != 3 or z.shape[0] != num_images or z.shape[2] != latent_size:
        raise ValueError(f"`z_samples` must have shape [N, D] or [N, M, D] with N={num_images},"
                         f" D={latent_size}; got {np.shape(z_samples)}.")
    samples_per_image = z.shape[1]
    if samples_per_image < 1:
        raise ValueError("`z_samples` must hold at least one sample per image.")
    if not callable(log_p_z):
        raise ValueError(f"`log_p_z` must be callable (z [S, D] -> [S]); got {log_p_z!r}.")
    z = z.reshape(-1, latent_size)  # image-major: row s belongs to image s // M
    owner = np.repeat(np.arange(num_images), samples_per_image)
    if chunk_size is None:
        chunk_size = max(1, _MAX_BLOCK_ENTRIES // (num_images * latent_size))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an int >= 1; got {chunk_size!r}.")

    log_norm = np.sum(np.log(scales), axis=-1) + latent_size * _HALF_LOG_TWO_PI  # [N]
    log_q_own, log_q_marginal, log_p = [], [], []
    for start in range(0, len(z), chunk_size):
        block = z[start:start + chunk_size]
        log_q_all = _log_q_block(block, means, scales, log_norm)  # [S, N]
        # The own-posterior term is read off the same matrix as the mixture, so the
        # terms cancel exactly in MI + marginal KL = average KL.
        log_q_own.append(log_q_all[np.arange(len(block)), owner[start:start + chunk_size]])
        log_q_marginal.append(_logsumexp(log_q_all, axis=1) - math.log(num_images))
        prior_values = log_p_z(tf.constant(block, tf.float32))
        prior_values = np.asarray(
            prior_values.numpy() if tf.is_tensor(prior_values) else prior_values, np.float64)
        if prior_values.shape != (len(block),):
            raise ValueError(f"`log_p_z` must return shape [{len(block)}] for z "
                             f"[{len(block)}, {latent_size}]; got {prior_values.shape}.")
        log_p.append(prior_values)
    log_q_own = np.concatenate(log_q_own)
    log_q_marginal = np.concatenate(log_q_marginal)
    log_p = np.concatenate(log_p)
    if not np.all(np.isfinite(log_p)):
        raise ValueError("`log_p_z` returned non-finite log-densities.")
    return {
        "average_kl": float(np.mean(log_q_own - log_p)),
        "mutual_information": float(np.mean(log_q_own - log_q_marginal)),
        "marginal_kl": float(np.mean(log_q_marginal - log_p)),
        "log_n": math.log(num_images),
        "num_images": int(num_images),
        "samples_per_image": int(samples_per_image),
    }


def _encode_in_batches(model, images, batch_size):
    means, scales = [], []
    for start in range(0, len(images), batch_size):
        mean, scale = model.encode(images[start:start + batch_size])
        means.append(np.asarray(mean, np.float32))
        scales.append(np.asarray(scale, np.float32))
    return np.concatenate(means), np.concatenate(scales)


def checked_batch(images, batch_size, samples_per_image) -> np.ndarray:
    """`images` as a non-empty numpy batch [N, H, W, C]; ValueError for it or for a
    batch_size / samples_per_image that is not an int >= 1 (the diagnostics' arguments)."""
    for name, value in (("batch_size", batch_size), ("samples_per_image", samples_per_image)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
    images = images.numpy() if tf.is_tensor(images) else np.asarray(images)
    if images.ndim != 4 or len(images) < 1:
        raise ValueError(f"`images` must be a non-empty batch [N, H, W, C]; got shape "
                         f"{images.shape}.")
    return images


def model_diagnostics(model, images, seed, batch_size: int = 256, samples_per_image: int = 1,
                      threshold: float = 0.01) -> dict:
    """Per-dimension KL, active units and ELBO surgery of ``model`` on ``images``.

    Uses ``model.encode(images) -> (mean, scale)`` (the diagonal Gaussian
    ``q(z|x)``, run ``batch_size`` images at a time) and ``model.prior.log_prob``.
    Surgery samples ``z = mean + scale * eps`` in float32 (like the model) with
    ``eps = stateless_normal([N, samples_per_image, D], seed)``. Its cost is
    O(N^2 M D): N of a few thousand images is practical on a CPU.

    Models with an IAF posterior are refused (ValueError): their ``q(z|x)`` is the
    flow applied to the base Gaussian that ``encode`` returns, and evaluating
    ``q(z|x_j)`` at another image's sample would need a sequential flow inversion
    for every pair (i, j). The base Gaussian's numbers would describe a different
    posterior from the one in the model's KL, so none are reported.

    Args:
      model: a VLAE with a latent code (``config.use_latent``).
      images: uint8 ``[N, H, W, C]`` (array or tensor; N >= 2 for a useful MI).
      seed: int32 ``[2]`` (or anything ``tf.constant`` takes) for the surgery samples.
      batch_size: images per encoder call.
      samples_per_image: M, surgery samples per image.
      threshold: active-unit threshold on ``Var_x E[z_d|x]``.

    Returns a dict: ``per_dimension_kl`` [D] (vs N(0, 1); exact per dimension only
    for the standard-normal prior, see ``per_dimension_kl``), ``kl_to_standard_normal``
    (its sum), ``active_units`` (int), ``active_unit_variances`` [D],
    ``active_unit_threshold``, and the ``elbo_surgery`` terms (``average_kl`` is the
    Monte Carlo KL to the model's own prior). A two-layer model (config.latent_layers=2)
    gets `vlae_tf.hierarchy.model_diagnostics` instead: the same surgery keys plus the
    per-layer KL (``kl_z1``, ``kl_z2``) and active units of each layer.
    """
    if getattr(model, "iaf", None) is not None:
        raise ValueError(
            "model_diagnostics: the model has an IAF posterior (config.iaf_steps > 0); "
            "ELBO surgery and active units need q(z|x) in closed form, and encode() returns "
            "only the base Gaussian before the flow. Use a model with iaf_steps=0.")
    if getattr(model, "prior", None) is None:
        raise ValueError("model_diagnostics: the model has no latent code / prior "
                         "(config.use_latent=False).")
    if getattr(model, "hierarchy", None) is not None:  # two latent layers: per-layer terms
        from vlae_tf import hierarchy
        return hierarchy.model_diagnostics(model, images, seed, batch_size=batch_size,
                                           samples_per_image=samples_per_image,
                                           threshold=threshold)
    images = checked_batch(images, batch_size, samples_per_image)
    means, scales = _encode_in_batches(model, images, batch_size)
    eps = tf.random.stateless_normal([len(images), samples_per_image, means.shape[1]],
                                     seed=tf.constant(seed, tf.int32), dtype=tf.float32).numpy()
    z = means[:, None, :] + scales[:, None, :] * eps  # float32, as the model samples
    kl_per_dim = per_dimension_kl(means, scales)
    count, variances = active_units(means, threshold)
    result = {
        "per_dimension_kl": kl_per_dim,
        "kl_to_standard_normal": float(kl_per_dim.sum()),
        "active_units": count,
        "active_unit_variances": variances,
        "active_unit_threshold": float(threshold),
    }
    result.update(elbo_surgery(means, scales, z, model.prior.log_prob))
    return result


def json_ready(diagnostics: dict) -> dict:
    """A copy with numpy arrays as lists and numpy scalars as Python numbers."""
    def convert(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        return value
    return {key: convert(value) for key, value in diagnostics.items()}
