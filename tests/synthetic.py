"""Tiny synthetic MovieLens files in every layout GroupLens (and RecBole) publish.

No MovieLens file is committed (its licence forbids redistribution): tests write these instead.
Titles include quoted commas and non-ASCII characters, and one (user, movie) pair is rated twice.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Drama", "Sci-Fi", "Thriller"]
SPECIAL_TITLES = ["American President, The (1995)", "Misérables, Les (1995)", "Città aperta (1945)"]
LAYOUTS = ("ml-100k", "dat", "csv", "recbole")


@dataclass
class Synthetic:
    folder: Path
    users: int
    movies: int
    ratings: int  # after collapsing the duplicate pair
    titles: dict[int, str]
    genres: dict[int, list[str]]


def _tables(n_users: int, n_movies: int, n_ratings: int, seed: int):
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(np.arange(1, 10 * n_movies), size=n_movies, replace=False))
    titles = {}
    genres = {}
    for i, mid in enumerate(movie_ids):
        titles[int(mid)] = SPECIAL_TITLES[i] if i < len(SPECIAL_TITLES) else f"Movie {mid} ({1950 + i % 60})"
        k = 1 + i % 3
        genres[int(mid)] = sorted(rng.choice(GENRES, size=k, replace=False).tolist())
    pairs = set()
    user_ids = np.arange(1, n_users + 1) * 7  # non-contiguous ids
    # every user rates at least one movie, so the user count is exact
    for u in user_ids:
        pairs.add((int(u), int(rng.choice(movie_ids))))
    while len(pairs) < n_ratings:
        pairs.add((int(rng.choice(user_ids)), int(rng.choice(movie_ids))))
    rows = [(u, m, int(rng.integers(1, 6)), int(8e8 + rng.integers(0, 1e8))) for u, m in sorted(pairs)]
    rows.append((rows[0][0], rows[0][1], 5, rows[0][3] + 10))  # a duplicate rating, collapsed on load
    return movie_ids, titles, genres, rows, len(pairs)


def write_layout(folder: Path, layout: str, n_users=40, n_movies=30, n_ratings=400, seed=0) -> Synthetic:
    folder.mkdir(parents=True, exist_ok=True)
    movie_ids, titles, genres, rows, n_unique = _tables(n_users, n_movies, n_ratings, seed)
    if layout == "ml-100k":
        all_genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                      "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                      "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip
        (folder / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows))
        lines = []
        for mid in movie_ids:
            flags = ["1" if g in genres[mid] else "0" for g in all_genres]
            lines.append("|".join([str(mid), titles[mid], "01-Jan-1995", "", "http://x"] + flags))
        (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    elif layout == "dat":
        (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
        lines = [f"{mid}::{titles[mid]}::{'|'.join(genres[mid])}" for mid in movie_ids]
        (folder / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    elif layout == "csv":
        with open(folder / "ratings.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["userId", "movieId", "rating", "timestamp"])
            w.writerows((u, m, f"{r}.0", t) for u, m, r, t in rows)
        with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["movieId", "title", "genres"])
            w.writerows((mid, titles[mid], "|".join(genres[mid]) or "(no genres listed)") for mid in movie_ids)
    elif layout == "recbole":
        name = folder.name
        inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        inter += [f"{u}\t{m}\t{r}\t{t}" for u, m, r, t in rows]
        (folder / f"{name}.inter").write_text("\n".join(inter) + "\n")
        item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
        for mid in movie_ids:
            bare, year = titles[mid].rsplit(" (", 1)
            item.append(f"{mid}\t{bare}\t{year.rstrip(')')}\t{' '.join(genres[mid])}")
        (folder / f"{name}.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    else:
        raise ValueError(layout)
    return Synthetic(folder, n_users, n_movies, n_unique, titles, genres)


def zip_folder(folder: Path, archive: Path, prefix: str | None = None) -> Path:
    """Zip `folder` the way GroupLens does: every member under one top-level folder."""
    prefix = prefix or folder.name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{prefix}/{path.relative_to(folder)}")
    return archive
