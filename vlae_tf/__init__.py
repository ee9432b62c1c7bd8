"""vlae-tf: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TF2 / Keras 3 / TFP.

    import vlae_tf
    model = vlae_tf.VLAE(vlae_tf.presets.get("mnist_cpu"))
    model.compile()
    model.fit(dataset_of_uint8_images, epochs=1)
    model, config = vlae_tf.load("runs/quickstart")   # a launch.train model_dir
"""
import os

# Keras 3 must run on TensorFlow here: TFP's distributions and bijectors are TF code.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# A quiet start: TensorFlow's C++ INFO lines (CPU-feature banner, XLA compilation notices,
# SavedModel writer dumps) are noise to a user; level 1 drops INFO only, so warnings and
# errors still show. Read once, when TensorFlow loads: it only works if we get here first,
# and a value the user set wins (TF_CPP_MIN_LOG_LEVEL=0 brings the INFO lines back).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# oneDNN's CPU kernels: TensorFlow turns them on by default only on CPUs with AVX-512 VNNI,
# BF16 or AMX; on an AVX2 CPU they made a thin (12-32 channel) convolution and its
# gradients 2-3x faster and a training step 1.5-2x faster (BUILD_NOTES "Training speed"). Also read
# once when TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's Eigen kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from vlae_tf import presets  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402
from vlae_tf.loading import load  # noqa: E402
from vlae_tf.model import VLAE  # noqa: E402


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (decided when
    TensorFlow was first imported: by TF_ENABLE_ONEDNN_OPTS, else by the CPU)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


__all__ = ["VLAE", "VLAEConfig", "load", "onednn_enabled", "presets"]
__version__ = "0.1.0"
