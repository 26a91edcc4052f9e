"""BERT's pooled [CLS] state, with the last layer computed for the first token only.

A classifier that reads BERT through its pooler (the seed's head: vanilla, prompt, embedding) uses
one row of the last layer's output, the first token's. Every other row of that layer is thrown
away, yet it costs the most: its queries, its attention output and its feed-forward network. Here
the last layer attends from the first token alone, to the keys and values of every token, with the
layer's own weights; the pooled state is the same to float rounding (tested, with its gradients).
MiniLM-L2 trains 1.79x and predicts 1.69x as fast (`benchmarks/bench_llm.py`, `first_token_speedup`).

    pooled, outputs = pooled_output(model.bert, input_ids=..., attention_mask=..., token_type_ids=...)

`outputs` is None on the fast path. Asked for attentions or hidden states (explain), or on a model
this does not cover (a decoder, another attention kernel), it runs `bert(...)` as usual.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from transformers import BertModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import ALL_ATTENTION_FUNCTIONS, BertLayer, eager_attention_forward

# kernels that take a 4-D mask, so one query row can be cut from it
FAST_ATTENTION = ("sdpa", "eager", "linklm_sdpa")


def pooled_output(bert: BertModel, *, output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                  **inputs: Any) -> tuple[Tensor, Any]:  # fmt: skip
    """(bert's pooler output, bert's outputs or None). inputs: input_ids or inputs_embeds,
    attention_mask, token_type_ids."""
    config = bert.config
    # None means the config's default, as in HF's own forward.
    output_attentions = config.output_attentions if output_attentions is None else output_attentions
    output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
    fast = (
        not (output_attentions or output_hidden_states or config.is_decoder)
        and config._attn_implementation in FAST_ATTENTION
        and bert.pooler is not None
    )
    if not fast:
        outputs = bert(**inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return outputs.pooler_output, outputs
    attention_mask = inputs.pop("attention_mask", None)
    hidden = bert.embeddings(**inputs)
    mask = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)
    *lower, last = bert.encoder.layer
    for layer in lower:
        hidden = layer(hidden, mask)
    return bert.pooler(first_token_layer(last, hidden, mask)), None


def first_token_layer(layer: BertLayer, hidden: Tensor, mask: Tensor | None) -> Tensor:
    """`layer(hidden, mask)[:, :1]`, computing only that row: (batch, 1, hidden size)."""
    attention = layer.attention.self
    batch, length, _ = hidden.shape
    first = hidden[:, :1]

    def heads(states: Tensor, rows: int) -> Tensor:  # (batch, rows, all heads) -> (batch, heads, rows, head size)
        return states.view(batch, rows, -1, attention.attention_head_size).transpose(1, 2)

    query = heads(attention.query(first), 1)
    key, value = heads(attention.key(hidden), length), heads(attention.value(hidden), length)
    if mask is not None and mask.dim() == 4:
        mask = mask[:, :, :1]  # the first query's row; a (batch, 1, 1, length) mask is kept as it is
    kernel = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    context, _ = kernel(
        attention, query, key, value, mask,
        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling,
    )  # fmt: skip
    attended = layer.attention.output(context.reshape(batch, 1, -1), first)
    return layer.feed_forward_chunk(attended)
