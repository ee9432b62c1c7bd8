"""Shared test setup: TF backend for Keras, quiet logs, deterministic seeds."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# vlae_tf's default (oneDNN kernels on), set here too: a test module may import TensorFlow
# before vlae_tf, and TensorFlow reads this once, when it loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def pytest_xdist_auto_num_workers(config):
    """Workers for `-n auto` (pytest.ini): one more than the cores, since most of a test's
    time is single-threaded Python (tracing, Keras building) while TensorFlow's kernels
    use every core; at most one per 5 GiB of memory (a worker peaks at ~3.5 GB, and the
    fault-tolerance tests start three training processes at once). On this 2-core, 24 GiB
    machine: 3 workers, 940 s against 1,683 s in one process (BUILD_NOTES.md, "Build and
    install")."""
    del config
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = 8.0
    return max(1, min(cores + 1, int(memory_gib // 5)))
