"""From raw source, target and edge tables to the split tables: indices, one split, fixed negatives.

    tables = build_tables(source_df, target_df, edge_df, cfg)   # source_df, target_df, edge_df, neg_df

The split follows PyG's RandomLinkSplit (see `assign_split`); every negative, fixed or drawn on the
fly later, comes from `sample_negatives`, which never returns a known edge.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from linklm.config import SPLITS, DataConfig
from linklm.errors import UserError

TEXT_PREFIX = "prompt_feature_"  # target_df columns holding item text; llm_df's columns share the names


def assign_split(n_edges: int, cfg: DataConfig, cold: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded RandomLinkSplit roles for `n_edges` edges.

    Returns `split` (int8 codes into SPLITS: 0 train, 1 val, 2 test) and `supervision` (bool): for
    train edges, whether the edge is a supervision edge; val/test edges are always supervision edges.
    `cold` (n_edges,) bool: the edges of held-out items (`cold_items`), which go half to val and half
    to test; the ratios then apply to the other edges.
    """
    warm = np.arange(n_edges) if cold is None else np.flatnonzero(~cold)
    rng = np.random.default_rng(cfg.seed)
    perm = warm[rng.permutation(len(warm))]
    n_val = int(math.floor(cfg.val_ratio * len(warm)))
    n_test = int(math.floor(cfg.test_ratio * len(warm)))
    n_train = len(warm) - n_val - n_test
    if n_train <= 0 or (cfg.val_ratio > 0 and n_val == 0) or (cfg.test_ratio > 0 and n_test == 0):
        raise UserError(f"too few ratings ({len(warm)}) for data.val_ratio={cfg.val_ratio} and "
                        f"data.test_ratio={cfg.test_ratio}: a split would be empty")  # fmt: skip
    split = np.zeros(n_edges, dtype=np.int8)
    split[perm[n_train : n_train + n_val]] = 1
    split[perm[n_train + n_val :]] = 2
    if cold is not None:
        held = np.flatnonzero(cold)
        held = held[np.random.default_rng([cfg.seed, 6]).permutation(len(held))]
        split[held[: len(held) // 2]], split[held[len(held) // 2 :]] = 1, 2
    supervision = np.ones(n_edges, dtype=bool)
    n_disjoint = int(math.floor(cfg.disjoint_train_ratio * n_train))
    if n_disjoint > 0:
        # The last n_disjoint train edges of the permutation are supervision-only; the rest pass messages.
        supervision[perm[: n_train - n_disjoint]] = False
    return split, supervision


def cold_item_mask(target_idx: np.ndarray, n_targets: int, cfg: DataConfig) -> np.ndarray:
    """(n_targets,) bool: the `cfg.cold_items` share of the rated items, drawn with the data seed."""
    cold = np.zeros(n_targets, dtype=bool)
    if cfg.cold_items <= 0:
        return cold
    rated = np.flatnonzero(np.bincount(target_idx, minlength=n_targets))
    count = int(round(cfg.cold_items * len(rated)))
    if count == 0:
        raise UserError(f"config key data.cold_items={cfg.cold_items} holds out no item of the {len(rated)} "
                        f"rated ones; raise it to at least {0.5 / len(rated):.3g}")  # fmt: skip
    cold[np.random.default_rng([cfg.seed, 5]).choice(rated, size=count, replace=False)] = True
    return cold


def sample_negatives(
    n_source: int,
    n_target: int,
    positive_keys: np.ndarray,
    count: int,
    rng: np.random.Generator,
    ordered: bool = False,
    targets: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct (source, target) pairs, none of them in `positive_keys`, in the order drawn,
    or with `ordered` the same pairs sorted by (source, target). The source is uniform; the target
    uniform over every target, or over `targets` (sorted int64 indices) when given, there in
    proportion to `weights` (one per entry of `targets`) when those are given.

    positive_keys: sorted int64 array of `source * n_target + target` for every known edge.
    """
    if targets is None:
        pool, known = n_target, len(positive_keys)
    else:
        pool = len(targets)
        at = np.searchsorted(targets, positive_keys % n_target).clip(max=max(pool - 1, 0))
        known = int(np.count_nonzero(targets[at] == positive_keys % n_target)) if pool else 0
    free = n_source * pool - known
    if count > free:
        raise UserError(f"the graph is too dense: {count} negatives asked for, only {free} non-edges exist")
    draw = _drawer(n_source, n_target, rng, targets, weights)
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        need = count - len(chosen)
        drawn = draw(int(need * 1.2) + 64)
        keys = np.concatenate([chosen, drawn]) if len(chosen) else drawn
        unknown, first = _first_unknown(keys, positive_keys)
        if ordered and len(first) >= count:
            # The pairs kept below, sorted: those first drawn no later than the count-th kept one.
            return _split(unknown[first <= torch.kthvalue(first, count).values], n_target)
        in_draw_order = torch.zeros(len(keys), dtype=torch.bool)
        in_draw_order[first] = True
        chosen = keys[in_draw_order.nonzero().squeeze(1)[:count].numpy()]  # draw order: reproducible
    return _split(torch.from_numpy(np.sort(chosen) if ordered else chosen), n_target)


def _drawer(n_source: int, n_target: int, rng: np.random.Generator, targets, weights):
    """size -> int64 keys `source * n_target + target` drawn as `sample_negatives` says."""
    if targets is None:
        return lambda size: rng.integers(0, n_source * n_target, size=size, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if weights is None:

        def uniform(size: int) -> np.ndarray:
            flat = rng.integers(0, n_source * len(targets), size=size, dtype=np.int64)
            return flat // len(targets) * n_target + targets[flat % len(targets)]

        return uniform
    p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return lambda size: rng.integers(0, n_source, size=size, dtype=np.int64) * n_target + rng.choice(targets, size, p=p)


def _first_unknown(keys: np.ndarray, known: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct values of `keys` that are not in `known` (sorted), sorted, and the position in
    `keys` of each one's first occurrence.

    One stable sort of `keys` answers both questions: a repeat sits right after its first occurrence,
    and sorted keys look `known` up in one sweep. Looked up in draw order, every binary search in
    ml-32m's 25 M train keys misses the cache: the epoch's 23 M negatives then took 14x longer.
    """
    ordered, order = torch.sort(torch.from_numpy(keys), stable=True)
    keep = torch.ones(len(keys), dtype=torch.bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    if len(known):
        known_t = torch.from_numpy(known)
        at = torch.searchsorted(known_t, ordered).clamp_(max=len(known) - 1)
        keep &= known_t[at] != ordered
    return ordered[keep], order[keep]


def _split(keys: torch.Tensor, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    return (keys // n_target).numpy(), (keys % n_target).numpy()


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """The distinct values of an array, sorted. Edge keys and ids come as a few sorted runs (each
    split is a subset of the sorted edge table): numpy's stable sort (timsort) merges runs in one
    pass, 25x faster than a full sort of ml-32m's 25 M train keys; np.unique would hash them
    (numpy >= 2.3), a minute and 1.5 GB there."""
    keys = np.sort(keys, kind="stable")
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep]


def item_text(target_df: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The fields the prompt shows after an item's id, in order: (name, (num_targets,) str).

    A dataset read from generic tables names them in `prompt_feature_<name>` columns
    (`linklm.data.interactions`); without such columns they are the seed's MovieLens fields,
    `title` and the Python repr of the `genres` list.
    """
    named = [c for c in target_df.columns if c.startswith(TEXT_PREFIX)]
    if named:
        return [(c.removeprefix(TEXT_PREFIX), target_df[c].to_numpy(dtype=object)) for c in named]
    genres = np.array([str(list(g)) for g in target_df["genres"]], dtype=object)
    return [("title", target_df["title"].to_numpy()), ("genres", genres)]


def _latest_edges(edge_df: pd.DataFrame) -> np.ndarray | None:
    """Row positions of one edge per (source_id, target_id), the latest rating winning, in
    (source_id, target_id) order; None when `edge_df` already is exactly that."""
    src, dst = edge_df["source_id"].to_numpy(), edge_df["target_id"].to_numpy()
    # Ratings files usually come sorted by user and movie without repeats (ml-32m's 32 M rows do):
    # then sorting and de-duplicating would only copy the frame, twice.
    if len(src) < 2 or ((src[1:] > src[:-1]) | ((src[1:] == src[:-1]) & (dst[1:] > dst[:-1]))).all():
        return None
    keys = pd.DataFrame({"source_id": src, "target_id": dst})
    if "timestamp" in edge_df.columns:
        keys["timestamp"] = edge_df["timestamp"].to_numpy()
    keys = keys.sort_values(list(keys.columns), kind="stable")
    return keys.index[~keys.duplicated(["source_id", "target_id"], keep="last")].to_numpy()


def build_tables(
    source_df: pd.DataFrame, target_df: pd.DataFrame, edge_df: pd.DataFrame, cfg: DataConfig
) -> dict[str, pd.DataFrame]:
    """Index the nodes, collapse duplicate edges, split, and draw the fixed val/test negatives."""
    targets = target_df.sort_values("target_id", kind="stable").reset_index(drop=True)
    targets.insert(0, "target_idx", np.arange(len(targets), dtype=np.int64))
    if "genres" not in targets.columns:
        targets["genres"] = [[] for _ in range(len(targets))]
    if "title" not in targets.columns:
        targets["title"] = targets["target_id"].astype(str)

    # Each edge column is gathered once, straight into the final table: at ml-32m a copy of the
    # whole edge frame is 1 GB. Columns kept as they are stay the caller's buffers, shared
    # copy-on-write (a Series, not its array: pandas then copies before either frame writes).
    rows = _latest_edges(edge_df)
    n_edges = len(edge_df) if rows is None else len(rows)

    def column(name: str, default: Any = None):
        if name not in edge_df.columns:
            return np.full(n_edges, default)
        if rows is None:
            return edge_df[name].reset_index(drop=True)
        return edge_df[name].array.take(rows)

    source_id, target_id = column("source_id"), column("target_id")
    edge_sources, edge_targets = np.asarray(source_id), np.asarray(target_id)

    source_ids = sorted_unique(np.concatenate([edge_sources, source_df["source_id"].to_numpy()]))
    sources = pd.DataFrame({"source_idx": np.arange(len(source_ids), dtype=np.int64), "source_id": source_ids})
    extra = [c for c in source_df.columns if c != "source_id"]
    if extra:
        sources = sources.merge(source_df.drop_duplicates("source_id"), on="source_id", how="left")

    # A hash look-up per edge: a binary search per edge took 4 s on ml-32m's 32 M ratings.
    source_idx = pd.Index(source_ids).get_indexer(edge_sources).astype(np.int64, copy=False)
    target_idx = _target_index(targets["target_id"], edge_targets)

    cold = cold_item_mask(target_idx, len(targets), cfg)
    targets["cold_item"] = cold
    split, supervision = assign_split(n_edges, cfg, cold[target_idx] if cfg.cold_items > 0 else None)
    if cfg.cold_items > 0:
        _require_cold_pairs(split, cold[target_idx], cfg)
    # copy=False: pandas would otherwise copy every column, then copy them again into one block per dtype.
    edges = pd.DataFrame(
        {
            "source_idx": source_idx,
            "target_idx": target_idx,
            "source_id": source_id,
            "target_id": target_id,
            "rating": column("rating", np.float32(1.0)),
            "timestamp": column("timestamp", np.int64(0)),
            "split": pd.Categorical.from_codes(split, categories=list(SPLITS)),
            "supervision": supervision,
        },
        copy=False,
    )

    neg = fixed_negatives(source_idx, target_idx, len(sources), len(targets), split, cfg, cold)
    del source_idx, target_idx
    return {"source_df": sources, "target_df": targets, "edge_df": edges, "neg_df": neg}


def _target_index(target_ids: pd.Series, edge_targets: np.ndarray) -> np.ndarray:
    """The row of each edge's target in the target table, whose ids must be unique and known."""
    index = pd.Index(target_ids)
    if not index.is_unique:
        raise UserError(f"the target table repeats target id {index[index.duplicated()][0]!r}")
    rows = index.get_indexer(edge_targets).astype(np.int64, copy=False)
    if (rows < 0).any():
        raise UserError("some edges point at targets absent from the target table")
    return rows


def _require_cold_pairs(split: np.ndarray, cold_edges: np.ndarray, cfg: DataConfig) -> None:
    """A cold-item AUC needs cold-item positives in val (which picks) and in test (which reports)."""
    for name in ("val", "test"):
        if not (cold_edges & (split == SPLITS.index(name))).any():
            raise UserError(f"config key data.cold_items={cfg.cold_items} leaves {name} without cold items "
                            f"({int(cold_edges.sum())} ratings of held-out items); raise it")  # fmt: skip


def fixed_negatives(source_idx, target_idx, n_sources: int, n_targets: int, split: np.ndarray, cfg: DataConfig,
                    cold: np.ndarray | None = None):  # fmt: skip
    """The val/test negatives: `neg_ratio` per positive of each split, none equal to any rating.

    With held-out items (`cold`, (n_targets,) bool) a cold item's positives get as many negatives
    among the cold items, uniform, and the rest among the others; `cfg.negatives` "popularity" draws
    those others in proportion to their train degree."""
    keys = source_idx * n_targets
    keys += target_idx
    keys.sort(kind="stable")  # timsort: the edges usually come sorted, and then it only checks
    rng = np.random.default_rng([cfg.seed, 1])
    cold = np.zeros(n_targets, dtype=bool) if cold is None else cold
    groups = [(~cold, cfg.negatives == "popularity"), (cold, False)]
    degree = np.bincount(target_idx[split == 0], minlength=n_targets) if cfg.negatives == "popularity" else None
    parts = []
    for items, by_degree in groups:
        mine = items[target_idx]
        counts = _negative_counts(split[mine], cfg, "cold-item " if items is cold else "")
        if not mine.any() or sum(counts) == 0:
            continue
        pool, weights = None, None
        if cold.any() or by_degree:
            pool = np.flatnonzero(items & (degree > 0)) if by_degree else np.flatnonzero(items)
            weights = degree[pool] if by_degree else None
        src, dst = sample_negatives(n_sources, n_targets, keys, sum(counts), rng, targets=pool, weights=weights)
        parts.append((src, dst, np.repeat(np.array([1, 2], dtype=np.int8), counts)))
    neg = pd.DataFrame({"source_idx": np.concatenate([p[0] for p in parts]),
                        "target_idx": np.concatenate([p[1] for p in parts])}, copy=False)  # fmt: skip
    codes = np.concatenate([p[2] for p in parts])
    if len(parts) > 1:  # val's negatives first, then test's, as with one group
        order = np.argsort(codes, kind="stable")
        neg, codes = neg.iloc[order].reset_index(drop=True), codes[order]
    neg["split"] = pd.Categorical.from_codes(codes, categories=list(SPLITS))
    return neg


def _negative_counts(split: np.ndarray, cfg: DataConfig, group: str) -> list[int]:
    """[val, test] negatives for the positives of one group of items (`split`: their codes)."""
    positives = {s: int((split == SPLITS.index(s)).sum()) for s in ("val", "test")}
    counts = {s: int(round(cfg.neg_ratio * n)) for s, n in positives.items()}
    for s, n in positives.items():  # an AUC needs both classes; a split without negatives has none
        if n > 0 and counts[s] == 0:
            raise UserError(f"config key data.neg_ratio={cfg.neg_ratio} leaves {s} without {group}negatives ({n} "
                            f"positives); raise it to at least {1 / n:.3g}")  # fmt: skip
    return [counts["val"], counts["test"]]
