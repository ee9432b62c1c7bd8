"""bench.claims: every model differs from its base in exactly the one change it names, and
the verdicts say "does not hold" when the numbers say so."""

import dataclasses
import json
import os
import types

import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver

from bench import claims

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS(["bench.claims"])
    with flagsaver.flagsaver():
        yield


# Fields a run may legitimately change on top of its own entry in claims.RUNS.
SHARED_CHANGES = {"free_bits", "free_bits_groups", "free_bits_mode", "free_bits_hold_steps",
                  "free_bits_anneal_steps", "ema_momentum", "seed"}


@pytest.mark.parametrize("dataset,likelihood", [("mnist5k_binary", "bernoulli"),
                                                ("fashion_mnist", "logistic_mixture")])
@pytest.mark.parametrize("free_bits", [0.0, 7.84])
def test_each_run_is_the_base_preset_with_one_change(dataset, likelihood, free_bits):
    FLAGS.dataset, FLAGS.free_bits, FLAGS.seed = dataset, free_bits, 3
    configs = {name: claims.run_config(name) for name in claims.RUNS}
    base = claims.common.make_config(claims.base_preset())
    assert base.likelihood == likelihood
    for name, config in configs.items():
        changed = {field.name for field in dataclasses.fields(config)
                   if getattr(config, field.name) != getattr(base, field.name)}
        assert changed - SHARED_CHANGES <= set(claims.RUNS[name][1]), name
        assert config.seed == 3 and config.ema_momentum == 0.99
        assert config.free_bits == free_bits
        assert config.free_bits_mode == ("hard" if free_bits else "none")
    # The budget is shared: every objective-relevant setting but the named one is equal.
    assert configs["window_5x3"].window == (5, 3)
    assert configs["window_global"].window is None
    assert not configs["unconditional_5x3"].use_latent


def test_variant_names_the_budget_and_keeps_free_bits_runs_apart():
    FLAGS.dataset, FLAGS.steps, FLAGS.seed, FLAGS.free_bits = "fashion_mnist", 50, 1, 0.0
    plain = claims.variant()
    assert plain == "fashion_mnist-50steps-seed1"
    FLAGS.free_bits = 7.84
    assert claims.variant() == "fashion_mnist-50steps-seed1-freebits7.84"
    assert claims.run_dir("window_5x3").endswith("-freebits7.84/window_5x3")


def _rows(kls, nlls, stderr=0.5):
    return {name: {"kl_nats": kl, "nll_nats": nll, "nll_stderr": stderr}
            for name, kl, nll in zip(claims.CLAIM_RUNS[2], kls, nlls)}


def test_verdict_2_needs_both_trends():
    holds, text = claims.verdict_2(_rows([20, 3, 1, 0.5, 0.1], [110, 100, 96, 93, 90]))
    assert holds and text.count("NOT") == 0
    holds, text = claims.verdict_2(_rows([20, 3, 4, 0.5, 0.1], [110, 100, 96, 93, 90]))
    assert not holds and "KL" in text and "NOT monotone" in text
    holds, _ = claims.verdict_2(_rows([20, 3, 1, 0.5, 0.1], [110, 100, 96, 97, 90]))
    assert not holds


def test_verdict_1_and_3_follow_the_numbers():
    rows = {"window_global": {"kl_nats": 0.2}, "window_5x3": {"kl_nats": 9.0}}
    assert claims.verdict_1(rows)[0]
    rows["window_5x3"]["kl_nats"] = 0.3
    assert not claims.verdict_1(rows)[0]
    nll = {"window_5x3": 95.0, "unconditional_5x3": 97.0, "window_1x0": 105.0}
    # Without per-image values the gap is judged on the unpaired s.e.: 2 > 2 x 0.71.
    rows = {name: {"nll_nats": value, "nll_stderr": 0.5} for name, value in nll.items()}
    assert claims.verdict_3(rows)[0]
    rows["unconditional_5x3"]["nll_nats"] = 94.0
    holds, text = claims.verdict_3(rows)
    assert not holds and "-1.00 nats" in text


def test_information_is_the_mutual_information_when_measured():
    # Hard free bits hold both KLs at the floor; only the MI tells the codes apart.
    rows = {"window_global": {"kl_nats": 8.0, "mutual_information_nats": 0.2},
            "window_5x3": {"kl_nats": 8.1, "mutual_information_nats": 4.0}}
    holds, text = claims.verdict_1(rows)
    assert holds and text.startswith("MI global 0.20")
    rows["window_global"]["mutual_information_nats"] = 3.0
    assert not claims.verdict_1(rows)[0]
    rows["window_global"]["mutual_information_nats"] = None  # e.g. an IAF posterior
    assert claims.verdict_1(rows)[1].startswith("KL global 8.00")


# --------------------------------------------------------------- free-bits schedule variant
def test_schedule_variant_names_the_schedule_and_sets_it_on_every_run():
    FLAGS.dataset, FLAGS.steps, FLAGS.free_bits = "mnist5k_binary", 800, 7.84
    permanent = claims.variant(0)
    assert permanent == "mnist5k_binary-800steps-seed0-freebits7.84"
    FLAGS.free_bits_schedule = "400,200"
    assert claims.variant(0) == "mnist5k_binary-800steps-seed0-freebits7.84-hold400-anneal200"
    assert claims.run_dir("window_5x3", 2).endswith(
        os.path.join("mnist5k_binary-800steps-seed2-freebits7.84-hold400-anneal200",
                     "window_5x3"))
    for name in claims.RUNS:
        config = claims.run_config(name, seed=1)
        assert (config.free_bits, config.free_bits_mode) == (7.84, "hard")
        assert (config.free_bits_hold_steps, config.free_bits_anneal_steps) == (400, 200)
        assert config.seed == 1
    FLAGS.free_bits_schedule = ""
    assert claims.run_config("window_5x3").free_bits_anneal_steps == 0  # permanent floor
    FLAGS.free_bits = 0.0
    assert claims.variant(0) == "mnist5k_binary-800steps-seed0"  # free bits off
    assert claims.run_config("window_5x3").free_bits_mode == "none"


@pytest.mark.parametrize("schedule, free_bits", [("400", 7.84), ("a,b", 7.84), ("-1,10", 7.84),
                                                 ("10,0", 7.84), ("1,2,3", 7.84),
                                                 ("400,200", 0.0)])
def test_bad_schedules_are_refused(schedule, free_bits):
    FLAGS.free_bits, FLAGS.free_bits_schedule = free_bits, schedule
    with pytest.raises(app.UsageError, match="--free_bits_schedule"):
        claims.variant()


def test_seeds_each_get_their_runs_and_the_sweep_its_results_directory():
    FLAGS.dataset, FLAGS.steps, FLAGS.free_bits = "mnist5k_binary", 800, 7.84
    FLAGS.free_bits_schedule = "400,200"
    assert claims.seeds() == [0]  # no --seeds: --seed
    FLAGS.seeds = ["0", "1", "2"]
    assert claims.seeds() == [0, 1, 2]
    assert claims.sweep_variant() == (
        "mnist5k_binary-800steps-seeds0-1-2-freebits7.84-hold400-anneal200")
    assert claims.sweep_variant([3]) == claims.variant(3)  # one seed: as before
    assert len({claims.run_dir("window_5x3", seed) for seed in (0, 1, 2)}) == 3
    assert claims.run_result_path("window_5x3", 1) == os.path.join(
        FLAGS.results_dir, claims.variant(1), "runs", "window_5x3.json")
    for bad in (["0", "x"], ["1", "1"]):
        FLAGS.seeds = bad
        with pytest.raises(app.UsageError, match="--seeds"):
            claims.seeds()


# -------------------------------------------------------------------- paired statistics
def _seed_row(nll, **values):
    nll = np.asarray(nll, np.float64)
    return {"nll_nats": float(nll.mean()), "nll_stderr": float(nll.std(ddof=1) /
                                                                 np.sqrt(len(nll))),
            "nll_per_image": nll.tolist(), **values}


def test_nll_gaps_are_paired_per_image_differences():
    rng = np.random.default_rng(0)
    images = rng.normal(100.0, 20.0, size=50)  # what the images share: large, cancels
    vlae = images + rng.normal(0.0, 0.3, size=50)
    baseline = images + 1.0 + rng.normal(0.0, 0.3, size=50)
    rows = {"window_5x3": _seed_row(vlae), "unconditional_5x3": _seed_row(baseline),
            "window_1x0": _seed_row(baseline + 5.0)}
    gap = claims.nll_gap(rows, "unconditional_5x3", "window_5x3")
    differences = baseline - vlae
    assert gap["paired"] and gap["over"] == "images" and gap["num_images"] == 50
    assert gap["mean_nats"] == pytest.approx(differences.mean())
    assert gap["stderr_nats"] == pytest.approx(differences.std(ddof=1) / np.sqrt(50))
    assert gap["significant"]
    # Unpaired, the same gap is inside 2 s.e. (the images' spread of 20 nats dominates).
    unpaired = {name: {key: row[key] for key in ("nll_nats", "nll_stderr")}
                for name, row in rows.items()}
    loose = claims.nll_gap(unpaired, "unconditional_5x3", "window_5x3")
    assert not loose["paired"] and not loose["significant"]
    assert loose["mean_nats"] == pytest.approx(gap["mean_nats"])
    holds, text = claims.verdict_3(rows)
    assert holds and "paired over 50 images" in text
    assert not claims.verdict_3(unpaired)[0]
    with pytest.raises(ValueError, match="same length"):
        claims.paired_difference([1.0, 2.0], [1.0])


def test_gaps_over_seeds_are_the_mean_and_se_of_the_per_seed_paired_gaps():
    rng = np.random.default_rng(1)
    per_seed_gap = {0: 1.0, 1: 2.0, 2: 4.0}
    rows_by_seed = {}
    for seed, offset in per_seed_gap.items():
        images = rng.normal(100.0, 20.0, size=40)
        noise = rng.normal(0.0, 0.1, size=40)
        rows_by_seed[seed] = {
            "window_5x3": _seed_row(images, kl_nats=8.0 + seed, run="window_5x3"),
            "standard_normal_prior": _seed_row(images + offset + noise - noise.mean(),
                                               kl_nats=7.0, run="standard_normal_prior")}
    rows = claims.aggregate(rows_by_seed)
    gap = claims.nll_gap(rows, "standard_normal_prior", "window_5x3")
    assert gap["over"] == "seeds" and gap["num_seeds"] == 3 and gap["paired"]
    assert [seed_gap["mean_nats"] for seed_gap in gap["per_seed"]] == pytest.approx([1, 2, 4])
    assert gap["mean_nats"] == pytest.approx(7.0 / 3.0)
    assert gap["stderr_nats"] == pytest.approx(np.std([1, 2, 4], ddof=1) / np.sqrt(3))
    assert gap["significant"]  # 2.33 > 2 x 0.88
    # The table's numbers are means over seeds with their s.e. over seeds.
    vlae = rows["window_5x3"]
    assert vlae["kl_nats"] == pytest.approx(9.0)
    assert vlae["kl_nats_seed_stderr"] == pytest.approx(1.0 / np.sqrt(3))
    means = [rows_by_seed[seed]["window_5x3"]["nll_nats"] for seed in per_seed_gap]
    assert vlae["nll_nats"] == pytest.approx(np.mean(means))
    assert vlae["nll_stderr"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(3))
    public = claims.public_row(vlae)
    assert "per_seed" not in public and public["seed_values"]["kl_nats"] == [8.0, 9.0, 10.0]
    json.dumps(public)  # what goes into claim<N>.json
    assert claims._value_text(vlae, "kl_nats") == f"9.00 ± {1 / np.sqrt(3):.2f}"


# ---------------------------------------------------------------------------- convergence
def test_convergence_criterion_on_hand_made_curves():
    steps = np.arange(100, 1001, 100)
    # Falling 1 nat per 100 steps: over the last 20% (200 steps) the fit falls 2 nats.
    falling = claims.convergence_check(list(zip(steps, 120.0 - steps / 100.0)))
    assert falling["converged"] is False and falling["gain_nats"] == pytest.approx(2.0)
    assert falling["points"] == 3 and falling["window"] == [800, 1000]  # steps 800, 900, 1000
    assert "NOT converged" in falling["text"] and "< 0.3 nats" in falling["text"]
    # Flat with +-0.2 nats of noise: the fitted gain is small, converged.
    flat = claims.convergence_check(list(zip(steps, 95.0 + 0.2 * (-1.0) ** (steps // 100))))
    assert flat["converged"] is True and abs(flat["gain_nats"]) < 0.3
    # 0.1 nats per 100 steps: a gain of 0.2 < 0.3, converged; 0.2 per 100: 0.4, not.
    assert claims.convergence_check(list(zip(steps, 90.0 - steps / 1000.0)))["converged"]
    assert not claims.convergence_check(list(zip(steps, 90.0 - steps / 500.0)))["converged"]
    # A window holding one point uses the last two points of the curve.
    sparse = claims.convergence_check([(100, 110.0), (500, 100.0), (1000, 99.0)])
    assert sparse["points"] == 2 and sparse["gain_nats"] == pytest.approx(1.0 / 500 * 200)
    assert claims.convergence_check([(100, 1.0)])["converged"] is None


def test_training_curve_prefers_validation_then_the_step_lines(tmp_path):
    lines = [{"kind": "step", "step": 100, "elbo_nats": -110.0},
             {"kind": "step", "step": 200, "elbo_nats": -100.0},
             {"kind": "epoch", "step": 200, "elbo_nats": -105.0},
             {"kind": "latent", "step": 200, "kl_nats": 3.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    what, curve = claims.training_curve(str(tmp_path))
    assert what.startswith("training") and curve == [(100, 110.0), (200, 100.0)]
    lines += [{"kind": "epoch", "step": 100, "validation_negative_elbo_nats": 112.0},
              {"kind": "epoch", "step": 300, "validation_negative_elbo_nats": 104.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    what, curve = claims.training_curve(str(tmp_path))
    assert what.startswith("validation") and curve == [(100, 112.0), (300, 104.0)]


# --------------------------------------------------------------------------------- resume
class FakeTraining:
    """Stands in for launch.train, loading and evaluation: records the (run, seed) pairs it
    trains, writes a metrics.jsonl, and can be told to die (an interrupted sweep)."""

    def __init__(self, monkeypatch, die_at=None):
        self.trained, self.die_at = [], die_at
        monkeypatch.setattr(claims.train_lib, "train", self.train)
        monkeypatch.setattr(claims.common, "load_trained_model",
                            lambda model_dir: (types.SimpleNamespace(model_dir=model_dir), None))
        monkeypatch.setattr(claims, "importance_sampled", self.importance_sampled)
        monkeypatch.setattr(claims, "latent_information", lambda name, config, model=None: {
            "mutual_information_nats": 0.1 if config.window is None else 3.0,
            "active_units": 4})

    def train(self, config, options):
        key = (os.path.basename(options.model_dir), config.seed)
        if key == self.die_at:
            raise KeyboardInterrupt("killed")
        self.trained.append(key)
        os.makedirs(options.model_dir, exist_ok=True)
        with open(os.path.join(options.model_dir, "metrics.jsonl"), "w") as handle:
            for step in range(100, 1001, 100):
                handle.write(json.dumps({"kind": "step", "step": step,
                                         "elbo_nats": -(100.0 + 100.0 / step)}) + "\n")
        elbo = {"negative_elbo_nats": 100.0, "kl_nats": 5.0, "recon_nats": 95.0}
        return {"step": 1000, "train_seconds": 60.0, "eval": {"elbo": elbo}}

    def importance_sampled(self, model, options, step):
        name = os.path.basename(options.model_dir)
        nll = 90.0 + np.arange(8.0) + (0.0 if name == "window_5x3" else 2.0)
        summary = {"nll_nats": float(nll.mean()), "nll_stderr": 0.5, "bits_per_dim": 0.17}
        return summary, nll


def test_a_stored_run_is_not_trained_again_and_changed_settings_redo_it(tmp_path, monkeypatch):
    FLAGS.work_dir, FLAGS.results_dir = str(tmp_path / "runs"), str(tmp_path / "results")
    fake = FakeTraining(monkeypatch)
    row = claims.train_run("window_5x3", seed=1)
    assert fake.trained == [("window_5x3", 1)]
    stored = json.loads(open(claims.run_result_path("window_5x3", 1)).read())
    assert stored["row"]["nll_per_image"] == list(90.0 + np.arange(8.0))
    assert stored["row"]["convergence"]["converged"] is True  # gain 0.03 nats
    assert stored["settings"]["config"]["seed"] == 1
    again = claims.train_run("window_5x3", seed=1)
    assert fake.trained == [("window_5x3", 1)] and again == json.loads(json.dumps(row))
    FLAGS.num_importance_samples = 64  # another evaluation: recomputed
    claims.train_run("window_5x3", seed=1)
    assert fake.trained == [("window_5x3", 1)] * 2


def test_an_interrupted_sweep_resumes_with_the_first_unfinished_run(tmp_path, monkeypatch):
    FLAGS.work_dir, FLAGS.results_dir = str(tmp_path / "runs"), str(tmp_path / "results")
    FLAGS.claim, FLAGS.seeds, FLAGS.free_bits = ["1"], ["0", "1"], 7.84
    FLAGS.free_bits_schedule = "10,20"
    monkeypatch.setattr(claims, "plot", lambda *args, **kwargs: None)
    fake = FakeTraining(monkeypatch, die_at=("window_5x3", 1))
    with pytest.raises(KeyboardInterrupt):
        claims.main([])
    assert fake.trained == [("window_5x3", 0), ("window_global", 0)]  # seed 0 stored
    fake.die_at = None
    claims.main([])
    assert fake.trained[2:] == [("window_5x3", 1), ("window_global", 1)]
    results = tmp_path / "results" / "mnist5k_binary-800steps-seeds0-1-freebits7.84-hold10-anneal20"
    claim = json.loads((results / "claim1.json").read_text())
    assert claim["holds"] and claim["budget"]["seeds"] == [0, 1]
    assert claim["budget"]["free_bits_schedule"] == {"hold_steps": 10, "anneal_steps": 20}
    assert "held 10 steps, then annealed to 0 over 20" in (results / "summary.md").read_text()
    claims.main([])  # everything stored: nothing is trained
    assert len(fake.trained) == 4


# ----------------------------------------------------------- claims 6-7 (the paper's C4, C8)
def test_claims_6_and_7_reuse_the_sweeps_runs_and_all_includes_them():
    assert claims.claim_numbers(["all"]) == [1, 2, 3, 4, 5, 6, 7]
    assert claims.claim_numbers(["7", "6", "6"]) == [6, 7]
    for bad in (["8"], ["0"], ["x"]):
        with pytest.raises(app.UsageError, match=r"--claim: expected 1\.\.7 or all"):
            claims.claim_numbers(bad)
    assert set(claims.CLAIMS) == set(claims.CLAIM_RUNS) == set(range(1, 8))
    # No new training: claims 6 and 7 only read runs that claims 2-4 train.
    earlier = {name for claim in (2, 3, 4) for name in claims.CLAIM_RUNS[claim]}
    assert set(claims.CLAIM_RUNS[6]) | set(claims.CLAIM_RUNS[7]) <= earlier
    assert claims.CLAIM_RUNS[6] == ["window_5x3", "window_1x0"]
    assert claims.CLAIM_RUNS[7] == ["unconditional_5x3", "standard_normal_prior", "window_5x3"]


def test_verdict_6_compares_the_kl_in_bits():
    # 13.3 nats = 19.19 bits, 25.85 nats = 37.29 bits (the paper's 19.2 vs 37.3).
    rows = {"window_5x3": {"kl_nats": 13.3}, "window_1x0": {"kl_nats": 25.85}}
    holds, text = claims.verdict_6(rows)
    assert holds
    assert claims.code_bits(rows["window_5x3"]) == (pytest.approx(13.3 / np.log(2)), None)
    assert "(VLAE) 19.2 bits vs window 1x0 (factorised VAE) 37.3 bits" in text
    assert "paper, static MNIST: 19.2 vs 37.3" in text
    assert "code is used (KL 13.30 nats" in text  # no MI measured: its bound, the KL
    rows["window_5x3"]["kl_nats"] = 26.0  # 37.5 bits: a longer code than the VAE's
    holds, text = claims.verdict_6(rows)
    assert not holds and "(VLAE) 37.5 bits" in text
    # A collapsed code is short too, but it is not the paper's point: z must be used.
    rows["window_5x3"].update(kl_nats=0.2, mutual_information_nats=0.1)
    holds, text = claims.verdict_6(rows)
    assert not holds and "(VLAE) 0.3 bits" in text and "code is used (MI 0.10 nats" in text
    rows["window_5x3"].update(kl_nats=9.0, mutual_information_nats=4.0)
    assert claims.verdict_6(rows)[0]


def test_verdict_6_over_seeds_reports_mean_and_se_in_bits():
    ln2 = np.log(2)
    rows_by_seed = {seed: {"window_5x3": {"run": "window_5x3", "kl_nats": kl * ln2,
                                          "nll_nats": 90.0},
                           "window_1x0": {"run": "window_1x0", "kl_nats": 36.0 * ln2,
                                          "nll_nats": 95.0}}
                    for seed, kl in enumerate([18.0, 20.0, 22.0])}
    rows = claims.aggregate(rows_by_seed)
    bits, stderr = claims.code_bits(rows["window_5x3"])
    assert bits == pytest.approx(20.0) and stderr == pytest.approx(2.0 / np.sqrt(3))
    holds, text = claims.verdict_6(rows)
    assert holds and f"20.0 ± {2 / np.sqrt(3):.1f} bits vs" in text and "36.0 ± 0.0 bits" in text
    assert "= +16.0 bits" in text and "over 3 seeds of the per-seed gaps" in text
    rows_by_seed[1]["window_5x3"]["kl_nats"] = 80.0 * ln2  # the mean is now 40 > 36 bits
    assert not claims.verdict_6(claims.aggregate(rows_by_seed))[0]


def _claim_7_rows(no_z_gap, normal_gap, noise=0.3, size=60):
    """Paired per-image NLLs: window_5x3, + normal_gap (N(0, I)), + no_z_gap (no z)."""
    rng = np.random.default_rng(2)
    images = rng.normal(100.0, 20.0, size=size)  # shared by the models, cancels in pairs
    vlae = images + rng.normal(0.0, noise, size=size)
    normal = vlae + normal_gap + rng.normal(0.0, noise, size=size)
    return {"window_5x3": _seed_row(vlae), "standard_normal_prior": _seed_row(normal),
            "unconditional_5x3": _seed_row(normal + no_z_gap
                                           + rng.normal(0.0, noise, size=size))}


def test_verdict_7_needs_both_paired_steps_in_order():
    holds, text = claims.verdict_7(_claim_7_rows(2.0, 1.0))
    assert holds and "lower at every step" in text and "NOT" not in text
    assert text.count("paired over 60 images") == 2
    assert "unconditional_5x3 - standard_normal_prior = +" in text
    assert "standard_normal_prior - window_5x3 = +" in text
    # One step reversed: the N(0, I) prior worse than no z, or better than the AF prior.
    for gaps in ((-1.0, 1.0), (2.0, -1.0)):
        holds, text = claims.verdict_7(_claim_7_rows(*gaps))
        assert not holds and "NOT lower at every step" in text and "not > 2 s.e." in text
    # A step in the right direction but inside 2 s.e. of its paired differences.
    rows = _claim_7_rows(2.0, 0.05)
    gap = claims.nll_gap(rows, "standard_normal_prior", "window_5x3")
    assert 0 < gap["mean_nats"] < 2 * gap["stderr_nats"]
    assert not claims.verdict_7(rows)[0]
    # Unpaired (no per-image values), the images' spread of 20 nats hides both gaps.
    unpaired = {name: {key: row[key] for key in ("nll_nats", "nll_stderr")}
                for name, row in _claim_7_rows(2.0, 1.0).items()}
    assert not claims.verdict_7(unpaired)[0]


def test_claims_6_and_7_are_written_from_the_runs_of_the_sweep(tmp_path, monkeypatch):
    FLAGS.work_dir, FLAGS.results_dir = str(tmp_path / "runs"), str(tmp_path / "results")
    FLAGS.claim = ["6", "7"]
    monkeypatch.setattr(claims, "plot", lambda *args, **kwargs: None)
    fake = FakeTraining(monkeypatch)
    claims.main([])
    assert sorted(fake.trained) == sorted(
        (name, 0) for name in ["window_5x3", "window_1x0", "unconditional_5x3",
                               "standard_normal_prior"])
    results = tmp_path / "results" / "mnist5k_binary-800steps-seed0"
    six = json.loads((results / "claim6.json").read_text())
    seven = json.loads((results / "claim7.json").read_text())
    # The fake gives every latent model a KL of 5 nats: not shorter. And the N(0, I) prior
    # ties the unconditional decoder (both 2 nats worse than the VLAE): not in order.
    assert not six["holds"] and "7.2 bits vs" in six["verdict"]
    assert not seven["holds"] and "NOT lower at every step" in seven["verdict"]
    summary = (results / "summary.md").read_text()
    assert "### Claim 6: The VLAE's code is shorter" in summary
    assert "### Claim 7: In NLL: unconditional PixelCNN" in summary
