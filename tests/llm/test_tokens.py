"""Per-node assembly gives exactly the ids of tokenising the full prompt string."""

import numpy as np
import pytest

from linklm.llm.tokens import CLS, MOVIE, MOVIE_KGE, SEP, USER, USER_KGE, NodeTokens, PromptBuilder

from .conftest import TINY


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


def test_principal_components_fit_on_train_and_order_by_variance():
    from linklm.llm.tokens import principal_components

    rng = np.random.default_rng(0)
    scale = np.array([5.0, 0.1, 2.0, 0.5, 1.0, 0.2])
    tables = {s: (rng.normal(size=(50, 6)) * scale, rng.normal(size=(40, 6)) * scale) for s in ("train", "val")}
    reduced = principal_components(tables, 3)
    assert reduced["train"][0].shape == (50, 3) and reduced["val"][1].shape == (40, 3)
    # An independent computation: the train table's centred SVD, up to each component's sign.
    users = tables["train"][0]
    _, _, vt = np.linalg.svd(users - users.mean(0), full_matrices=False)
    expected = (tables["val"][0] - users.mean(0)) @ vt[:3].T
    np.testing.assert_allclose(np.abs(reduced["val"][0]), np.abs(expected), atol=1e-8)
    assert np.all(np.diff(reduced["train"][0].var(0)) < 0)
    assert principal_components(tables, 0) is tables and principal_components(tables, 6) is tables


def test_prompt_writes_the_chosen_number_of_components(tiny, tmp_path):
    from linklm.llm import PromptClassifier

    ml, gen = tiny
    full = PromptClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "a", TINY, kge=gen)
    short = PromptClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "b", TINY, kge=gen, prompt_kge_dims=2)
    src, dst = np.array([0, 1]), np.array([0, 1])
    extra = full.builder.lengths(src, dst) - short.builder.lengths(src, dst)
    assert short.written_dims == 2 and np.all(extra == 2 * (gen.config.kge_dim - 2))
    assert short.builder.batch(src, dst, "test")["input_ids"].shape[1] == short.builder.lengths(src, dst).max()


@pytest.mark.parametrize("kind", ["vanilla", "embedding"])
def test_user_features_follow_the_user_id_and_tokenise_as_the_string(tokenizer, kind):
    import pandas as pd

    from linklm.config import DataConfig
    from linklm.data import BipartiteGraphManager

    rng = np.random.default_rng(0)
    users = pd.DataFrame({"source_id": np.arange(20), "age": rng.integers(18, 70, 20),
                          "gender": rng.choice(["M", "F"], 20), "occupation": rng.choice(["writer", "other"], 20),
                          "zip_code": rng.integers(10000, 99999, 20)})  # fmt: skip
    items = pd.DataFrame({"target_id": np.arange(15), "title": [f"Movie {i}" for i in range(15)],
                          "genres": [["Drama"]] * 15})  # fmt: skip
    edges = pd.DataFrame({"source_id": rng.integers(0, 20, 150), "target_id": rng.integers(0, 15, 150)})
    ml = BipartiteGraphManager.from_tables(users, items, edges.drop_duplicates(), DataConfig())
    plain = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), kind)
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df, user_features=True), kind)
    src, dst = np.arange(ml.num_sources), np.arange(ml.num_sources) % ml.num_targets
    user = ml.source_df.iloc[3]
    features = f"{user['source_id']}[SEP]{user['age']}[SEP]{user['gender']}[SEP]{user['occupation']}[SEP]"
    assert builder.text(src, dst, "train")[3].startswith(features)
    assert builder.text(src, dst, "train")[3].replace(features, f"{user['source_id']}[SEP]", 1) == plain.text(
        src, dst, "train")[3]  # fmt: skip
    batch = builder.batch(src, dst, "train")
    lengths = batch["attention_mask"].sum(1).tolist()
    for row, ids in enumerate(tokenizer(builder.text(src, dst, "train"))["input_ids"]):
        assert batch["input_ids"][row, : lengths[row]].tolist() == ids
    assert (batch["token_type_ids"] == USER).sum() > (plain.batch(src, dst, "train")["token_type_ids"] == USER).sum()
