"""The table builders' fast paths against the plain numpy they replace: negatives, sorted keys,
and edge columns that stay the caller's only until someone writes."""

import numpy as np
import pandas as pd
import pytest

from linklm.config import DataConfig
from linklm.data import BipartiteGraphManager
from linklm.data.tables import sample_negatives, sorted_unique


def reference_negatives(n_source, n_target, keys, count, rng):
    """sample_negatives written the plain way: each round filters the draws against the known keys
    (np.isin) and keeps each value's first occurrence (np.unique), in draw order."""
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        draw = rng.integers(0, n_source * n_target, size=int((count - len(chosen)) * 1.2) + 64, dtype=np.int64)
        draw = np.concatenate([chosen, draw[~np.isin(draw, keys)]])
        _, first = np.unique(draw, return_index=True)
        chosen = draw[np.sort(first)][:count]
    return chosen // n_target, chosen % n_target


@pytest.mark.parametrize("density", [0.0, 0.05, 0.6, 0.95], ids=["no edges", "sparse", "dense", "nearly full"])
def test_negatives_are_the_plain_algorithms(density):
    for seed in range(20):
        rng = np.random.default_rng([seed, 9])
        n_source, n_target = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        size = int(density * n_source * n_target)
        keys = np.sort(rng.choice(n_source * n_target, size=size, replace=False)).astype(np.int64)
        count = int(rng.integers(0, n_source * n_target - size + 1))
        expected = reference_negatives(n_source, n_target, keys, count, np.random.default_rng(seed))
        drawn = sample_negatives(n_source, n_target, keys, count, np.random.default_rng(seed))
        ordered = sample_negatives(n_source, n_target, keys, count, np.random.default_rng(seed), ordered=True)
        for ours, theirs in zip(drawn, expected, strict=True):
            assert ours.dtype == np.int64 and np.array_equal(ours, theirs)
        order = np.argsort(expected[0] * n_target + expected[1])
        assert np.array_equal(ordered[0], expected[0][order]) and np.array_equal(ordered[1], expected[1][order])


def test_negatives_draw_as_many_numbers_ordered_or_not():
    keys = np.arange(0, 400, 3, dtype=np.int64)
    rngs = np.random.default_rng(1), np.random.default_rng(1)
    sample_negatives(20, 20, keys, 200, rngs[0])
    sample_negatives(20, 20, keys, 200, rngs[1], ordered=True)
    assert rngs[0].integers(1 << 40) == rngs[1].integers(1 << 40)  # what comes next is the same


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 50, 1000),
        np.concatenate([np.arange(0, 900, 2), np.arange(1, 300, 7), np.arange(0, 900, 5)]),  # sorted runs
        np.array(["u3", "u1", "u3", "u20", "u1"], dtype=object),
        np.empty(0, dtype=np.int64),
    ],
    ids=["random", "sorted runs with repeats", "strings", "empty"],
)
def test_sorted_unique_is_np_unique(values):
    ours = sorted_unique(values)
    assert ours.dtype == values.dtype and np.array_equal(ours, np.unique(values))


def _tables():
    users = pd.DataFrame({"source_id": np.arange(6)})
    movies = pd.DataFrame({"target_id": np.arange(5) * 10, "title": [f"m{i}" for i in range(5)],
                           "genres": [["Drama"]] * 5})  # fmt: skip
    keys = np.sort(np.random.default_rng(0).choice(30, size=18, replace=False))
    edges = pd.DataFrame({"source_id": keys // 5, "target_id": keys % 5 * 10, "rating": np.arange(18) / 2.0})
    return users, movies, edges


def test_edge_columns_stay_apart_from_the_callers_frame():
    users, movies, edges = _tables()
    ml = BipartiteGraphManager.from_tables(users, movies, edges, DataConfig(val_ratio=0.2, test_ratio=0.2))
    kept = ml.edge_df["rating"].to_numpy().copy()
    edges.loc[0, "rating"] = -1.0  # the caller writes: the manager's table keeps its value
    assert np.array_equal(ml.edge_df["rating"].to_numpy(), kept)
    ml.edge_df.loc[1, "source_id"] = 99  # and the other way round
    assert edges.loc[1, "source_id"] != 99


def test_edges_to_unknown_targets_are_refused():
    from linklm.errors import UserError

    users, movies, edges = _tables()
    edges.loc[3, "target_id"] = 15  # between two known ids
    with pytest.raises(UserError, match="absent from the target table"):
        BipartiteGraphManager.from_tables(users, movies, edges, DataConfig(val_ratio=0.2, test_ratio=0.2))


def test_a_target_table_that_repeats_an_id_is_refused():
    from linklm.errors import UserError

    users, movies, edges = _tables()
    movies = pd.concat([movies, movies.iloc[[2]]], ignore_index=True)
    with pytest.raises(UserError, match="repeats target id"):
        BipartiteGraphManager.from_tables(users, movies, edges, DataConfig(val_ratio=0.2, test_ratio=0.2))
