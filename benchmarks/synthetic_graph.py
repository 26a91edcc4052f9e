"""A synthetic user–movie graph shaped like ml-32m: 200,948 users, 87,585 movies, 32,000,204 edges.

Degrees follow power laws (a few users rate thousands of movies, most movies get few ratings), and
every node has at least one edge, as in the real data. `scale` shrinks all three counts alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ML32M = {"users": 200_948, "movies": 87_585, "edges": 32_000_204}
GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]  # fmt: skip


def _power_law_weights(n: int, exponent: float, rng: np.random.Generator, offset: float = 100.0) -> np.ndarray:
    # A Zipf law with a flattened head: the busiest node gets ~0.1 % of all edges, as in ml-32m.
    w = (np.arange(1, n + 1, dtype=np.float64) + offset) ** -exponent
    rng.shuffle(w)
    return w / w.sum()


def synthetic_ml32m(scale: float = 1.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(source_df, target_df, edge_df) in the form `BipartiteGraphManager.from_tables` takes."""
    rng = np.random.default_rng(seed)
    n_users = max(10, int(ML32M["users"] * scale))
    n_movies = max(10, int(ML32M["movies"] * scale))
    n_edges = min(int(ML32M["edges"] * scale), n_users * n_movies // 2)
    pu = _power_law_weights(n_users, 0.8, rng)
    pm = _power_law_weights(n_movies, 1.0, rng)
    # One edge per user and per movie first, then power-law draws until the edge count is met.
    keys = [np.arange(n_users) * n_movies + rng.choice(n_movies, n_users, p=pm),
            rng.choice(n_users, n_movies, p=pu) * n_movies + np.arange(n_movies)]  # fmt: skip
    guaranteed = np.unique(np.concatenate(keys))
    extra = np.empty(0, dtype=np.int64)
    while len(guaranteed) + len(extra) < n_edges:
        need = int((n_edges - len(guaranteed) - len(extra)) * 1.15) + 1000
        draw = rng.choice(n_users, need, p=pu) * n_movies + rng.choice(n_movies, need, p=pm)
        # Both operands are sorted and unique already: without assume_unique, numpy would run np.unique
        # on each again, a hash table of 30 M keys at full scale (numpy >= 2.3): a minute and 1.5 GB.
        extra = np.setdiff1d(np.union1d(extra, draw), guaranteed, assume_unique=True)
    extra = rng.permutation(extra)[: n_edges - len(guaranteed)]
    keys = np.sort(np.concatenate([guaranteed, extra]))
    edges = pd.DataFrame(
        {
            "source_id": (keys // n_movies).astype(np.int64),
            "target_id": (keys % n_movies).astype(np.int64),
            "rating": rng.integers(1, 11, size=len(keys)).astype(np.float32) / 2,
            "timestamp": rng.integers(8e8, 1.7e9, size=len(keys)),
        }
    )
    genre_idx = rng.integers(0, len(GENRES), size=(n_movies, 3))
    movies = pd.DataFrame(
        {
            "target_id": np.arange(n_movies, dtype=np.int64),
            "title": [f"Movie {i} ({1900 + i % 125})" for i in range(n_movies)],
            "genres": [sorted({GENRES[j] for j in row[: 1 + i % 3]}) for i, row in enumerate(genre_idx)],
        }
    )
    users = pd.DataFrame({"source_id": np.arange(n_users, dtype=np.int64)})
    return users, movies, edges
