"""Shared test setup: TF backend for Keras, quiet logs, deterministic seeds."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# vlae_tf's default (oneDNN kernels on), set here too: a test module may import TensorFlow
# before vlae_tf, and TensorFlow reads this once, when it loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
