"""Per-node assembly gives exactly the ids of tokenising the full prompt string."""

import numpy as np
import pytest

from linklm.llm.tokens import CLS, MOVIE, MOVIE_KGE, SEP, USER, USER_KGE, NodeTokens, PromptBuilder


@pytest.mark.parametrize("kind", ["vanilla", "prompt", "embedding"])
def test_assembled_ids_equal_full_string_tokenisation(tiny, tokenizer, kind):
    ml, gen = tiny
    nodes = NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df)
    tables = {s: gen.kge_table(s) for s in ("train", "val", "test")}
    builder = PromptBuilder(nodes, kind, tables)
    rng = np.random.default_rng(0)
    src = rng.integers(0, ml.num_sources, 200)
    dst = np.concatenate([np.arange(ml.num_targets), rng.integers(0, ml.num_targets, 200 - ml.num_targets)])
    for split in ("train", "test"):
        batch = builder.batch(src, dst, split)
        reference = tokenizer(builder.text(src, dst, split))["input_ids"]
        lengths = batch["attention_mask"].sum(1).tolist()
        assert batch["input_ids"].shape[1] == max(lengths), "padded to the longest in the batch only"
        for row, ids in enumerate(reference):
            assert batch["input_ids"][row, : lengths[row]].tolist() == ids
            assert (batch["input_ids"][row, lengths[row] :] == tokenizer.pad_token_id).all()


def test_text_is_the_seed_prompt(tiny, tokenizer):
    ml, _ = tiny
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), "vanilla")
    row = ml.llm_df.iloc[0]
    idx = ml.llm_index.iloc[0]
    text = builder.text([idx["source_idx"]], [idx["target_idx"]], "train")[0]
    expected = f"{row['source_id']}[SEP]{row['target_id']}[SEP]{row['prompt_feature_title']}[SEP]"
    assert text == expected + row["prompt_feature_genres"]


def test_segments_and_kge_token_cost(tiny, tokenizer):
    ml, gen = tiny
    nodes = NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df)
    tables = {s: gen.kge_table(s) for s in ("train", "val", "test")}
    vanilla = PromptBuilder(nodes, "vanilla").batch(np.array([0]), np.array([0]), "val")
    prompt = PromptBuilder(nodes, "prompt", tables).batch(np.array([0]), np.array([0]), "val")
    embed = PromptBuilder(nodes, "embedding").batch(np.array([0]), np.array([0]), "val")
    d = gen.config.kge_dim
    assert prompt["input_ids"].shape[1] == vanilla["input_ids"].shape[1] + 2 + 2 * d, "one token per dimension"
    assert embed["input_ids"].shape[1] == vanilla["input_ids"].shape[1] + 2, "two slots, nothing else"
    ids, types = embed["input_ids"][0].tolist(), embed["token_type_ids"][0].tolist()
    assert types[0] == CLS and ids[0] == tokenizer.cls_token_id
    assert all((t == SEP) == (i == tokenizer.sep_token_id) for i, t in zip(ids, types, strict=True))
    assert types.count(USER_KGE) == 1 and types.count(MOVIE_KGE) == 1
    assert ids[types.index(USER_KGE)] == tokenizer.mask_token_id
    assert USER in types and MOVIE in types
    assert types.index(USER) < types.index(MOVIE) < types.index(USER_KGE) < types.index(MOVIE_KGE)
