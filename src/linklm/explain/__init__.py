"""Step E: what the classifiers look at, and how much of their decision the KGEs carry.

    linklm explain --run runs/default [--samples 200]

- attention.py: mean attention from each segment to each segment (CLS, SEP, user, movie, user KGE,
  movie KGE), per model and layer, as heatmaps;
- shapley.py:   exact Shapley values of the user / movie / user-KGE / movie-KGE token groups on the
  log-odds, by masking groups;
- hidden.py:    PCA of the final [CLS] and KGE-slot hidden states, coloured by label and popularity;
- run.py:       loads a run's trained models (never trains), computes all three on a sample of test
  pairs, writes `<run>/explain/*.png` and `explain.json`, and rebuilds the report.
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on training machines), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write `fig` to `path` as PNG atomically and close it."""
    from linklm.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)
