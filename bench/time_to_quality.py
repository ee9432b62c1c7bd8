"""Time to quality: the test NLL the quickstart model reaches after N minutes of training.

    python bench/time_to_quality.py --minutes 5,10
    python bench/time_to_quality.py --minutes 10 --baseline_tree /tmp/base   # older code too

Runs `launch.quickstart` (preset `mnist_cpu` on the 4,000 mnist5k training digits, batch
64, EMA 0.99; its final evaluation: the importance-sampled NLL with K=128 on 200 test
digits, and the test ELBO on 500) with `--minutes=N`, in a fresh process per run, with
this tree (and `--baseline_tree`) first on PYTHONPATH. The budget stops training at the
first epoch end past N minutes (`launch.train --max_minutes`), so a run trains a little
longer than N; the minutes actually trained are reported. Run it on a quiet machine: the
figure is a property of the code *and* of the cores it gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import common  # noqa: E402


def run(tree, minutes, model_dir):
    """One quickstart in a fresh process; returns its eval.json figures."""
    if os.path.exists(os.path.join(model_dir, "eval.json")):
        print(f"{model_dir} is done; reading its eval.json (delete the directory to rerun)")
    else:
        command = [sys.executable, "-m", "launch.quickstart", f"--minutes={minutes}",
                   f"--model_dir={model_dir}", "--num_samples=16"]
        environment = dict(os.environ, PYTHONPATH=tree)
        subprocess.run(command, env=environment, cwd=tree, check=True)
    with open(os.path.join(model_dir, "eval.json")) as handle:
        evaluation = json.load(handle)
    with open(os.path.join(model_dir, "metrics.jsonl")) as handle:
        epochs = [json.loads(line) for line in handle
                  if line.strip() and '"epoch_seconds"' in line]
    nll = evaluation["importance_sampled"]
    return {"minutes_budget": minutes, "epochs": len(epochs),
            "steps": epochs[-1]["step"] if epochs else 0,
            "train_minutes": sum(epoch["epoch_seconds"] for epoch in epochs) / 60,
            "is_nll_nats": nll["nll_nats"], "is_nll_stderr": nll["nll_stderr"],
            "is_k": nll["num_importance_samples"], "is_images": nll["num_images"],
            "test_negative_elbo_nats": evaluation["elbo"]["negative_elbo_nats"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="5,10", help="comma-separated budgets")
    parser.add_argument("--baseline_tree", default=None,
                        help="another checkout of the code, run after this one per budget")
    parser.add_argument("--work_dir", default="runs/time_to_quality")
    parser.add_argument("--output", default="bench/results/time_to_quality.json")
    args = parser.parse_args()
    budgets = [float(value) for value in args.minutes.split(",") if value]
    trees = [("this", ROOT)]
    if args.baseline_tree:
        if not os.path.isdir(os.path.join(args.baseline_tree, "vlae_tf")):
            parser.error(f"--baseline_tree: expected a checkout with vlae_tf/; got "
                         f"{args.baseline_tree!r}")
        trees.append(("baseline", os.path.abspath(args.baseline_tree)))
    rows = []
    for minutes in budgets:
        for label, tree in trees:
            model_dir = os.path.abspath(os.path.join(args.work_dir, f"{label}-{minutes:g}min"))
            row = dict(run(tree, minutes, model_dir), tree=label)
            rows.append(row)
            print(f"{label}, {minutes:g} min: IS-NLL {row['is_nll_nats']:.2f} ± "
                  f"{row['is_nll_stderr']:.2f} nats ({row['steps']} steps in "
                  f"{row['train_minutes']:.1f} min)", flush=True)
    common.print_table(rows, ["tree", "minutes_budget", "train_minutes", "epochs", "steps",
                              "is_nll_nats", "is_nll_stderr", "test_negative_elbo_nats"])
    common.write_json(args.output, {"machine": common.machine(), "command": " ".join(sys.argv),
                                    "rows": rows})


if __name__ == "__main__":
    main()
