"""The shared evaluator against metrics counted by hand on arrays small enough to count."""

import json
import math

import numpy as np
import pytest

from linklm.evaluate import accuracy_threshold, evaluate_scores, paired_auc_gain, weighted_auc


def test_perfect_ranking():
    result = evaluate_scores([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert result == {"accuracy": 1.0, "auc": 1.0, "f1": 1.0, "confusion_matrix": [[2, 0], [0, 2]], "n": 4}


def test_reversed_ranking():
    result = evaluate_scores([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert result["auc"] == 0.0 and result["accuracy"] == 0.0 and result["f1"] == 0.0
    assert result["confusion_matrix"] == [[0, 2], [2, 0]]


def test_hand_counted_metrics():
    labels = [1, 1, 1, 0, 0, 0, 1, 0, 0]
    scores = [0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.8, 0.4, 0.55]
    # Predicted (> 0.5):  1    1    0    1    0    0    1    0    1
    # tp: items 0, 1, 6; fn: item 2; fp: items 3, 8; tn: items 4, 5, 7.
    result = evaluate_scores(labels, scores)
    assert result["confusion_matrix"] == [[3, 2], [1, 3]]  # [[tn, fp], [fn, tp]]
    assert result["accuracy"] == pytest.approx(6 / 9)
    assert result["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # AUC: of the 4 × 5 (positive, negative) pairs, the positive scores higher in 5 + 4 + 2 + 5 = 16.
    assert result["auc"] == pytest.approx(16 / 20)
    assert result["n"] == 9


def test_tied_scores_count_half_in_auc():
    assert evaluate_scores([0, 1, 0, 1], [0.3, 0.3, 0.1, 0.9])["auc"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_half_is_negative_for_probabilities():
    result = evaluate_scores([1, 0, 1], [0.5, 0.2, np.nextafter(0.5, 1)])
    assert result["confusion_matrix"] == [[1, 0], [1, 1]]  # 0.5 itself is not above the threshold
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_logits_threshold_at_zero():
    labels, scores = [0, 0, 1, 1], [-0.1, 0.0, 0.3, 0.7]
    as_logits = evaluate_scores(labels, scores, logits=True)
    assert as_logits["confusion_matrix"] == [[2, 0], [0, 2]]  # 0.0 counts as negative, 0.3 as positive
    assert as_logits["accuracy"] == 1.0 and as_logits["f1"] == 1.0
    as_probabilities = evaluate_scores(labels, scores)
    assert as_probabilities["confusion_matrix"] == [[2, 0], [1, 1]]  # 0.3 is below 0.5
    assert as_probabilities["accuracy"] == pytest.approx(3 / 4)
    assert as_probabilities["f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert as_logits["auc"] == as_probabilities["auc"] == 1.0  # AUC ranks; the threshold does not enter


def test_single_class_has_nan_auc_but_other_metrics():
    result = evaluate_scores([1, 1, 1], [0.9, 0.2, 0.7])
    assert math.isnan(result["auc"])
    assert result["confusion_matrix"] == [[0, 0], [1, 2]]
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    negatives = evaluate_scores([0, 0], [0.1, 0.9])
    assert math.isnan(negatives["auc"]) and negatives["confusion_matrix"] == [[1, 1], [0, 0]]
    assert negatives["f1"] == 0.0  # no positive label: recall is 0 / 0, which zero_division makes 0


def test_column_vectors_and_float_labels_are_flattened():
    labels = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]])
    scores = np.array([[0.2], [0.7], [0.4], [0.6], [0.9]])
    result = evaluate_scores(labels, scores)
    assert result["n"] == 5
    assert result["confusion_matrix"] == [[1, 1], [1, 2]]
    # Positive scores 0.7, 0.4, 0.9 against negatives 0.2, 0.6: 2 + 1 + 2 of 6 pairs.
    assert result["auc"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_n_is_the_length(n):
    rng = np.random.default_rng(n)
    labels, scores = rng.integers(0, 2, n), rng.random(n)
    result = evaluate_scores(labels, scores)
    assert result["n"] == n
    assert sum(map(sum, result["confusion_matrix"])) == n


def test_result_is_plain_python():
    result = evaluate_scores(np.array([0, 1, 1]), np.array([0.2, 0.8, 0.4], dtype=np.float32))
    assert type(result["accuracy"]) is float and type(result["auc"]) is float and type(result["f1"]) is float
    assert type(result["n"]) is int
    assert all(type(v) is int for row in result["confusion_matrix"] for v in row)
    json.dumps(result)


@pytest.mark.parametrize(
    "labels,scores", [([0, 1, 1], [0.2, 0.8]), ([0, 1], [0.2, 0.8, 0.4]), ([], [0.5])], ids=["short", "long", "empty"]
)
def test_shape_mismatch_raises(labels, scores):
    with pytest.raises(ValueError, match="shape"):
        evaluate_scores(labels, scores)


def test_empty_input_raises():
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_scores([], [])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_scores(np.array([]), np.array([]), logits=True)


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_threshold_is_the_best_cut(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(np.clip(rng.normal(0.7, 0.1, 60) + 0.05 * labels, 0.51, None), 2)  # all above 0.5, ties
    cut = accuracy_threshold(labels, scores)
    # brute force: every cut between two distinct scores, and below/above all of them
    grid = np.unique(scores)
    cuts = np.r_[grid[0] - 1, (grid[1:] + grid[:-1]) / 2, grid[-1] + 1]
    best = max(np.mean((scores > c) == labels) for c in cuts)
    assert np.mean((scores > cut) == labels) == pytest.approx(best)
    assert evaluate_scores(labels, scores, threshold=cut)["accuracy"] == pytest.approx(best)
    assert evaluate_scores(labels, scores)["accuracy"] == pytest.approx(np.mean(labels == 1))  # 0.5 says "yes"


@pytest.mark.parametrize("seed", range(6))
def test_weighted_auc_matches_sklearn_with_ties_and_weights(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes
    scores = np.round(rng.normal(0, 1, n) + 0.7 * labels, int(rng.integers(0, 3)))  # few digits: many ties
    weights = rng.integers(0, 4, size=(3, n)).astype(float)
    weights[:, :2] = 1  # every row keeps both classes
    weights[2] = rng.random(n) + 0.01  # and weights that are not counts
    got = weighted_auc(labels, scores, weights)
    assert got == pytest.approx([roc_auc_score(labels, scores, sample_weight=w) for w in weights], abs=1e-12)
    assert weighted_auc(labels, scores, np.ones(n)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_weighted_auc_of_one_class_is_nan():
    assert math.isnan(weighted_auc([0, 1, 1], [0.2, 0.5, 0.9], [0.0, 1.0, 2.0]))


def _clustered(seed: int, users: int = 40, per_user: int = 20):
    """Pairs of `users` users where model a beats b on some users and loses on others: the pairs of a
    user are not independent, which a pair-level bootstrap ignores."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(users), per_user)
    labels = np.tile(np.arange(per_user) % 2, users)
    skill = rng.choice([0.0, 3.0], users)[groups]  # how well a ranks each user's pairs
    a = labels * skill + rng.normal(0, 1, len(labels))
    b = labels * 1.5 + rng.normal(0, 1, len(labels))
    return labels, a, b, groups


def test_paired_auc_gain_resamples_users():
    from sklearn.metrics import roc_auc_score

    labels, a, b, users = _clustered(0)
    out = paired_auc_gain(labels, a, b, users, resamples=2000)
    assert out["auc_gain"] == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b), abs=1e-12)
    assert out["ci95"][0] <= out["auc_gain"] <= out["ci95"][1]
    assert (out["resamples"], out["unit"], out["units"], out["pairs"]) == (2000, "users", 40, 800)
    # The same bootstrap, written out: draw 40 users with replacement, take all their pairs, rank.
    from scipy.stats import rankdata

    def auc(y, s):  # Mann-Whitney: the positives' mean rank
        n1 = y.sum()
        return (rankdata(s)[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1))

    rng, gains = np.random.default_rng(1), []
    for _ in range(2000):
        rows = np.concatenate([np.flatnonzero(users == u) for u in rng.integers(0, 40, 40)])
        gains.append(auc(labels[rows], a[rows]) - auc(labels[rows], b[rows]))
    naive = np.percentile(gains, [2.5, 97.5])
    width = naive[1] - naive[0]
    assert out["ci95"] == pytest.approx(naive.tolist(), abs=0.15 * width)
    # Resampling pairs instead ignores that a user's pairs go together: a narrower interval here.
    pairs = paired_auc_gain(labels, a, b, np.arange(len(labels)), unit="pairs")
    assert pairs["ci95"][1] - pairs["ci95"][0] < 0.75 * (out["ci95"][1] - out["ci95"][0])
    assert pairs["auc_gain"] == out["auc_gain"] and pairs["unit"] == "pairs"


def test_paired_auc_gain_of_a_model_with_itself_and_a_real_gain():
    rng = np.random.default_rng(0)
    labels, users = rng.integers(0, 2, 600), rng.integers(0, 60, 600)
    good, noise = labels + rng.normal(0, 0.8, 600), rng.normal(0, 1, 600)
    assert paired_auc_gain(labels, good, noise, users)["ci95"][0] > 0
    assert paired_auc_gain(labels, noise, good, users)["ci95"][1] < 0
    same = paired_auc_gain(labels, good, good, users, resamples=300)
    assert same["auc_gain"] == 0 and same["ci95"] == [0.0, 0.0]
    again = paired_auc_gain(labels, good, noise, users, seed=3)
    assert again == paired_auc_gain(labels, good, noise, users, seed=3)  # a seed fixes the draws
    with pytest.raises(ValueError, match="one entry per pair"):
        paired_auc_gain(labels, good, noise, users[:-1])
