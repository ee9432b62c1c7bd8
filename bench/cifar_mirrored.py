"""The paper's CIFAR-10 models under MirroredStrategy: two logical CPUs train like one device.

    python3 bench/cifar_mirrored.py   # ~10 min on 2 busy cores; prints one JSON line

Tiny widths of `cifar10_paper` (DenseNet, 7x4) and `cifar10_paper_resnet_4x2` with the
paper's structure (soft free bits above the KL, so gamma moves), three SGD steps of batch 8
from the same initial weights, default strategy vs 2 replicas of 4 images: the losses, the
soft-free-bits gamma (read from the global batch) and every weight must agree to float
rounding. Too slow for the test suite; results: bench/results/cifar_mirrored.json.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, vlae_tf

TINY = dict(image_shape=(16, 16, 3), latent_shape=(4, 4, 2), latent_size=32,
            encoder_filters=(4, 8, 8), encoder_blocks=(1, 1, 1), z_map_channels=4,
            prior_steps=2, prior_hidden=(8, 8), decoder_filters=8, decoder_residual_blocks=1,
            num_mixtures=2, ema_momentum=None, weight_norm=False, free_bits=20.0)
images = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3)).astype(np.uint8)
out = {}
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for preset in ("cifar10_paper", "cifar10_paper_resnet_4x2"):
    config = vlae_tf.presets.get(preset).replace(**TINY)
    def run(strategy):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            model = vlae_tf.VLAE(config)
            model.compile(optimizer=keras.optimizers.SGD(1e-3))
        losses = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(
                [float(logs["loss"]), float(logs["elbo_nats"])]))
        data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
        model.fit(data, epochs=1, verbose=0, callbacks=[record])
        return losses, [w.numpy() for w in model.trainable_weights], float(model.soft_kl_weight.numpy())
    a, b = run(tf.distribute.get_strategy()), run(two)
    out[preset] = {"default": a[0], "mirrored": b[0], "gamma": [a[2], b[2]],
                   "max_weight_diff": max(float(np.max(np.abs(x - y))) for x, y in zip(a[1], b[1]))}
print(json.dumps(out))
