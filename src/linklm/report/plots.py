"""The report's figures, drawn from results and logs only (never from models).

Each function takes what it plots and a path, writes one PNG and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from linklm.io import atomic_path


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` to `path` as a PNG, atomically.

    Figures here are made with `Figure(...)`, not pyplot: saving needs no backend (so the user's is
    never changed, and no display is needed on training machines), and nothing has to be closed, as
    pyplot keeps no reference to them."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """curves: {model: (labels, scores)} on the same test pairs."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Test ROC curves")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def training_curves(logs: dict[str, list[dict]], val: dict[str, list[dict]], path: Path) -> Path:
    """logs: {model: per-step rows with step, loss, accuracy}; val: {model: per-epoch eval rows}."""
    fig = Figure(figsize=(14, 4))
    ax_loss, ax_acc, ax_val = fig.subplots(1, 3)
    for name, rows in logs.items():
        if not rows:
            continue
        steps = np.array([r["step"] for r in rows])
        window = max(1, len(rows) // 50)
        kernel = np.ones(window) / window
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            values = np.convolve([r[key] for r in rows], kernel, mode="valid")
            ax.plot(steps[window - 1 :], values, label=name)
    aucs = []
    for name, rows in val.items():  # every evaluation, at its step: several per epoch
        if rows:
            aucs += [r["eval_auc"] for r in rows]
            steps = [r["step"] if "step" in r else r["epoch"] for r in rows]
            ax_val.plot(steps, [r["eval_auc"] for r in rows], marker="o", label=name)
    if aucs:  # a fixed margin: one point, or a flat curve, is not blown up to fill the axis
        ax_val.set_ylim(max(0.0, min(aucs) - 0.02), min(1.0, max(aucs) + 0.02))
    ax_loss.set(xlabel="step", ylabel="train loss (moving average)", title="Loss")
    ax_acc.set(xlabel="step", ylabel="train batch accuracy", title="Accuracy")
    ax_val.set(xlabel="step", ylabel="val AUC", title="Validation")
    for ax in (ax_loss, ax_acc, ax_val):
        if ax.lines:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


def budget_points(rows: list[dict], batch_size: int | None = None) -> list[tuple[float, float]]:
    """(training examples seen, val AUC) of each val evaluation: its `examples`, or else its step
    times `batch_size` (rows recorded before `examples` was); rows with neither are left out."""
    points = []
    for r in rows:
        if "examples" in r:
            points.append((float(r["examples"]), float(r["eval_auc"])))
        elif "step" in r and batch_size:
            points.append((float(r["step"] * batch_size), float(r["eval_auc"])))
    return points


def budget_curve(val: dict[str, list[dict]], path: Path, batch_size: int | None = None,
                 capped: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """Val AUC against the training examples seen, one line per arm. val: {model: its val
    evaluations (eval_auc, and examples or else step × `batch_size`)}; `capped`: models that hit
    the budget with val still improving, marked in the legend."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    aucs = []
    for name, rows in val.items():
        points = budget_points(rows, batch_size)
        if not points:
            continue
        examples, auc = zip(*points, strict=True)
        aucs += auc
        label = f"{name} (capped by the budget)" if name in capped else name
        ax.plot(examples, auc, marker="o", ms=3, label=label)
    if aucs:  # a fixed margin, as training_curves
        ax.set_ylim(max(0.0, min(aucs) - 0.02), min(1.0, max(aucs) + 0.02))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no line hidden
    ax.set(xlabel="training examples seen (negatives included)", ylabel="val AUC",
           title="Budget curve: val AUC against training examples")  # fmt: skip
    return save_figure(fig, path)


def accuracy_bars(names: list[str], means: list[float], stds: list[float] | None, path: Path,
                  ylabel: str = "test accuracy") -> Path:  # fmt: skip
    """Horizontal bars, so a model's name is never cut or overlapped, whatever its length."""
    fig = Figure(figsize=(6.5, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, means, xerr=stds, capsize=4, color="#4c72b0")
    ax.invert_yaxis()  # first model on top
    low = max(0.0, min(means) - 0.1)
    for i, m in enumerate(means):  # inside the bar's end: every bar is at least 0.1 long
        ax.text(m - 0.005, i, f"{m:.3f}", ha="right", va="center", fontsize=8, color="white")
    ax.set(xlabel=ylabel, xlim=(low, 1.0), title=f"{ylabel.capitalize()} by model")
    return save_figure(fig, path)


def confusion_matrices(matrices: dict[str, list[list[int]]], path: Path) -> Path:
    n = len(matrices)
    fig = Figure(figsize=(3.2 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items(), strict=True):
        m = np.asarray(m)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="true", title=name)
    return save_figure(fig, path)


def metric_vs_dimension(
    dims: list[int],
    series: dict[str, tuple[list[float], list[float]]],
    baseline: tuple[float, float] | None,
    path: Path,
    ylabel: str = "test accuracy",
) -> Path:
    """series: {model: (means, stds)} per dimension; baseline: vanilla (mean, std), drawn flat."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, (means, stds) in series.items():
        ax.errorbar(dims, means, yerr=stds, marker="o", capsize=3, label=name)
    if baseline is not None:
        ax.axhline(baseline[0], color="grey", ls="--", label="vanilla")
        ax.axhspan(baseline[0] - baseline[1], baseline[0] + baseline[1], color="grey", alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="KGE dimension", ylabel=ylabel, title=f"{ylabel.capitalize()} against KGE dimension")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def metric_vs_dimension_ragged(
    dims: dict[str, list[int]],
    series: dict[str, tuple[list[float], list[float]]],
    baseline: float,
    path: Path,
    ylabel: str = "test accuracy",
) -> Path:
    """metric_vs_dimension where models have different dimensions (prompts that do not fit are left
    out). dims: {model: its dimensions}; series: {model: (means, stds)} over them; baseline: vanilla's
    mean, drawn flat."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, (means, stds) in series.items():
        ax.errorbar(dims[name], means, yerr=stds, marker="o", capsize=3, label=name)
    ax.axhline(baseline, color="grey", ls="--", label="vanilla")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="KGE dimension", ylabel=ylabel)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
