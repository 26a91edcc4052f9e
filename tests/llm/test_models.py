"""The models: grown segment tables, KGE injection applied once, save/load round trips."""

import torch

from linklm.llm.attention import use_fast_attention
from linklm.llm.models import KGEBertForSequenceClassification, build_model
from linklm.llm.tokens import MOVIE_KGE, SEGMENTS, USER_KGE

from .conftest import TINY


def _inputs(vocab=1000, batch=3, seq=9):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab + 1000, (batch, seq), generator=g)
    types = torch.randint(0, 4, (batch, seq), generator=g)
    types[:, -3] = USER_KGE
    types[:, -2] = MOVIE_KGE
    return ids, types, torch.ones(batch, seq, dtype=torch.long)


def test_grown_segments_start_as_the_pretrained_row_zero():
    model = build_model(TINY, "vanilla").eval()
    table = model.bert.embeddings.token_type_embeddings.weight
    assert table.shape[0] == len(SEGMENTS)
    assert all(torch.equal(table[i], table[0]) for i in range(len(SEGMENTS)))
    ids, types, mask = _inputs()
    with torch.no_grad():
        grown = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        plain = model(input_ids=ids, token_type_ids=torch.zeros_like(types), attention_mask=mask).logits
    assert torch.allclose(grown, plain)


def test_kge_injection_happens_once_at_the_word_embeddings():
    model = build_model(TINY, "embedding", kge_dim=4).eval()
    ids, types, mask = _inputs()
    kge_u, kge_m = torch.randn(3, 4), torch.randn(3, 4)
    seen = {}
    hook = model.bert.embeddings.register_forward_hook(lambda mod, args, out: seen.update(out=out))
    with torch.no_grad():
        logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask, source_kge=kge_u, target_kge=kge_m)
        emb = model.bert.embeddings
        words = emb.word_embeddings(ids)
        words[:, -3] = model.kge_projection(kge_u)
        words[:, -2] = model.kge_projection(kge_m)
        positions = emb.position_embeddings(torch.arange(ids.shape[1]))[None]
        manual = emb.LayerNorm(words + positions + emb.token_type_embeddings(types))
    hook.remove()
    assert torch.allclose(seen["out"], manual, atol=1e-6), "positions, segments and LayerNorm applied once"
    with torch.no_grad():
        kw = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "output_hidden_states": True}
        same = model(**kw, source_kge=kge_u, target_kge=kge_m).hidden_states[-1][:, 0]
        other = model(**kw, source_kge=kge_u + 1, target_kge=kge_m).hidden_states[-1][:, 0]
    # (with hidden states asked for, the last layer runs for every token: the same logits to rounding)
    assert torch.allclose(logits.logits, model(**kw, source_kge=kge_u, target_kge=kge_m).logits, atol=1e-6)
    assert (same - other).abs().max() > 1e-5, "the user KGE reaches the [CLS] state"


def test_save_pretrained_round_trip(tmp_path):
    model = build_model(TINY, "embedding", kge_dim=4).eval()
    model.save_pretrained(tmp_path)
    again = KGEBertForSequenceClassification.from_pretrained(tmp_path).eval()
    use_fast_attention(again)  # HF loads sdpa; ours differs from it by float rounding
    ids, types, mask = _inputs()
    kge = torch.randn(3, 4)
    with torch.no_grad():
        a = model(input_ids=ids, token_type_ids=types, attention_mask=mask, source_kge=kge, target_kge=kge).logits
        b = again(input_ids=ids, token_type_ids=types, attention_mask=mask, source_kge=kge, target_kge=kge).logits
    assert torch.equal(a, b)
    assert again.config.type_vocab_size == len(SEGMENTS) and again.config.kge_dim == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".bin", ".pt", ".pkl")) == []


def test_pretrained_weights_load_from_a_folder_with_kge_dim_and_fewer_layers(tmp_path):
    from transformers import BertModel

    from linklm.llm.models import random_config

    source = BertModel(random_config(TINY, 30522))
    source.save_pretrained(tmp_path)
    model = build_model(str(tmp_path), "embedding", num_layers=1, kge_dim=6)
    assert model.config.kge_dim == 6 and len(model.bert.encoder.layer) == 1
    assert torch.equal(
        model.bert.encoder.layer[0].attention.self.query.weight, source.encoder.layer[0].attention.self.query.weight
    )


def test_offline_default_minilm_loads_truncated(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_model("all-MiniLM-L6-v2", "vanilla", num_layers=2)
    assert len(model.bert.encoder.layer) == 2 and model.config.hidden_size == 384


def test_end_to_end_kges_are_computed_once_for_eval_and_follow_new_weights(tiny, tmp_path):
    import torch

    from linklm.llm import EmbeddingClassifier

    ml, gen = tiny
    model = EmbeddingClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path, TINY, kge=gen, end_to_end=True).model
    model.eval()
    with torch.no_grad():
        first = model.node_kges(2)
        assert model.node_kges(2) is first  # kept for the rest of the evaluation
    state = {k: v + 0.5 for k, v in model.gnn.state_dict().items()}
    model.load_state_dict({**model.state_dict(), **{f"gnn.{k}": v for k, v in state.items()}})
    with torch.no_grad():
        moved = model.node_kges(2)
    assert not torch.equal(moved[model.user_type], first[model.user_type])
    model.train()
    with torch.no_grad():
        assert model.node_kges(2) is not model.node_kges(2)  # training: always recomputed
