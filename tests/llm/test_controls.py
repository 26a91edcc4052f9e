"""The controls carry what embedding_frozen is given, minus the graph; kge_mlp reads KGEs without text."""

import numpy as np
import pytest
import torch

from linklm import UserError
from linklm.config import SPLITS
from linklm.llm.classifier import VanillaClassifier
from linklm.llm.controls import DegreeControl, KGEMLPClassifier, RandomControl, ShuffledControl, VanillaAllClassifier

from .conftest import TINY

FAST = {"max_train_pairs": 64, "batch_size": 32, "eval_batch_size": 64, "evals_per_epoch": 1, "max_epochs": 1}


def _make(cls, tiny, root, **kw):
    ml, gen = tiny
    return cls(ml.llm_df, ml.source_df, ml.target_df, root, TINY, kge=gen, **{**FAST, **kw})


def test_degree_control_holds_each_splits_log_degree(tiny, tmp_path):
    ml, gen = tiny
    clf = _make(DegreeControl, tiny, tmp_path)
    assert clf.kge_dim == 1 and clf.model.kge_projection[0].in_features == 1
    # counted again here from the manager's own edge table, per split's message-passing edges
    train_users = np.bincount(ml.message_passing_index("train")[0], minlength=len(ml.source_df))
    mu, sd = np.log1p(train_users).mean(), np.log1p(train_users).std()
    for split in SPLITS:
        users, movies = clf.kge_tables(split)
        assert users.shape == (len(ml.source_df), 1) and movies.shape == (len(ml.target_df), 1)
        degree = np.bincount(ml.message_passing_index(split)[0], minlength=len(ml.source_df))
        np.testing.assert_allclose(users[:, 0].numpy(), (np.log1p(degree) - mu) / sd, rtol=1e-5, atol=1e-6)
    # test passes messages over train and val edges: its degrees are larger
    assert (clf.kge_tables("test")[1] >= clf.kge_tables("train")[1]).all()
    assert (clf.kge_tables("test")[1] > clf.kge_tables("train")[1]).any()


def test_shuffled_control_permutes_rows_the_same_way_in_every_split(tiny, tmp_path):
    _, gen = tiny
    clf = _make(ShuffledControl, tiny, tmp_path / "a")
    perms = []
    for split in SPLITS:
        for shuffled, kge in zip(clf.kge_tables(split), gen.kge_table(split), strict=True):
            # each shuffled row is some node's KGE row: find which
            match = (shuffled[:, None, :] == kge[None, :, :]).all(-1).float().argmax(1)
            assert torch.equal(kge[match], shuffled)
            perms.append(match)
    users = perms[0::2]
    assert all(torch.equal(users[0], p) for p in users), "one permutation for every split"
    assert not torch.equal(users[0], torch.arange(len(users[0]))), "the graph is destroyed"
    other = _make(ShuffledControl, tiny, tmp_path / "b", seed=7)
    assert not torch.equal(other.kge_tables("train")[0], clf.kge_tables("train")[0]), "drawn from llm.seed"


def test_random_control_is_fixed_per_node_and_knows_no_graph(tiny, tmp_path):
    _, gen = tiny
    clf = _make(RandomControl, tiny, tmp_path)
    first = clf.kge_tables("train")
    for split in SPLITS:
        assert all(torch.equal(a, b) for a, b in zip(clf.kge_tables(split), first, strict=True))
    users, movies = first
    kge_users = gen.kge_table("train")[0]
    assert users.shape == kge_users.shape and movies.shape == gen.kge_table("train")[1].shape
    assert users.std().item() == pytest.approx(kge_users.std().item(), rel=0.5)
    assert abs(np.corrcoef(users.flatten(), kge_users.flatten())[0, 1]) < 0.5


@pytest.mark.parametrize("cls", [DegreeControl, ShuffledControl, RandomControl, KGEMLPClassifier])
def test_each_control_trains_scores_and_reloads(tiny, tmp_path, cls):
    clf = _make(cls, tiny, tmp_path / "clf")
    m = clf.train_model_on_data(None)
    assert m["stopped"] in ("converged", "budget") and len(m["val_history"]) == 1
    result = clf.evaluate_model(None, "val")
    again = _make(cls, tiny, tmp_path / "again")
    again.load_pretrained(tmp_path / "clf" / "model")
    assert again.evaluate_model(None, "val") == result


def test_kge_mlp_reads_no_text(tiny, tmp_path):
    clf = _make(KGEMLPClassifier, tiny, tmp_path)
    batch = clf.collator("val", negatives=False)([clf.pairs(None, "val")[i] for i in range(8)])
    batch.pop("labels")
    clf.model.eval()
    with torch.no_grad():
        logits = clf.model(**batch).logits
        scrambled = {**batch, "input_ids": torch.zeros_like(batch["input_ids"])}
        assert torch.equal(clf.model(**scrambled).logits, logits)
        moved = {**batch, "source_kge": batch["source_kge"] + 1.0}
        assert not torch.equal(clf.model(**moved).logits, logits)


def test_controls_need_a_gnn(tiny, tmp_path):
    ml, _ = tiny
    for cls in (DegreeControl, KGEMLPClassifier):
        with pytest.raises(UserError, match="needs kge="):
            cls(ml.llm_df, ml.source_df, ml.target_df, tmp_path, TINY, **FAST)


def test_vanilla_all_learns_from_every_train_edge_and_scores_like_vanilla(tiny, tmp_path):
    ml, _ = tiny
    edges = ml.message_passing_index("val")  # every train edge: the GNN's own and the held-out share
    options = {**FAST, "max_train_pairs": 0}
    wide = VanillaAllClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "a", TINY, train_edges=edges,
                                **options)  # fmt: skip
    narrow = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "b", TINY, **options)
    key = lambda pairs: set(zip(pairs.source_idx.tolist(), pairs.target_idx.tolist(), strict=True))  # noqa: E731
    everything, share = key(wide._train_positives(None)), key(narrow._train_positives(None))
    e = ml.edge_df[ml.edge_df["split"] == "train"]
    assert everything == set(zip(e["source_idx"].tolist(), e["target_idx"].tolist(), strict=True))
    assert share < everything  # vanilla sees only the classifiers' share
    for split in ("val", "test"):  # scored on the same fixed pairs as every kind
        assert key(wide.pairs(None, split)) == key(narrow.pairs(None, split))
    capped = VanillaAllClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "c", TINY, train_edges=edges,
                                  **{**FAST, "max_train_pairs": 10})  # fmt: skip
    assert len(capped._train_positives(None)) == 10 and key(capped._train_positives(None)) < everything
    metrics = wide.train_model_on_data(None)
    assert metrics["train_examples"] == 2 * len(everything) and wide.name == "vanilla_all"
