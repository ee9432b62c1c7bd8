"""Command-line entry points of vlae-tf (absl apps) and their flagfiles.

    python -m launch.train --flagfile=launch/configs/mnist5k_cpu.flags [--overrides]
    python -m launch.evaluate --model_dir=runs/mnist5k_cpu [--num_importance_samples=4096]
    python -m launch.sample --model_dir=runs/mnist5k_cpu [--num=64 --seed=0]
    python -m launch.quickstart

Each `main()` is a thin shell over a plain function that tests call directly:
`launch.train.train(config, TrainOptions(...))`, `launch.evaluate.evaluate(...)`,
`launch.sample.sample(...)`, `launch.quickstart.quickstart(...)`. Shared helpers live in
`launch.common`.
"""

# Every entry point (python -m launch.X) runs this first, before anything imports
# TensorFlow: vlae_tf sets the quiet-start defaults (KERAS_BACKEND, TF_CPP_MIN_LOG_LEVEL=1,
# unless already set; README "Quiet start").
import logging  # noqa: E402
import os  # noqa: E402

if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") != "0":
    # TensorFlow's Python INFO lines (absl's app.run prints them: launch.export wrote five
    # multi-kilobyte "contains input name(s)" lines) go too; WARNING and above stay, and
    # TF_CPP_MIN_LOG_LEVEL=0, the same switch as for the C++ lines, keeps everything.
    # (TensorFlow code that logs through absl's logger: common.run_main, after app.run
    # has parsed --verbosity, which resets that logger's level.)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)

import vlae_tf  # noqa: E402,F401
