"""VLAE: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) as a Keras 3 model.

    log p(x) >= ELBO(x) = E_{q(z|x)}[log p(x|z) + log p(z) - log q(z|x)] = -(recon + kl)

q(z|x): ResNet encoder -> diagonal Gaussian (+ optional IAF steps); p(z): standard Normal or
an autoregressive-flow (MAF) prior; p(x|z): a gated PixelCNN restricted to a window, so
global structure has to pass through z. The KL has no closed form with a flow, so it is the
Monte Carlo estimate log q(z|x) - log p(z) at the sampled z (one sample per image).

All numbers are nats per image unless the name says otherwise; bits_per_dim is
-ELBO / (H * W * C * ln 2). Randomness is stateless and explicit (`seed`, int32[2]) so that
every public method is reproducible, exportable and identical across runs.
"""

from __future__ import annotations

import inspect
import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from vlae_tf import decoder as decoder_lib
from vlae_tf import encoder as encoder_lib
from vlae_tf import estimators
from vlae_tf import hierarchy as hierarchy_lib
from vlae_tf import inputs
from vlae_tf import likelihoods
from vlae_tf import objectives
from vlae_tf import priors
from vlae_tf import sampling
from vlae_tf import spatial
from vlae_tf.callbacks import NonFiniteGuard
from vlae_tf.config import VLAEConfig
from vlae_tf.nn import layers as nn
from vlae_tf.optimizers import default_optimizer

# Re-exported: callers have used vlae_tf.model.make_seed.
make_seed = inputs.make_seed
HALF_LOG_TWO_PI = inputs.HALF_LOG_TWO_PI


@keras.saving.register_keras_serializable(package="vlae_tf")
class VLAE(keras.Model):
    """Variational Lossy Autoencoder. `VLAE(vlae_tf.presets.get("mnist_cpu"))`.

    Train with `model.compile()` (defaults to Adamax + EMA) and `model.fit(dataset)`, where
    the dataset yields uint8 images [B, H, W, C] or (images, labels).
    """

    def __init__(self, config: Optional[VLAEConfig] = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = VLAEConfig()
        elif isinstance(config, dict):
            config = VLAEConfig.from_dict(config)
        elif not isinstance(config, VLAEConfig):
            raise ValueError(f"config: expected a VLAEConfig (e.g. vlae_tf.presets.get("
                             f"'mnist_cpu')) or a dict; got {type(config).__name__}")
        self.config = config
        likelihood_kwargs = decoder_lib.likelihood_kwargs(config)
        self.likelihood = likelihoods.get(config.likelihood, **likelihood_kwargs)
        self.pixelcnn = decoder_lib.build_pixelcnn(config)
        self.encoder = self.latent_map = self.prior = self.iaf = self.hierarchy = None
        if config.use_latent:
            self.encoder = encoder_lib.build_encoder(config)
            self.latent_map = decoder_lib.build_latent_map(config)
            prior_kwargs = {}
            if config.prior == "af":
                prior_kwargs = dict(num_steps=config.prior_steps,
                                    hidden_units=config.prior_hidden,
                                    mean_only=config.prior_mean_only,
                                    weight_norm=config.prior_weight_norm,
                                    network=config.prior_network,
                                    latent_shape=config.latent_shape,
                                    kernel_size=config.prior_kernel_size)
            elif config.prior == "mog":
                prior_kwargs = dict(num_components=config.prior_components)
            elif config.prior == "vamp":
                # The VampPrior's components are q(z|u_k) of the model's own encoder (its
                # base Gaussian, ignoring any IAF steps); the prior keeps only a callable.
                prior_kwargs = dict(num_components=config.prior_components,
                                    image_shape=config.image_shape,
                                    posterior_fn=lambda pseudo_inputs: self.encoder(
                                        pseudo_inputs)[:2])
            # With two latent layers the prior is p(z2), over the top layer.
            prior_size = config.top_latent_size if config.latent_layers == 2 \
                else config.latent_size
            self.prior = priors.get_prior(config.prior, prior_size, **prior_kwargs)
            self.hierarchy = hierarchy_lib.build(config)  # None unless latent_layers=2
            if config.iaf_steps > 0:
                from vlae_tf.flows import IAFPosterior
                self.iaf = IAFPosterior(config.latent_size, num_steps=config.iaf_steps,
                                        hidden_units=config.iaf_hidden,
                                        context_size=config.iaf_context_size)
        # Training state that is not a parameter (saved with the weights): soft free bits'
        # gamma, the step counter that seeds the training noise, non-finite step counts.
        def state(name, dtype="float32", initializer="zeros"):
            return self.add_weight(name=name, shape=(), dtype=dtype, initializer=initializer,
                                   trainable=False, aggregation="only_first_replica")
        self.soft_kl_weight = state("soft_kl_weight", initializer="ones")
        self.noise_step = state("noise_step", dtype="int64")
        self.nonfinite_steps = state("nonfinite_steps", dtype="int64")
        self.consecutive_nonfinite_steps = state("consecutive_nonfinite_steps", dtype="int64")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.elbo_tracker = keras.metrics.Mean(name="elbo_nats")
        self.recon_tracker = keras.metrics.Mean(name="recon_nats")
        self.kl_tracker = keras.metrics.Mean(name="kl_nats")
        self.bpd_tracker = keras.metrics.Mean(name="bits_per_dim")
        # Per-layer KL terms of a two-layer model (the one-layer metrics are unchanged).
        self.layer_kl_trackers = [keras.metrics.Mean(name=f"kl_z{layer + 1}_nats")
                                  for layer in range(config.latent_layers)] \
            if self.hierarchy is not None else []
        self._sample_function = None
        self.build((None,) + tuple(config.image_shape))

    # ----------------------------------------------------------------------------- Keras
    def build(self, input_shape=None):
        if self.built:
            return
        # One eager pass creates every variable (the MADEs build lazily), so that
        # `trainable_weights` is complete before the first `fit` or `load_weights`.
        images = tf.zeros((1,) + tuple(self.config.image_shape), tf.uint8)
        self._elbo_terms(images, make_seed(0), validate=False)
        self.built = True

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(VLAEConfig.from_dict(config["config"]), name=config.get("name"))

    def compile(self, optimizer=None, **kwargs):
        """Like keras.Model.compile; the default optimizer is the paper's (Adamax + EMA),
        wrapped so that a step with non-finite gradients is skipped (vlae_tf.optimizers)."""
        if optimizer is None:
            optimizer = default_optimizer(self.config)
        super().compile(optimizer=optimizer, **kwargs)

    def fit(self, *args, callbacks=None, **kwargs):
        """keras.Model.fit, plus a NonFiniteGuard that stops after
        `config.max_consecutive_nonfinite` skipped non-finite steps in a row.

        Empty training data is a ValueError (Keras returns an empty history without a
        word): known-empty data before training, data that turns out empty (e.g. a filtered
        tf.data pipeline) after epochs that ran no step."""
        arguments = inspect.signature(keras.Model.fit).bind_partial(self, *args, **kwargs)
        x = arguments.arguments.get("x")
        epochs = arguments.arguments.get("epochs", 1)
        initial_epoch = arguments.arguments.get("initial_epoch", 0)
        _refuse_known_empty(x)
        callbacks = list(callbacks or [])
        if not any(isinstance(callback, NonFiniteGuard) for callback in callbacks):
            callbacks.append(NonFiniteGuard(self.config.max_consecutive_nonfinite))
        self._build_optimizer_before_tracing()
        counter = _BatchCounter()
        history = super().fit(*args, callbacks=callbacks + [counter], **kwargs)
        if counter.batches == 0 and epochs > initial_epoch and not self.stop_training:
            raise ValueError(f"x: expected training data with at least one batch; got data "
                             f"that gave no batch in {epochs - initial_epoch} epoch(s) (an "
                             f"empty dataset?)")
        return history

    def _build_optimizer_before_tracing(self):
        """Creates the optimizer's slots (and EMA copies) now rather than in the first
        trace of the train step.

        Without a strategy Keras leaves that to the trace; a tf.function that creates
        variables is traced twice, so the first `fit` of a small model spent about 60% of
        its start-up (50 s -> 18 s for tests/test_masked_decoder's model) re-tracing the
        step. The slots are the same zeros either way."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or optimizer.built or not self.built or not all(
                layer.built for layer in self._flatten_layers()):
            return
        with self.distribute_strategy.scope():
            optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Recompiles a model loaded from a `.keras` file, so that its optimizer and the
        optimizer's state come back (Keras skips this for models that override compile)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker, self.elbo_tracker, self.recon_tracker, self.kl_tracker,
                self.bpd_tracker] + list(self.layer_kl_trackers)

    def call(self, images, training=False):
        """Per-image ELBO terms {"elbo", "recon", "kl"} (nats) with the default seed."""
        return self._elbo_terms(self._check_images(images), make_seed(self.config.seed),
                                training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds from the known input spec, never from a batch of the training data.

        Keras (3.15) builds a model created under a tf.distribute strategy by opening an
        iterator over the training data and drawing a batch, then opens a new iterator for
        training. A pipeline that reshuffles and redraws its binarization per iterator
        (ours do, per epoch) then starts training on its *second* pass: a mirrored run
        would see other batches than a single-device run with the same seed.
        """
        if data_batch is None:
            data_batch = tf.zeros([1, *self.config.image_shape], tf.uint8)
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        images = self._check_images(_images_from(data))
        step = self.noise_step.assign_add(1)
        seed = tf.random.experimental.stateless_fold_in(make_seed(self.config.seed), step)
        num_samples = self.config.num_train_samples
        if num_samples > 1:
            images = tf.tile(images, [num_samples, 1, 1, 1])  # sample-major, like the noise
        with tf.GradientTape() as tape:
            terms = self._elbo_terms(images, seed, training=True,
                                     noise=self._replica_noise(seed, tf.shape(images)[0]))
            loss = self._training_objective(terms, step)
            # Gradients are summed over replicas: scale so the step uses the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        # The optimizer skips the step if any gradient is non-finite (vlae_tf.optimizers);
        # a non-finite loss must skip too, even where its gradients happen to be finite.
        # One poisoned gradient is enough (the check covers all of them), and costs one
        # add instead of one per variable.
        gradients = list(gradients)
        first = next((i for i, gradient in enumerate(gradients) if gradient is not None), None)
        if first is not None:  # none at all: the optimizer says so ("No gradients provided")
            gradients[first] += tf.cast(tf.where(tf.math.is_finite(loss), 0.0, np.nan),
                                        gradients[first].dtype)
        self.optimizer.apply(gradients, self.trainable_weights)
        self._count_nonfinite(loss)
        if self.config.free_bits_mode == "soft" and self.config.use_latent:
            target = self.config.free_bits * self.num_kl_groups
            if self.config.free_bits_anneal_steps > 0:  # lambda_total follows the schedule
                target = self.free_bits_lambda(step) * self.num_kl_groups
            # The rule reads the global batch's KL: the variable keeps replica 0's value
            # (only_first_replica), which must not be replica 0's local share.
            mean_kl = objectives.global_batch_mean(tf.stop_gradient(terms["kl"]))
            self.soft_kl_weight.assign(objectives.update_soft_kl_weight(
                self.soft_kl_weight, mean_kl, target))
        logs = self._update_metrics(loss, terms)
        logs["nonfinite_steps"] = tf.cast(self.nonfinite_steps, tf.float32)
        return _reducible_logs(logs)

    def _training_objective(self, terms, step):
        """The mean loss (nats per image) at training step `step`: -IWAE bound if
        num_train_samples > 1; recon + gamma * |KL - C(step)| with the capacity objective;
        else recon + beta * warm-up * gamma * KL (with free bits, floor lambda(step))."""
        config = self.config
        if config.num_train_samples > 1:
            log_weights = tf.reshape(terms["elbo"], [config.num_train_samples, -1])
            return -tf.reduce_mean(objectives.iwae_bound(log_weights))
        if config.capacity_gamma is not None:
            return objectives.capacity_loss(terms["recon"], terms["kl"],
                                            self.capacity_nats(step), config.capacity_gamma)
        kl_weight = objectives.kl_scale(step, config.kl_weight, config.kl_warmup_steps)
        if config.free_bits_mode == "soft":
            kl_weight = kl_weight * self.soft_kl_weight
        scheduled = self.free_bits_lambda(step) if config.free_bits_anneal_steps > 0 else None
        return objectives.training_loss(terms["recon"], terms["kl"], terms["kl_per_group"],
                                        config.free_bits_mode, config.free_bits, kl_weight,
                                        scheduled_free_bits=scheduled)

    def free_bits_lambda(self, step=None):
        """lambda(t), the free-bits floor (nats per group) of training step t
        (`objectives.free_bits_lambda`; default t: `noise_step`, the last step taken)."""
        config = self.config
        return objectives.free_bits_lambda(self.noise_step if step is None else step,
                                           config.free_bits, config.free_bits_hold_steps,
                                           config.free_bits_anneal_steps)

    def capacity_nats(self, step=None):
        """C(t), the capacity-objective target (nats) of training step t
        (`objectives.capacity_schedule`; default t: `noise_step`, the last step taken)."""
        config = self.config
        return objectives.capacity_schedule(self.noise_step if step is None else step,
                                            config.capacity_start, config.capacity_end,
                                            config.capacity_steps)

    def schedule_values(self):
        """The schedules' values at the last step taken, for the training logs:
        {"free_bits_lambda"} when free bits are on, {"capacity_nats"} with the capacity
        objective, {"kl_weight"} (beta x the warm-up factor) when it is not constant 1
        (python floats; empty otherwise)."""
        config, values = self.config, {}
        if config.use_latent and (config.kl_weight != 1.0 or config.kl_warmup_steps > 0):
            values["kl_weight"] = float(objectives.kl_scale(
                self.noise_step, config.kl_weight, config.kl_warmup_steps).numpy())
        if config.use_latent and config.free_bits > 0 and config.free_bits_mode != "none":
            values["free_bits_lambda"] = float(self.free_bits_lambda().numpy())
        if config.capacity_gamma is not None:
            values["capacity_nats"] = float(self.capacity_nats().numpy())
        return values

    def _replica_noise(self, seed, local_batch):
        """N(0, I) noise for this replica's share of the global batch.

        The noise is drawn for the whole global batch and sliced, so each image gets the
        same draw whatever the number of replicas (MirroredStrategy hands replica r the
        r-th consecutive slice of every global batch).
        """
        if not self.config.use_latent:
            return None
        replica = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        replica_id = 0 if replica is None else replica.replica_id_in_sync_group
        samples = self.config.num_train_samples
        per_sample = local_batch // samples
        noise = tf.random.stateless_normal(
            [samples, replicas * per_sample, self.noise_size], seed)
        noise = noise[:, replica_id * per_sample:(replica_id + 1) * per_sample]
        return tf.reshape(noise, [local_batch, self.noise_size])

    @property
    def noise_size(self) -> int:
        """N(0, 1) values per image of one posterior draw: latent_size, plus
        top_latent_size with two latent layers (one flat vector [eps1, eps2]). Training,
        `elbo` and the importance sampler all draw noise of this size."""
        if self.hierarchy is not None:
            return self.config.latent_size + self.config.top_latent_size
        return self.config.latent_size

    @property
    def num_kl_groups(self) -> int:
        """Columns of the `kl_per_group` term: free-bits groups, or one per latent layer."""
        if self.hierarchy is not None:
            return self.config.latent_layers
        return self.config.free_bits_groups

    def _count_nonfinite(self, loss):
        """Counts non-finite losses (all replicas agree: the flag is all-reduced)."""
        nonfinite = tf.cast(tf.logical_not(tf.math.is_finite(loss)), tf.int64)
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            nonfinite = replica.all_reduce(tf.distribute.ReduceOp.SUM, nonfinite)
        nonfinite = tf.minimum(nonfinite, 1)
        self.nonfinite_steps.assign_add(nonfinite)
        self.consecutive_nonfinite_steps.assign(
            (self.consecutive_nonfinite_steps + nonfinite) * nonfinite)

    def test_step(self, data):
        images = self._check_images(_images_from(data))
        terms = self._elbo_terms(images, make_seed(self.config.seed))
        return _reducible_logs(self._update_metrics(-tf.reduce_mean(terms["elbo"]), terms))

    def _update_metrics(self, loss, terms):
        self.loss_tracker.update_state(loss)
        self.elbo_tracker.update_state(terms["elbo"])
        self.recon_tracker.update_state(terms["recon"])
        self.kl_tracker.update_state(terms["kl"])
        self.bpd_tracker.update_state(-terms["elbo"] / (self.config.num_dims * math.log(2.0)))
        for layer, tracker in enumerate(self.layer_kl_trackers):
            tracker.update_state(terms["kl_per_group"][:, layer])
        return {metric.name: metric.result() for metric in self.metrics}

    # -------------------------------------------------------------------- weight norm init
    def data_dependent_init(self, images) -> int:
        """Initialises weight-normalised layers from a batch (Salimans & Kingma 2016).

        Call once, eagerly, before training; returns the number of layers initialised.
        """
        images = self._check_images(images)
        if images.shape[0] is not None and images.shape[0] < 2:
            # Dense layers' statistics are over the batch: one image has variance 0, and
            # the init would scale them by 1000 (the KL then explodes in the first steps).
            raise ValueError(f"images: expected a batch of at least 2 images for the "
                             f"data-dependent init (more is better); got {images.shape[0]}")
        with nn.data_dependent_init() as state:
            self._elbo_terms(images, make_seed(self.config.seed))
        return state["count"]

    # ------------------------------------------------------------------------- validation
    def _check_images(self, images, name="images"):
        """Clear ValueErrors for wrong rank, size, dtype or values (`inputs.check_images`)."""
        return inputs.check_images(self.config, images, name)

    # ---------------------------------------------------------------------------- the model
    def _scale(self, values):
        """Pixel values 0..max -> [-1, 1], the networks' input range."""
        return inputs.scale(self.config, values)

    def _posterior_sample(self, posterior, eps):
        """z = mean + scale * eps (+ IAF); returns z, log q(z|x) [B] and per-dim terms."""
        return inputs.posterior_sample(posterior, eps, self.iaf)

    def _posterior_noise(self, posterior, seed):
        """N(0, I) [B, noise_size] from `seed`: the draw of `elbo` and of importance
        sample 0 (`estimators.sample_noise`)."""
        return tf.random.stateless_normal(
            tf.stack([tf.shape(posterior[0])[0], self.noise_size]), seed)

    def _latent_log_densities(self, posterior, eps):
        """The decoder's z, log q(z|x), log p(z) [B] and the per-group KL [B, G] at noise
        `eps` [B, noise_size]: z = z1 and the densities of (z1, z2) with two layers.

        One layer: z ~ q(z|x) (+ IAF), log p(z) the prior's; kl_per_group is the total
        KL (free-bits groups are `_elbo_terms`' business)."""
        if self.hierarchy is None:
            z, log_q, _ = self._posterior_sample(posterior, eps)
            log_p = self.prior.log_prob(z)
            return z, log_q, log_p, (log_q - log_p)[:, None]
        latent_size = self.config.latent_size
        z1, log_q1, _ = self._posterior_sample(posterior, eps[:, :latent_size])
        _, log_q, log_p, kl_per_layer = hierarchy_lib.latent_terms(
            self.hierarchy, self.prior, z1, log_q1, eps[:, latent_size:])
        return z1, log_q, log_p, kl_per_layer

    def _elbo_terms(self, images, seed, training=False, validate=True, noise=None):
        """Per-image terms: elbo, recon (= -log p(x|z)), kl (= log q - log p), kl_per_group.

        `noise` (N(0, I), [B, noise_size]) overrides the draw from `seed`. Two latent
        layers: kl = KL1 + KL2 and kl_per_group = [KL1, KL2] (`vlae_tf.hierarchy`)."""
        values = tf.cast(images, tf.float32)
        scaled = self._scale(values)
        if not self.config.use_latent:
            recon = -tf.reduce_sum(self.likelihood.log_prob(self.pixelcnn(scaled), values),
                                   axis=[1, 2])
            zeros = tf.zeros_like(recon)
            return {"elbo": -recon, "recon": recon, "kl": zeros, "kl_per_group": zeros[:, None]}
        posterior = self.encoder(scaled, training=training)
        if self.hierarchy is not None:
            eps = self._posterior_noise(posterior, seed) if noise is None else noise
            z, _, _, kl_per_group = self._latent_log_densities(posterior, eps)
            kl = tf.reduce_sum(kl_per_group, axis=-1)
        else:
            eps = tf.random.stateless_normal(tf.shape(posterior[0]), seed) if noise is None \
                else noise
            z, kl, kl_per_group = self._one_layer_kl(posterior, eps)
        params = self.pixelcnn([scaled, self.latent_map(z, training=training)], training=training)
        recon = -tf.reduce_sum(self.likelihood.log_prob(params, values), axis=[1, 2])
        return {"elbo": -(recon + kl), "recon": recon, "kl": kl, "kl_per_group": kl_per_group}

    def _one_layer_kl(self, posterior, eps):
        """z ~ q(z|x) at noise eps, its KL log q(z|x) - log p(z) [B] and the KL per
        free-bits group [B, G] (groups need a factorised q and p: validated in the config)."""
        z, log_q, log_q_dims = self._posterior_sample(posterior, eps)
        kl = log_q - self.prior.log_prob(z)
        if self.config.free_bits_groups == 1:
            return z, kl, kl[:, None]
        kl_dims = log_q_dims + 0.5 * tf.square(z) + HALF_LOG_TWO_PI
        groups = spatial.free_bits_group_indices(self.config)  # contiguous or per map
        kl_per_group = tf.stack(
            [tf.reduce_sum(tf.gather(kl_dims, group, axis=-1), axis=-1) for group in groups],
            axis=-1)
        return z, kl, kl_per_group

    # ------------------------------------------------------------------------ public API
    def elbo(self, images, seed=None):
        """Per-image {"elbo", "recon", "kl"} in nats (recon = -log p(x|z); elbo = -(recon+kl))."""
        images = self._check_images(images)
        terms = self._elbo_terms(images, make_seed(self.config.seed if seed is None else seed))
        return {key: terms[key] for key in ("elbo", "recon", "kl")}

    def encode(self, images):
        """Posterior q(z|x) base Gaussian: (mean, scale), each [B, latent_size] (with a
        latent_shape flat in raster order; `vlae_tf.spatial.to_map` gives [B, h, w, c])."""
        self._require_latent("encode")
        posterior = self.encoder(self._scale(self._check_images(images)))
        return posterior[0], posterior[1]

    def encode_layers(self, images):
        """Both layers' Gaussians of a two-layer model (config.latent_layers=2): {"mean",
        "scale"} [B, latent_size] of q(z1|x) (= `encode`) and {"top_mean", "top_scale"}
        [B, top_latent_size] of q(z2 | z1) at z1 = the mean of q(z1|x)
        (`vlae_tf.hierarchy.encode_layers`). One layer: {"mean", "scale"} only."""
        self._require_latent("encode_layers")
        scaled = self._scale(self._check_images(images))
        if self.hierarchy is None:
            posterior = self.encoder(scaled)
            return {"mean": posterior[0], "scale": posterior[1]}
        return hierarchy_lib.encode_layers(self, scaled)

    def posterior(self, images):
        """q(z|x) as a TFP distribution: batch [B], event [latent_size] (two latent layers:
        q(z1|x), the bottom layer).

        N(mean, diag(scale^2)) from the encoder, pushed through the IAF's bijector chain
        conditioned on the encoder's context when config.iaf_steps > 0
        (`vlae_tf.flows.posterior_distribution`). `log_prob(z)` equals the log q(z|x) the
        ELBO uses for that z; with an IAF it inverts the flow sequentially (evaluation, not
        training); `sample(seed=...)` is parallel.
        """
        from vlae_tf import flows
        self._require_latent("posterior")
        posterior = self.encoder(self._scale(self._check_images(images)))
        context = posterior[2] if self.iaf is not None else None
        return flows.posterior_distribution(posterior[0], posterior[1], self.iaf, context)

    def decoder_params(self, images, z=None):
        """Per-pixel likelihood parameters [B, H, W, P] of p(x|z).

        `images` may be float (values 0..max_value) so that gradients can probe which
        pixels the output depends on; `z` [B, latent_size] (None for use_latent=False).
        """
        values = tf.convert_to_tensor(images)
        if not values.dtype.is_floating:
            values = tf.cast(self._check_images(values), tf.float32)
        scaled = self._scale(values)
        if not self.config.use_latent:
            return self.pixelcnn(scaled)
        if z is None:
            raise ValueError("z: expected a [batch, latent_size] tensor for a model with a "
                             "latent code; got None")
        return self.pixelcnn([scaled, self.latent_map(tf.cast(z, tf.float32))])

    def importance_log_likelihood(self, images, num_samples, chunk_size=None, seed=None,
                                  memory_budget_gb=None):
        """Importance-sampled log p(x) in nats per image (Burda et al. 2016):

            log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,

        z_k ~ q(z|x), K = num_samples, evaluated `chunk_size` samples at a time with a
        running logsumexp so memory stays bounded (paper: K=4096 binary, 512 CIFAR);
        chunk_size None: chosen from `memory_budget_gb` (estimators.budget_chunk_size).
        """
        return estimators.importance_log_likelihood(
            self, images, num_samples, chunk_size=chunk_size, seed=seed,
            memory_budget_gb=memory_budget_gb)

    def sample(self, num, seed=None, temperature=1.0, method="cached"):
        """`num` images from the model: z from the prior, then x pixel by pixel (uint8)."""
        return sampling.sample(self, num, seed=seed, temperature=temperature, method=method)

    def decompress(self, images, seed=None, temperature=1.0, method="cached"):
        """Lossy decompression: z ~ q(z|x), x' ~ p(x|z). Keeps global structure of x."""
        return sampling.decompress(self, images, seed=seed, temperature=temperature,
                                   method=method)

    def _require_latent(self, what):
        inputs.require_latent(self.config, what)


def _reducible_logs(logs):
    """Keras 3 reduces logs under MultiWorkerMirroredStrategy with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars: give them an axis there.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}
    return logs


class _BatchCounter(keras.callbacks.Callback):
    """Counts the training batches `fit` ran. `noise_step` cannot tell: it is assigned
    before the data is read, and moves by one in an epoch whose data is empty."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _refuse_known_empty(x):
    """ValueError for training data known to hold no image: an array or tensor of 0
    images, or a tf.data.Dataset of cardinality 0."""
    if isinstance(x, tf.data.Dataset):
        empty = int(x.cardinality()) == 0
    else:
        images = _images_from(x)
        shape = getattr(images, "shape", None)
        empty = shape is not None and len(shape) > 0 and shape[0] == 0
    if empty:
        raise ValueError("x: expected training data with at least one image; got an empty "
                         "dataset")


def _images_from(data):
    """fit/evaluate data: images, or (images, labels[, weights])."""
    if isinstance(data, (tuple, list)):
        return data[0]
    if isinstance(data, dict):
        return data["images"]
    return data
