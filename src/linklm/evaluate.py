"""One evaluator for every model: labels and scores in, a dict of metrics out.

    evaluate_scores(labels, scores)  ->  {"accuracy", "auc", "f1", "confusion_matrix", "n"}

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


def paired_auc_gain(labels, scores, base_scores, resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """AUC(scores) - AUC(base_scores) on the same pairs, with a 95 % interval from a paired
    bootstrap over the pairs (scipy): it covers the test sample, not the variance of training."""
    from scipy.stats import bootstrap

    labels, a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (labels, scores, base_scores))

    def gain(y, s, t):
        return roc_auc_score(y, s) - roc_auc_score(y, t) if 0 < y.sum() < len(y) else 0.0

    ci = bootstrap((labels, a, b), gain, paired=True, vectorized=False, n_resamples=resamples,
                   method="percentile", random_state=seed).confidence_interval  # fmt: skip
    return {"auc_gain": float(gain(labels, a, b)), "ci95": [float(ci.low), float(ci.high)], "resamples": resamples}
