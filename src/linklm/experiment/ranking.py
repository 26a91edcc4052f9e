"""Ranking metrics: does a model put a user's held-out movies at the top of a list?

    full_ranking(users_kge, movies_kge, test_src, test_dst, known_keys)   recall/NDCG/MAP @10 and @20
    gnn_full_ranking(graph, users_kge, movies_kge)     the same for the GNN stage, on its LinkGraph
    cands = candidates(manager, users=30)               one test positive among 99 non-edges per user
    sampled_metrics(scores, cands.positive)             HR@10 and NDCG@10 of (users, candidates) scores
    classifier_ranking(clf, manager, 30)                a classifier's HR@10 / NDCG@10 on those candidates

Two protocols, because a classifier reads one prompt per pair and cannot score every movie:

- **Full ranking** (the GNN only): for every user with a test positive, every movie is scored with
  the dot product of the test KGE tables; the user's train and val edges are taken out of the list
  (they are known, not predictions), and PyG's link-prediction metrics read the top 20 against the
  user's test positives. Users are scored `SCORES_PER_CHUNK // num_movies` at a time, so memory stays
  at a fixed 64 MB of scores whatever the graph (ml-32m: ~190 users per chunk).
- **Sampled candidates** (every model, on the same lists; each figure with its standard error over
  users, `hr@10_se`, `ndcg@10_se`): `llm.ranking_users` test users drawn with
  the data seed, each with one of their test positives and 99 random movies that are no edge of
  theirs in any split, shuffled; HR@10 (is the positive in the top 10?) and NDCG@10. The positive's
  place in the list is random, so tied scores (a saturated probability) are broken at random rather
  than in its favour. Popularity is the floor; preferential attachment ranks a user's candidates
  exactly as popularity does (the user's term is constant), so it is not listed separately.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

K_FULL = (10, 20)  # cut-offs of the full ranking
K_SAMPLED = 10  # cut-off of the sampled protocol
NEGATIVES = 99  # non-edges beside each positive: 100 candidates (fewer on graphs of < 200 movies)
SCORES_PER_CHUNK = 1 << 24  # (users x movies) float32 scores held at once: 64 MB
_NAMES = {"LinkPredRecall": "recall", "LinkPredNDCG": "ndcg", "LinkPredMAP": "map", "LinkPredHitRatio": "hr"}


class Candidates(NamedTuple):
    """users: (n,) node indices; movies: (n, c) each user's candidates, one test positive among
    non-edges, in random order; positive: (n,) the column of each row's positive."""

    users: np.ndarray
    movies: np.ndarray
    positive: np.ndarray

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat (n * c,) source and target indices, row by row."""
        return np.repeat(self.users, self.movies.shape[1]), self.movies.reshape(-1)


def _metric_names(computed: dict) -> dict[str, float]:
    """PyG's `LinkPredNDCG@10` keys as `ndcg@10`, values as floats."""
    out = {}
    for name, value in computed.items():
        metric, k = name.split("@")
        out[f"{_NAMES[metric]}@{k}"] = round(float(value), 6)
    return out


def full_ranking(users_kge, movies_kge, test_src, test_dst, known_keys: np.ndarray, ks=K_FULL,
                 device=None) -> dict[str, Any]:  # fmt: skip
    """Recall, NDCG and MAP at each k over all movies, for every user with a test edge.

    users_kge: (num_users, d), movies_kge: (num_movies, d) tensors; score = their dot product.
    test_src, test_dst: (n,) the test positives. known_keys: sorted int64 `user * num_movies + movie`
    of the edges a user already has (train and val): never ranked. Returns {"recall@10": ...,
    "users": n}.
    """
    import torch
    from torch_geometric.metrics import LinkPredMAP, LinkPredMetricCollection, LinkPredNDCG, LinkPredRecall

    device = torch.device(device or "cpu")
    n_movies = movies_kge.shape[0]
    test_keys = _sorted_unique(np.asarray(test_src, np.int64) * n_movies + np.asarray(test_dst, np.int64))
    users = _sorted_unique(test_keys // n_movies)
    metrics = LinkPredMetricCollection([m(k) for k in ks for m in (LinkPredRecall, LinkPredNDCG, LinkPredMAP)])
    movies = movies_kge.float().to(device)
    step = max(1, SCORES_PER_CHUNK // n_movies)
    for start in range(0, len(users), step):
        chunk = users[start : start + step]  # consecutive test users: each key range below is one slice
        scores = users_kge[torch.from_numpy(chunk)].float().to(device) @ movies.T  # (chunk, num_movies)
        known = _slice(known_keys, chunk, n_movies)
        rows = np.searchsorted(chunk, known // n_movies).clip(max=len(chunk) - 1)
        mine = chunk[rows] == known // n_movies  # known edges of users without a test edge are skipped
        drop = torch.from_numpy(np.stack([rows[mine], known[mine] % n_movies])).to(device)
        scores[drop[0], drop[1]] = -torch.inf
        top = scores.topk(min(max(ks), n_movies), dim=1).indices.cpu()
        truth = _slice(test_keys, chunk, n_movies)
        label_index = torch.from_numpy(np.stack([np.searchsorted(chunk, truth // n_movies), truth % n_movies]))
        metrics.update(top, label_index)
    return {**_metric_names(metrics.compute()), "users": int(len(users))}


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy >= 2.3 hashes instead, ~10x slower on ml-32m's millions of keys."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _slice(keys: np.ndarray, chunk: np.ndarray, n_movies: int) -> np.ndarray:
    """The sorted `keys` of the users chunk[0] ..= chunk[-1]."""
    lo, hi = np.searchsorted(keys, [chunk[0] * n_movies, (chunk[-1] + 1) * n_movies])
    return keys[lo:hi]


def gnn_full_ranking(graph, users_kge, movies_kge, device=None) -> dict[str, Any]:
    """`full_ranking` of the GNN's test tables on a `linklm.gnn.train.LinkGraph`: test positives
    against every movie, minus each user's train edges (message passing, and supervision: the
    classifiers' held-out share) and val edges, which the test graph's message passing holds."""
    import torch

    n_movies = graph.num_movies
    known = [graph.edges["test"][0] * n_movies + graph.edges["test"][1]]
    for split in ("train", "val"):
        src, dst, labels = graph.pairs[split]
        known.append((src * n_movies + dst)[labels == 1])
    known_keys = torch.unique(torch.cat(known)).numpy()  # torch.unique sorts (np.unique hashes: slow at 25 M)
    src, dst, labels = graph.pairs["test"]
    positive = (labels == 1).numpy()
    return full_ranking(users_kge, movies_kge, src.numpy()[positive], dst.numpy()[positive], known_keys,
                        device=device)  # fmt: skip


def candidates(manager, users: int, negatives: int = NEGATIVES) -> Candidates:
    """`users` test users (fewer if fewer have a test edge), drawn with the data seed, each with one
    test positive and `negatives` movies that are no edge of theirs in any split, shuffled. The
    same for every model of a data seed. On a graph of < 2 * negatives movies, negatives shrink to
    half the movies and users with fewer non-edges than that are not drawn."""
    rng = np.random.default_rng([manager.config.seed, 17])
    n_movies = manager.num_targets
    negatives = min(negatives, n_movies // 2)
    test_src, test_dst = manager.supervision("test")
    edge_src = manager.edge_df["source_idx"].to_numpy()
    edge_dst = manager.edge_df["target_idx"].to_numpy()
    free = n_movies - np.bincount(edge_src, minlength=manager.num_sources)  # non-edges of each user
    eligible = np.flatnonzero(np.bincount(test_src, minlength=manager.num_sources))  # users with a test edge
    eligible = eligible[free[eligible] >= max(negatives, 1)]
    chosen = np.sort(rng.choice(eligible, size=min(users, len(eligible)), replace=False))
    # Only the chosen users' edges from here on: ml-32m has 32 M of them.
    mine, theirs = np.isin(edge_src, chosen), np.isin(test_src, chosen)
    edge_src, edge_dst, test_src, test_dst = edge_src[mine], edge_dst[mine], test_src[theirs], test_dst[theirs]
    rows, positive = [], []
    for user in chosen:
        pos = rng.choice(test_dst[test_src == user])
        non_edges = np.setdiff1d(np.arange(n_movies), edge_dst[edge_src == user], assume_unique=True)
        row = rng.permutation(np.append(rng.choice(non_edges, negatives, replace=False), pos))
        rows.append(row)
        positive.append(int(np.flatnonzero(row == pos)[0]))
    movies = np.stack(rows) if rows else np.empty((0, negatives + 1), np.int64)
    return Candidates(chosen.astype(np.int64), movies.astype(np.int64), np.asarray(positive, np.int64))


def sampled_metrics(scores: np.ndarray, positive: np.ndarray, k: int = K_SAMPLED) -> dict[str, Any]:
    """HR@k and NDCG@k of (n, c) candidate scores whose positive sits in column `positive` (n,).
    Stable sort: ties keep the candidates' (random) order."""
    import torch
    from torch_geometric.metrics import LinkPredHitRatio, LinkPredMetricCollection, LinkPredNDCG

    scores = np.asarray(scores, dtype=np.float64)
    n, c = scores.shape
    out: dict[str, Any] = {"users": int(n), "candidates": int(c)}
    if n == 0:
        return out
    order = np.argsort(-scores, axis=1, kind="stable")
    top = torch.from_numpy(order[:, :k])
    metrics = LinkPredMetricCollection([LinkPredHitRatio(k), LinkPredNDCG(k)])
    metrics.update(top, torch.from_numpy(np.stack([np.arange(n), np.asarray(positive, np.int64)])))
    # Standard errors over users: each user's hit (0/1) and gain (1/log2(rank + 2) within the top k).
    rank = np.argmax(order == np.asarray(positive, np.int64)[:, None], axis=1)
    per_user = {"hr": (rank < k).astype(np.float64), "ndcg": np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)}
    se = {f"{name}@{k}_se": round(float(v.std(ddof=1) / np.sqrt(n)), 6) if n > 1 else float("nan")
          for name, v in per_user.items()}  # fmt: skip
    return {**_metric_names(metrics.compute()), **se, **out}


def classifier_ranking(clf, manager, users: int) -> dict[str, Any]:
    """{"ranking": HR@10, NDCG@10 ...} of a trained classifier on the shared candidates (its batched
    test-split scoring: test KGE tables, test prompts); {} when `users` is 0."""
    if users <= 0:
        return {}
    from linklm.llm.collator import PairDataset

    cands = candidates(manager, users)
    src, dst = cands.pairs()
    _, scores = clf.predict(split="test", pairs=PairDataset(src, dst, np.zeros(len(src), np.int64)))
    return {"ranking": sampled_metrics(scores.reshape(cands.movies.shape), cands.positive)}


def gnn_ranking(gen, manager, users: int) -> dict[str, Any]:
    """The GNN's results.json `ranking`: its stage's full ranking plus, under `sampled`, HR@10 and
    NDCG@10 on the classifiers' candidates (dot product of the test tables)."""
    out = dict(gen.metrics.get("ranking", {}))
    if users > 0:
        cands = candidates(manager, users)
        user_kge, movie_kge = gen.get_embedding(*cands.pairs(), split="test")
        scores = (user_kge * movie_kge).sum(-1).numpy().reshape(cands.movies.shape)
        out["sampled"] = sampled_metrics(scores, cands.positive)
    return out


def popularity_ranking(manager, users: int) -> dict[str, Any]:
    """HR@10 and NDCG@10 of movie popularity (train degree) on the shared candidates."""
    cands = candidates(manager, users)
    return sampled_metrics(manager.train_degrees[1][cands.movies].astype(np.float64), cands.positive)
