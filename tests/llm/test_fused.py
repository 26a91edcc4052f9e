"""The fused classifier starts as its GNN, learns its new modules at their own rate; and every kind
draws its negatives under the same exclusion set."""

import numpy as np
import pytest
import torch

from linklm.config import Config
from linklm.evaluate import evaluate_scores
from linklm.experiment.pipeline import make_classifier
from linklm.llm.models import build_model
from linklm.llm.optimizers import fused_optimizer

from .conftest import TINY


def test_fused_model_before_training_scores_pairs_as_the_gnn():
    model = build_model(TINY, "fused", None, kge_dim=6, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    user, movie = torch.randn(9, 6, generator=gen), torch.randn(9, 6, generator=gen)
    ids = torch.randint(1000, 2000, (9, 12), generator=gen)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                   source_kge=user, target_kge=movie).logits  # fmt: skip
    torch.testing.assert_close(logits[:, 1], (user * movie).sum(-1))
    assert torch.equal(logits[:, 0], torch.zeros(9))


def test_fused_optimizer_new_modules_at_head_lr_without_decay():
    model = build_model(TINY, "fused", None, kge_dim=6, seed=0)
    opt = fused_optimizer(model, lr=1e-4, head_lr=1e-2, weight_decay=0.01)
    new = {id(p) for p in model.new_parameters()}
    assert model.fusion.gnn_scale is not None and id(model.fusion.gnn_scale) in new
    seen = set()
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        seen |= ids
        if ids & new:
            assert ids == new and group["lr"] == 1e-2 and group["weight_decay"] == 0.0
        else:
            assert group["lr"] == 1e-4
    assert seen == {id(p) for p in model.parameters()}


def test_every_kind_avoids_the_same_train_edges(tiny, tmp_path):
    ml, gen = tiny
    cfg = Config()
    cfg.llm.model = TINY
    keys = {}
    for kind in ("vanilla", "prompt", "embedding_frozen", "fused"):
        keys[kind] = make_classifier(kind, cfg, ml, gen, tmp_path / kind).collator("train").train_keys
    train = ml.edge_df[ml.edge_df["split"] == "train"]
    expected = np.unique(train["source_idx"].to_numpy() * ml.num_targets + train["target_idx"].to_numpy())
    for kind, k in keys.items():
        assert np.array_equal(k, expected), kind
    assert np.array_equal(gen.graph.train_keys, expected)


def test_fused_model_without_a_kge_scores_it_as_zeros():
    """explain's Shapley values drop a KGE by passing None: the slot keeps [MASK], the fusion zeros."""
    model = build_model(TINY, "fused", None, kge_dim=6, seed=0).eval()
    ids = torch.randint(1000, 2000, (4, 10))
    common = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    user = torch.randn(4, 6)
    dropped = model(**common, source_kge=user, target_kge=None).logits
    zeros = model(**common, source_kge=user, target_kge=torch.zeros(4, 6)).logits
    torch.testing.assert_close(dropped[:, 1], zeros[:, 1])  # no slot carries a KGE here: only the fusion differs


def test_fused_selection_sees_the_untrained_model(tiny, tmp_path):
    """Val also scores step 0, where the fused model ranks pairs as its GNN does: with a learning
    rate that wrecks training, selection keeps that start, so the result cannot fall below the GNN."""

    ml, gen = tiny
    cfg = Config()
    cfg.llm.model, cfg.llm.head_lr, cfg.llm.lr, cfg.llm.batch_size = TINY, 5.0, 5.0, 32
    clf = make_classifier("fused", cfg, ml, gen, tmp_path / "fused")
    clf.progress = False
    metrics = clf.train_model_on_data(None)
    first = metrics["val_history"][0]
    assert first["step"] == 0
    val = clf._val_pairs(None)
    user, movie = gen.get_embedding(val.source_idx, val.target_idx, split="val")
    gnn_auc = evaluate_scores(val.labels, (user * movie).sum(-1).numpy())["auc"]
    assert abs(first["eval_auc"] - gnn_auc) < 1e-6
    assert metrics["val_auc"] >= gnn_auc - 1e-6


def test_every_kind_and_seed_scores_the_same_capped_test_pairs(tiny, tmp_path):
    import pandas as pd

    ml, gen = tiny
    pairs = []
    for kind, seed in (("vanilla", 0), ("fused", 1), ("prompt", 2)):
        cfg = Config()
        cfg.llm.model, cfg.llm.seed, cfg.llm.test_pairs = TINY, seed, 30
        clf = make_classifier(kind, cfg, ml, gen, tmp_path / kind)
        result = clf.evaluate_model(None, "test", predictions_path=tmp_path / f"{kind}.parquet")
        frame = pd.read_parquet(tmp_path / f"{kind}.parquet")
        assert result["n"] == len(frame) == 30
        pairs.append(frame[["source_idx", "target_idx", "label"]])
    test = ml.llm_index[(ml.llm_df["split"] == "test").to_numpy()]
    known = set(zip(test["source_idx"], test["target_idx"], strict=True))
    assert all(pairs[0].equals(p) for p in pairs[1:])
    assert set(zip(pairs[0]["source_idx"], pairs[0]["target_idx"], strict=True)) <= known


def test_untrained_fused_model_scores_test_exactly_as_the_gnn(tiny, tmp_path):
    """Not merely close: the same scores, so selection's step 0 gives a test AUC equal to the GNN's
    (float32 probabilities round differently and could put it a hair below)."""
    import pandas as pd

    from linklm.experiment.pipeline import gnn_predictions

    ml, gen = tiny
    cfg = Config()
    cfg.llm.model = TINY
    clf = make_classifier("fused", cfg, ml, gen, tmp_path / "fused")
    result = clf.evaluate_model(None, "test", predictions_path=tmp_path / "fused.parquet")
    gnn_predictions(gen, ml, tmp_path / "gnn.parquet")
    fused, gnn = pd.read_parquet(tmp_path / "fused.parquet"), pd.read_parquet(tmp_path / "gnn.parquet")
    assert np.array_equal(fused["score"].to_numpy(), gnn["score"].to_numpy())
    # the same scores give the same AUC to the last bit under one AUC function (the GNN's own metric
    # sums in another order: equal to rounding)
    assert result["auc"] == evaluate_scores(gnn["label"].to_numpy(), gnn["score"].to_numpy())["auc"]
    assert result["auc"] == pytest.approx(gen.metrics["test_auc"], abs=1e-9)


@pytest.mark.parametrize("kind,width", [("fused", 32 + 6), ("fused_text", 32), ("fused_kge", 6)])
def test_each_ablation_reads_its_input_and_starts_as_the_gnn(kind, width):
    model = build_model(TINY, kind, None, kge_dim=6, seed=0).eval()
    assert model.fusion.mlp[0].in_features == width
    gen = torch.Generator().manual_seed(1)
    user, movie = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
    ids = torch.randint(1000, 2000, (5, 10), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    torch.testing.assert_close(model(**inputs, source_kge=user, target_kge=movie).logits[:, 1], (user * movie).sum(-1))
    with torch.no_grad():  # a non-zero last layer: now the correction reads exactly its inputs
        torch.nn.init.normal_(model.fusion.mlp[2].weight, generator=gen)
    other_text = {**inputs, "input_ids": torch.randint(1000, 2000, (5, 10), generator=gen)}
    base = model(**inputs, source_kge=user, target_kge=movie).logits[:, 1]
    text_moved = model(**other_text, source_kge=user, target_kge=movie).logits[:, 1]
    assert torch.allclose(base, text_moved) == (kind == "fused_kge")


def test_fused_kinds_score_their_last_step_too(tiny, tmp_path):
    import pandas as pd

    ml, gen = tiny
    cfg = Config()
    cfg.llm.model, cfg.llm.batch_size, cfg.llm.max_epochs = TINY, 32, 1
    clf = make_classifier("fused_text", cfg, ml, gen, tmp_path / "fused_text")
    clf.progress = False
    metrics = clf.train_model_on_data(None)
    last = metrics["last_step"]
    assert last["step"] == metrics["steps"] and last["val_auc"] == metrics["val_history"][-1]["eval_auc"]
    frame = pd.read_parquet(tmp_path / "fused_text" / "last_step_test_predictions.parquet")
    assert last["test_auc"] == evaluate_scores(frame["label"], frame["score"])["auc"]
    # The selected weights are what the classifier holds afterwards, not the last step's.
    _, scores = clf.predict(None, "test")
    best_step = metrics["best_step"]
    assert best_step == last["step"] or not np.allclose(np.sort(scores), np.sort(frame["score"].to_numpy()))
