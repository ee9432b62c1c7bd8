"""vlae_tf.disentanglement: exact entropy / MI on hand-computable examples, and the two
metrics pinned at their ends: codes = the true factors score ~1, random codes score chance,
and a code that rotates two factors into two units scores clearly lower than the clean one
(though it keeps all the information)."""

import math

import numpy as np
import pytest

from vlae_tf import disentanglement as dis

SIZES = (3, 6, 40, 32, 32)  # the dSprites factor grid


def _true(factors):
    return factors.astype(np.float64)


def _random(seed=7):
    rng = np.random.default_rng(seed)
    return lambda factors: rng.normal(size=(len(factors), len(SIZES)))


def _rotated(factors):
    """The true factors with pos_x and pos_y (same size) rotated into (x + y, x - y)."""
    codes = factors.astype(np.float64)
    codes[:, 3], codes[:, 4] = factors[:, 3] + factors[:, 4], factors[:, 3] - factors[:, 4]
    return codes


def _mig(representation, num_bins=dis.DEFAULT_NUM_BINS):
    codes, factors = dis.sample_codes(representation, SIZES, 6000, seed=0)
    return dis.mutual_information_gap(codes, factors, num_bins=num_bins)


def _beta_vae(representation, seed=0):
    return dis.beta_vae_metric(representation, SIZES, num_train=400, num_eval=500,
                               pairs_per_point=32, seed=seed)


# ----------------------------------------------------------------- exact, by hand
def test_entropy_and_mutual_information_by_hand():
    assert dis.entropy([0, 0, 1, 1]) == pytest.approx(math.log(2))
    assert dis.entropy(["a", "a", "a", "b"]) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert dis.entropy([5, 5, 5]) == 0.0
    # p(a, b): (0,0) 1/2, (1,0) 1/4, (1,1) 1/4; p(a) = (1/2, 1/2), p(b) = (3/4, 1/4):
    # I = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2 = 3/2 ln 2 - 3/4 ln 3.
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    expected = 1.5 * math.log(2) - 0.75 * math.log(3)
    assert dis.mutual_information(a, b) == pytest.approx(expected, abs=1e-15)
    assert dis.mutual_information(b, a) == pytest.approx(expected, abs=1e-15)
    assert dis.mutual_information([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0  # independent
    assert dis.mutual_information(a, ["x", "x", "y", "y"]) == pytest.approx(math.log(2))


def test_discretize_and_mig_by_hand():
    np.testing.assert_array_equal(dis.discretize([[0.0, 3.0], [0.5, 3.0], [1.0, 3.0]], 2),
                                  [[0, 0], [1, 0], [1, 0]])  # constant column: bin 0
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    # One unit that is factor 0: gap ln 2 / ln 2 = 1 for factor 0, 0 for factor 1.
    details = dis.mutual_information_gap(factors[:, :1], factors, return_details=True)
    assert details["mig"] == pytest.approx(0.5)
    np.testing.assert_allclose(details["per_factor"], [1.0, 0.0])
    np.testing.assert_allclose(details["entropy"], [math.log(2)] * 2)
    assert dis.mutual_information_gap(factors, factors) == pytest.approx(1.0)
    # Both units a copy of factor 0: no gap at all.
    assert dis.mutual_information_gap(factors[:, [0, 0]], factors) == pytest.approx(0.0)
    # A constant factor cannot be normalised: left out, and said so.
    constant = np.concatenate([factors, np.zeros((4, 1), int)], axis=1)
    details = dis.mutual_information_gap(factors, constant, return_details=True)
    assert details["skipped"] == [2] and details["mig"] == pytest.approx(1.0)


def test_logistic_regression_separates_and_is_deterministic():
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    labels = rng.integers(0, 3, 600)
    features = centres[labels] + rng.normal(size=(600, 2)) * 0.5
    model = dis.fit_logistic_regression(features, labels, 3)
    assert np.mean(dis.logistic_regression_predict(model, features) == labels) > 0.99
    again = dis.fit_logistic_regression(features, labels, 3)
    np.testing.assert_array_equal(model["weights"], again["weights"])


# ------------------------------------------------------------------- the metrics' ends
def test_the_true_factors_score_about_one():
    assert _mig(_true) > 0.97
    assert _beta_vae(_true) >= 0.95
    # With Locatello et al.'s 20 bins, orientation (40 values) and position (32) lose
    # resolution: the same perfect code scores about 0.90.
    assert 0.85 < _mig(_true, num_bins=20) < 0.92


def test_random_codes_score_chance():
    assert _mig(_random()) < 0.02
    assert abs(_beta_vae(_random()) - 1 / len(SIZES)) < 0.08


def test_rotating_two_factors_into_two_units_scores_clearly_lower():
    """(x + y, x - y) keeps all of pos_x and pos_y, but neither unit is one factor."""
    clean_mig, mixed_mig = _mig(_true), _mig(_rotated)
    assert mixed_mig < clean_mig - 0.3  # two of five factors lose their gap: ~0.6
    clean, mixed = _beta_vae(_true), _beta_vae(_rotated)
    assert mixed < clean - 0.1  # fixing x or fixing y look alike: ~0.8
    assert mixed > 0.6  # the other three factors are still told apart


def test_seeded_and_deterministic():
    first = dis.beta_vae_metric(_true, SIZES, num_train=50, num_eval=50, pairs_per_point=4,
                                seed=3, return_details=True)
    assert first == dis.beta_vae_metric(_true, SIZES, num_train=50, num_eval=50,
                                        pairs_per_point=4, seed=3, return_details=True)
    codes, factors = dis.sample_codes(_true, SIZES, 100, seed=4)
    np.testing.assert_array_equal(factors, dis.sample_codes(_true, SIZES, 100, seed=4)[1])
    np.testing.assert_array_equal(codes, factors)
    # The pairs of a point share exactly their fixed factor's column.
    features, fixed = dis.beta_vae_features(_true, SIZES, 200, pairs_per_point=8, seed=5)
    assert np.all(features[np.arange(200), fixed] == 0)
    assert features.shape == (200, 5)


def test_bad_input_names_the_argument():
    codes = np.zeros((10, 3))
    with pytest.raises(ValueError, match="factors: has 9 rows but codes has 10"):
        dis.mutual_information_gap(codes, np.zeros((9, 2)))
    with pytest.raises(ValueError, match="codes: expected finite"):
        dis.mutual_information_gap(np.full((4, 1), np.nan), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="codes: expected a 2-D array"):
        dis.mutual_information_gap(np.zeros(10), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="factors: every factor is constant"):
        dis.mutual_information_gap(np.arange(8.0)[:, None], np.zeros((8, 2)))
    with pytest.raises(ValueError, match="b: has 3 values but a has 4"):
        dis.mutual_information([0, 1, 0, 1], [0, 1, 0])
    with pytest.raises(ValueError, match="factor_sizes"):
        dis.beta_vae_metric(_true, (3, 1))
    with pytest.raises(ValueError, match="representation: expected codes"):
        dis.beta_vae_metric(lambda f: np.zeros((len(f) + 1, 2)), SIZES, num_train=2,
                            num_eval=2, pairs_per_point=2)
    with pytest.raises(ValueError, match="num_bins"):
        dis.discretize(codes, 1)
    with pytest.raises(ValueError, match="labels: expected class ids"):
        dis.fit_logistic_regression(codes, np.full(10, 4), 3)
