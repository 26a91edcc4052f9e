"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders") as a floor: closed form, lambda chosen on val.

    ease(manager, ranking_users=300)   {"test_auc": ..., "lambda": ..., "ranking": {"full": ..., "sampled": ...}}

The item-item weights B = I - P / diag(P), P = (X'X + lambda I)^-1, come from X, the user x item
matrix of the GNN's own training edges (train message passing): what the GNN learns from. A
split's pair (u, m) scores x_u . B[:, m], with x_u the user's row over that split's message-passing
edges, as the GNN embeds a split over its graph. Lambda is the val-AUC best of `LAMBDAS`; test is
scored once. A held-out item (data.cold_items) has no column in X: every pair of it scores 0, so
EASE ties them (0.5 on cold items), which is what a model of item co-occurrence knows of a new item.
It is a floor, not a KGE source. Skipped above `MAX_ITEMS` items (B is items x items).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from linklm.data.tables import sorted_unique
from linklm.evaluate import evaluate_scores

LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)
MAX_ITEMS = 20_000  # B in float64: 3.2 GB, and its inverse minutes on 2 cores
MAX_DENSE = 2 * 10**8  # users x items above which the full ranking (a dense user x item table) is left out
_CHUNK = 4096  # pairs scored at once: a (chunk, items) block of B's columns


def ease(manager, ranking_users: int = 0, predictions_path=None) -> dict[str, Any]:
    """EASE's val-chosen lambda, val and test AUC (overall, warm / cold and held-out items) on the
    pairs every model is scored on, and its ranking: full (recall, NDCG, MAP at 10 and 20 over every
    item) and, with `ranking_users`, HR@10 / NDCG@10 on the shared sampled candidates. With
    `predictions_path`, its test scores are written there as every model's are."""
    from linklm.experiment import baselines, ranking

    n_items = manager.num_targets
    if n_items > MAX_ITEMS:
        return {"skipped": f"{n_items:,} items: EASE's item x item matrix exceeds {MAX_ITEMS:,}"}
    gram = _rows(manager, "train")
    gram = (gram.T @ gram).toarray().astype(np.float64)
    val_src, val_dst, val_labels = baselines.test_pairs(manager, "val")
    x_val = _rows(manager, "val")
    by_lambda, lam, b = {}, None, None
    for value in LAMBDAS:  # the first listed wins a tie
        candidate = weights(gram, value)
        by_lambda[value] = evaluate_scores(val_labels, score_pairs(x_val, candidate, val_src, val_dst))["auc"]
        if lam is None or by_lambda[value] > by_lambda[lam]:
            lam, b = value, candidate
    x_test = _rows(manager, "test")
    src, dst, labels = baselines.test_pairs(manager)
    scores = score_pairs(x_test, b, src, dst)
    if predictions_path is not None:
        import pandas as pd

        from linklm.io import write_parquet

        write_parquet(predictions_path, pd.DataFrame({"source_idx": src, "target_idx": dst, "label": labels,
                                                      "score": scores}))  # fmt: skip
    out: dict[str, Any] = {"test_auc": evaluate_scores(labels, scores)["auc"], "val_auc": by_lambda[lam],
                           "lambda": lam, "val_auc_by_lambda": {f"{k:g}": v for k, v in by_lambda.items()},
                           **baselines.warm_cold(manager, src, dst, labels, scores)}  # fmt: skip
    out["ranking"] = _ranking(manager, x_test, b, ranking_users, ranking)
    return out


def weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE's B for the item Gram matrix X'X: zero diagonal, (items, items)."""
    p = np.linalg.inv(gram + lam * np.eye(len(gram)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def score_pairs(x: sp.csr_matrix, b: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """x[u] . b[:, m] of each pair (u, m), in chunks."""
    out = np.empty(len(src), dtype=np.float64)
    for start in range(0, len(src), _CHUNK):
        rows = slice(start, start + _CHUNK)
        out[rows] = np.asarray(x[src[rows]].multiply(b[:, dst[rows]].T).sum(1)).ravel()
    return out


def _rows(manager, split: str) -> sp.csr_matrix:
    """The users x items 0/1 matrix of `split`'s message-passing edges."""
    src, dst = manager.message_passing_index(split)
    data = np.ones(len(src), dtype=np.float64)
    return sp.csr_matrix((data, (src, dst)), shape=(manager.num_sources, manager.num_targets))


def _ranking(manager, x_test: sp.csr_matrix, b: np.ndarray, users: int, ranking) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    if manager.num_sources * manager.num_targets <= MAX_DENSE:
        codes = manager.edge_df["split"].cat.codes.to_numpy()
        keys = manager.edge_df["source_idx"].to_numpy()[codes <= 1] * manager.num_targets
        keys = sorted_unique(keys + manager.edge_df["target_idx"].to_numpy()[codes <= 1])  # train and val: known
        test_src, test_dst = manager.supervision("test")
        out["full"] = ranking.full_ranking(torch.from_numpy(x_test.toarray()), torch.from_numpy(b.T.copy()),
                                           test_src, test_dst, keys)  # fmt: skip
    if users > 0:
        cands = ranking.candidates(manager, users)
        scores = score_pairs(x_test, b, *cands.pairs()).reshape(cands.movies.shape)
        out["sampled"] = ranking.sampled_metrics(scores, cands.positive)
    return out
