"""Item cold start (data.cold_items) and popularity-matched negatives (data.negatives)."""

import numpy as np
import pandas as pd
import pytest

from linklm import MovieLensManager, UserError
from linklm.cli import main
from linklm.config import DataConfig
from linklm.data import BipartiteGraphManager
from linklm.data.tables import sample_negatives
from linklm.experiment.baselines import floors

from synthetic import write_layout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_layout(tmp_path_factory.mktemp("cold") / "ml-synth", "csv", n_users=80, n_movies=60,
                        n_ratings=1600).folder  # fmt: skip


def manager(folder, **kw):
    return MovieLensManager(path=folder, cache_dir="cache", **kw)


def keys(src, dst, n):
    return set((np.asarray(src, np.int64) * n + np.asarray(dst, np.int64)).tolist())


@pytest.mark.parametrize("share", [0.15, 0.3, 0.5])
def test_held_out_items_are_never_seen_before_their_split(folder, share):
    ml = manager(folder, cold_items=share, seed=3)
    cold, edges = ml.cold_items, ml.edge_df
    rated = np.unique(edges["target_idx"])
    assert cold.sum() == round(share * len(rated)) and cold[rated].sum() == cold.sum()
    on_cold = cold[edges["target_idx"].to_numpy()]
    assert (edges.loc[on_cold, "split"] != "train").all(), "a held-out item has no train edge"
    val, test = ((edges.loc[on_cold, "split"] == s).sum() for s in ("val", "test"))
    assert abs(val - test) <= 1, "its ratings go half to val, half to test"
    for split in ("train", "val", "test"):  # no split's graph carries a held-out item
        _, dst = ml.message_passing_index(split)
        assert not cold[dst].any()
    assert ml.train_degrees[1][cold].sum() == 0
    # The other ratings split as before, by the ratios.
    warm = (~on_cold).sum()
    assert ((edges["split"] == "val") & ~on_cold).sum() == int(0.1 * warm)


def test_held_out_items_get_negatives_among_themselves(folder):
    ml = manager(folder, cold_items=0.3, seed=4)
    cold, neg = ml.cold_items, ml.neg_df
    known = keys(ml.edge_df["source_idx"], ml.edge_df["target_idx"], ml.num_targets)
    assert not (keys(neg["source_idx"], neg["target_idx"], ml.num_targets) & known)
    for split in ("val", "test"):
        pos = ml.supervision(split)[1]
        mine = neg[neg["split"] == split]["target_idx"].to_numpy()
        assert cold[mine].sum() == cold[pos].sum() and (~cold[mine]).sum() == (~cold[pos]).sum()
    # Popularity is no help on a held-out item: every one has train degree 0.
    f = floors(ml)
    assert f["popularity"]["test_auc_cold_items"] == pytest.approx(0.5)
    assert {"test_auc_warm_items", "test_pairs_cold_items"} <= set(f["preferential_attachment"])


def test_default_holds_nothing_out_and_reports_no_item_split(folder):
    ml = manager(folder)
    assert not ml.cold_items.any()
    assert "test_auc_cold_items" not in floors(ml)["popularity"]


def test_other_seed_other_items(folder):
    a, b = manager(folder, cold_items=0.2, seed=1), manager(folder, cold_items=0.2, seed=2)
    assert not np.array_equal(a.cold_items, b.cold_items)
    assert np.array_equal(a.cold_items, manager(folder, cold_items=0.2, seed=1).cold_items)


@pytest.mark.parametrize("value", ["0.51", "-0.1", "1.0", "nan"])
def test_share_outside_the_range_is_one_line(capsys, value):
    assert main(["data", f"data.cold_items={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.cold_items" in err


def tiny(cold_items: float, ratings_per_item: int = 1):
    """40 items, each rated by `ratings_per_item` of 30 users."""
    users = pd.DataFrame({"source_id": np.arange(30)})
    items = pd.DataFrame({"target_id": np.arange(40), "title": [f"t{i}" for i in range(40)]})
    rng = np.random.default_rng(0)
    src = np.concatenate([rng.choice(30, ratings_per_item, replace=False) for _ in range(40)])
    edges = pd.DataFrame({"source_id": src, "target_id": np.repeat(np.arange(40), ratings_per_item)})
    return BipartiteGraphManager.from_tables(users, items, edges, DataConfig(cold_items=cold_items, seed=0))


def test_a_share_that_leaves_val_or_test_without_held_out_items_is_refused():
    with pytest.raises(UserError, match="holds out no item"):
        tiny(0.001)
    # One held-out item with one rating: it cannot be in val and in test.
    with pytest.raises(UserError, match="leaves val without cold items"):
        tiny(0.025)
    ml = tiny(0.025, ratings_per_item=4)  # four ratings: two in val, two in test
    cold = np.flatnonzero(ml.cold_items)
    assert len(cold) == 1 and all(np.isin(ml.supervision(s)[1], cold).sum() == 2 for s in ("val", "test"))


def test_popularity_negatives_leave_popularity_near_chance():
    ml = MovieLensManager(negatives="popularity", cache_dir="cache")
    f = floors(ml)
    assert 0.4 <= f["popularity"]["test_auc"] <= 0.6
    uniform = floors(MovieLensManager(cache_dir="cache"))
    assert uniform["popularity"]["test_auc"] > 0.75
    degree = ml.train_degrees[1]
    assert (degree[ml.neg_df["target_idx"].to_numpy()] > 0).all()
    known = keys(ml.edge_df["source_idx"], ml.edge_df["target_idx"], ml.num_targets)
    assert not (keys(ml.neg_df["source_idx"], ml.neg_df["target_idx"], ml.num_targets) & known)


def test_bad_negatives_value_is_one_line(capsys):
    assert main(["data", "data.negatives=hard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.negatives" in err


# --- the sampler ---------------------------------------------------------------------------------


def test_sampler_keeps_to_its_targets_and_their_weights():
    rng = np.random.default_rng(0)
    n_src, n_dst = 50, 40
    known = np.sort(np.unique(rng.integers(0, n_src * n_dst, 300)))
    pool = np.array([3, 7, 11, 20, 33], dtype=np.int64)
    src, dst = sample_negatives(n_src, n_dst, known, 150, rng, targets=pool)
    assert set(dst.tolist()) <= set(pool.tolist()) and not (keys(src, dst, n_dst) & set(known.tolist()))
    assert len(keys(src, dst, n_dst)) == 150
    weights = np.array([1, 1, 1, 1, 20], dtype=np.float64)
    _, dst = sample_negatives(2000, n_dst, known, 400, rng, targets=pool, weights=weights)
    assert 0.75 < (dst == 33).mean() < 0.9, "drawn in proportion to the weights: 20 / 24"
    with pytest.raises(UserError, match="too dense"):
        sample_negatives(n_src, n_dst, known, n_src * len(pool) + 1, rng, targets=pool)


def test_sampler_without_targets_draws_what_it_always_drew():
    known = np.array([0, 5, 17], dtype=np.int64)
    a = sample_negatives(10, 10, known, 30, np.random.default_rng(7))
    draws = np.random.default_rng(7).integers(0, 100, size=int(30 * 1.2) + 64, dtype=np.int64)
    _, first = np.unique(draws, return_index=True)
    kept = [k for k in draws[np.sort(first)] if k not in known][:30]
    assert (a[0] * 10 + a[1]).tolist() == kept
