"""Write the bookclub example: a made-up reading club of 300 readers and 240 books.

    python examples/make_bookclub.py            # writes examples/bookclub/{interactions,items}.csv
    linklm run --config examples/bookclub.yaml  # the whole pipeline on it

Nothing is real or downloaded: names, titles and reads are drawn from the word lists below with a
fixed seed (Python's `random`), so the script writes the same bytes every time
(tests/data/test_interactions.py checks the committed files against it). The reads have the
structure a recommender learns: every reader has one or two favourite shelves and reads mostly
from them, popular books are read more, and a reader often returns to an author already read.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import random
from pathlib import Path

SEED = 14
READERS, BOOKS, AUTHORS = 300, 240, 60
SHELVES = {  # shelf: nouns its titles draw from
    "fantasy": ["Dragon", "Crown", "Sword", "Realm", "Sorcerer", "Throne"],
    "mystery": ["Clue", "Alibi", "Case", "Witness", "Locket", "Inspector"],
    "romance": ["Heart", "Promise", "Kiss", "Summer", "Letter", "Wedding"],
    "science-fiction": ["Orbit", "Android", "Colony", "Signal", "Starship", "Nebula"],
    "history": ["Empire", "Revolution", "Dynasty", "Siege", "Republic", "Frontier"],
    "poetry": ["Verses", "Songs", "Odes", "Hymns", "Sonnets", "Elegies"],
    "horror": ["Crypt", "Shadow", "Haunting", "Wraith", "Curse", "Asylum"],
    "biography": ["Life", "Memoir", "Portrait", "Journey", "Years", "Testament"],
    "travel": ["Road", "Island", "Passage", "Coast", "Atlas", "Voyage"],
    "cooking": ["Kitchen", "Table", "Feast", "Bread", "Spice", "Harvest"],
}
ADJECTIVES = ["Silent", "Golden", "Broken", "Hidden", "Last", "Crimson", "Distant", "Winter", "Burning",
              "Quiet", "Northern", "Forgotten", "Little", "Endless", "Secret", "Wild"]  # fmt: skip
FIRST = ["Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kiri",
         "Lars", "Mira", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomas"]  # fmt: skip
LAST = ["Abbott", "Brandt", "Castell", "Duval", "Eriksen", "Ferreira", "Grieve", "Hollis", "Ivanova",
        "Jansen", "Kovac", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Pellegrini"]  # fmt: skip


def weighted(rng: random.Random, items: list, weights: list[float]):
    """One of `items`, drawn with probability proportional to its weight (through `random()` only)."""
    cumulative = list(itertools.accumulate(weights))
    return items[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


def make_items(rng: random.Random) -> list[dict]:
    """Books: an author of a home shelf, sometimes a second shelf, a title from the shelf's nouns."""
    names = [f"{first} {last}" for first, last in itertools.product(FIRST, LAST)]
    authors = [(name, list(SHELVES)[i % len(SHELVES)]) for i, name in enumerate(rng.sample(names, AUTHORS))]
    books, titles = [], set()
    for i in range(BOOKS):
        author, shelf = authors[int(rng.random() * AUTHORS)]
        shelves = [shelf]
        if rng.random() < 0.25:
            shelves.append(rng.choice([s for s in SHELVES if s != shelf]))
        title = ""
        while not title or title in titles:
            title = f"The {rng.choice(ADJECTIVES)} {rng.choice(SHELVES[shelf])}"
            if rng.random() < 0.3:
                title += f" of {rng.choice(SHELVES[rng.choice(shelves)])}s"
        titles.add(title)
        books.append({"book": f"bk{i + 1:04d}", "title": title, "author": author, "genres": "|".join(shelves),
                      "year": 1890 + int(rng.random() * 135)})  # fmt: skip
    return books


def make_reads(rng: random.Random, books: list[dict]) -> list[dict]:
    """Each reader's reads: favourite shelves first, popular books more often, authors revisited."""
    popularity = [1.0 / (rank + 1) ** 0.8 for rank in rng.sample(range(BOOKS), BOOKS)]
    by_shelf = {s: [i for i, b in enumerate(books) if s in b["genres"].split("|")] for s in SHELVES}
    reads = []
    for r in range(READERS):
        favourites = rng.sample(list(SHELVES), 1 + (rng.random() < 0.5))
        wanted = min(40, 5 + int(rng.expovariate(1 / 9)))
        seen: list[int] = []
        for _ in range(wanted * 5):  # a few tries per read: a drawn book may have been read already
            if len(seen) == wanted:
                break
            draw = rng.random()
            if draw < 0.7:
                pool = by_shelf[rng.choice(favourites)]
            elif draw < 0.85 and seen:
                author = books[rng.choice(seen)]["author"]
                pool = [i for i, b in enumerate(books) if b["author"] == author]
            else:
                pool = list(range(BOOKS))
            book = weighted(rng, pool, [popularity[i] for i in pool])
            if book not in seen:
                seen.append(book)
        for book in seen:
            liked = any(s in favourites for s in books[book]["genres"].split("|"))
            rating = min(5, 1 + int(rng.random() * 4) + liked)
            reads.append({"reader": f"r{r + 1:03d}", "book": books[book]["book"], "rating": rating})
    return reads


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(out: Path) -> None:
    rng = random.Random(SEED)
    books = make_items(rng)
    reads = make_reads(rng, books)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "items.csv", books)
    write_csv(out / "interactions.csv", reads)
    print(f"wrote {out}: {len(books)} books, {READERS} readers, {len(reads)} reads")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "bookclub", help="output folder")
    main(parser.parse_args().out)
