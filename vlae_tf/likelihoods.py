"""Pixel likelihoods for the autoregressive decoder of the VLAE (Chen et al., ICLR 2017).

The decoder network emits, for every pixel, a parameter vector ``params[b, h, w, :]``; a
likelihood object turns it into ``log p(x[b, h, w, :])`` (nats, summed over channels) and
draws samples from it. Two likelihoods are provided:

* :class:`Bernoulli` for binary data (e.g. binarized MNIST), one logit per channel.
* :class:`DiscretizedLogisticMixture` for 8-bit data, the mixture of discretized logistics of
  PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017, "PixelCNN++: Improving the
  PixelCNN with discretized logistic mixture likelihood and other modifications"), including
  its linear coupling of the R, G, B means within one pixel.

Conventions shared by both:

* ``params``: float tensor ``[B, H, W, P]`` with ``P == num_params(C)``; any float dtype
  (float16 / bfloat16 params are cast to float32 before any arithmetic of ``log_prob``).
* ``sample`` does its arithmetic (noise, logits / T, Gumbel scores, scales, coupling,
  rounding to bins) in **float64** and returns float32. In float32, XLA and the plain kernels
  round the same formulas differently (fused multiply-adds, reciprocals, their own exp / log /
  tanh), so a draw whose decision variable lies within a float32 rounding error of its
  threshold could come out differently with and without ``jit_compile``; in float64 such
  ties are ~1e9 times rarer. Params given in float64 are used at full precision (the
  samplers of `vlae_tf.sampling` evaluate the decoder in float64 for the same reason).
* ``x``: tensor ``[B, H, W, C]`` holding *integer* pixel values in ``0..max_value`` (not
  rescaled); any numeric dtype, cast to float32.
* ``seed``: int32 / int64 tensor of shape ``[2]``; all randomness is ``tf.random.stateless_*``
  with the Philox algorithm, so the same seed gives the same sample on every device and under
  ``tf.function(jit_compile=True)``.

Everything is plain TF ops with static Python control flow only (loops over the static channel
count), so it traces into ``tf.function`` and compiles with XLA.
"""
import math
import numbers

import tensorflow as tf

__all__ = ["Bernoulli", "DiscretizedLogisticMixture", "get", "LIKELIHOODS"]

# Philox is implemented identically on CPU, GPU and XLA; "auto_select" may pick a different
# generator per device, which would break "same seed -> same sample" across devices.
_RNG_ALG = "philox"

# Uniforms use 23 random bits: u = (k + 1/2) / 2^23, k in 0..2^23-1. Every such value is exact in
# float32 and lies in [6e-8, 1 - 6e-8], i.e. clipped away from 0 and 1 by construction, so
# log(u) and log(1 - u) are always finite.
_UNIFORM_BITS = 23


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _check_positive_int(value, argument_name):
    # bool is an int subclass, but num_mixtures=True is certainly a bug.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{argument_name} must be an int >= 1, got {value!r} (type {type(value).__name__})")
    return int(value)


def _check_temperature(temperature):
    # Python / numpy scalars can be validated eagerly; tensors are trusted (a data-dependent
    # check would not be XLA-clean).
    if isinstance(temperature, numbers.Real) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return tf.cast(temperature, tf.float32)


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ValueError(f"seed must be an integer tensor of shape [2], got shape {seed.shape}")
    if not seed.dtype.is_integer:
        raise ValueError(f"seed must be an integer tensor of shape [2], got dtype {seed.dtype}")
    return seed


def _split_seed(seed, num):
    """Independent sub-seeds ``[num, 2]`` derived from ``seed`` (counter-based, stateless)."""
    return tf.random.experimental.stateless_split(seed, num=num, alg=_RNG_ALG)


def _stateless_uniform_open(shape, seed, dtype=tf.float32):
    """Uniform on the open interval (0, 1): ``(k + 1/2) / 2^23`` with k uniform 23-bit
    (exact in float32 and float64 alike).

    The raw Philox bits are drawn as uint32 and converted here rather than asking for float32
    from ``tf.random.stateless_uniform``: in TF 2.21 its bits-to-float conversion differs between
    the XLA and the plain kernels (same seed, different floats), while the uint32 bits agree, so
    this keeps "same seed -> same sample" true with and without ``jit_compile``.
    """
    bits = tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=_RNG_ALG)
    integer = tf.bitwise.right_shift(bits, tf.constant(32 - _UNIFORM_BITS, tf.uint32))
    return (tf.cast(integer, dtype) + 0.5) * (2.0 ** -_UNIFORM_BITS)


def _stateless_logistic_noise(shape, seed, dtype=tf.float32):
    """Standard logistic noise by inverse CDF: logit(u) = log u - log(1 - u)."""
    uniform = _stateless_uniform_open(shape, seed, dtype)
    return tf.math.log(uniform) - tf.math.log1p(-uniform)


def _stateless_gumbel_noise(shape, seed, dtype=tf.float32):
    """Standard Gumbel noise by inverse CDF: -log(-log u)."""
    uniform = _stateless_uniform_open(shape, seed, dtype)
    return -tf.math.log(-tf.math.log(uniform))


# Dtype of the sampling arithmetic (see the module docstring).
_SAMPLE_DTYPE = tf.float64


def _check_param_count(params, expected, channels):
    got = params.shape[-1]
    if got is not None and got != expected:
        raise ValueError(
            f"params last dimension: expected num_params({channels}) = {expected}, got {got} "
            f"(params shape {params.shape})")


def _static_channels(x):
    channels = x.shape[-1]
    if channels is None:
        raise ValueError(f"x must have a static channel (last) dimension, got shape {x.shape}")
    return channels


def _log1mexp_neg(log_d):
    """``log(1 - exp(-d))`` for ``d = exp(log_d) > 0``, accurate for every d.

    Takes ``log d`` (not d) so that d below the float32 range still gives the right answer,
    log d - d/2 + O(d^2). The two other regimes follow Maechler (2012, "Accurately computing
    log(1 - exp(-|a|))"): ``log(-expm1(-d))`` for d <= log 2 and ``log1p(-exp(-d))`` above.
    Each branch sees an input clamped to its own regime so the unselected branches of
    ``tf.where`` never produce inf/NaN (which would poison the gradient as 0 * inf).
    """
    tiny_threshold = -15.0               # d < 3e-7: the series is exact to float32 precision
    log_log2 = math.log(math.log(2.0))   # the Maechler switch point, d = log 2
    tiny_log_d = tf.minimum(log_d, tiny_threshold)
    tiny_branch = tiny_log_d - 0.5 * tf.exp(tiny_log_d)
    mid_log_d = tf.clip_by_value(log_d, tiny_threshold, log_log2)
    mid_branch = tf.math.log(-tf.math.expm1(-tf.exp(mid_log_d)))
    large_log_d = tf.clip_by_value(log_d, log_log2, 10.0)  # d > e^10: 1 - exp(-d) == 1
    large_branch = tf.math.log1p(-tf.exp(-tf.exp(large_log_d)))
    return tf.where(log_d < tiny_threshold, tiny_branch,
                    tf.where(log_d <= log_log2, mid_branch, large_branch))


# ----------------------------------------------------------------------------------------------
# Bernoulli
# ----------------------------------------------------------------------------------------------
class Bernoulli:
    """Independent Bernoulli per channel, parameterized by logits.

    ``log p(x) = sum_c [x_c log sigmoid(l_c) + (1 - x_c) log sigmoid(-l_c)]
               = -sum_c sigmoid_cross_entropy(labels=x_c, logits=l_c)``.
    """

    name = "bernoulli"
    max_value = 1

    def num_params(self, channels: int) -> int:
        """One logit per channel."""
        return _check_positive_int(channels, "channels")

    def _logits(self, params, channels, dtype=tf.float32):
        params = tf.cast(params, dtype)  # before arithmetic: float16 logits overflow
        _check_param_count(params, self.num_params(channels), channels)
        return params

    def log_prob(self, params, x):
        """``log p(x)`` in nats per pixel, summed over channels: ``[B, H, W]``."""
        x = tf.cast(x, tf.float32)
        logits = self._logits(params, _static_channels(x))
        # sigmoid_cross_entropy_with_logits is the overflow-free form of the equation above.
        return -tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=-1)

    def sample(self, params, seed, temperature=1.0):
        """Samples in {0, 1}, ``[B, H, W, C]`` float32; logits are divided by temperature.

        ``x = 1[l / T + logistic_noise > 0]``, which has P(x = 1) = sigmoid(l / T) and, unlike
        ``u < sigmoid(l / T)``, never rounds a tiny probability to 0 or 1.
        """
        temperature = tf.cast(_check_temperature(temperature), _SAMPLE_DTYPE)
        seed = _as_seed(seed)
        params = tf.convert_to_tensor(params)
        logits = self._logits(params, params.shape[-1], _SAMPLE_DTYPE)
        noise = _stateless_logistic_noise(tf.shape(logits), seed, _SAMPLE_DTYPE)
        return tf.cast(logits / temperature + noise > 0.0, tf.float32)

    def mean(self, params):
        """Expected value (probability of 1) per channel, ``[B, H, W, C]`` float32."""
        return tf.sigmoid(tf.cast(params, tf.float32))


# ----------------------------------------------------------------------------------------------
# Discretized logistic mixture (PixelCNN++)
# ----------------------------------------------------------------------------------------------
def _coupling_pairs(channels):
    """``(pair_index, target_channel, source_channel)`` for all source < target.

    Pair order is (1,0), (2,0), (2,1), ... so for RGB the coefficients are, as in PixelCNN++,
    c0: G <- R, c1: B <- R, c2: B <- G.
    """
    pairs = []
    for target in range(channels):
        for source in range(target):
            pairs.append((len(pairs), target, source))
    return pairs


class DiscretizedLogisticMixture:
    """Mixture of discretized logistics with linear channel coupling (Salimans et al. 2017).

    Pixels ``x in {0..255}`` are rescaled to ``y = 2 x / 255 - 1 in [-1, 1]``; bin ``x`` covers
    ``[y - 1/255, y + 1/255]`` except that the edge bins absorb the tails:

        P(x | mu, s) = sigmoid((y + 1/255 - mu) / s)                      x = 0
                     = 1 - sigmoid((y - 1/255 - mu) / s)                  x = 255
                     = sigmoid((y + 1/255 - mu) / s) - sigmoid((y - 1/255 - mu) / s)  otherwise

    Channels of one pixel are coupled autoregressively inside each mixture component k:

        mu_{k,c} = m_{k,c} + sum_{j < c} tanh(a_{k,c,j}) * y_j
        p(x) = sum_k pi_k prod_c P(x_c | mu_{k,c}, s_{k,c}),  pi = softmax(logits)

    (RGB: mu_G += c0 y_R, mu_B += c1 y_R + c2 y_G), which is how R, G, B of a pixel depend on
    each other although the network output at a pixel never sees that pixel.

    Parameter layout of the last axis (K = num_mixtures, C = channels):
    ``[logits (K) | means (C*K) | log_scales (C*K) | coupling (C(C-1)/2 * K)]``, each block
    channel-major ([c, k] -> c * K + k). P = K (1 + 2C + C(C-1)/2): 3K for C=1, 10K for C=3.

    ``coupled=False`` (the channel-autoregressive decoder, `vlae_tf.decoders.pixelcnnpp`):
    every sub-pixel has its own mixture, with its own component weights and no coupling,

        p(x) = prod_c sum_k pi_{c,k} P(x_c | m_{c,k}, s_{c,k}),

    since there the dependence of channel c on channels < c of the same pixel is in the
    network's parameters for c. Layout: one block of 3K per channel,
    ``[c=0: logits (K) | means (K) | log_scales (K) | c=1: ... ]``, P = 3K C; each block is a
    1-channel mixture (the same layout as ``coupled=True`` with C = 1), see `channel_params`.
    """

    name = "logistic_mixture"
    max_value = 255
    min_log_scale = -7.0  # as in PixelCNN++: keeps 1/s finite and gradients bounded

    def __init__(self, num_mixtures: int = 10, coupled: bool = True):
        self.num_mixtures = _check_positive_int(num_mixtures, "num_mixtures")
        if not isinstance(coupled, bool):
            raise ValueError(f"coupled: expected True or False; got {coupled!r}")
        self.coupled = coupled

    def __repr__(self):
        return (f"DiscretizedLogisticMixture(num_mixtures={self.num_mixtures}, "
                f"coupled={self.coupled})")

    def num_params(self, channels: int) -> int:
        """K * (1 + 2C + C(C-1)/2): logits, means, log-scales, coupling coefficients;
        3K C without coupling (a mixture per channel)."""
        channels = _check_positive_int(channels, "channels")
        if not self.coupled:
            return 3 * self.num_mixtures * channels
        return self.num_mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)

    def channel_params(self, params, channel):
        """``coupled=False``: the parameters [..., 3K] of sub-pixel `channel` (an int or a
        scalar tensor), a 1-channel mixture for `log_prob` / `sample`."""
        if self.coupled:
            raise ValueError("channel_params: only for coupled=False (with coupling, a "
                             "channel's mean depends on the other channels' values)")
        # A gather, not a slice: the last dimension stays static (3K) for a tensor channel.
        return tf.gather(self._per_channel(params), channel, axis=-2)

    def _per_channel(self, params):
        """``coupled=False``: params [..., 3K C] -> [..., C, 3K], one 1-channel mixture each."""
        params = tf.convert_to_tensor(params)
        size = 3 * self.num_mixtures
        if params.shape[-1] is None or params.shape[-1] % size:
            raise ValueError(
                f"params last dimension: expected a multiple of 3 * num_mixtures = {size} "
                f"(coupled=False), got {params.shape[-1]} (params shape {params.shape})")
        channels = params.shape[-1] // size
        return tf.reshape(params, tf.concat([tf.shape(params)[:-1], [channels, size]], 0))

    def _channels_from_params(self, params):
        num_params = params.shape[-1]
        if not self.coupled:
            return self._per_channel(params).shape[-2] if num_params is None \
                else num_params // (3 * self.num_mixtures)
        if num_params is None:
            raise ValueError(f"params must have a static last dimension, got {params.shape}")
        channels = 1
        # num_params(C) is strictly increasing in C, so the first C that is not too small is
        # the only candidate.
        while self.num_params(channels) < num_params:
            channels += 1
        if self.num_params(channels) != num_params:
            raise ValueError(
                f"params last dimension must be num_params(C) for some channel count C "
                f"(num_params(1) = {self.num_params(1)}, num_params(3) = {self.num_params(3)} "
                f"with num_mixtures={self.num_mixtures}), got {num_params}")
        return channels

    def _split_params(self, params, channels, dtype=tf.float32):
        """``logits [..., K]``, ``means, log_scales [..., C, K]``, coupling coefficients
        ``[..., C(C-1)/2, K]`` (already through tanh), in `dtype` (float32: log_prob)."""
        params = tf.cast(params, dtype)  # before arithmetic, whatever the compute dtype
        _check_param_count(params, self.num_params(channels), channels)
        num_mixtures = self.num_mixtures
        num_pairs = channels * (channels - 1) // 2
        batch_shape = tf.shape(params)[:-1]

        def block(start, rows):
            flat = params[..., start:start + rows * num_mixtures]
            return tf.reshape(flat, tf.concat([batch_shape, [rows, num_mixtures]], axis=0))

        logits = params[..., :num_mixtures]
        means = block(num_mixtures, channels)
        log_scales = block(num_mixtures * (1 + channels), channels)
        coupling = tf.tanh(block(num_mixtures * (1 + 2 * channels), num_pairs))
        log_scales = tf.maximum(log_scales, self.min_log_scale)
        return logits, means, log_scales, coupling

    def _rescale(self, x):
        return x * (2.0 / self.max_value) - 1.0

    def _channel_component_log_probs(self, params, x):
        """``log P(x_c | x_<c, component k)`` for every channel and component: ``[..., C, K]``
        and the mixture logits ``[..., K]``."""
        x = tf.cast(x, tf.float32)
        channels = _static_channels(x)
        logits, means, log_scales, coupling = self._split_params(params, channels)
        x_rescaled = self._rescale(x)

        coupled_means = [means[..., channel, :] for channel in range(channels)]
        for pair, target, source in _coupling_pairs(channels):
            coupled_means[target] += coupling[..., pair, :] * x_rescaled[..., source:source + 1]
        # Per channel, then stacked: every entry then has the full broadcast shape of x and
        # params (the uncoupled R mean alone would keep params' shape).
        centred = tf.stack([x_rescaled[..., channel:channel + 1] - coupled_means[channel]
                            for channel in range(channels)], axis=-2)

        half_bin = 1.0 / self.max_value
        inv_scale = tf.exp(-log_scales)
        upper_arg = inv_scale * (centred + half_bin)   # (upper bin edge - mu) / s
        lower_arg = inv_scale * (centred - half_bin)   # (lower bin edge - mu) / s
        log_cdf_upper = tf.math.log_sigmoid(upper_arg)        # x = 0 bin: log F(upper)
        log_survival_lower = tf.math.log_sigmoid(-lower_arg)  # x = 255: log(1 - F(lower))
        # Interior: sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(-(a - b)))
        # exactly, with a - b = (2/255) / s. In log space every factor is computed without
        # cancellation, so this is accurate in the far tails too and needs neither the
        # pdf-at-bin-centre fallback of PixelCNN++ nor an epsilon inside a log.
        log_bin_width_over_scale = math.log(2.0 * half_bin) - log_scales  # log(a - b)
        log_interior = (log_cdf_upper + log_survival_lower
                        + _log1mexp_neg(log_bin_width_over_scale))
        x_expanded = x[..., None]
        log_probs = tf.where(
            x_expanded < 0.5, log_cdf_upper,
            tf.where(x_expanded > self.max_value - 0.5, log_survival_lower, log_interior))
        return log_probs, logits

    def log_prob(self, params, x):
        """``log p(x)`` in nats per pixel (all channels jointly): ``[B, H, W]`` float32.

        ``log p(x) = logsumexp_k [log_softmax(logits)_k + sum_c log P(x_c | mu_{k,c}, s_{k,c})]``
        (``coupled=False``: the sum over c of each channel's own 1-channel mixture).
        """
        if not self.coupled:
            x = tf.cast(x, tf.float32)
            channels = _static_channels(x)
            _check_param_count(params, self.num_params(channels), channels)
            per_channel = self._per_channel(params)
            log_probs, logits = self._channel_component_log_probs(per_channel, x[..., None])
            return tf.reduce_sum(tf.reduce_logsumexp(
                tf.nn.log_softmax(logits, axis=-1) + tf.reduce_sum(log_probs, axis=-2),
                axis=-1), axis=-1)
        log_probs, logits = self._channel_component_log_probs(params, x)
        return tf.reduce_logsumexp(
            tf.nn.log_softmax(logits, axis=-1) + tf.reduce_sum(log_probs, axis=-2), axis=-1)

    def sample(self, params, seed, temperature=1.0):
        """Samples ``[B, H, W, C]`` float32 with integer values in 0..255.

        Component k ~ Categorical(softmax(logits / T)) by Gumbel-max; then channel by channel
        (R, then G given R, then B given R, G): ``y_c = mu_{k,c} + T s_{k,c} logit(u)`` with
        mu_{k,c} coupled to the already *quantized* y_<c (exactly the conditioning used by
        log_prob), quantized to the nearest bin and clipped to [0, 255]. Rounding a continuous
        logistic draw to the nearest bin (edges absorbing the tails) is an exact draw from the
        discretized logistic. T = 1 samples the model exactly.

        ``coupled=False``: every channel draws its own component and value, independently
        (the network has already conditioned channel c's params on channels < c; a
        sub-pixel sampler passes one channel's `channel_params` at a time).
        """
        if not self.coupled:
            per_channel = self._per_channel(params)
            draws = self._sample(per_channel, seed, temperature, channels=1)  # [..., C, 1]
            return draws[..., 0]
        params = tf.convert_to_tensor(params)
        return self._sample(params, seed, temperature, self._channels_from_params(params))

    def _sample(self, params, seed, temperature, channels):
        dtype = _SAMPLE_DTYPE
        temperature = tf.cast(_check_temperature(temperature), dtype)
        seed = _as_seed(seed)
        logits, means, log_scales, coupling = self._split_params(params, channels, dtype)
        component_seed, noise_seed = tf.unstack(_split_seed(seed, 2))

        gumbel = _stateless_gumbel_noise(tf.shape(logits), component_seed, dtype)
        component = tf.argmax(logits / temperature + gumbel, axis=-1)
        one_hot = tf.one_hot(component, self.num_mixtures, dtype=dtype)[..., None, :]

        def pick(per_component):  # [..., rows, K] -> [..., rows]
            return tf.reduce_sum(per_component * one_hot, axis=-1)

        chosen_means, chosen_coupling = pick(means), pick(coupling)
        # An upper clamp too, only here: scale e^30 already puts all mass on the edge bins,
        # and it keeps inf * (noise == 0) from producing NaN.
        chosen_scales = tf.exp(tf.minimum(pick(log_scales), 30.0)) * temperature
        noise = _stateless_logistic_noise(tf.shape(chosen_means), noise_seed, dtype)

        sampled_rescaled = []
        sampled_pixels = []
        for channel in range(channels):
            mean = chosen_means[..., channel]
            for pair, target, source in _coupling_pairs(channels):
                if target == channel:
                    mean += chosen_coupling[..., pair] * sampled_rescaled[source]
            continuous = mean + chosen_scales[..., channel] * noise[..., channel]
            pixel = tf.clip_by_value(
                tf.round((continuous + 1.0) * (self.max_value / 2.0)), 0.0, float(self.max_value))
            sampled_pixels.append(pixel)
            sampled_rescaled.append(self._rescale(pixel))
        return tf.cast(tf.stack(sampled_pixels, axis=-1), tf.float32)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
LIKELIHOODS = {
    Bernoulli.name: Bernoulli,
    DiscretizedLogisticMixture.name: DiscretizedLogisticMixture,
}


def get(name: str, **kwargs):
    """Instantiate a likelihood by name: ``"bernoulli"`` or ``"logistic_mixture"``.

    Keyword arguments go to the constructor (e.g. ``num_mixtures=10`` for the mixture).
    """
    if name not in LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood name {name!r}; valid names: {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](**kwargs)
