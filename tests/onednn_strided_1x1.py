"""TensorFlow's oneDNN bug in the weight gradient of strided 1x1 convolutions, and a check
that `vlae_tf.nn.Conv2D` does not run into it.

    TF_ENABLE_ONEDNN_OPTS=1 python3 tests/onednn_strided_1x1.py --impl=tf     # the bug
    TF_ENABLE_ONEDNN_OPTS=1 python3 tests/onednn_strided_1x1.py --impl=layer  # our layer

For every case (1x1 or 3x3 kernel, stride 2 or 3, plain or transposed, batch 1 or 2, a
few sizes and channel counts) the float32 forward pass and gradients, which oneDNN
computes when it is on, are compared with float64 ones of the same function (float64
never reaches oneDNN, it runs on TensorFlow's own Eigen kernels). One line per case; the
last line is "all N cases correct" (exit 0) or "K of N cases wrong" (exit 1). A native
crash ends the process in the middle of the case named by the last "case" line.

`--impl=tf` runs `tf.nn.conv2d` / `tf.nn.conv2d_transpose` themselves. Measured with TF
2.21.0 (oneDNN 3.7.3) on a 2-core AVX2 CPU with TF_ENABLE_ONEDNN_OPTS=1: the kernel
gradient of the stride-2 1x1 convolutions of 28x28 inputs with 1, 4 or 6 input channels
(and stride 3 on 27x27 with 4) is wrong by 20-110%, at batch 1 and 2, differently from run
to run; with 8 or 16 channels, or 7x7 and 13x13 inputs, it is right. The first stride-2 1x1
transposed convolution (28x28x1 -> 4 channels, batch 1) kills the process (SIGSEGV, or
SIGABRT "malloc(): corrupted top size"). All 3x3 cases (strided and transposed) are right
(`--only=3x3`), and with TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's default on this CPU) every
case is. On CPUs where TensorFlow turns oneDNN on by default (AVX512-VNNI/BF16, AVX-VNNI,
AMX) the SIMD block is 16 floats, and issue 21 saw 8 channels crash at batch 1.
`--impl=layer` runs `vlae_tf.nn.Conv2D`, which subsamples before a stride-1 1x1
convolution instead (and spreads its result onto a zero map when transposed): every case
must be correct.
`tests/test_batch_of_one.py` runs it in a subprocess.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

TOLERANCE = 1e-4  # max |float32 - float64| / max |float64|; round-off is ~1e-7

# (kernel, stride, transpose, batch, size, in_channels, out_channels)
CASES = ([case for case in itertools.product((1, 3), (2,), (False, True), (1, 2), (28, 7),
                                             (1, 4, 6, 8, 16), (4, 16))]
         + [(1, 3, False, batch, 27, channels, 8) for batch in (1, 2) for channels in (4, 8)]
         + [(1, 2, False, 1, 13, 4, 8), (1, 2, True, 1, 13, 4, 8)])


def reference(x, kernel, bias, stride, transpose):
    """The function in plain TF ops (any dtype): a (strided) convolution plus bias.

    No weight normalisation: it is elementwise arithmetic around the convolution, and with
    one input channel it makes the kernel's gradient vanish (v / ||v|| = sign(v)), which
    would leave nothing but round-off to compare."""
    if transpose:  # kernel [k, k, out, in]
        batch, height, width, _ = x.shape
        y = tf.nn.conv2d_transpose(x, kernel, [batch, height * stride, width * stride,
                                               kernel.shape[2]], strides=stride,
                                   padding="SAME")
    else:
        y = tf.nn.conv2d(x, kernel, strides=stride, padding="SAME")
    return y + bias


def value_and_gradients(function, x, params, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x] + params)
        y = function(x, *params)
        loss = tf.reduce_sum(y * upstream)
    return [y] + tape.gradient(loss, [x] + params)


def run_case(impl, kernel_size, stride, transpose, batch, size, in_channels, out_channels,
             rng):
    x = rng.normal(size=(batch, size, size, in_channels))
    shape = ((kernel_size, kernel_size, out_channels, in_channels) if transpose
             else (kernel_size, kernel_size, in_channels, out_channels))
    params = [rng.normal(size=shape), rng.normal(size=out_channels)]
    out_size = size * stride if transpose else -(-size // stride)
    upstream = rng.normal(size=(batch, out_size, out_size, out_channels))

    def function64(x, *weights):
        return reference(x, *weights, stride, transpose)

    if impl == "layer":
        from vlae_tf.nn import layers as nn

        layer = nn.Conv2D(out_channels, kernel_size, strides=stride, transpose=transpose,
                          use_weight_norm=False)
        layer.build((batch, size, size, in_channels))
        for variable, value in zip((layer.kernel, layer.bias), params):
            variable.assign(value.astype(np.float32))

        def function32(x, *weights):
            del weights  # the layer's own variables (same values), watched by the tape
            return layer(x)

        # Keras variables wrap tf.Variables; the tape watches and differentiates those.
        params32 = [layer.kernel.value, layer.bias.value]
    else:
        function32 = function64
        params32 = [tf.constant(value, tf.float32) for value in params]

    got = value_and_gradients(function32, tf.constant(x, tf.float32), params32,
                              tf.constant(upstream, tf.float32))
    want = value_and_gradients(function64, tf.constant(x), [tf.constant(v) for v in params],
                               tf.constant(upstream))
    return [float(np.max(np.abs(np.asarray(g, np.float64) - w.numpy()))
                  / np.max(np.abs(w.numpy()))) for g, w in zip(got, want)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=("tf", "layer"), default="layer")
    parser.add_argument("--only", default="", help="run only the cases whose description "
                        "contains this text, e.g. '3x3' or 'transposed 1x1' (after a crash)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    names = ("output", "d_input", "d_kernel", "d_bias")
    wrong = count = 0
    for case in CASES:
        kernel_size, stride, transpose, batch, size, in_channels, out_channels = case
        description = (f"{'transposed ' if transpose else ''}{kernel_size}x{kernel_size} "
                       f"stride {stride}, x[{batch},{size},{size},{in_channels}] -> "
                       f"{out_channels} channels")
        if args.only not in description:
            continue
        count += 1
        print(f"case {description}", flush=True)
        errors = run_case(args.impl, *case, rng)
        bad = [f"{name} {error:.2g}" for name, error in zip(names, errors)
               if not error <= TOLERANCE]
        if bad:
            wrong += 1
            print(f"  WRONG (relative error): {', '.join(bad)}", flush=True)
    print(f"{wrong} of {count} cases wrong" if wrong else f"all {count} cases correct",
          flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
