"""One training batch computed as slices of similar prompt length, each padded only to its own longest.

A batch of random pairs pads every prompt to the longest one: on ml-100k the prompts average 24
tokens and a batch of 256 pads to about 42, so nearly half of BERT's work is padding. Sorted by
length and cut into 4 slices, the batch pads to about 28 on average: 1.6x the training examples/s
of MiniLM-L2 (`benchmarks/bench_llm.py`, `length_slices_speedup`; 1.7x before the first-token
last layer). The loss is the same mean cross-entropy
over the whole batch, so the gradient is the one of the padded batch, up to float rounding (padding
is masked out of attention and pooling).

    outputs = forward_by_length(model, batch, slices=4)      # logits in batch order, and the loss
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

# (batch, seq, ...): trimmed per slice
SEQUENCE_KEYS = ("input_ids", "inputs_embeds", "attention_mask", "token_type_ids")


def forward_by_length(model: nn.Module, batch: dict[str, Any], slices: int) -> SequenceClassifierOutput:
    """`model(**batch)` computed slice by slice (see the module docstring); `slices` <= 1, or a batch
    too small to cut, runs as one call. Every tensor of the batch is (batch, ...) along dim 0."""
    mask = batch["attention_mask"]
    if slices <= 1 or len(mask) < 2 * slices:
        return model(**batch)
    # What a model computes once per batch rather than per slice: the word embeddings, and the
    # end-to-end model's GNN.
    prepare = getattr(model, "slice_inputs", None)
    if prepare is not None:
        model, batch = prepare(batch)
    labels = batch.get("labels")
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    logits = []
    for rows in order.tensor_split(slices):
        width = int(lengths[rows].max())
        part = {k: v[rows] for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
        part.update({k: part[k][:, :width] for k in SEQUENCE_KEYS if k in part})
        logits.append(model(**part).logits)
    logits = torch.cat(logits)[torch.argsort(order)]  # back in batch order
    loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits)
