"""The last layer computed for [CLS] only: the same logits and gradients as the whole layer, for less work."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from linklm.llm.models import build_model
from linklm.llm.tokens import MOVIE_KGE, USER_KGE

KGE_DIM = 4


def _batch(kind: str, batch: int = 6, seq: int = 11) -> dict:
    """Prompts of different lengths (rows 0-2 padded), with KGE slots and KGEs for the embedding kind."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 3000, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, 4:], mask[1, 7:], mask[2, 9:] = 0, 0, 0
    types = torch.randint(0, 4, (batch, seq), generator=g)
    types[:, 2], types[:, 3] = USER_KGE, MOVIE_KGE
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": torch.arange(batch) % 2}
    if kind == "embedding":
        inputs.update(source_kge=torch.randn(batch, KGE_DIM, generator=g),
                      target_kge=torch.randn(batch, KGE_DIM, generator=g))  # fmt: skip
    return inputs


def _model(kind: str, attention: str, layers: int = 2):
    model = build_model(f"random:L{layers}-H32", kind, kge_dim=KGE_DIM if kind == "embedding" else None)
    model.config._attn_implementation = attention
    return model.eval()  # no dropout: both paths draw nothing


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["vanilla", "embedding"])
def test_first_token_path_gives_the_whole_layers_logits_and_gradients(kind, attention):
    model = _model(kind, attention)
    inputs = _batch(kind)
    fast = model(**inputs)
    fast.loss.backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # Asking for hidden states runs HF's BertModel over every token of every layer: the reference.
    full = model(**inputs, output_hidden_states=True)
    full.loss.backward()
    assert fast.hidden_states is None and len(full.hidden_states) == 3
    assert torch.allclose(fast.logits, full.logits, atol=1e-6)
    assert torch.allclose(fast.loss, full.loss, atol=1e-6)
    for name, param in model.named_parameters():
        # Every parameter gets a gradient on the fast path too (DDP runs with find_unused_parameters=False).
        assert torch.allclose(fast_grads[name], param.grad, atol=1e-6), name


def test_hidden_states_asked_for_in_the_config_take_the_whole_path():
    model = _model("vanilla", "sdpa")
    model.config.output_hidden_states = True
    with torch.no_grad():
        out = model(**_batch("vanilla"))
    assert out.hidden_states is not None and out.hidden_states[-1].shape[1] == 11


def test_padding_does_not_reach_the_first_token():
    model = _model("vanilla", "sdpa")
    inputs = _batch("vanilla")
    with torch.no_grad():
        logits = model(**inputs).logits
        inputs["input_ids"][0, 4:] = 5  # other ids where row 0 is padding
        assert torch.allclose(model(**inputs).logits, logits, atol=1e-6)


def test_a_one_layer_model_takes_the_first_token_path():
    model = _model("vanilla", "sdpa", layers=1)
    inputs = _batch("vanilla")
    with torch.no_grad():
        fast, full = model(**inputs).logits, model(**inputs, output_hidden_states=True).logits
    assert torch.allclose(fast, full, atol=1e-6)


@pytest.mark.parametrize("kind", ["vanilla", "embedding"])
def test_first_token_path_does_less_work(kind):
    model = _model(kind, "sdpa")
    inputs = _batch(kind, batch=16, seq=40)
    inputs["attention_mask"][:] = 1
    flops = []
    for extra in ({}, {"output_hidden_states": True}):
        with FlopCounterMode(display=False) as counter:
            model(**inputs, **extra).loss.backward()
        flops.append(counter.get_total_flops())
    # Two layers, one of them down from 40 rows to 1 (keys and values still for every token).
    assert flops[0] < 0.65 * flops[1]
