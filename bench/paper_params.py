"""Parameter counts per component of the paper presets, next to what the paper states.

    python3 -m bench.paper_params            # prints a markdown table, writes JSON

The paper (Chen et al. 2017, App. A; Kingma et al. 2016, App. B) gives architectures, not
parameter counts; the "paper" column states the architecture each count comes from.
Results: bench/results/paper_params.json.
"""

from __future__ import annotations

import json
import os

import vlae_tf

PRESETS = ("mnist_paper", "binarized_mnist_paper", "omniglot_paper", "caltech101_paper",
           "mnist_gated")
PAPER = {
    "encoder": "3x3 ResNet, [16, 32, 32] maps, each stride-2 block + a stride-1 block, "
               "450-unit dense, Gaussian of 64 dims",
    "latent_map": "generation network symmetric to the encoder, to a 28x28x4 map",
    "prior": "4 mean-only AF steps, each a 3-layer MADE with 640 hidden units",
    "pixelcnn": "6 masked 3x3 layers x 12 filters (1 mask-A, 5 mask-B), 4 1x1 ResNet "
                "blocks; tied masked weights on static MNIST",
}
RESULTS = os.path.join(os.path.dirname(__file__), "results", "paper_params.json")


def count(layer) -> int:
    return int(sum(int(variable.numpy().size) for variable in layer.trainable_weights))


def main():
    rows = []
    for preset in PRESETS:
        model = vlae_tf.VLAE(vlae_tf.presets.get(preset))
        row = {"preset": preset}
        for part in ("encoder", "latent_map", "prior", "pixelcnn"):
            row[part] = count(getattr(model, part))
        row["total"] = count(model)
        rows.append(row)
    parts = ("encoder", "latent_map", "prior", "pixelcnn", "total")
    print("| preset | " + " | ".join(parts) + " |")
    print("|---" * (len(parts) + 1) + "|")
    for row in rows:
        print(f"| {row['preset']} | " + " | ".join(f"{row[p]:,}" for p in parts) + " |")
    print("\nWhat the paper states per component:")
    for part, text in PAPER.items():
        print(f"- {part}: {text}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump({"command": "python3 -m bench.paper_params", "rows": rows, "paper": PAPER},
                  handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
