"""BERT's attention on the CPU, registered with transformers as `linklm_sdpa`.

torch's `scaled_dot_product_attention` on the CPU runs bf16 slower than fp32: its flash kernel
takes 3.4 ms where fp32 takes 2.9 (64 prompts of 28 tokens, 12 heads; 46 ms with its backward),
and in training its dropout sends it to a math path that draws one Bernoulli sample per attention
probability. On the CPU, in fp32 and bf16, this computes the same attention written out (two
matmuls and a softmax in fp32), its dropout drawn by `dropout.fast_dropout`:
- bf16 (AVX-512 BF16 machine): 2.4x as fast as sdpa with its backward and dropout, 2.6x without;
- fp32 (AVX2 machine): a vanilla training step 1.04x (`benchmarks/bench_llm.py`,
  `attention_speedup`) to 1.10x as fast, inference the same;
- and both precisions draw the same dropout masks from the same seed, so an fp32 and a bf16 run
  differ by rounding, not by their dropout (sdpa's masks depend on its kernel).
Anywhere else (a GPU, fp16) it is transformers' own sdpa path, untouched.

    use_fast_attention(model)    # build_model does it for every classifier
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

from linklm.llm.dropout import fast_dropout

NAME = "linklm_sdpa"
OURS = (torch.float32, torch.bfloat16)  # on the CPU; other dtypes and devices go to sdpa


def attention_forward(module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                      dropout: float = 0.0, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:  # fmt: skip
    """transformers' attention-function signature: query (batch, heads, q, head size), key and value
    (batch, heads, k, head size), attention_mask None or boolean (batch, 1, q, k), True = attend;
    returns ((batch, q, heads, head size), None)."""
    if query.device.type != "cpu" or query.dtype not in OURS:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)  # fmt: skip
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:  # an additive float mask
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    if dropout > 0.0:
        probs = fast_dropout(probs, dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def use_fast_attention(model):
    """`model` (an HF model) with its attention computed by `attention_forward`; returns it. NAME
    is registered with transformers' attention and mask interfaces (its mask is sdpa's, boolean)."""
    AttentionInterface.register(NAME, attention_forward)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return model
