"""Ranking metrics: checked against independent computations, on graphs whose answer is known."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import ndcg_score

from linklm.config import DataConfig
from linklm.data import BipartiteGraphManager
from linklm.experiment import ranking


def brute_force(users_kge, movies_kge, test, known, k):
    """Recall, NDCG and MAP @k by hand, one user at a time: test and known are {user: set(movies)}."""
    out = {"recall": [], "ndcg": [], "map": []}
    for user, relevant in sorted(test.items()):
        scores = (users_kge[user] @ movies_kge.T).numpy().astype(np.float64)
        ranked = [m for m in np.argsort(-scores, kind="stable") if m not in known.get(user, set())][:k]
        hits = np.array([m in relevant for m in ranked], dtype=float)
        out["recall"].append(hits.sum() / len(relevant))
        dcg = (hits / np.log2(np.arange(2, len(hits) + 2))).sum()
        out["ndcg"].append(dcg / (1 / np.log2(np.arange(2, min(len(relevant), k) + 2))).sum())
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        out["map"].append((precision * hits).sum() / min(len(relevant), k))
    return {f"{name}@{k}": float(np.mean(values)) for name, values in out.items()}


def random_split(rng, n_users=23, n_movies=40):
    """Disjoint known and test edges; some users have known edges but no test edge."""
    test, known = {}, {}
    for user in range(n_users):
        movies = rng.permutation(n_movies)
        known[user] = set(movies[: rng.integers(0, 12)].tolist())
        if user % 4 != 1:
            test[user] = set(movies[20 : 20 + rng.integers(1, 8)].tolist())
    return test, known


def keys(edges, n_movies):
    return np.array(sorted(u * n_movies + m for u, movies in edges.items() for m in movies), dtype=np.int64)


def columns(edges):
    pairs = [(u, m) for u, movies in sorted(edges.items()) for m in sorted(movies)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@pytest.mark.parametrize("chunk_users", [1, 5, 1000])
def test_full_ranking_matches_a_brute_force_over_chunks(monkeypatch, chunk_users):
    rng = np.random.default_rng(0)
    test, known = random_split(rng)
    users_kge, movies_kge = torch.randn(23, 6), torch.randn(40, 6)
    monkeypatch.setattr(ranking, "SCORES_PER_CHUNK", chunk_users * 40)
    got = ranking.full_ranking(users_kge, movies_kge, *columns(test), keys(known, 40))
    assert got["users"] == len(test)
    for k in (10, 20):
        for name, value in brute_force(users_kge, movies_kge, test, known, k).items():
            assert got[name] == pytest.approx(value, abs=1e-5), name


def test_a_perfect_scorer_gets_recall_one_only_when_known_edges_are_excluded():
    rng = np.random.default_rng(1)
    test, known = random_split(rng)
    # One-hot movies; each user scores its known movies highest (10), its test movies next (1): only
    # the exclusion of known edges lets the test movies reach the top.
    users_kge = torch.zeros(23, 40)
    for user, movies in test.items():
        users_kge[user, sorted(movies)] = 1.0
    for user, movies in known.items():
        users_kge[user, sorted(movies)] = 10.0
    movies_kge = torch.eye(40)
    got = ranking.full_ranking(users_kge, movies_kge, *columns(test), keys(known, 40))
    assert got["recall@10"] == got["ndcg@10"] == got["map@10"] == pytest.approx(1.0)
    blind = ranking.full_ranking(users_kge, movies_kge, *columns(test), np.empty(0, np.int64))
    assert blind["recall@10"] < 0.9
    reversed_ = ranking.full_ranking(-users_kge, movies_kge, *columns(test), keys(known, 40))
    assert reversed_["recall@20"] == reversed_["ndcg@20"] == 0.0


def test_sampled_metrics_match_sklearn_and_a_hand_count():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((37, 100))
    positive = rng.integers(0, 100, 37)
    got = ranking.sampled_metrics(scores, positive)
    truth = np.zeros_like(scores)
    truth[np.arange(37), positive] = 1
    rank = (scores > scores[np.arange(37), positive][:, None]).sum(1)  # 0 = first
    assert got["hr@10"] == pytest.approx(np.mean(rank < 10), abs=1e-6)
    assert got["ndcg@10"] == pytest.approx(ndcg_score(truth, scores, k=10), abs=1e-5)
    assert (got["users"], got["candidates"]) == (37, 100)
    perfect, worst = ranking.sampled_metrics(truth, positive), ranking.sampled_metrics(-truth, positive)
    assert perfect["hr@10"] == perfect["ndcg@10"] == 1.0 and worst["hr@10"] == worst["ndcg@10"] == 0.0
    # Constant scores: ties keep the candidates' order, so a positive in column 50 is missed.
    assert ranking.sampled_metrics(np.zeros((1, 100)), np.array([50]))["hr@10"] == 0.0


def community_graph(n_users=60, n_movies=260, degree=25, seed=0) -> BipartiteGraphManager:
    rng = np.random.default_rng(seed)
    rows = [(u, int(m)) for u in range(n_users) for m in rng.choice(n_movies, size=degree, replace=False)]
    users = pd.DataFrame({"source_id": np.arange(n_users)})
    movies = pd.DataFrame({"target_id": np.arange(n_movies), "title": [f"Movie {i}" for i in range(n_movies)],
                           "genres": [["Drama"]] * n_movies})  # fmt: skip
    edges = pd.DataFrame(rows, columns=["source_id", "target_id"])
    return BipartiteGraphManager.from_tables(users, movies, edges, DataConfig(seed=seed))


def test_candidates_hold_one_test_positive_and_no_known_edge():
    manager = community_graph()
    cands = ranking.candidates(manager, users=20)
    assert cands.movies.shape == (20, 100) and len(set(cands.users.tolist())) == 20
    edges = manager.edge_df
    every = set(zip(edges["source_idx"], edges["target_idx"], strict=True))
    test = set(zip(*manager.supervision("test"), strict=True))
    for user, row, pos in zip(cands.users, cands.movies, cands.positive, strict=True):
        assert len(set(row.tolist())) == 100
        assert (user, row[pos]) in test
        assert not any((user, m) in every for i, m in enumerate(row) if i != pos), "a candidate is a known edge"
    again = ranking.candidates(manager, users=20)
    assert all(np.array_equal(a, b) for a, b in zip(cands, again, strict=True)), "fixed by the data seed"
    assert len(set(cands.positive.tolist())) > 1, "the positive's column is random"
    small = ranking.candidates(community_graph(n_movies=30, degree=8), users=100)
    assert small.movies.shape[1] == 16 and len(small.users) <= 60


def test_gnn_ranking_excludes_every_train_and_val_edge(tmp_path):
    from linklm import GraphRepresentationGenerator

    manager = community_graph()
    gen = GraphRepresentationGenerator(manager.data, manager.train_data, manager.val_data, manager.test_data,
                                       kge_dimension=8, epochs=3, cache_dir=tmp_path)  # fmt: skip
    metrics = gen.train_model(progress=False, log=lambda _: None)
    edges = manager.edge_df
    known, test = {}, {}
    for split, target in (("train", known), ("val", known), ("test", test)):
        part = edges[edges["split"] == split]
        for u, m in zip(part["source_idx"], part["target_idx"], strict=True):
            target.setdefault(int(u), set()).add(int(m))
    users_kge, movies_kge = gen.kge_table("test")
    for k in (10, 20):
        for name, value in brute_force(users_kge, movies_kge, test, known, k).items():
            assert metrics["ranking"][name] == pytest.approx(value, abs=1e-5), name
    # Its sampled figures are the dot products of the same tables on the shared candidates.
    cands = ranking.candidates(manager, users=10)
    u, m = cands.pairs()
    scores = (users_kge[u] * movies_kge[m]).sum(-1).numpy().reshape(cands.movies.shape)
    assert ranking.gnn_ranking(gen, manager, 10)["sampled"] == ranking.sampled_metrics(scores, cands.positive)


def test_a_classifier_scores_given_pairs_as_it_scores_its_split(tmp_path):
    from linklm.llm import VanillaClassifier
    from linklm.llm.collator import PairDataset

    manager = community_graph(n_users=20, n_movies=40, degree=8)
    clf = VanillaClassifier(manager.llm_df, manager.source_df, manager.target_df, tmp_path, "random:L2-H32")
    labels, scores = clf.predict(None, "test")
    test = manager.llm_df["split"] == "test"
    idx = manager.llm_index[test.to_numpy()]
    pairs = PairDataset(idx["source_idx"], idx["target_idx"], np.zeros(len(idx), np.int64))
    assert np.allclose(clf.predict(split="test", pairs=pairs)[1], scores, atol=1e-6)
    got = ranking.classifier_ranking(clf, manager, 5)["ranking"]
    assert got["users"] == 5 and 0.0 <= got["hr@10"] <= 1.0
