"""One evaluator for every model: labels and scores in, a dict of metrics out.

    evaluate_scores(labels, scores)  ->  {"accuracy", "auc", "f1", "confusion_matrix", "n"}
    paired_auc_gain(labels, a, b, groups=users)  ->  {"auc_gain", "ci95", "resamples", "unit", ...}

`scores` are probabilities or logits of the positive class; accuracy, F1 and the confusion matrix
call a pair positive when its score is above `threshold`: by default 0.5 (probabilities) or 0
(logits, `logits=True`); the classifiers pass the cut `accuracy_threshold` chose on val.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve


def accuracy_threshold(labels, scores) -> float:
    """The cut that makes `scores > cut` most accurate on these pairs (val): a model whose scores
    rank well but sit on one side of 0.5 (a few steps of training) still answers both classes."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, cuts = roc_curve(labels, scores)  # positive where score >= cut
    positives = labels.sum()
    correct = tpr * positives + (1 - fpr) * (len(labels) - positives)
    return float(np.nextafter(cuts[int(np.argmax(correct))], -np.inf))  # >= cut is > the float below


def evaluate_scores(labels, scores, logits: bool = False, threshold: float | None = None) -> dict[str, Any]:
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if len(labels) == 0:
        raise ValueError("nothing to evaluate")
    if threshold is None:
        threshold = 0.0 if logits else 0.5
    predicted = (scores > threshold).astype(np.int64)
    both = len(np.unique(labels)) == 2
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "n": int(len(labels)),
    }


class _Ranks:
    """One model's scores sorted once, for AUCs under any number of weightings of the units the
    pairs belong to (`member`: each pair's unit; a pair is its own unit by default): a positive
    counts every negative scored below it and half of those tied with it, each by their weights."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, member: np.ndarray | None = None):
        member = np.arange(len(labels)) if member is None else member
        positive = labels == 1
        pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
        neg = neg[np.argsort(scores[neg], kind="stable")]
        self.pos_units, self.neg_units = member[pos], member[neg]
        # columns of the negatives' cumulative weight (after a leading 0) below / up to each positive
        self.below = np.searchsorted(scores[neg], scores[pos], side="left")
        self.upto = np.searchsorted(scores[neg], scores[pos], side="right")

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """AUC under each row of `weights` (weightings × units)."""
        cum = np.zeros((len(weights), len(self.neg_units) + 1))
        np.cumsum(np.take(weights, self.neg_units, axis=1), axis=1, out=cum[:, 1:])
        wp = np.take(weights, self.pos_units, axis=1)
        won = np.einsum("rp,rp->r", wp, np.take(cum, self.below, axis=1) + np.take(cum, self.upto, axis=1)) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return won / (wp.sum(axis=1) * cum[:, -1])  # NaN where a weighting leaves one class only


def weighted_auc(labels, scores, weights) -> float | np.ndarray:
    """ROC AUC with a weight on each pair (ties count half), as sklearn's `roc_auc_score` with
    `sample_weight`; `weights` of shape (k, n) give k AUCs at once, one per row."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64)
    one = weights.ndim == 1
    out = _Ranks(labels, scores).auc(np.atleast_2d(weights))
    return float(out[0]) if one else out


def _multiplicities(rng: np.random.Generator, rows: int, units: int) -> np.ndarray:
    """`rows` bootstrap resamples of `units` units: how often each unit was drawn (rows × units)."""
    drawn = rng.integers(0, units, size=(rows, units)) + units * np.arange(rows)[:, None]
    return np.bincount(drawn.reshape(-1), minlength=rows * units).reshape(rows, units).astype(np.float64)


def paired_auc_gain(labels, scores, base_scores, groups, resamples: int = 2000, seed: int = 0,
                    unit: str = "users") -> dict[str, Any]:  # fmt: skip
    """AUC(scores) - AUC(base_scores) on the same pairs, with a 95 % percentile interval from a paired
    bootstrap over `groups` (the test pairs' users): each resample draws as many users as there are,
    with replacement, and takes every pair of a drawn user as often as it was drawn, for both
    models at once. It covers the test sample, not the variance of training."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (scores, base_scores))
    units, member = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)
    if not (labels.shape == a.shape == b.shape == member.shape):
        raise ValueError("labels, both scores and groups must have one entry per pair")
    ranks = _Ranks(labels, a, member), _Ranks(labels, b, member)
    ones = np.ones((1, len(units)))
    gain = float(ranks[0].auc(ones)[0] - ranks[1].auc(ones)[0])
    rng = np.random.default_rng(seed)
    gains = []
    chunk = max(1, (1 << 22) // max(len(labels), 1))  # about 32 MB of pair weights at a time
    for start in range(0, resamples, chunk):
        weights = _multiplicities(rng, min(chunk, resamples - start), len(units))
        gains.append(ranks[0].auc(weights) - ranks[1].auc(weights))
    gains = np.concatenate(gains)
    gains = gains[np.isfinite(gains)]
    low, high = np.percentile(gains, [2.5, 97.5]) if len(gains) else (float("nan"), float("nan"))
    return {"auc_gain": gain, "ci95": [float(low), float(high)], "resamples": resamples, "unit": unit,
            "units": int(len(units)), "pairs": int(len(labels))}  # fmt: skip
