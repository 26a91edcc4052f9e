"""The CPU attention: sdpa's result (to bf16 rounding in bf16), its gradients, its dropout (the same
masks in fp32 and bf16), and sdpa itself for other dtypes."""

import copy

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from linklm.llm.attention import NAME, attention_forward
from linklm.llm.models import build_model

from .conftest import TINY


def _inputs(dtype, batch=6, heads=4, length=9, size=16):
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, size, dtype=dtype, requires_grad=True) for _ in range(3))
    lengths = torch.tensor([9, 3, 5, 9, 1, 7])
    mask = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :].expand(batch, 1, length, length)
    return q, k, v, mask


@pytest.mark.parametrize("masked", [True, False])
def test_bf16_attention_is_sdpa_to_rounding_with_its_gradients(masked):
    q, k, v, mask = _inputs(torch.bfloat16)
    mask = mask if masked else None
    ours, none = attention_forward(None, q, k, v, mask, scaling=0.25)
    assert none is None and ours.dtype == torch.bfloat16 and ours.shape == (6, 9, 4, 16)
    ours.float().pow(2).sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    ref_inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref, _ = sdpa_attention_forward(torch.nn.Module(), *ref_inputs, mask, scaling=0.25, is_causal=False)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(ours.float(), ref, atol=3e-2, rtol=3e-2)
    for g, r in zip(got, ref_inputs, strict=True):
        torch.testing.assert_close(g.float(), r.grad, atol=6e-2, rtol=6e-2)


def test_its_dropout_drops_attention_probabilities():
    torch.manual_seed(1)
    batch, heads, length = 64, 8, 16
    q, k = (torch.randn(batch, heads, length, length, dtype=torch.bfloat16) for _ in range(2))
    eye = torch.eye(length, dtype=torch.bfloat16).expand(batch, heads, length, length)  # output = probabilities
    probs, _ = attention_forward(None, q, k, eye, None, dropout=0.0, scaling=1.0)
    dropped, _ = attention_forward(None, q, k, eye, None, dropout=0.5, scaling=1.0)
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    torch.testing.assert_close(dropped[kept].float(), 2 * probs[kept].float(), atol=1e-2, rtol=1e-2)


def test_fp32_on_the_cpu_is_ours_and_equals_sdpa():
    q, k, v, mask = _inputs(torch.float32)
    ours, _ = attention_forward(torch.nn.Module(), q, k, v, mask, scaling=0.25, is_causal=False)
    ref, _ = sdpa_attention_forward(torch.nn.Module(), q, k, v, mask, scaling=0.25, is_causal=False)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_fp32_and_bf16_draw_the_same_dropout_masks():
    masks = {}
    for dtype in (torch.float32, torch.bfloat16):
        q, k, _, _ = _inputs(dtype, length=16)
        eye = torch.eye(16, dtype=dtype).expand(6, 4, 16, 16)  # output = probabilities
        torch.manual_seed(7)
        dropped, _ = attention_forward(None, q, k, eye, None, dropout=0.3, scaling=1.0)
        masks[dtype] = dropped != 0
    assert 0.6 < masks[torch.float32].float().mean() < 0.8
    assert torch.equal(masks[torch.float32], masks[torch.bfloat16])


def test_other_dtypes_are_sdpa_itself():
    q, k, v, mask = _inputs(torch.float16)
    ours, _ = attention_forward(torch.nn.Module(), q, k, v, mask, scaling=0.25, is_causal=False)
    ref, _ = sdpa_attention_forward(torch.nn.Module(), q, k, v, mask, scaling=0.25, is_causal=False)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("kind", ["vanilla", "embedding", "fused"])
def test_classifiers_use_it_and_agree_with_sdpa_in_bf16(kind):
    model = build_model(TINY, kind, kge_dim=4).eval()
    assert model.config._attn_implementation == NAME
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("sdpa")
    torch.manual_seed(2)
    ids = torch.randint(1000, 2000, (5, 12))
    mask = (torch.arange(12)[None, :] < torch.tensor([12, 4, 7, 12, 2])[:, None]).long()
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if kind != "vanilla":
        inputs |= {"source_kge": torch.randn(5, 4), "target_kge": torch.randn(5, 4)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = model(**inputs).logits.float(), reference(**inputs).logits.float()
    torch.testing.assert_close(ours, theirs, atol=5e-2, rtol=5e-2)


def test_a_training_forward_in_fp32_and_bf16_differs_by_rounding_only():
    """Dropout active (train mode): the same seed gives the same masks in both precisions."""
    model = build_model(TINY, "vanilla").train()
    assert model.config.attention_probs_dropout_prob > 0 and model.config.hidden_dropout_prob > 0
    ids = torch.randint(1000, 2000, (16, 12), generator=torch.Generator().manual_seed(3))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    hidden = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(4)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            hidden[precision] = model.bert(**inputs).last_hidden_state.float()
    torch.manual_seed(5)  # other masks: the scale of a dropout difference
    other = model.bert(**inputs).last_hidden_state
    rounding = (hidden["fp32"] - hidden["bf16"]).abs().mean()
    assert rounding < 0.005 * (hidden["fp32"] - other).abs().mean()  # 0.0004 measured; 0.035 with other masks
