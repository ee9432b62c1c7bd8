"""bench.claims: every model differs from its base in exactly the one change it names, and
the verdicts say "does not hold" when the numbers say so."""

import dataclasses

import pytest
from absl import flags
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
SHARED_CHANGES = {"free_bits", "free_bits_groups", "free_bits_mode", "ema_momentum", "seed"}


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
    rows = {name: {"nll_nats": value, "nll_stderr": 1.0} for name, value in nll.items()}
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
