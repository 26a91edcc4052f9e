"""What every model is measured against, on the same test pairs: floors and the warm/cold split.

    floors(manager)                       {"preferential_attachment": {"test_auc": ...}, "popularity": ...}
    warm_cold(manager, source_idx, target_idx, labels, scores)   {"test_auc_warm": ..., "test_auc_cold": ...}
    average_of(frames)                    the score average of several models' test predictions

Degrees are counted over every train edge (message passing and supervision), the edges every model
may learn from; the floors need no training at all. A pair is "warm" when its user and its movie
both have at least `WARM_DEGREE` train edges, "cold" otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from linklm.evaluate import evaluate_scores

WARM_DEGREE = 3


def test_pairs(manager) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """source_idx, target_idx, labels of the test pairs, in llm_df order (as every model's predictions)."""
    test = (manager.llm_df["split"] == "test").to_numpy()
    idx = manager.llm_index[test]
    return (idx["source_idx"].to_numpy(), idx["target_idx"].to_numpy(),
            manager.llm_df.loc[test, "labels"].to_numpy())  # fmt: skip


def floors(manager, ranking_users: int = 0) -> dict[str, dict[str, Any]]:
    """Test AUC of scores that need no training: log(1 + deg u) + log(1 + deg m), and deg m; with
    `ranking_users`, popularity's HR@10 / NDCG@10 on the sampled candidates (`ranking`)."""
    users, movies = manager.train_degrees
    src, dst, labels = test_pairs(manager)
    scores = {
        "preferential_attachment": np.log1p(users[src]) + np.log1p(movies[dst]),
        "popularity": movies[dst].astype(np.float64),
    }
    out = {}
    for name, s in scores.items():
        out[name] = {"test_auc": evaluate_scores(labels, s)["auc"], **warm_cold(manager, src, dst, labels, s)}
    if ranking_users > 0:
        from linklm.experiment.ranking import popularity_ranking

        out["popularity"]["ranking"] = popularity_ranking(manager, ranking_users)
    return out


def warm_cold(manager, source_idx, target_idx, labels, scores) -> dict[str, float | int]:
    """AUC on warm pairs (user and movie with >= WARM_DEGREE train edges) and on the rest; NaN where
    a group holds one class only."""
    users, movies = manager.train_degrees
    warm = (users[source_idx] >= WARM_DEGREE) & (movies[target_idx] >= WARM_DEGREE)
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    out: dict[str, float | int] = {"test_pairs_warm": int(warm.sum()), "test_pairs_cold": int((~warm).sum())}
    for name, mask in (("warm", warm), ("cold", ~warm)):
        both = mask.any() and len(np.unique(labels[mask])) == 2
        out[f"test_auc_{name}"] = evaluate_scores(labels[mask], scores[mask])["auc"] if both else float("nan")
    return out


def average_of(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The mean score of several prediction tables of the same pairs (columns source_idx,
    target_idx, label, score); refuses tables that are not of the same pairs in the same order."""
    first = frames[0]
    for other in frames[1:]:
        same = all(np.array_equal(first[c].to_numpy(), other[c].to_numpy()) for c in ("source_idx", "target_idx"))
        if not same:
            raise ValueError("prediction tables of different pairs cannot be averaged")
    out = first[["source_idx", "target_idx", "label"]].copy()
    out["score"] = np.mean([f["score"].to_numpy() for f in frames], axis=0)
    return out


def margins(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The best model by test AUC (of `tables`: {name: its test predictions}, the GNN's under
    "gnn") and its gain over vanilla and over the GNN, each with a paired bootstrap interval, on
    the pairs both scored."""
    from linklm.evaluate import paired_auc_gain

    keys = ["source_idx", "target_idx"]
    aucs = {name: evaluate_scores(t["label"], t["score"])["auc"] for name, t in tables.items() if name != "gnn"}
    if not aucs:
        return {}
    best = max(aucs, key=aucs.get)
    out: dict[str, Any] = {"best": best}
    for other in ("vanilla", "gnn"):
        if other in tables and other != best:
            both = tables[best].merge(tables[other].drop_duplicates(keys), on=keys, suffixes=("", "_base"))
            out[f"over_{other}"] = paired_auc_gain(both["label"], both["score"], both["score_base"])
    return out
