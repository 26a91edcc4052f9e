"""Exact Shapley values of a prompt's segment groups on a classifier's log-odds.

    values = coalition_values(model.log_odds, batch, players=[USER, MOVIE, USER_KGE, MOVIE_KGE], mask_id=103)
    phi = shapley_values(values)           # (batch, players); phi.sum(1) == values[:, -1] - values[:, 0]

The players are the token groups user, movie text, user KGE and movie KGE ([CLS] and [SEP] always
stay). A group is removed by replacing its tokens with [MASK] (same length, segments and attention
mask, so positions do not move); an injected KGE (the embedding models) is also not injected, which
leaves its slot as the [MASK] embedding. With at most four players every one of the 2^n coalitions
is evaluated, so the values are exact, not sampled. `linklm explain` runs this (see run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import factorial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from linklm.llm.tokens import MOVIE, MOVIE_KGE, SEGMENTS, USER, USER_KGE

# The players, in the order of every array below; CLS and SEP are structure, not players.
PLAYERS = (USER, MOVIE, USER_KGE, MOVIE_KGE)
KGE_PLAYERS = (USER_KGE, MOVIE_KGE)
# Injected KGEs are passed to the embedding models under these keys; None drops the injection.
INJECTED = {USER_KGE: "source_kge", MOVIE_KGE: "target_kge"}


def coalitions(n: int) -> Tensor:
    """Every coalition of n players: (2^n, n) bool, row c holds the bits of c (player i <-> bit i).

    Row 0 is the empty coalition and row 2^n - 1 the grand one."""
    c = torch.arange(2**n)
    return (c[:, None] >> torch.arange(n)[None, :]) & 1 == 1


def shapley_matrix(n: int) -> Tensor:
    """W (2^n, n) with phi = values @ W, where values (..., 2^n) are indexed as in `coalitions`.

    phi_i = sum over S not holding i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)): each coalition
    holding i adds its value with the weight of S = it minus i, each one without i subtracts it."""
    weight = [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]
    masks = coalitions(n)
    sizes = masks.sum(1)
    w = torch.zeros(2**n, n, dtype=torch.float64)
    for c in range(2**n):
        size = int(sizes[c])
        for i in range(n):
            # Without i, |S| = size <= n - 1, so weight[size] exists.
            w[c, i] = weight[size - 1] if masks[c, i] else -weight[size]
    return w


def shapley_values(values: Tensor | np.ndarray) -> Tensor:
    """Exact Shapley values from the values of every coalition: (..., 2^n) -> (..., n), float64."""
    values = torch.as_tensor(values, dtype=torch.float64)
    n = int(round(np.log2(values.shape[-1])))
    if 2**n != values.shape[-1]:
        raise ValueError(f"expected 2^n coalition values, got {values.shape[-1]}")
    return values @ shapley_matrix(n)


def exact_shapley(value_fn: Callable[[Tensor], float], n: int) -> Tensor:
    """Shapley values of any game given as value_fn(coalition (n,) bool) -> float: (n,)."""
    return shapley_values(torch.tensor([float(value_fn(m)) for m in coalitions(n)], dtype=torch.float64))


def mask_players(input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor, present: Tensor,
                 players: Sequence[int], mask_id: int) -> Tensor:  # fmt: skip
    """input_ids with the tokens of every absent player replaced by [MASK].

    input_ids, token_type_ids, attention_mask: (rows, seq); present: (rows, n) bool, one column per
    player in `players` (segment ids). Padding is never touched, so lengths and masks stay."""
    ids = input_ids.clone()
    real = attention_mask.bool()
    for column, segment in enumerate(players):
        drop = ~present[:, column : column + 1] & (token_type_ids == segment) & real
        ids[drop] = mask_id
    return ids


@torch.no_grad()
def coalition_values(
    log_odds: Callable[..., Tensor], batch: dict[str, Tensor], players: Sequence[int], mask_id: int
) -> Tensor:
    """The model's log-odds under every coalition of `players`, for each example: (batch, 2^n).

    log_odds(input_ids, token_type_ids, attention_mask, source_kge=None, target_kge=None) -> (rows,).
    batch: input_ids, token_type_ids, attention_mask (batch, seq); source_kge / target_kge
    (batch, kge_dim) when the model injects KGEs. Such a KGE is dropped by passing None, which acts
    on a whole forward, so the coalitions are run in one forward per pattern of injected players
    present (at most four), each holding every example and every text coalition of that pattern.
    """
    n = len(players)
    masks = coalitions(n)  # (m, n)
    m, b = masks.shape[0], batch["input_ids"].shape[0]
    injected = [(col, INJECTED[p]) for col, p in enumerate(players) if p in INJECTED and INJECTED[p] in batch]
    out = torch.empty(b, m, dtype=torch.float64)
    patterns = {}
    for c in range(m):
        patterns.setdefault(tuple(bool(masks[c, col]) for col, _ in injected), []).append(c)
    for pattern, cols in patterns.items():
        k = len(cols)
        present = masks[cols].repeat(b, 1)  # (b*k, n), example-major
        rep = {key: batch[key].repeat_interleave(k, 0) for key in ("input_ids", "token_type_ids", "attention_mask")}
        ids = mask_players(rep["input_ids"], rep["token_type_ids"], rep["attention_mask"], present, players, mask_id)
        kge = {key: batch[key].repeat_interleave(k, 0) if on else None
               for (_, key), on in zip(injected, pattern, strict=True)}  # fmt: skip
        values = log_odds(ids, rep["token_type_ids"], rep["attention_mask"], **kge)
        out[:, cols] = values.double().reshape(b, k).cpu()
    return out


def summarize(phi: Tensor, players: Sequence[int]) -> dict:
    """Per-group mean phi and mean |phi| over examples, and the share of total |phi| from KGE groups.

    phi: (examples, n) for `players`."""
    a = phi.abs()
    names = [SEGMENTS[p] for p in players]
    kge_cols = [i for i, p in enumerate(players) if p in KGE_PLAYERS]
    total = float(a.sum())
    kge = float(a[:, kge_cols].sum()) if kge_cols else 0.0
    return {
        "players": names,
        "mean_phi": dict(zip(names, phi.mean(0).tolist(), strict=True)),
        "mean_abs_phi": dict(zip(names, a.mean(0).tolist(), strict=True)),
        "kge_share": kge / total if total > 0 else 0.0,
        "text_share": (total - kge) / total if total > 0 else 0.0,
    }


def plot_shapley(results: dict[str, dict], path: Path) -> Path:
    """One bar panel per model, side by side: mean |phi| and mean phi of each group (log-odds units).

    results: {model: summarize(...) output plus "samples"}."""
    from matplotlib.figure import Figure

    from linklm.report.plots import save_figure

    names = list(results)
    fig = Figure(figsize=(3.6 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)
    # Own y scale per model: a model whose groups barely move its log-odds stays readable.
    groups = [SEGMENTS[p] for p in PLAYERS]
    x = np.arange(len(groups))
    for ax, name in zip(axes[0], names, strict=True):
        r = results[name]
        mean_abs = [r["mean_abs_phi"].get(g, np.nan) for g in groups]
        mean = [r["mean_phi"].get(g, np.nan) for g in groups]
        ax.bar(x - 0.2, mean_abs, width=0.4, label="mean |φ|", color="tab:blue")
        ax.bar(x + 0.2, mean, width=0.4, label="mean φ", color="tab:orange")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xticks(x, [g.replace("_", " ") for g in groups], rotation=30)
        has_kge = any(g in r["mean_abs_phi"] for g in ("user_kge", "movie_kge"))
        share = f"KGE share of |φ|: {100 * r['kge_share']:.0f} %" if has_kge else "no KGE in the prompt"
        ax.set_title(f"{name}\n{share}", fontsize=9)
    axes[0][0].set_ylabel("Shapley value on log-odds")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Exact Shapley values of the token groups ({results[names[0]]['samples']} test pairs)")
    return save_figure(fig, path)
