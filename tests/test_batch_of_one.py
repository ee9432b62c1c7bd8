"""Training on a batch of one image (issue 21).

With oneDNN on, TensorFlow's weight gradient of a strided 1x1 convolution (the encoder's
strided skip, the symmetric latent map's transposed skip) is wrong or kills the process
with SIGSEGV/SIGABRT, e.g. on a batch of one (`tests/onednn_strided_1x1.py` documents it).
`vlae_tf.nn.Conv2D` computes those layers as subsample + stride-1 1x1 convolution.

TensorFlow turns oneDNN on by default only on some CPUs (AVX512-VNNI/BF16, AVX-VNNI, AMX),
so the subprocesses here force it with TF_ENABLE_ONEDNN_OPTS=1: then the bug shows on any
x86 CPU, as wrong gradients (AVX2) or a crash. A native crash fails one test, not the
suite. This file is also the worker those subprocesses run (`python3 <this file> ...`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Images of 28x28 and 4-channel skips: on AVX2 (SIMD block 8 floats) this is where
# TensorFlow's strided 1x1 weight gradient goes wrong (7x7 or 8 channels stay right).
IMAGE_SHAPE = (28, 28, 1)
TINY = dict(image_shape=IMAGE_SHAPE, latent_size=4, encoder_filters=(4, 8), encoder_hidden=16,
            prior="af", prior_steps=1, prior_hidden=(8,), decoder_layers=2, decoder_filters=8,
            decoder_residual_blocks=1, z_map_channels=4, ema_momentum=None)
# What a decoder family needs on top of TINY (a new family without an entry here fails
# config validation in the worker, with the config's own message: add it here).
FAMILY_CHANGES = {"masked_resnet": dict(window=None, z_conditioning="concat"),
                  "pixelcnnpp": dict(window=(4, 2), likelihood="logistic_mixture",
                                     num_mixtures=2)}
GRADIENT_TOLERANCE = 1e-3  # relative; oneDNN vs Eigen round-off is ~1e-6, the bug ~1


def _subprocess(args, onednn: bool, timeout=900):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0",
               TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                        str(REPO)])))
    return subprocess.run([sys.executable] + [str(arg) for arg in args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _describe(result):
    """Exit status (with the signal of a native crash) and the output's last lines."""
    status = (f"killed by signal {-result.returncode}" if result.returncode < 0
              else f"exit status {result.returncode}")
    out = "\n".join(result.stdout.strip().splitlines()[-15:])
    err = "\n".join(line for line in result.stderr.strip().splitlines()[-60:]
                    if not line.startswith(("I0000", "E0000", "W0000", "WARNING: All log")))
    return f"{status}; last output:\n{out}\nlast errors:\n{err[-3000:]}"


# ------------------------------------------------------------------------ the layer itself
def test_strided_1x1_is_the_strided_convolution_with_the_same_weights():
    """Same variables (names, shapes) and outputs as tf.nn.conv2d / conv2d_transpose with
    strides, so checkpoints written before the change load and give the same outputs."""
    import tensorflow as tf

    from vlae_tf.nn import layers as nn

    rng = np.random.default_rng(0)
    for height, width in ((7, 8), (8, 7), (28, 28), (5, 5), (1, 3)):
        for strides in (2, 3):
            x = tf.constant(rng.normal(size=(2, height, width, 3)), tf.float32)
            for padding in ("same", "valid"):
                layer = nn.Conv2D(5, 1, strides=strides, padding=padding)
                got = layer(x)
                assert [v.path.split("/")[-1] for v in layer.weights] == ["kernel", "bias", "gain"]
                assert tuple(layer.kernel.shape) == (1, 1, 3, 5)
                kernel = layer._normalised_kernel(norm_axes=(0, 1, 2))
                want = tf.nn.conv2d(x, kernel, strides=strides, padding=padding.upper())
                want = want * layer.gain + layer.bias
                assert got.shape == want.shape == layer.compute_output_shape(x.shape)
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6,
                                           err_msg=f"{height}x{width} stride {strides} {padding}")
            layer = nn.Conv2D(5, 1, strides=strides, transpose=True)
            got = layer(x)
            assert tuple(layer.kernel.shape) == (1, 1, 5, 3)
            kernel = layer._normalised_kernel(norm_axes=(0, 1, 3))
            want = tf.nn.conv2d_transpose(
                x, kernel, [2, height * strides, width * strides, 5], strides=strides,
                padding="SAME") * layer.gain + layer.bias
            assert got.shape == want.shape == layer.compute_output_shape(x.shape)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6,
                                       err_msg=f"transposed {height}x{width} stride {strides}")


def test_layer_gradients_are_right_under_onednn():
    """Every strided / transposed 1x1 and 3x3 case of tests/onednn_strided_1x1.py, batch 1
    and 2, against float64, with oneDNN on (where tf.nn.conv2d's gradient is wrong or
    crashes)."""
    result = _subprocess([HERE / "onednn_strided_1x1.py", "--impl=layer"], onednn=True)
    assert result.returncode == 0 and "cases correct" in result.stdout, _describe(result)


def test_data_dependent_init_refuses_a_single_image():
    """Dense layers' init statistics are over the batch: one image has variance 0."""
    import vlae_tf

    model = vlae_tf.VLAE(vlae_tf.VLAEConfig(**dict(TINY, image_shape=(7, 8, 1),
                                                   encoder_filters=(4,))))
    images = np.zeros((2, 7, 8, 1), np.uint8)
    with pytest.raises(ValueError, match="at least 2 images"):
        model.data_dependent_init(images[:1])
    assert model.data_dependent_init(images) > 0


# --------------------------------------------------------------------- the model, training
def test_every_family_trains_on_one_image_batches_with_right_gradients(tmp_path):
    """Under oneDNN, for each decoder family and latent map: the gradients of one image's
    loss equal those without oneDNN, and `fit` on 17 images in batches of 16 (a last batch
    of one) runs and moves the weights; `launch.train --batch_size=1` trains and evaluates
    with finite, sane numbers."""
    result = _subprocess([__file__, "worker", tmp_path, "onednn"], onednn=True)
    assert result.returncode == 0, _describe(result)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["families"], report
    for name, family in report["families"].items():
        losses = family["losses"]
        assert losses and all(np.isfinite(losses)), (name, losses)
        assert family["weights_moved"], name
    launch = report["launch_train"]
    assert launch["steps"] >= 3 and all(np.isfinite(launch["numbers"])), launch
    # Weight-norm init from one image scaled dense layers by 1000: losses of ~2e10 nats.
    assert max(launch["losses"]) < 2000, launch["losses"]

    result = _subprocess([__file__, "worker", tmp_path, "reference"], onednn=False)
    assert result.returncode == 0, _describe(result)
    for name in report["families"]:
        with np.load(tmp_path / f"{name}.onednn.npz") as got, \
                np.load(tmp_path / f"{name}.reference.npz") as want:
            assert sorted(got.files) == sorted(want.files)
            scale = max(np.abs(want[key]).max() for key in want.files)
            errors = {key: np.abs(got[key] - want[key]).max()
                      / max(np.abs(want[key]).max(), 1e-3 * scale) for key in want.files}
            worst = max(errors, key=errors.get)
            assert errors[worst] <= GRADIENT_TOLERANCE, (
                f"{name}: gradient of {worst} differs with oneDNN by {errors[worst]:.3g} "
                f"(relative)")


# ------------------------------------------------------------------ worker (a subprocess)
def _family_configs():
    import vlae_tf
    from vlae_tf import config as config_lib

    base = vlae_tf.VLAEConfig(**TINY)
    configs = {}
    for decoder in getattr(config_lib, "DECODERS", ("gated",)):
        changes = dict(FAMILY_CHANGES.get(decoder, {}))
        if hasattr(config_lib, "DECODERS"):
            changes["decoder"] = decoder
        configs[f"decoder_{decoder}"] = base.replace(**changes)
    for latent_map in getattr(config_lib, "LATENT_MAPS", ())[1:]:  # [0] is the default
        configs[f"latent_map_{latent_map}"] = base.replace(latent_map=latent_map)
    return configs


def _gradients(model, images):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.elbo(images, seed=7)["elbo"])
    gradients = tape.gradient(loss, model.trainable_variables)
    return {variable.path: np.asarray(gradient) for variable, gradient
            in zip(model.trainable_variables, gradients) if gradient is not None}


def _fit(model, images, batch_size):
    import tensorflow as tf

    before = [variable.numpy() for variable in model.trainable_variables]
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(batch_size),
                        epochs=1, verbose=0)
    moved = any(not np.array_equal(old, variable.numpy())
                for old, variable in zip(before, model.trainable_variables))
    return {"losses": [float(value) for value in history.history["loss"]],
            "weights_moved": bool(moved)}


def _worker(out_dir: Path, mode: str):
    import keras

    import vlae_tf

    rng = np.random.default_rng(0)
    images = (rng.random((17,) + IMAGE_SHAPE) < 0.3).astype(np.uint8)
    report = {"families": {}}
    for name, config in _family_configs().items():
        keras.utils.set_random_seed(0)
        model = vlae_tf.VLAE(config)
        model.elbo(images[:1])  # builds the model
        weights = out_dir / f"{name}.weights.h5"
        if mode == "onednn":
            model.save_weights(weights)
        else:  # the same weights, gradients computed without oneDNN
            model.load_weights(weights)
        np.savez(out_dir / f"{name}.{mode}.npz", **_gradients(model, images[:1]))
        if mode == "onednn":
            model.compile()
            report["families"][name] = _fit(model, images, 16)
        print(f"{name}: done", file=sys.stderr, flush=True)
    if mode == "onednn":
        report["launch_train"] = _launch_train(out_dir / "run")
    print(json.dumps(report))


def _launch_train(model_dir: Path):
    """launch.train with --batch_size=1 on 3 real digits (the issue's first report)."""
    import vlae_tf
    from launch import train as train_lib

    config = vlae_tf.presets.get("mnist_cpu").replace(
        **{key: value for key, value in TINY.items() if key != "image_shape"})
    options = train_lib.TrainOptions(
        dataset="mnist5k_binary", model_dir=str(model_dir), batch_size=1, epochs=1,
        max_train_examples=3, log_every=1, eval_max_images=2, eval_num_images=0,
        select="last", diagnostics_images=0, validation_max_images=4, verbose="0")
    result = train_lib.train(config, options, log=lambda message: None)
    with open(model_dir / "metrics.jsonl") as handle:
        steps = [json.loads(line) for line in handle if '"step"' in line]
    steps = [line for line in steps if line.get("kind") == "step"]
    return {"steps": len(steps), "losses": [line["loss"] for line in steps],
            "eval": result["eval"], "numbers": [line["loss"] for line in steps]
            + list(_numbers(result["eval"]))}


def _numbers(value):
    """The finite-checkable numbers of train()'s result (nested dicts and lists)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, float):
        yield value


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "worker":
        sys.exit(f"usage: {sys.argv[0]} worker OUT_DIR onednn|reference")
    _worker(Path(sys.argv[2]), sys.argv[3])
