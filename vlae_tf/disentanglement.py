"""Disentanglement metrics on (codes, ground-truth factors): the beta-VAE metric and the
Mutual Information Gap. numpy only (no scikit-learn): usable on any representation.

Notation: factors v = (v_1..v_K), each discrete with a finite set of values (on a
factor grid such as dSprites', every combination once); a representation maps an
observation x(v) to a code z = (z_1..z_D), here usually the posterior mean E_q[z | x].

**Mutual Information Gap** (Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of
Disentanglement in Variational Autoencoders", NeurIPS)::

    MIG = 1/K  sum_k  ( I(z_{j(k)}; v_k) - max_{j != j(k)} I(z_j; v_k) ) / H(v_k),
          j(k) = argmax_j I(z_j; v_k)

Chen et al. estimate I(z_j; v_k) from q(z|x); here, as in Locatello et al. 2019
("Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML), each code unit is discretised into ``num_bins`` equal-width bins
over its observed range and the plug-in (empirical-frequency) estimates are used::

    I(a; b) = sum_{a,b} p(a, b) log( p(a, b) / (p(a) p(b)) ),  H(b) = -sum_b p(b) log p(b)

in nats, so I(z_j; v_k) <= H(v_k) and MIG is in [0, 1]: 1 when each factor is carried by
one unit alone, exactly; 0 when the two best units carry a factor equally (or not at
all). The default ``num_bins=50`` exceeds dSprites' largest factor (40 orientations), so a
code that is the factors themselves scores 1; with Locatello et al.'s 20 bins orientation
and position lose resolution and the same perfect code scores about 0.89 (tested). The
plug-in estimate is biased upwards by about (bins - 1)(values - 1) / (2 N) nats per pair:
use N in the thousands.

**beta-VAE metric** (Higgins, Matthey, Pal, Burgess, Glorot, Botvinick, Mohamed &
Lerchner 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR). One point: draw a factor k uniformly; draw L pairs (v^(l), w^(l)) of
factor vectors uniformly from the grid with w^(l)_k = v^(l)_k (the pair shares factor k,
the rest is drawn independently); the point's feature vector is::

    f = 1/L  sum_l  | z(v^(l)) - z(w^(l)) |        (elementwise, D values)

and its label is k. A linear classifier (multinomial logistic regression,
``fit_logistic_regression``) is trained on ``num_train`` points and the metric is its
accuracy on ``num_eval`` fresh points: 1 when the fixed factor can always be read off
the code (a unit whose difference is 0), 1/K (chance) when the code says nothing about
the factors. It rewards codes where each factor moves its own units; a code that rotates
two equally sized factors into two units loses the ability to tell them apart.

Both metrics are deterministic for a given ``seed`` (numpy's ``default_rng``).
"""
from __future__ import annotations

import numbers
from typing import Callable, Dict, Tuple

import numpy as np

DEFAULT_NUM_BINS = 50
# What the beta-VAE metric passes to `representation` at once (rows of factor indices).
DEFAULT_BATCH_SIZE = 2048


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------

def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}; got {value!r}")
    return int(value)


def _check_codes(codes, name="codes") -> np.ndarray:
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name}: expected a 2-D array [N >= 2, D >= 1] (one row per "
                         f"example); got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values; got NaN or inf")
    return array


def _check_factors(factors, num_rows, name="factors") -> np.ndarray:
    array = np.asarray(factors)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{name}: expected a 2-D array [N, K >= 1] of discrete factor "
                         f"values; got shape {array.shape}")
    if array.shape[0] != num_rows:
        raise ValueError(f"{name}: has {array.shape[0]} rows but codes has {num_rows}; "
                         f"expected one row of factors per code")
    return array


def _check_factor_sizes(factor_sizes) -> Tuple[int, ...]:
    try:
        sizes = tuple(factor_sizes)
    except TypeError:
        sizes = None
    if not sizes or not all(isinstance(size, numbers.Integral) and not isinstance(size, bool)
                            and size >= 2 for size in sizes):
        raise ValueError(f"factor_sizes: expected a non-empty sequence of ints >= 2 (the "
                         f"number of values of each factor); got {factor_sizes!r}")
    return tuple(int(size) for size in sizes)


def _check_discrete(values, name) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array; got shape {array.shape}")
    return np.unique(array, return_inverse=True)[1].reshape(-1)


# --------------------------------------------------------------------------------------
# Entropy and mutual information of discrete variables
# --------------------------------------------------------------------------------------

def entropy(values) -> float:
    """H(v) = -sum_v p(v) log p(v) in nats, with p the empirical frequencies of `values`
    (a 1-D array of discrete values of any type)."""
    ids = _check_discrete(values, "values")
    probabilities = np.bincount(ids) / len(ids)
    probabilities = probabilities[probabilities > 0]
    return float(-(probabilities * np.log(probabilities)).sum())


def mutual_information(a, b) -> float:
    """I(a; b) = sum p(a, b) log(p(a, b) / (p(a) p(b))) in nats, from the empirical joint
    frequencies of two 1-D arrays of discrete values of the same length."""
    ids_a, ids_b = _check_discrete(a, "a"), _check_discrete(b, "b")
    if len(ids_a) != len(ids_b):
        raise ValueError(f"b: has {len(ids_b)} values but a has {len(ids_a)}; expected "
                         f"paired observations")
    return float(_mutual_information_ids(ids_a, ids_b))


def _mutual_information_ids(ids_a, ids_b) -> float:
    size_a, size_b = int(ids_a.max()) + 1, int(ids_b.max()) + 1
    joint = np.bincount(ids_a * size_b + ids_b, minlength=size_a * size_b)
    joint = joint.reshape(size_a, size_b) / len(ids_a)
    marginal_a, marginal_b = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nonzero = joint > 0
    ratio = joint[nonzero] / (marginal_a @ marginal_b)[nonzero]
    # Clipped at 0: rounding can make an independent pair's sum -1e-17.
    return max(0.0, float((joint[nonzero] * np.log(ratio)).sum()))


def discretize(codes, num_bins: int = DEFAULT_NUM_BINS) -> np.ndarray:
    """Each column of `codes` [N, D] into `num_bins` equal-width bins over its own
    [min, max] (the maximum goes into the last bin); int64 bin ids [N, D]. A constant
    column is all bin 0."""
    codes = _check_codes(codes)
    num_bins = _check_count("num_bins", num_bins, 2)
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, (high - low) / num_bins, 1.0)
    bins = np.floor((codes - low) / width).astype(np.int64)
    return np.clip(bins, 0, num_bins - 1)


def mutual_information_matrix(codes, factors, num_bins: int = DEFAULT_NUM_BINS) -> np.ndarray:
    """I(z_j; v_k) [D, K] in nats: each code unit discretised (`discretize`), each factor
    column taken as discrete values."""
    codes = _check_codes(codes)
    factors = _check_factors(factors, len(codes))
    bins = discretize(codes, num_bins)
    factor_ids = [np.unique(factors[:, k], return_inverse=True)[1].reshape(-1)
                  for k in range(factors.shape[1])]
    return np.array([[_mutual_information_ids(bins[:, j], ids) for ids in factor_ids]
                     for j in range(codes.shape[1])])


def mutual_information_gap(codes, factors, num_bins: int = DEFAULT_NUM_BINS,
                           return_details: bool = False):
    """MIG of `codes` [N, D] for the discrete `factors` [N, K] (module docstring).

    Factors that are constant over the N rows (H = 0) cannot be normalised and are left
    out of the average (listed in the details); if all are, ValueError. With one code unit
    the second-best MI is 0.

    Returns the MIG, or with `return_details` a dict: "mig", "per_factor" (K values, NaN
    for left-out factors), "mutual_information" [D, K], "entropy" [K], "best_unit" [K],
    "num_bins", "skipped" (indices of constant factors).
    """
    codes = _check_codes(codes)
    factors = _check_factors(factors, len(codes))
    information = mutual_information_matrix(codes, factors, num_bins)
    entropies = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    ordered = np.sort(information, axis=0)[::-1]  # descending over units
    second = ordered[1] if len(ordered) > 1 else np.zeros(information.shape[1])
    kept = entropies > 0
    if not kept.any():
        raise ValueError("factors: every factor is constant over these rows (entropy 0); "
                         "MIG needs at least one factor that varies")
    per_factor = np.full(information.shape[1], np.nan)
    per_factor[kept] = (ordered[0][kept] - second[kept]) / entropies[kept]
    mig = float(np.mean(per_factor[kept]))
    if not return_details:
        return mig
    return {"mig": mig, "per_factor": per_factor, "mutual_information": information,
            "entropy": entropies, "best_unit": np.argmax(information, axis=0),
            "num_bins": int(num_bins), "skipped": np.flatnonzero(~kept).tolist()}


# --------------------------------------------------------------------------------------
# Sampling codes on a factor grid
# --------------------------------------------------------------------------------------

def _represent(representation, factor_rows, batch_size) -> np.ndarray:
    codes = []
    for start in range(0, len(factor_rows), batch_size):
        chunk = factor_rows[start:start + batch_size]
        code = np.asarray(representation(chunk))
        if code.ndim != 2 or code.shape[0] != len(chunk):
            raise ValueError(f"representation: expected codes [{len(chunk)}, D] for "
                             f"{len(chunk)} rows of factors; got shape {code.shape}")
        codes.append(code.astype(np.float64))
    codes = np.concatenate(codes)
    if not np.all(np.isfinite(codes)):
        raise ValueError("representation: returned NaN or inf codes")
    return codes


def sample_factors(factor_sizes, num: int, rng: np.random.Generator) -> np.ndarray:
    """`num` factor vectors drawn uniformly from the grid (each factor independently
    uniform over range(size)); int64 [num, K]."""
    sizes = _check_factor_sizes(factor_sizes)
    return np.stack([rng.integers(0, size, size=num) for size in sizes], axis=1).astype(np.int64)


def sample_codes(representation: Callable[[np.ndarray], np.ndarray], factor_sizes,
                 num_samples: int, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """(codes [N, D], factors int64 [N, K]) for N factor vectors drawn uniformly from the
    grid: the input of `mutual_information_gap`. `representation(factor_indices [M, K])`
    returns codes [M, D] (e.g. render, then encode); it is called on chunks of
    `batch_size` rows."""
    num_samples = _check_count("num_samples", num_samples, 2)
    batch_size = _check_count("batch_size", batch_size)
    factors = sample_factors(factor_sizes, num_samples, np.random.default_rng(seed))
    return _represent(representation, factors, batch_size), factors


# --------------------------------------------------------------------------------------
# Multinomial logistic regression (the beta-VAE metric's linear classifier)
# --------------------------------------------------------------------------------------

def _softmax(logits):
    shifted = logits - logits.max(1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(1, keepdims=True)


def fit_logistic_regression(features, labels, num_classes: int, l2: float = 1e-4,
                            steps: int = 1000) -> Dict[str, np.ndarray]:
    """Multinomial logistic regression by Nesterov-accelerated gradient descent.

    Minimises  -1/N sum_i log softmax(W x_i + b)_{y_i}  +  l2/2 ||W||^2  on features
    standardised with their own mean and standard deviation (a column without variance is
    only centred), from W = 0, b = 0, for `steps` full-batch steps of size 1/L with L the
    gradient's Lipschitz bound 1/2 lambda_max([x 1]^T [x 1] / N) + l2. Deterministic.

    Returns {"weights" [D, C], "bias" [C], "mean" [D], "scale" [D]} for
    `logistic_regression_predict`.
    """
    features = _check_codes(features, "features")
    labels = np.asarray(labels)
    if labels.shape != (len(features),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected {len(features)} integer class ids (one per "
                         f"feature row); got {labels.dtype} of shape {labels.shape}")
    num_classes = _check_count("num_classes", num_classes, 2)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels: expected class ids in [0, {num_classes - 1}]; got values "
                         f"in [{labels.min()}, {labels.max()}]")
    steps = _check_count("steps", steps)
    mean = features.mean(0)
    scale = features.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = np.concatenate([(features - mean) / scale, np.ones((len(features), 1))], axis=1)
    targets = np.eye(num_classes)[labels]
    lipschitz = 0.5 * np.linalg.eigvalsh(x.T @ x / len(x))[-1] + l2
    step_size = 1.0 / lipschitz
    penalty = np.ones((x.shape[1], 1))
    penalty[-1] = 0.0  # no penalty on the bias
    params = np.zeros((x.shape[1], num_classes))
    previous = params
    for step in range(1, steps + 1):
        look_ahead = params + (step - 1) / (step + 2) * (params - previous)
        gradient = x.T @ (_softmax(x @ look_ahead) - targets) / len(x) + l2 * penalty * look_ahead
        previous, params = params, look_ahead - step_size * gradient
    return {"weights": params[:-1], "bias": params[-1], "mean": mean, "scale": scale}


def logistic_regression_predict(model: Dict[str, np.ndarray], features) -> np.ndarray:
    """Class ids [N] of `features` [N, D] under a `fit_logistic_regression` model."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[1] != len(model["mean"]):
        raise ValueError(f"features: expected [N, {len(model['mean'])}]; got shape "
                         f"{features.shape}")
    logits = ((features - model["mean"]) / model["scale"]) @ model["weights"] + model["bias"]
    return np.argmax(logits, axis=1)


# --------------------------------------------------------------------------------------
# The beta-VAE metric
# --------------------------------------------------------------------------------------

def beta_vae_features(representation: Callable[[np.ndarray], np.ndarray], factor_sizes,
                      num_points: int, pairs_per_point: int = 64, seed: int = 0,
                      batch_size: int = DEFAULT_BATCH_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """(features [num_points, D], fixed factor int64 [num_points]) of the beta-VAE metric:
    per point, mean |z(v) - z(w)| over `pairs_per_point` pairs sharing the fixed factor."""
    sizes = _check_factor_sizes(factor_sizes)
    num_points = _check_count("num_points", num_points)
    pairs = _check_count("pairs_per_point", pairs_per_point)
    batch_size = _check_count("batch_size", batch_size)
    rng = np.random.default_rng(seed)
    fixed = rng.integers(0, len(sizes), size=num_points).astype(np.int64)
    first = sample_factors(sizes, num_points * pairs, rng).reshape(num_points, pairs, -1)
    second = sample_factors(sizes, num_points * pairs, rng).reshape(num_points, pairs, -1)
    rows = np.arange(num_points)
    second[rows, :, fixed] = first[rows, :, fixed]
    codes = _represent(representation, np.concatenate([first, second]).reshape(-1, len(sizes)),
                       batch_size)
    codes = codes.reshape(2, num_points, pairs, -1)
    return np.abs(codes[0] - codes[1]).mean(axis=1), fixed


def beta_vae_metric(representation: Callable[[np.ndarray], np.ndarray], factor_sizes,
                    num_train: int = 1000, num_eval: int = 500, pairs_per_point: int = 64,
                    seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE,
                    return_details: bool = False, **classifier_options):
    """The beta-VAE metric (module docstring): held-out accuracy of a linear classifier
    that predicts the fixed factor from mean |z(v) - z(w)| over pairs sharing it.

    Args:
      representation: factor indices int64 [M, K] (each column in range(size)) -> codes
        [M, D]; e.g. render those grid points and encode them (posterior means).
      factor_sizes: the number of values of each of the K factors (each >= 2).
      num_train, num_eval: points for the classifier's training and for its accuracy;
        every point costs 2 * pairs_per_point codes.
      pairs_per_point: L.
      seed: draws the fixed factors and the pairs (train and eval points are disjoint
        draws of one stream).
      classifier_options: `fit_logistic_regression`'s l2 and steps.

    Returns the accuracy in [0, 1] (chance: 1 / K), or with `return_details` a dict with
    "accuracy", "train_accuracy", "chance", "num_train", "num_eval", "pairs_per_point".
    """
    num_train = _check_count("num_train", num_train)
    num_eval = _check_count("num_eval", num_eval)
    sizes = _check_factor_sizes(factor_sizes)
    features, fixed = beta_vae_features(representation, sizes, num_train + num_eval,
                                        pairs_per_point, seed, batch_size)
    classifier = fit_logistic_regression(features[:num_train], fixed[:num_train],
                                         len(sizes), **classifier_options)
    predicted = logistic_regression_predict(classifier, features)
    accuracy = float(np.mean(predicted[num_train:] == fixed[num_train:]))
    if not return_details:
        return accuracy
    return {"accuracy": accuracy,
            "train_accuracy": float(np.mean(predicted[:num_train] == fixed[:num_train])),
            "chance": 1.0 / len(sizes), "num_train": num_train, "num_eval": num_eval,
            "pairs_per_point": int(pairs_per_point)}
