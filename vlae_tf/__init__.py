"""vlae-tf: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TF2 / Keras 3 / TFP.

    import vlae_tf
    model = vlae_tf.VLAE(vlae_tf.presets.get("mnist_cpu"))
    model.compile()
    model.fit(dataset_of_uint8_images, epochs=1)
"""
import os

# Keras 3 must run on TensorFlow here: TFP's distributions and bijectors are TF code.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from vlae_tf import presets  # noqa: E402
from vlae_tf.config import VLAEConfig  # noqa: E402
from vlae_tf.model import VLAE  # noqa: E402

__all__ = ["VLAE", "VLAEConfig", "presets"]
__version__ = "0.1.0"
