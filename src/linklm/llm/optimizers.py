"""The classifiers' AdamW optimizers where parameter groups learn at different rates."""

from __future__ import annotations

import torch

from linklm.llm.models import EndToEndKGEClassifier, FusedKGEClassifier


def end_to_end_optimizer(model: EndToEndKGEClassifier, lr: float, gnn_lr: float, weight_decay: float):
    """AdamW over BERT (decay except biases and LayerNorm, as the Trainer does) and the GNN at its own
    learning rate, without decay."""
    return _adamw(model.classifier.named_parameters(), lr, weight_decay, list(model.gnn.parameters()), gnn_lr)


def fused_optimizer(model: FusedKGEClassifier, lr: float, head_lr: float, weight_decay: float):
    """AdamW over the pretrained weights at `lr` and the new modules at `head_lr`, without decay
    (which would pull the GNN score's scale towards 0)."""
    new = {id(p) for p in model.new_parameters()}
    pretrained = [(n, p) for n, p in model.named_parameters() if id(p) not in new]
    return _adamw(pretrained, lr, weight_decay, model.new_parameters(), head_lr)


def _adamw(named, lr: float, weight_decay: float, extra: list, extra_lr: float):
    named = list(named)
    groups = [
        {"params": [p for n, p in named if "bias" not in n and "LayerNorm" not in n], "lr": lr,
         "weight_decay": weight_decay},
        {"params": [p for n, p in named if "bias" in n or "LayerNorm" in n], "lr": lr, "weight_decay": 0.0},
        {"params": extra, "lr": extra_lr, "weight_decay": 0.0},
    ]  # fmt: skip
    return torch.optim.AdamW(groups, fused=True)  # one kernel for all parameters, as the Trainer's default
