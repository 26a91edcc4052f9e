"""Hidden states: PCA of the final [CLS] state and of the KGE slots' final states.

    states = pooled_states(out.hidden_states[-1], batch["token_type_ids"], batch["attention_mask"])
    coords, explained = pca_2d(states["cls"])                 # (n, 2), (2,)
    plot_hidden("prompt", {"cls": coords, ...}, labels, tertile, edges, path)

A prompt model's KGE segment spans kge_dim tokens; its state is their mean. An embedding model's
is its single slot. Points are coloured by the pair's label and by its movie's popularity tertile
(popularity: the movie's number of train edges). `linklm explain` runs this (see run.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from linklm.llm.tokens import MOVIE_KGE, SEGMENTS, USER_KGE


def pooled_states(hidden: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
    """{"cls": (batch, hidden)} plus "user_kge" / "movie_kge" (batch, hidden), the mean final state
    of each KGE segment's tokens, when every example has that segment. hidden: (batch, seq, hidden)."""
    out = {"cls": hidden[:, 0].detach().float().cpu()}
    real = attention_mask.bool()
    for segment in (USER_KGE, MOVIE_KGE):
        sel = ((token_type_ids == segment) & real).to(hidden.device)  # (batch, seq)
        count = sel.sum(1)
        if not bool((count > 0).all()):
            continue
        mean = (hidden * sel[..., None]).sum(1) / count[:, None]
        out[SEGMENTS[segment]] = mean.detach().float().cpu()
    return out


def movie_popularity(edge_df, num_movies: int) -> np.ndarray:
    """Train edges per movie (message passing and supervision): (num_movies,) int."""
    train = edge_df["split"].astype(str).to_numpy() == "train"
    return np.bincount(edge_df["target_idx"].to_numpy()[train], minlength=num_movies)


def tertiles(popularity: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Tertile codes 0/1/2 of the given values (cut at their own 1/3 and 2/3 quantiles), and the cuts."""
    cuts = np.quantile(popularity, [1 / 3, 2 / 3]) if len(popularity) else np.zeros(2)
    return np.digitize(popularity, cuts, right=True), [float(c) for c in cuts]


def pca_2d(states: Tensor | np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Project (n, hidden) states onto their first two principal components: (n, 2) and the
    explained variance ratios. With fewer than two samples or features the second column is 0."""
    from sklearn.decomposition import PCA

    x = np.asarray(states, dtype=np.float64)
    k = min(2, x.shape[0], x.shape[1])
    coords = np.zeros((x.shape[0], 2))
    if k == 0:
        return coords, [0.0, 0.0]
    pca = PCA(n_components=k, random_state=0).fit(x)
    coords[:, :k] = pca.transform(x)
    ratio = [float(r) for r in pca.explained_variance_ratio_] + [0.0] * (2 - k)
    return coords, ratio


def pc1_stats(coords: np.ndarray, labels: np.ndarray, popularity: np.ndarray) -> dict[str, float | None]:
    """How well the first component alone tells the label (AUC, orientation-free: max(a, 1 - a)) and
    follows popularity (|Spearman rho|); None where undefined (one class, constant values)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    pc1 = coords[:, 0]
    auc = None
    if len(np.unique(labels)) == 2:
        a = float(roc_auc_score(labels, pc1))
        auc = max(a, 1.0 - a)
    rho = None
    if np.ptp(pc1) > 0 and np.ptp(popularity) > 0:
        rho = abs(float(spearmanr(pc1, popularity).statistic))
    return {"pc1_label_auc": auc, "pc1_popularity_spearman": rho}


def plot_hidden(name: str, coords: dict[str, np.ndarray], explained: dict[str, list[float]], labels: np.ndarray,
                tertile: np.ndarray, cuts: list[float], path: Path) -> Path:  # fmt: skip
    """One row per representation (cls, user_kge, movie_kge), coloured by label (left) and by movie
    popularity tertile (right). coords: {representation: (n, 2)}."""
    import matplotlib
    from matplotlib.figure import Figure

    from linklm.report.plots import save_figure

    reps = list(coords)
    fig = Figure(figsize=(10, 3.8 * len(reps)))
    axes = fig.subplots(len(reps), 2, squeeze=False)
    # Fixed spacing: a layout engine would triple the drawing time of these many-label figures.
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    tertile_names = [f"low (≤ {cuts[0]:.3g})", f"mid (≤ {cuts[1]:.3g})", f"high (> {cuts[1]:.3g})"]
    for row, rep in enumerate(reps):
        xy = coords[rep]
        ratio = explained[rep]
        for col, (values, names, cmap) in enumerate(
            ((labels, ["negative", "positive"], "coolwarm"), (tertile, tertile_names, "viridis"))
        ):
            ax = axes[row][col]
            colours = matplotlib.colormaps[cmap](np.linspace(0.1, 0.9, len(names)))
            for code, label in enumerate(names):
                sel = values == code
                if sel.any():
                    ax.scatter(xy[sel, 0], xy[sel, 1], s=10, alpha=0.7, color=colours[code], label=label)
            what = "label" if col == 0 else "movie popularity (train edges)"
            ax.set_title(f"{name}: final {rep.replace('_', ' ')} state, by {what}", fontsize=9)
            ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} % var.)")
            ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} % var.)")
            ax.legend(fontsize=7, markerscale=1.5)
            ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    return save_figure(fig, path)
