"""The training recipe's own pieces: its rank AUC against sklearn's, and the sparse pair path of
large graphs against the dense score matrix of small ones, through `fit`."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from linklm.gnn import model as gnn_model
from linklm.gnn import train as recipe

from .test_generator import generator, planted_graph


@pytest.mark.parametrize("values", [1000, 7], ids=["few ties", "mostly ties"])
def test_roc_auc_is_sklearns(values):
    rng = np.random.default_rng(values)
    labels = rng.random(5000) < 0.3
    scores = rng.integers(0, values, 5000) + labels * rng.integers(0, 3, 5000)  # positives a bit higher
    ours = recipe.roc_auc(torch.from_numpy(labels).float(), torch.from_numpy(scores).float())
    assert ours == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert 0.5 < ours < 1.0


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        recipe.roc_auc(torch.ones(4), torch.rand(4))


def _fit(gen, tmp_path, name):
    return recipe.fit(gen._new_model(), gen.graph, gen.config, gen.device, checkpoint=tmp_path / name, key=name,
                      progress=False, say=lambda _: None)  # fmt: skip


@pytest.mark.parametrize("model", ["lightgcn", "sage"])
def test_sparse_pairs_train_as_the_dense_score_matrix(tmp_path, monkeypatch, model):
    """ml-32m's path (a PairIndex per block of pairs) and ml-100k's (the dense score matrix) are the
    same training: the same losses and val AUCs, epoch by epoch, to float rounding."""
    gen = generator(planted_graph(), tmp_path, epochs=8, checkpoint_every=0, model=model)
    assert not gnn_model.uses_pair_index(gen.num_users, gen.num_movies, gen.device)
    dense = _fit(gen, tmp_path, "dense")
    monkeypatch.setattr(gnn_model._DensePairLogits, "limit", 0)
    assert gnn_model.uses_pair_index(gen.num_users, gen.num_movies, gen.device)
    sparse = _fit(gen, tmp_path, "sparse")
    for a, b in zip(dense.history, sparse.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["val_auc"] == pytest.approx(b["val_auc"], abs=1e-5)
    assert dense.best_epoch == sparse.best_epoch
    for name, tensor in dense.best_state.items():
        torch.testing.assert_close(tensor, sparse.best_state[name], atol=1e-5, rtol=1e-4)


def test_epoch_negatives_are_sorted_and_never_an_edge(tmp_path):
    gen = generator(planted_graph(), tmp_path)
    graph, edges = gen.graph, gen.graph.edges["train"]
    positives, negatives = recipe.epoch_pairs(gen.model, graph, edges, None, gen.config, np.random.default_rng(0))[0]
    assert torch.equal(positives.src, edges[0]) and torch.equal(positives.dst, edges[1])
    assert bool((positives.labels == 1).all()) and bool((negatives.labels == 0).all())
    keys = (negatives.src * graph.num_movies + negatives.dst).numpy()
    assert len(keys) == edges.shape[1] and bool((keys[1:] > keys[:-1]).all())  # sorted, distinct
    assert not np.isin(keys, graph.own_keys).any()
    # The GNN's negatives avoid its own edges only: the classifiers' share is drawn like val and test
    # positives are, as pairs it never saw.
    share_src, share_dst, _ = graph.pairs["train"]
    share = (share_src * graph.num_movies + share_dst).numpy()
    assert not np.isin(share, graph.own_keys).any() and np.isin(graph.own_keys, graph.train_keys).all()
    rng = np.random.default_rng(1)
    drawn = np.concatenate([keys] + [
        (lambda n: (n.src * graph.num_movies + n.dst).numpy())(recipe.epoch_pairs(gen.model, graph, edges, None,
                                                                                 gen.config, rng)[0][1])
        for _ in range(20)])  # fmt: skip
    assert np.isin(share, drawn).any()
