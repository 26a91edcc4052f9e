"""Dropout whose mask costs a quarter of the random numbers on the CPU, for BERT's hidden states.

torch's CPU dropout draws one Bernoulli sample per element, serially: on 2 cores it was 15 % of a
bf16 training step of MiniLM-L2, more than any op but the matmuls (`benchmarks/bench_llm.py`,
`fast_dropout_speedup`). Here each 64-bit random number gives four 16-bit draws; an element is
kept when its draw is at least round(p * 2**16), so p is honoured to 1 / 65,536 and the kept ones
are scaled by 1 / (1 - p), as `nn.Dropout` does. Same generator (torch's default, seeded and
checkpointed by the Trainer), so runs stay reproducible; on a GPU it is `nn.Dropout` itself.

    use_fast_dropout(model)     # every nn.Dropout of the model, in place
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LEVELS = 2**16


class FastDropout(nn.Dropout):
    """`nn.Dropout(p)` with the mask drawn 16 bits at a time on the CPU (see the module docstring).
    It stays an `nn.Dropout`, so code that reads its `p` (HF's attention passes it to sdpa) still does."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return fast_dropout(x, self.p)


def fast_dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of a CPU tensor `x`, the mask drawn 16 bits at a time."""
    if p == 1.0:
        return x * 0.0
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    draws = bits.view(torch.int16)[:n].view(x.shape)  # uniform over -32,768 .. 32,767
    keep = draws >= round(p * _LEVELS) - _LEVELS // 2
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Swap every plain `nn.Dropout` of `model` for a `FastDropout` of the same p; returns the model."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p, child.inplace))
    return model
