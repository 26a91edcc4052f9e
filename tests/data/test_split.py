"""Split invariants: disjoint, leak-free negatives, counts that add up, seeded."""

import numpy as np
import pytest

from linklm import MovieLensManager

from synthetic import write_layout


@pytest.fixture
def folder(tmp_path):
    return write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=50, n_ratings=900).folder


def manager(folder, **kw):
    return MovieLensManager(path=folder, cache_dir="cache", **kw)


def pairs(src, dst):
    return set(zip(src.tolist(), dst.tolist(), strict=True))


def test_splits_are_disjoint_and_add_up(folder):
    ml = manager(folder)
    train, val, test = (pairs(*ml.supervision(s)) for s in ("train", "val", "test"))
    mp_train = pairs(*ml.message_passing_index("train"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert not (mp_train & train), "disjoint_train_ratio > 0: supervision edges never pass messages"
    assert not (mp_train & (val | test))
    assert len(train) + len(mp_train) + len(val) + len(test) == len(ml.edge_df)
    n = len(ml.edge_df)
    assert len(val) == int(0.1 * n) and len(test) == int(0.1 * n)
    # val passes messages over all train edges, test over train and val edges
    assert pairs(*ml.message_passing_index("val")) == train | mp_train
    assert pairs(*ml.message_passing_index("test")) == train | mp_train | val


def test_no_negative_equals_any_rating(folder):
    ml = manager(folder)
    known = pairs(ml.edge_df["source_idx"].to_numpy(), ml.edge_df["target_idx"].to_numpy())
    neg = pairs(ml.neg_df["source_idx"].to_numpy(), ml.neg_df["target_idx"].to_numpy())
    assert len(neg) == len(ml.neg_df), "negatives are distinct"
    assert not (neg & known)
    llm = ml.llm_df
    for split in ("val", "test"):
        labels = llm.loc[llm["split"] == split, "labels"]
        assert labels.mean() == 0.5
    assert (llm.loc[llm["split"] == "train", "labels"] == 1).all()


def test_zero_disjoint_ratio_means_train_edges_do_both(folder):
    ml = manager(folder, disjoint_train_ratio=0.0)
    assert pairs(*ml.message_passing_index("train")) == pairs(*ml.supervision("train"))


def test_same_seed_same_split_other_seed_other_split(folder, tmp_path):
    a = manager(folder, seed=1)
    b = MovieLensManager(path=folder, cache_dir=str(tmp_path / "other-cache"), seed=1)
    c = manager(folder, seed=2)
    assert a.folder != c.folder
    assert not b.from_cache
    assert a.edge_df["split"].tolist() == b.edge_df["split"].tolist()
    assert a.neg_df.equals(b.neg_df)
    assert a.edge_df["split"].tolist() != c.edge_df["split"].tolist()


def test_hetero_views_match_the_tables(folder):
    ml = manager(folder)
    store = ml.val_data["user", "rates", "movie"]
    rev = ml.val_data["movie", "rev_rates", "user"]
    assert np.array_equal(store.edge_index.flip(0).numpy(), rev.edge_index.numpy())
    assert store.edge_label.sum().item() == len(ml.supervision("val")[0])
    assert store.edge_label_index.shape[1] == len(store.edge_label)
    x = ml.val_data["movie"].x
    assert x.shape[0] == ml.num_targets and set(x.unique().tolist()) <= {0.0, 1.0}


def test_every_view_holds_its_edges_in_table_order(folder):
    ml = manager(folder)
    edges = ml.edge_df
    src, dst = edges["source_idx"].to_numpy(), edges["target_idx"].to_numpy()
    code = edges["split"].cat.codes.to_numpy()
    held = edges["supervision"].to_numpy() & (code == 0)
    message_passing = {"train": (code == 0) & ~held, "val": code == 0, "test": code <= 1}
    full = ml.data["user", "rates", "movie"].edge_index.numpy()
    assert np.array_equal(full, np.stack([src, dst]))
    for split, mask in message_passing.items():
        store = ml.split_data(split)["user", "rates", "movie"]
        assert np.array_equal(store.edge_index.numpy(), np.stack([src[mask], dst[mask]]))
        positives = (code == ("train", "val", "test").index(split)) & edges["supervision"].to_numpy()
        negatives = ml.neg_df[ml.neg_df["split"] == split]
        expected = np.stack([np.concatenate([src[positives], negatives["source_idx"]]),
                             np.concatenate([dst[positives], negatives["target_idx"]])])  # fmt: skip
        assert np.array_equal(store.edge_label_index.numpy(), expected)
        assert store.edge_label.tolist() == [1.0] * int(positives.sum()) + [0.0] * len(negatives)


def test_genre_one_hots_match_the_genre_lists(folder):
    ml = manager(folder)
    vocab = sorted({g for genres in ml.target_df["genres"] for g in genres})
    x = ml.target_features()
    assert x.shape == (ml.num_targets, len(vocab)) and len(vocab) > 1
    for row, genres in enumerate(ml.target_df["genres"]):
        assert [vocab[i] for i in x[row].nonzero().squeeze(1).tolist()] == sorted(set(genres))
