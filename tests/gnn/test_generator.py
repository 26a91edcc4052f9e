"""The GNN: deterministic, split-aware KGEs for any pair, a safe save/load round trip, and learning."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from linklm import GraphRepresentationGenerator, MovieLensManager, UserError
from linklm.cli import main
from linklm.config import DataConfig
from linklm.data import BipartiteGraphManager
from linklm.data.tables import sample_negatives

from synthetic import write_layout


def planted_graph(seed=0, per_side=30, degree=10) -> BipartiteGraphManager:
    """Two communities: users rate movies of their own community only, and genres follow the community."""
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"source_id": np.arange(2 * per_side)})
    movies = pd.DataFrame(
        {
            "target_id": np.arange(2 * per_side),
            "title": [f"Movie {i}" for i in range(2 * per_side)],
            "genres": [["Drama"] if i < per_side else ["Comedy"] for i in range(2 * per_side)],
        }
    )
    rows = []
    for u in range(2 * per_side):
        side = u // per_side
        for m in rng.choice(per_side, size=degree, replace=False):
            rows.append((u, side * per_side + int(m)))
    edges = pd.DataFrame(rows, columns=["source_id", "target_id"])
    return BipartiteGraphManager.from_tables(users, movies, edges, DataConfig(seed=seed))


def generator(ml, tmp_path, **kw):
    kw = {"kge_dimension": 8, "hidden_channels": 16, "epochs": 30, **kw}
    return GraphRepresentationGenerator(
        ml.data, ml.train_data, ml.val_data, ml.test_data, cache_dir=tmp_path / "gnn", **kw
    )


def test_learns_a_planted_structure(tmp_path):
    gen = generator(planted_graph(), tmp_path)
    metrics = gen.train_model(progress=False, log=lambda _: None)
    assert metrics["test_auc"] > 0.8, metrics
    assert 1 <= metrics["best_epoch"] <= 30


def test_shapes_any_pair_and_determinism(tmp_path):
    ml = planted_graph()
    a = generator(ml, tmp_path / "a")
    b = generator(ml, tmp_path / "b")
    ma = a.train_model(progress=False, log=lambda _: None)
    mb = b.train_model(progress=False, log=lambda _: None)
    assert ma["val_auc"] == mb["val_auc"] and ma["test_auc"] == mb["test_auc"]
    # pairs that are not edges of the graph: user 0 (community 0) with movies of community 1
    src, dst = [0, 0, 1], [45, 50, 59]
    sa, ta = a.get_embedding(src, dst, split="val")
    assert sa.shape == (3, 8) and ta.shape == (3, 8)
    sb, tb = b.get_embedding(src, dst, split="val")
    assert torch.equal(sa, sb) and torch.equal(ta, tb)
    assert torch.equal(a.get_embedding(src, dst, "val")[0], sa), "a look-up is deterministic"
    assert not torch.equal(a.get_embedding(src, dst, "train")[0], sa), "each split has its own graph"
    c = generator(ml, tmp_path / "c", seed=7)
    assert c.train_model(progress=False, log=lambda _: None)["val_auc"] != ma["val_auc"]


def test_val_embeddings_ignore_test_edges(tmp_path):
    ml = planted_graph()
    full = generator(ml, tmp_path / "full")
    full.train_model(progress=False, log=lambda _: None)

    # Drop most test positives from the graph and from the test split: val must not notice.
    test = ml.test_data
    store = test["user", "rates", "movie"]
    keep = torch.cat([torch.arange(3), torch.nonzero(store.edge_label == 0).flatten()])
    store.edge_label_index = store.edge_label_index[:, keep]
    store.edge_label = store.edge_label[keep]
    data = ml.data
    test_pos = set(zip(*[x.tolist() for x in ml.supervision("test")], strict=True))
    kept_pos = set(map(tuple, store.edge_label_index[:, :3].t().tolist()))
    ei = data["user", "rates", "movie"].edge_index
    mask = torch.tensor([(s, d) not in (test_pos - kept_pos) for s, d in ei.t().tolist()])
    data["user", "rates", "movie"].edge_index = ei[:, mask]
    data["movie", "rev_rates", "user"].edge_index = ei[:, mask].flip(0)
    cut = GraphRepresentationGenerator(
        data, ml.train_data, ml.val_data, test, kge_dimension=8, hidden_channels=16, epochs=30,
        cache_dir=tmp_path / "cut",
    )  # fmt: skip
    assert cut.folder != full.folder
    cut.train_model(progress=False, log=lambda _: None)
    for split in ("train", "val"):
        for x, y in zip(full.kge_table(split), cut.kge_table(split), strict=True):
            assert torch.equal(x, y), split
    assert full.metrics["val_auc"] == cut.metrics["val_auc"]


def test_save_load_round_trip(tmp_path):
    ml = planted_graph()
    gen = generator(ml, tmp_path)
    assert not gen.trained
    gen.train_model(progress=False, log=lambda _: None)
    files = sorted(p.name for p in gen.folder.iterdir())
    assert files == ["kge.safetensors", "log.jsonl", "manifest.json", "metrics.json", "model.safetensors"]
    again = generator(ml, tmp_path)
    assert again.trained and again.metrics == gen.metrics
    for split in ("train", "val", "test"):
        for x, y in zip(gen.kge_table(split), again.kge_table(split), strict=True):
            assert torch.equal(x, y)
    state, loaded = gen.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    other = generator(ml, tmp_path, kge_dimension=4)
    assert not other.trained, "another config is another model"


def test_corrupt_weights_are_retrained_not_used(tmp_path):
    ml = planted_graph()
    gen = generator(ml, tmp_path)
    gen.train_model(progress=False, log=lambda _: None)
    (gen.folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="retrained"):
        again = generator(ml, tmp_path)
    assert not again.trained


def test_lookup_errors(tmp_path):
    gen = generator(planted_graph(), tmp_path)
    with pytest.raises(UserError, match="train_model"):
        gen.get_embedding([0], [0])
    gen.train_model(progress=False, log=lambda _: None)
    with pytest.raises(UserError, match="node indices"):
        gen.get_embedding([0], [10_000])
    with pytest.raises(UserError, match="split"):
        gen.get_embedding([0], [0], split="dev")


def test_train_negatives_never_equal_a_positive():
    rng = np.random.default_rng(0)
    n_src, n_dst = 20, 15
    pos = rng.choice(n_src * n_dst, size=200, replace=False)  # two thirds of all pairs are edges
    keys = np.sort(pos)
    src, dst = sample_negatives(n_src, n_dst, keys, 90, rng)
    drawn = src * n_dst + dst
    assert len(np.unique(drawn)) == 90
    assert not np.isin(drawn, keys).any()
    with pytest.raises(UserError, match="too dense"):
        sample_negatives(n_src, n_dst, keys, 101, rng)


def test_cli_gnn_writes_results(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    code = main(["gnn", "--kge-dim", "4", "--epochs", "3", "--run", "tiny", f"data.path={folder}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "epoch    3" in out and "test AUC" in out
    results = json.loads((tmp_path / "runs" / "tiny" / "results.json").read_text())
    assert 0.0 <= results["gnn"]["val_auc"] <= 1.0 and 0.0 <= results["gnn"]["test_auc"] <= 1.0
    assert json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())["gnn"]["kge_dim"] == 4
    ml = MovieLensManager(path=folder)
    assert ml.from_cache


def test_altered_kge_tables_are_retrained_not_used(tmp_path):
    ml = planted_graph()
    gen = generator(ml, tmp_path)
    gen.train_model(progress=False, log=lambda _: None)
    target = gen.folder / "kge.safetensors"
    blob = bytearray(target.read_bytes())
    blob[-3] ^= 0x01  # one bit of one float: still a valid file, no longer the tables that were written
    target.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="SHA-256"):
        again = generator(ml, tmp_path)
    assert not again.trained


def test_the_classifiers_share_never_reaches_gnn_training(tmp_path):
    """The held-out train pairs (what the classifiers train on) are never read by `fit`, negatives
    included: with them gone, training is the same to the last bit; and their AUC is measured on the
    train graph."""
    import dataclasses

    from linklm.gnn import train as recipe

    gen = generator(planted_graph(), tmp_path, epochs=6, checkpoint_every=0)
    graph = gen.graph
    empty = torch.empty(0, dtype=torch.long)
    blind = dataclasses.replace(graph, pairs={**graph.pairs, "train": (empty, empty, torch.empty(0))})
    fits = []
    for g in (graph, blind):
        model = gen._new_model()
        fits.append(recipe.fit(model, g, gen.config, gen.device, checkpoint=tmp_path / "ck", key="k", progress=False,
                               say=lambda _: None))  # fmt: skip
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in f.history] for f in fits]
    assert timeless[0] == timeless[1]
    for name, tensor in fits[0].best_state.items():
        assert torch.equal(tensor, fits[1].best_state[name]), name

    metrics = gen.train_model(progress=False, log=lambda _: None)
    again = recipe.classifier_train_auc(graph, gen.tables["train"], gen.device, gen.config.seed)
    assert metrics["classifier_train_auc"] == again and 0.5 < again <= 1.0


@pytest.mark.parametrize("model", ["lightgcn", "sage"])
def test_both_gnn_models_learn_and_serve_the_same_tables(tmp_path, model):
    gen = generator(planted_graph(), tmp_path, model=model, epochs=40)
    metrics = gen.train_model(progress=False, log=lambda _: None)
    assert metrics["model"] == model and metrics["test_auc"] > 0.8, metrics
    users, movies = gen.kge_table("test")
    assert users.shape == (gen.num_users, 8) and movies.shape == (gen.num_movies, 8)
