"""Held-out items in the GNN stage: never a training negative, a fallback chosen on val."""

import numpy as np
import pytest
import torch

from linklm import GraphRepresentationGenerator, MovieLensManager
from linklm.gnn import train as recipe

from synthetic import write_layout


@pytest.fixture(scope="module")
def cold_ml(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold-gnn")
    syn = write_layout(root / "ml-synth", "csv", n_users=60, n_movies=50, n_ratings=1200)
    return MovieLensManager(path=syn.folder, cache_dir=str(root / "cache"), cold_items=0.3)


def trained(ml, tmp_path, model):
    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=8,
                                       hidden_channels=8, epochs=15, model=model, cache_dir=tmp_path)  # fmt: skip
    gen.train_model(progress=False, log=lambda _: None)
    return gen


@pytest.mark.parametrize("model", ["lightgcn", "sage"])
def test_the_fallback_is_the_val_best_and_is_what_the_tables_hold(cold_ml, tmp_path, model):
    gen = trained(cold_ml, tmp_path / model, model)
    start = gen.metrics["cold_start"]
    assert start["fallback"] == max(start["val_auc"], key=start["val_auc"].get)
    assert gen.metrics["val_auc"] == start["val_auc"][start["fallback"]]
    assert start["cold_items"] == int(cold_ml.cold_items.sum()) and start["inductive"] == (model == "sage")
    cold = torch.from_numpy(cold_ml.cold_items.copy())
    for split in ("train", "val", "test"):
        movies = gen.kge_table(split)[1]
        if model == "lightgcn":  # transductive: one vector for every held-out item
            expected = movies[~cold].mean(0) if start["fallback"] == "mean" else torch.zeros(movies.shape[1])
            torch.testing.assert_close(movies[cold], expected.expand(int(cold.sum()), -1))
        else:  # inductive: held-out items of different genres get different vectors
            assert len(torch.unique(movies[cold], dim=0)) > 1
    reloaded = GraphRepresentationGenerator(cold_ml.data, cold_ml.train_data, cold_ml.val_data, cold_ml.test_data,
                                            kge_dimension=8, hidden_channels=8, epochs=15, model=model,
                                            cache_dir=tmp_path / model)  # fmt: skip
    assert reloaded.from_cache and torch.equal(reloaded.kge_table("test")[1], gen.kge_table("test")[1])


def test_training_negatives_never_name_a_held_out_item(cold_ml, tmp_path):
    gen = GraphRepresentationGenerator(cold_ml.data, cold_ml.train_data, cold_ml.val_data, cold_ml.test_data,
                                       kge_dimension=8, epochs=1, cache_dir=tmp_path)  # fmt: skip
    graph, cfg = gen.graph, gen.config
    assert np.array_equal(graph.negative_movies, np.flatnonzero(~cold_ml.cold_items))
    rng = np.random.default_rng(0)
    adj = graph.adjacency("train", torch.device("cpu"))
    for _ in range(5):
        pairs, _ = recipe.epoch_pairs(gen.model, graph, graph.edges["train"], adj, cfg, rng)
        assert not cold_ml.cold_items[pairs[1].dst.numpy()].any()


def test_without_held_out_items_nothing_changes(tmp_path):
    syn = write_layout(tmp_path / "ml-synth", "csv", n_users=30, n_movies=20, n_ratings=300)
    ml = MovieLensManager(path=syn.folder, cache_dir=str(tmp_path / "cache"))
    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=4,
                                       epochs=3, cache_dir=tmp_path / "gnn")  # fmt: skip
    assert gen.graph.cold is None and gen.graph.negative_movies is None
    assert "cold_start" not in gen.train_model(progress=False, log=lambda _: None)
