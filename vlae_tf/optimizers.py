"""The default optimizer: Adamax + Polyak averaging, never applying a non-finite step.

Chen et al. (2017): Adamax, learning rate 2e-3, Polyak averaging of the parameters
(exponential moving average, 0.998). The averaging uses Keras' optimizer EMA, which Keras
writes into the model's weights at the end of `fit`. Its time constant is
1 / (1 - 0.998) = 500 steps: with a constant momentum a run of a few hundred steps ends
with averaged weights still close to their random initial values (a 10-epoch README run:
training -ELBO 91.7, test 129 nats). So the momentum warms up: step t (0-based, the
optimizer's `iterations`) uses min(ema_momentum, (1 + t) / (10 + t)), the schedule of
TensorFlow's ExponentialMovingAverage `num_updates`. Early steps average over roughly the
last t/9 steps, i.e. the recent weights; from t = 4,490 on the momentum is 0.998 as in the
paper, so long runs keep their behaviour. The schedule is a function of the checkpointed
step counter only, so resumed runs stay bit-identical.

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


def warmup_ema_momentum(step, ema_momentum):
    """The momentum of EMA update number `step` (0-based): min(ema_momentum, (1+t)/(10+t))."""
    step = keras.ops.cast(step, "float32")
    return keras.ops.minimum(keras.ops.cast(ema_momentum, "float32"),
                             (1.0 + step) / (10.0 + step))


@keras.saving.register_keras_serializable(package="vlae_tf")
class WarmupEMAAdamax(keras.optimizers.Adamax):
    """Adamax whose EMA (Polyak averaging) momentum warms up: `warmup_ema_momentum`.

    Overrides Keras' `_update_model_variables_moving_average` (Keras 3.15), which uses a
    constant `ema_momentum` (and 0 at the first step, which the schedule keeps)."""

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = self.iterations  # not yet incremented for this step: 0 at the first
        first = keras.ops.equal(step, 0)
        momentum = keras.ops.where(first, 0.0, warmup_ema_momentum(step, self.ema_momentum))
        for variable, average in zip(trainable_variables,
                                     self._model_variables_moving_average):
            if average is None:
                continue
            m = keras.ops.cast(momentum, average.dtype)
            average.assign(m * average + (1 - m) * keras.ops.cast(variable, average.dtype))


def default_optimizer(config) -> keras.optimizers.Optimizer:
    """Adamax(config.learning_rate) with EMA(config.ema_momentum, warmed up: see the module
    docstring), skipping non-finite steps."""
    use_ema = config.ema_momentum is not None
    adamax = WarmupEMAAdamax(
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
