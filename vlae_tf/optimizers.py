"""The default optimizer: Adamax + Polyak averaging, never applying a non-finite step.

Chen et al. (2017): Adamax, learning rate 2e-3, Polyak averaging of the parameters
(exponential moving average, 0.998). The averaging uses Keras' optimizer EMA, which Keras
writes into the model's weights at the end of `fit`. Its time constant is
1 / (1 - 0.998) = 500 steps: a run of a few hundred steps ends with weights still close to
their initial values, so short runs should lower `ema_momentum` or set it to None.

A step whose gradients are not finite is skipped (weights, slots and EMA untouched).
Keras' LossScaleOptimizer already does this correctly under every tf.distribute strategy
(the decision is taken once, in cross-replica context, on all-reduced gradients); in
float32 we use it with a fixed scale of 1, so it is a pure "skip non-finite steps" wrapper.
Under the mixed_float16 policy the usual dynamic loss scaling applies.
"""

from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="vlae_tf")
class SkipNonFiniteOptimizer(keras.optimizers.LossScaleOptimizer):
    """Applies the inner optimizer only when every gradient is finite; scale fixed at 1."""

    def __init__(self, inner_optimizer, name=None, **kwargs):
        kwargs.pop("initial_scale", None)
        kwargs.pop("dynamic_growth_steps", None)
        super().__init__(inner_optimizer, initial_scale=1.0, dynamic_growth_steps=1,
                         name=name, **kwargs)

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    def _stateful_handle_non_finite_grads(self):
        pass  # skip: nothing moves


def default_optimizer(config) -> keras.optimizers.Optimizer:
    """Adamax(config.learning_rate) with EMA(config.ema_momentum), skipping non-finite steps."""
    use_ema = config.ema_momentum is not None
    adamax = keras.optimizers.Adamax(
        learning_rate=config.learning_rate, use_ema=use_ema,
        ema_momentum=config.ema_momentum if use_ema else 0.99)
    if keras.config.dtype_policy().name == "mixed_float16":
        # The loss is a sum over the image's D dimensions (nats per image), so gradients
        # are ~D times those of a per-dimension loss. Keras' default initial scale 2**15
        # overflowed float16 in every one of the first 12 steps of mnist_cpu (each
        # skipped, the scale halved 12 times); 2**-ceil(log2 D) skipped none and matched
        # float32. Dynamic growth still raises it when there is headroom.
        initial_scale = 2.0 ** -math.ceil(math.log2(config.num_dims))
        return keras.optimizers.LossScaleOptimizer(adamax, initial_scale=initial_scale)
    return SkipNonFiniteOptimizer(adamax)
