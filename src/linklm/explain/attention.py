"""Attention by segment: how much each segment of a prompt attends to each other segment.

    with eager_attention(model):
        out = model(**batch, output_attentions=True)
    maps = segment_attention(out.attentions, batch["token_type_ids"], batch["attention_mask"])
    mean = mean_over_examples(maps)        # (layers, 6, 6), rows: query segment, columns: key segment
    plot_attention({"vanilla": mean, ...}, path)

Per example and layer, heads are averaged; then, for each query segment, the attention rows of
its tokens are averaged and the mass falling on each key segment summed (padding gets none), so
each row of an example's map sums to 1. Examples are averaged last, each over the examples that
hold that query segment. `linklm explain` runs this (see run.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from linklm.llm.tokens import CLS, MOVIE_KGE, SEGMENTS, USER_KGE


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Run `model` (an HF model) with eager attention inside the block.

    SDPA, transformers' default on CPU, returns no attention weights; the eager path computes the
    same outputs and returns them. The previous implementation is restored on exit, as it is faster
    for the forwards that need no weights (Shapley values)."""
    previous = model.config._attn_implementation
    _set_attention(model, "eager")
    try:
        yield
    finally:
        _set_attention(model, previous)


def _set_attention(model, name: str) -> None:
    if hasattr(model, "set_attn_implementation"):  # transformers >= 4.48; checks what the model supports
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


def segment_attention(
    attentions: Sequence[Tensor], token_type_ids: Tensor, attention_mask: Tensor, num_segments: int = len(SEGMENTS)
) -> Tensor:
    """Each example's segment-to-segment attention: (batch, layers, segments, segments), float64.

    attentions: one (batch, heads, seq, seq) tensor per layer; token_type_ids, attention_mask:
    (batch, seq). Entry [b, l, q, k] is the attention of layer l from segment q's tokens (their mean
    row) to segment k's tokens (their summed mass), averaged over heads. Rows of a segment the
    example lacks are NaN; every other row sums to 1 (attention on padding is zero)."""
    att = torch.stack([a.detach() for a in attentions], 1).double().mean(2)  # (b, L, q, k)
    real = attention_mask.bool().to(att.device)
    onehot = F.one_hot(token_type_ids.to(att.device), num_segments).double() * real[..., None]  # (b, seq, S)
    to_key = att @ onehot[:, None]  # (b, L, q, S): each query token's mass on each key segment
    summed = onehot.transpose(1, 2)[:, None] @ to_key  # (b, L, S, S): summed over each segment's queries
    counts = onehot.sum(1)[:, None, :, None]  # (b, 1, S, 1) query tokens per segment
    return (summed / counts).cpu()  # 0 / 0 = NaN marks the absent segments


def mean_over_examples(maps: Tensor) -> np.ndarray:
    """(examples, layers, S, S) -> (layers, S, S): each row averaged over the examples holding it."""
    return torch.nanmean(maps, dim=0).numpy()


def cls_to_kge(mean: np.ndarray) -> list[float]:
    """Per layer, the share of [CLS]'s attention that lands on the two KGE segments."""
    return [float(np.nansum(mean[layer, CLS, [USER_KGE, MOVIE_KGE]])) for layer in range(mean.shape[0])]


def plot_attention(maps: dict[str, np.ndarray], path: Path) -> Path:
    """Heatmaps, one column per model and one row per layer. maps: {model: (layers, S, S)}."""
    import matplotlib
    from matplotlib.figure import Figure

    from linklm.report.plots import save_figure

    names = list(maps)
    layers = max(m.shape[0] for m in maps.values())
    fig = Figure(figsize=(3.3 * len(names) + 1, 3.1 * layers + 0.6), layout="constrained")
    axes = fig.subplots(layers, len(names), squeeze=False)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")  # segments a prompt does not have
    labels = [s.replace("_", " ") for s in SEGMENTS]
    image = None
    for col, name in enumerate(names):
        for layer in range(layers):
            ax = axes[layer][col]
            if layer >= maps[name].shape[0]:
                ax.axis("off")
                continue
            m = maps[name][layer]
            image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0.0, vmax=1.0)
            for q in range(m.shape[0]):
                for k in range(m.shape[1]):
                    if np.isfinite(m[q, k]):
                        ax.text(k, q, f"{m[q, k]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if m[q, k] < 0.5 else "black")  # fmt: skip
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(labels)), labels if col == 0 else [], fontsize=7)
            ax.set_title(f"{name}, layer {layer + 1}", fontsize=9)
            if col == 0:
                ax.set_ylabel("query segment")
            if layer == layers - 1:
                ax.set_xlabel("key segment")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="mean attention (rows sum to 1)")
    fig.suptitle("Attention by segment (mean over heads and test pairs)")
    return save_figure(fig, path)
