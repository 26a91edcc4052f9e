"""What every model is measured against, on the same test pairs: floors and the warm/cold split.

    floors(manager)                       {"preferential_attachment": {"test_auc": ...}, "popularity": ...}
    warm_cold(manager, source_idx, target_idx, labels, scores)   {"test_auc_warm": ..., "test_auc_cold": ...}
    average_of(frames)                    the score average of several models' test predictions
    margins(tables, val_aucs)             the pre-specified AUC differences, with user-bootstrap intervals

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


def test_pairs(manager, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """source_idx, target_idx, labels of the test pairs (or another split's fixed pairs), in llm_df
    order (as every model's predictions)."""
    rows = (manager.llm_df["split"] == split).to_numpy()
    idx = manager.llm_index[rows]
    return (idx["source_idx"].to_numpy(), idx["target_idx"].to_numpy(),
            manager.llm_df.loc[rows, "labels"].to_numpy())  # fmt: skip


def floor_scores(manager, src: np.ndarray, dst: np.ndarray) -> dict[str, np.ndarray]:
    """The floors' scores of pairs: log(1 + deg u) + log(1 + deg m), and deg m (train degrees)."""
    users, movies = manager.train_degrees
    return {"preferential_attachment": np.log1p(users[src]) + np.log1p(movies[dst]),
            "popularity": movies[dst].astype(np.float64)}  # fmt: skip


def floors(manager, ranking_users: int = 0, pairs=None) -> dict[str, dict[str, Any]]:
    """Test AUC of scores that need no training: log(1 + deg u) + log(1 + deg m), and deg m; with
    `ranking_users`, popularity's HR@10 / NDCG@10 on the sampled candidates (`ranking`). `pairs`
    (source_idx, target_idx, labels): score those test pairs instead of all of them."""
    src, dst, labels = test_pairs(manager) if pairs is None else pairs
    out = {}
    for name, s in floor_scores(manager, src, dst).items():
        out[name] = {"test_auc": evaluate_scores(labels, s)["auc"], **warm_cold(manager, src, dst, labels, s)}
    if ranking_users > 0:
        from linklm.experiment.ranking import popularity_ranking

        out["popularity"]["ranking"] = popularity_ranking(manager, ranking_users)
    return out


def warm_cold(manager, source_idx, target_idx, labels, scores) -> dict[str, float | int]:
    """AUC on warm pairs (user and movie with >= WARM_DEGREE train edges) and on the rest; where
    items were held out (`data.cold_items`), also on the pairs of held-out items (`_cold_items`) and
    of the others (`_warm_items`). NaN where a group holds one class only."""
    users, movies = manager.train_degrees
    warm = (users[source_idx] >= WARM_DEGREE) & (movies[target_idx] >= WARM_DEGREE)
    groups = {"warm": warm, "cold": ~warm}
    if manager.cold_items.any():
        cold_items = manager.cold_items[np.asarray(target_idx)]
        groups |= {"warm_items": ~cold_items, "cold_items": cold_items}
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    out: dict[str, float | int] = {}
    for name, mask in groups.items():
        both = mask.any() and len(np.unique(labels[mask])) == 2
        out[f"test_pairs_{name}"] = int(mask.sum())
        out[f"test_auc_{name}"] = evaluate_scores(labels[mask], scores[mask])["auc"] if both else float("nan")
    return out


def ease_floor(manager, cfg) -> dict[str, Any]:
    """results.json `baselines.ease`: EASE on the run's test pairs, its predictions beside the models'."""
    from linklm.experiment.ease import ease

    return ease(manager, cfg.llm.ranking_users, cfg.run_dir / "ease_test_predictions.parquet")


# What the fused model must beat on held-out items (issue 23's target): the GNN with its fallback, the
# inductive GraphSAGE, text alone, and every floor (preferential attachment is the user's degree there).
COLD_CONTENDERS = ("gnn", "gnn_sage", "vanilla", "preferential_attachment", "popularity", "ease")


def cold_items_summary(run_dir, manager) -> dict[str, Any]:
    """results.json `cold_items`: every model's, floor's and GNN's AUC on the pairs of held-out items,
    the winner, the strongest of `COLD_CONTENDERS`, and each fused kind's gain over it on those
    pairs with a user-bootstrap interval (test pairs only: one seed)."""
    from linklm.artifacts import RESULTS_SHAPE, read_json
    from linklm.evaluate import paired_auc_gain

    results = read_json(run_dir / "results.json", RESULTS_SHAPE)
    entries = {**results.get("baselines", {}), **results.get("models", {})}
    if "gnn" in results:
        entries["gnn"] = results["gnn"]
    auc = {name: e["test_auc_cold_items"] for name, e in entries.items()
           if isinstance(e, dict) and np.isfinite(e.get("test_auc_cold_items", np.nan))}  # fmt: skip
    out: dict[str, Any] = {"test_auc_cold_items": auc, "winner": max(auc, key=auc.get) if auc else None}
    present = [name for name in COLD_CONTENDERS if name in auc]
    if not present:
        return out
    strongest = max(present, key=auc.get)
    out["strongest_baseline"] = strongest
    base = _test_scores(run_dir, manager, strongest)
    cold = manager.cold_items[base["target_idx"].to_numpy()]
    keys = ["source_idx", "target_idx"]
    models = results.get("models", {})
    for kind in ("fused", "fused_text", "fused_kge", "embedding_frozen"):
        path = run_dir / "models" / kind / "test_predictions.parquet"
        if kind not in auc or not path.is_file():
            continue
        both = base[cold].merge(pd.read_parquet(path), on=keys, suffixes=("_base", ""))
        gain = paired_auc_gain(both["label"], both["score"], both["score_base"], both["source_idx"])
        # as margins' entries: one seed, and how far each model trained (null: needs no training)
        out[f"{kind}_vs_strongest"] = {"model": kind, "base": strongest, **gain, "seeds": 1,
                                       "model_stopped": models[kind].get("stopped"),
                                       "base_stopped": models.get(strongest, {}).get("stopped")}  # fmt: skip
    out["stopped"] = {name: models[name].get("stopped") for name in auc if name in models}
    return out


def _test_scores(run_dir, manager, name: str) -> pd.DataFrame:
    """The test predictions of a model, GNN or floor of the run, as (source_idx, target_idx, label, score)."""
    if name in ("preferential_attachment", "popularity"):
        src, dst, labels = test_pairs(manager)
        score = floor_scores(manager, src, dst)[name]
        return pd.DataFrame({"source_idx": src, "target_idx": dst, "label": labels, "score": score})
    files = {"gnn": "gnn_test_predictions.parquet", "gnn_sage": "gnn_sage_test_predictions.parquet",
             "ease": "ease_test_predictions.parquet"}  # fmt: skip
    return pd.read_parquet(run_dir / files.get(name, f"models/{name}/test_predictions.parquet"))


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


# The pre-specified comparisons of results.json `margins`, (model, base) in the order the report
# gives them: "best_control" is the control arm with the highest val AUC, named before test is read.
COMPARISONS = {
    "embedding_frozen_vs_vanilla": ("embedding_frozen", "vanilla"),
    "best_control_vs_vanilla": ("best_control", "vanilla"),
    "embedding_frozen_vs_best_control": ("embedding_frozen", "best_control"),
    "fused_vs_gnn": ("fused", "gnn"),
}
RESAMPLES = 2000
MARGINS_NOTE = (
    "Each interval is the 2.5th to 97.5th percentile of the AUC difference over {resamples:,} bootstrap "
    "resamples of the test pairs' users (all of a drawn user's pairs, both models on the same pairs): it "
    "covers the variance of the test pairs, not of training. Every model here is one training run (one "
    "seed); `linklm sweep` repeats seeds. The strongest control is chosen by val AUC, never test."
)


def best_control(val_aucs: dict[str, float]) -> str | None:
    """The control arm (config.CONTROL_KINDS) with the highest val AUC among `val_aucs`, or None."""
    from linklm.config import CONTROL_KINDS

    present = {k: v for k, v in val_aucs.items() if k in CONTROL_KINDS and v is not None and np.isfinite(v)}
    return max(present, key=present.get) if present else None


def margins(tables: dict[str, pd.DataFrame], val_aucs: dict[str, float], resamples: int = RESAMPLES,
            stopped: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The pre-specified AUC differences (`COMPARISONS`) between the models of `tables` ({name: its
    test predictions}, the GNN's under "gnn"), each with a 95 % interval from a paired bootstrap over
    the test users, on the pairs both models scored; a comparison one of whose models is absent is
    left out. `val_aucs` ({kind: val AUC}) picks the strongest control; `stopped` ({kind: "converged" or
    "budget"}) goes into each entry beside its one seed, so that an entry says on its own how far
    both of its models trained."""
    from linklm.evaluate import paired_auc_gain

    control = best_control({k: v for k, v in val_aucs.items() if k in tables})
    names = {"best_control": control}
    out: dict[str, Any] = {"best_control": control, "best_control_by": "val_auc", "comparisons": {},
                           "note": MARGINS_NOTE.format(resamples=resamples)}  # fmt: skip
    if control is not None:
        out["best_control_val_auc"] = float(val_aucs[control])
    keys = ["source_idx", "target_idx"]
    for key, (model, base) in COMPARISONS.items():
        model, base = names.get(model, model), names.get(base, base)
        if model not in tables or base not in tables:
            continue
        both = tables[model].merge(tables[base].drop_duplicates(keys), on=keys, suffixes=("", "_base"))
        if both.empty:
            continue
        gain = paired_auc_gain(both["label"], both["score"], both["score_base"], both["source_idx"], resamples)
        states = {f"{role}_stopped": (stopped or {}).get(name) for role, name in (("model", model), ("base", base))}
        out["comparisons"][key] = {"model": model, "base": base, **gain, "seeds": 1, **states,
                                   "model_auc": evaluate_scores(both["label"], both["score"])["auc"],
                                   "base_auc": evaluate_scores(both["label"], both["score_base"])["auc"]}  # fmt: skip
    return out
