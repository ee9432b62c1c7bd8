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

Speed: Keras writes Adamax as about 18 small ops per variable and its averaging as about 8
(5,400 op executions per step for mnist_paper's 190 variables: two thirds of the step's
ops). Here each variable's update is TensorFlow's fused `ResourceApplyAdaMax` kernel (the
same equations: m += (1 - b1)(g - m); u = max(b2 u, |g|); w -= lr / (1 - b1^t) m / (u + eps))
with the step's scalars computed once, and the average is one `assign_sub`; the results
equal Keras' to float32 rounding (tests/test_ema_warmup.py).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


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

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The scalars every variable's fused update reads, computed once per step.
        learning_rate = tf.cast(learning_rate, tf.float32)
        local_step = tf.cast(self.iterations + 1, tf.float32)
        beta1 = tf.constant(self.beta_1, tf.float32)
        self._step_scalars = {
            "lr": learning_rate, "beta1_power": tf.pow(beta1, local_step), "beta1": beta1,
            "beta2": tf.constant(self.beta_2, tf.float32),
            "epsilon": tf.constant(self.epsilon, tf.float32)}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def update_step(self, gradient, variable, learning_rate):
        scalars = getattr(self, "_step_scalars", None)
        if scalars is None or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        variable = _tf_variable(variable)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        cast = lambda value: tf.cast(value, dtype)  # noqa: E731
        tf.raw_ops.ResourceApplyAdaMax(
            var=variable.handle, m=_tf_variable(self._m[index]).handle,
            v=_tf_variable(self._u[index]).handle, beta1_power=cast(scalars["beta1_power"]),
            lr=cast(scalars["lr"]), beta1=cast(scalars["beta1"]), beta2=cast(scalars["beta2"]),
            epsilon=cast(scalars["epsilon"]), grad=cast(gradient))

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = self.iterations  # not yet incremented for this step: 0 at the first
        first = keras.ops.equal(step, 0)
        momentum = keras.ops.where(first, 0.0, warmup_ema_momentum(step, self.ema_momentum))
        # a <- m a + (1 - m) w, written as a -= (1 - m)(a - w): one update op per variable.
        weight_by_dtype = {}
        for variable, average in zip(trainable_variables,
                                     self._model_variables_moving_average):
            if average is None:
                continue
            dtype = average.dtype
            if dtype not in weight_by_dtype:
                weight_by_dtype[dtype] = keras.ops.cast(1.0 - momentum, dtype)
            average.assign_sub(weight_by_dtype[dtype] * (
                average - keras.ops.cast(variable, dtype)))


def _tf_variable(variable):
    """The tf.Variable behind a Keras variable (inside a strategy's update: its replica's)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


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
