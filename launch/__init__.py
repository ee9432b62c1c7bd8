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
