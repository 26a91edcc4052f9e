"""Negatives on the fly: the configured share in every batch, never a training positive."""

import numpy as np
import pytest
import torch

from linklm.llm.collator import LinkCollator, PairDataset
from linklm.llm.tokens import NodeTokens, PromptBuilder


def test_every_batch_has_its_share_of_negatives_and_none_is_a_positive(tiny, tokenizer):
    ml, gen = tiny
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), "embedding")
    e = ml.edge_df
    train = e[e["split"] == "train"]
    keys = np.unique(train["source_idx"].to_numpy() * ml.num_targets + train["target_idx"].to_numpy())
    sup_src, sup_dst = ml.supervision("train")
    pairs = PairDataset(sup_src, sup_dst, np.ones(len(sup_src)))
    for ratio in (1.0, 3.0):
        collate = LinkCollator(builder, "train", num_sources=ml.num_sources, num_targets=ml.num_targets,
                               train_keys=keys, neg_ratio=ratio, kge_input="indices", seed=0)  # fmt: skip
        for start in range(0, len(pairs), 16):
            feats = [pairs[i] for i in range(start, min(start + 16, len(pairs)))]
            batch = collate(feats)
            labels = batch["labels"].numpy()
            assert (labels == 0).sum() == round(len(feats) * ratio)
            assert (labels == 1).sum() == len(feats)
            drawn = batch["source_idx"].numpy() * ml.num_targets + batch["target_idx"].numpy()
            assert not np.isin(drawn[labels == 0], keys).any(), "a negative equals a training positive"
            assert len(np.unique(drawn[labels == 0])) == (labels == 0).sum()
    frozen = LinkCollator(builder, "train", num_sources=ml.num_sources, num_targets=ml.num_targets,
                          train_keys=keys, kge_input="tables", tables=gen.kge_table("train"), seed=0)  # fmt: skip
    batch = frozen([pairs[0]])
    users, movies = gen.kge_table("train")
    assert (batch["source_kge"][0] == users[sup_src[0]]).all() and (batch["target_kge"][0] == movies[sup_dst[0]]).all()


def test_val_batches_draw_no_negatives(tiny, tokenizer):
    ml, _ = tiny
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), "vanilla")
    collate = LinkCollator(builder, "val", num_sources=ml.num_sources, num_targets=ml.num_targets, neg_ratio=0.0)
    feats = [{"source_idx": 0, "target_idx": 1, "labels": 0}, {"source_idx": 2, "target_idx": 3, "labels": 1}]
    batch = collate(feats)
    assert batch["labels"].tolist() == [0, 1]


def test_negatives_keep_to_their_targets_and_item_dropout_swaps_in_the_fallback(tiny, tokenizer):
    ml, gen = tiny
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), "embedding")
    sup_src, sup_dst = ml.supervision("train")
    pairs = PairDataset(sup_src, sup_dst, np.ones(len(sup_src)))
    allowed = np.arange(0, ml.num_targets, 3)
    common = {"num_sources": ml.num_sources, "num_targets": ml.num_targets, "train_keys": ml.train_keys, "seed": 0,
              "negative_targets": allowed}  # fmt: skip
    by_index = LinkCollator(builder, "train", kge_input="indices", **common)
    users, movies = gen.kge_table("train")
    fallback = torch.full((movies.shape[1],), 123.0)
    dropping = LinkCollator(builder, "train", kge_input="tables", tables=(users, movies), item_dropout=0.4,
                            fallback=fallback, **common)  # fmt: skip
    dropped = total = 0
    for start in range(0, len(pairs), 32):
        feats = [pairs[i] for i in range(start, min(start + 32, len(pairs)))]
        batch = by_index(feats)
        negatives = batch["labels"].numpy() == 0
        assert np.isin(batch["target_idx"].numpy()[negatives], allowed).all()
        batch = dropping(feats)
        is_fallback = (batch["target_kge"] == 123.0).all(1)
        dropped, total = dropped + int(is_fallback.sum()), total + len(is_fallback)
        for row in range(len(feats)):  # positives first, in order: kept ones are the table's rows
            if not is_fallback[row]:
                assert torch.equal(batch["target_kge"][row], movies[sup_dst[start + row]])
    assert 0.3 < dropped / total < 0.5
    with pytest.raises(ValueError, match="fallback"):
        LinkCollator(builder, "train", kge_input="indices", item_dropout=0.4, **common)
