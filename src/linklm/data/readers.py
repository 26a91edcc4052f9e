"""Readers for every MovieLens layout GroupLens has published, plus RecBole's atomic files.

Each reader returns the same `RawTables`:
    ratings: user_id (int64), movie_id (int64), rating (float32), timestamp (int64)
    movies:  movie_id (int64), title (str, "Toy Story (1995)"), genres (list[str])
    users:   user_id (int64) plus whatever the layout describes, or None

| layout   | files                          | format                                                   |
|----------|--------------------------------|----------------------------------------------------------|
| ml-100k  | u.data, u.item [, u.user]      | tab / pipe separated, ISO-8859-1, 19 genre flags          |
| dat      | ratings.dat, movies.dat [...]  | `::` separated, ISO-8859-1 (ml-1m, ml-10m)               |
| csv      | ratings.csv, movies.csv        | UTF-8, quoted titles (ml-latest-small, ml-20m/25m/32m)   |
| recbole  | *.inter, *.item [, *.user]     | tab separated with `name:type` headers, UTF-8            |

Every problem with a file raises `UserError` with one line naming the file. A UTF-8 byte-order mark
(Excel writes one) is dropped from the start of any file. `is_input` names the files some reader
opens: the only members extracted from an archive, and the inputs of the data cache key.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from linklm.errors import UserError

# u.item's 19 flag columns, in file order (as listed in ml-100k's u.genre).
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]  # fmt: skip
NO_GENRES = "(no genres listed)"
RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]
INPUT_NAMES = frozenset({"u.data", "u.item", "u.user", "ratings.dat", "movies.dat", "users.dat", "ratings.csv",
                         "movies.csv"})  # fmt: skip
INPUT_SUFFIXES = (".inter", ".item", ".user")  # RecBole's atomic files


@dataclass
class RawTables:
    layout: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame | None = None
    files: list[Path] = field(default_factory=list)


def is_input(name: str) -> bool:
    """Whether a file called `name` (a base name) is one some reader opens; macOS's `._` shadow
    files never are."""
    return not name.startswith("._") and (name in INPUT_NAMES or name.endswith(INPUT_SUFFIXES))


# --- layout detection -------------------------------------------------------------------------


def _find(folder: Path, pattern: str) -> list[Path]:
    hits = [p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith("._")]
    return sorted(hits, key=lambda p: (len(p.parts), str(p)))


def read_folder(folder: str | Path) -> RawTables:
    """Detect the layout of an extracted MovieLens folder and read it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    if hits := _find(folder, "u.data"):
        return read_ml100k(hits[0].parent)
    if hits := _find(folder, "ratings.dat"):
        return read_dat(hits[0].parent)
    if hits := _find(folder, "ratings.csv"):
        return read_csv_layout(hits[0].parent)
    if hits := _find(folder, "*.inter"):
        return read_recbole(hits[0])
    raise UserError(
        f"{folder}: no MovieLens files found (expected u.data, ratings.dat, ratings.csv or a RecBole .inter)"
    )


# --- shared helpers ---------------------------------------------------------------------------


def _require(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return _require(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None


def _decode(path: Path, blob: bytes, *, latin1_fallback: bool) -> str:
    """UTF-8, or ISO-8859-1 for the older GroupLens layouts (which never fails to decode)."""
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        if latin1_fallback:
            return blob.decode("latin-1")
        bad = blob[exc.start : exc.start + 1].hex()
        raise UserError(f"{path}: not valid UTF-8 (byte 0x{bad} at offset {exc.start})") from None


def _parse_ratings(path: Path, blob: bytes, delimiter: str, header: bool, names: dict[str, str]) -> pd.DataFrame:
    """Parse a ratings table with pyarrow (multi-threaded, ~10x pandas on ml-32m).

    `names` maps the file's column names to ours; without a header, they are taken in file order.
    """
    if not blob.strip():
        raise UserError(f"{path}: empty ratings file")
    read_opts = pacsv.ReadOptions()
    if header:
        present = blob.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace").split(delimiter)
        names = {src: dst for src, dst in names.items() if src in present}
        for required, label in (("user_id", "userId"), ("movie_id", "movieId")):
            if required not in names.values():
                wanted = label if delimiter == "," else required.replace("movie_id", "item_id")
                raise UserError(f"{path}: missing column {wanted!r}")
    else:
        # Name only as many columns as the file has: count them on the first line.
        first = blob.split(b"\n", 1)[0].rstrip(b"\r")
        ncols = first.count(delimiter.encode()) + 1
        if ncols < 2:
            raise UserError(f"{path}: expected user, movie, rating and timestamp columns, found {ncols}")
        names = dict(list(names.items())[:ncols])
        read_opts = pacsv.ReadOptions(column_names=(list(names) + [f"_extra{i}" for i in range(ncols)])[:ncols])
    types = {"user_id": pa.int64(), "movie_id": pa.int64(), "rating": pa.float32(), "timestamp": pa.float64()}
    column_types = {src: types[dst] for src, dst in names.items()}
    try:
        table = pacsv.read_csv(
            io.BytesIO(blob),
            read_options=read_opts,
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=column_types, include_columns=list(names)),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise UserError(f"{path}: {_arrow_reason(exc)}") from None
    df = table.to_pandas().rename(columns=names)
    if "rating" not in df.columns:  # implicit feedback: every interaction counts as a rating of 1
        df["rating"] = np.float32(1.0)
    if len(df) == 0:
        raise UserError(f"{path}: empty ratings file")
    for col in ("user_id", "movie_id", "rating"):
        if df[col].isna().any():
            raise UserError(f"{path}: missing {col} on line {_first(df[col].isna(), header)}")
    if not np.isfinite(df["rating"]).all():
        raise UserError(f"{path}: rating on line {_first(~np.isfinite(df['rating']), header)} is not a finite number")
    if "timestamp" not in df.columns:
        df["timestamp"] = 0
    stamps = df["timestamp"].fillna(0).to_numpy(dtype=np.float64)
    if not (np.abs(stamps) < 2**63).all():  # inf, nan or beyond int64: no count of seconds
        raise UserError(f"{path}: timestamp on line {_first(~(np.abs(stamps) < 2**63), header)} is out of range")
    df["timestamp"] = stamps.astype("int64")
    return df[RATING_COLUMNS]


def _first(mask, header: bool) -> int:
    """The file line of the first True row of `mask` (1-based, after the header if there is one)."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1 + int(header)


def _arrow_reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0]
    if "conversion error" in text or "invalid value" in text:
        return f"non-numeric value where an id or rating was expected ({text})"
    if "Expected" in text and "columns" in text:
        return f"malformed row ({text})"
    return text


def _non_numeric(path: Path, column: str, values: pd.Series) -> pd.Series:
    """Integer ids from text: digits only (18 at most, so int64 holds them), no 1e400 or 3.5."""
    if values.isna().any() or (values.astype(str).str.strip() == "").any():
        raise UserError(f"{path}: missing {column}")
    text = values.astype(str).str.strip()
    bad = ~text.str.fullmatch(r"[+-]?\d{1,18}")
    if bad.any():
        raise UserError(f"{path}: non-numeric {column} {str(values[bad].iloc[0])[:40]!r}")
    return text.astype("int64")


def _movies_frame(path: Path, ids: pd.Series, titles: list[str], genres: list[list[str]]) -> pd.DataFrame:
    movies = pd.DataFrame({"movie_id": _non_numeric(path, "movie id", ids), "title": titles, "genres": genres})
    if movies.empty:
        raise UserError(f"{path}: no movies")
    dup = movies["movie_id"].duplicated()
    if dup.any():
        raise UserError(f"{path}: movie id {int(movies['movie_id'][dup].iloc[0])} appears twice")
    return movies


def _split_genres(text: str, sep: str) -> list[str]:
    text = text.strip()
    if not text or text == NO_GENRES:
        return []
    return [g for g in text.split(sep) if g]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- the layouts ------------------------------------------------------------------------------


def read_ml100k(folder: Path) -> RawTables:
    data, item, user = folder / "u.data", folder / "u.item", folder / "u.user"
    ratings = _parse_ratings(
        data, _read_bytes(data), "\t", header=False,
        names={"user_id": "user_id", "movie_id": "movie_id", "rating": "rating", "timestamp": "timestamp"},
    )  # fmt: skip
    rows = [line.split("|") for line in _lines(_decode(item, _read_bytes(item), latin1_fallback=True))]
    short = next((i for i, r in enumerate(rows) if len(r) < 5 + len(ML100K_GENRES)), None)
    if short is not None:
        raise UserError(f"{item}: line {short + 1} has {len(rows[short])} fields, expected 24")
    genres = [[g for g, flag in zip(ML100K_GENRES, r[5:24], strict=True) if flag.strip() == "1"] for r in rows]
    movies = _movies_frame(item, pd.Series([r[0] for r in rows]), [r[1].strip() for r in rows], genres)
    users = None
    if user.is_file():
        urows = [line.split("|") for line in _lines(_decode(user, _read_bytes(user), latin1_fallback=True))]
        users = pd.DataFrame([r[:5] for r in urows], columns=["user_id", "age", "gender", "occupation", "zip_code"])
        users["user_id"] = _non_numeric(user, "user id", users["user_id"])
    files = [p for p in (data, item, user) if p.is_file()]
    return _check(RawTables("ml-100k", ratings, movies, users, files))


def read_dat(folder: Path) -> RawTables:
    data, item, user = folder / "ratings.dat", folder / "movies.dat", folder / "users.dat"
    blob = _read_bytes(data).replace(b"::", b"\t")
    ratings = _parse_ratings(
        data, blob, "\t", header=False,
        names={"user_id": "user_id", "movie_id": "movie_id", "rating": "rating", "timestamp": "timestamp"},
    )  # fmt: skip
    rows = [line.split("::") for line in _lines(_decode(item, _read_bytes(item), latin1_fallback=True))]
    short = next((i for i, r in enumerate(rows) if len(r) < 3), None)
    if short is not None:
        raise UserError(f"{item}: line {short + 1} is not MovieID::Title::Genres")
    # A title may itself contain "::" in principle: the id is first, the genres last.
    titles = ["::".join(r[1:-1]).strip() for r in rows]
    movies = _movies_frame(item, pd.Series([r[0] for r in rows]), titles, [_split_genres(r[-1], "|") for r in rows])
    users = None
    if user.is_file():
        urows = [line.split("::") for line in _lines(_decode(user, _read_bytes(user), latin1_fallback=True))]
        users = pd.DataFrame([r[:5] for r in urows], columns=["user_id", "gender", "age", "occupation", "zip_code"])
        users["user_id"] = _non_numeric(user, "user id", users["user_id"])
    files = [p for p in (data, item, user) if p.is_file()]
    return _check(RawTables("dat", ratings, movies, users, files))


def read_csv_layout(folder: Path) -> RawTables:
    data, item = folder / "ratings.csv", folder / "movies.csv"
    blob = _read_bytes(data)
    _decode(data, blob[: 1 << 16].rsplit(b"\n", 1)[0], latin1_fallback=False)
    ratings = _parse_ratings(
        data, blob, ",", header=True,
        names={"userId": "user_id", "movieId": "movie_id", "rating": "rating", "timestamp": "timestamp"},
    )  # fmt: skip
    text = _decode(item, _read_bytes(item), latin1_fallback=False)
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{item}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    for col in ("movieId", "title", "genres"):
        if col not in table.columns:
            raise UserError(f"{item}: missing column {col!r}")
    movies = _movies_frame(
        item, table["movieId"], table["title"].str.strip().tolist(),
        [_split_genres(g, "|") for g in table["genres"]],
    )  # fmt: skip
    return _check(RawTables("csv", ratings, movies, None, [data, item]))


def _recbole_header(path: Path, line: str) -> list[str]:
    columns = [field.split(":", 1)[0] for field in line.rstrip("\r\n").split("\t")]
    twice = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
    if twice is not None:
        raise UserError(f"{path}: column {twice!r} appears twice in the header")
    return columns


def _recbole_table(path: Path, columns: list[str], lines: list[str]) -> pd.DataFrame:
    """The rows of a RecBole .item/.user file; short rows are padded, longer ones refused."""
    rows = []
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        row = line.split("\t")
        if any(row[len(columns) :]):
            raise UserError(f"{path}: line {number} has {len(row)} fields, the header names {len(columns)}")
        rows.append(row[: len(columns)] + [""] * (len(columns) - len(row)))
    return pd.DataFrame(rows, columns=columns)


def read_recbole(inter: Path) -> RawTables:
    """RecBole atomic files: `<name>.inter`, `<name>.item` and optionally `<name>.user`."""
    inter = Path(inter)
    item, user = inter.with_suffix(".item"), inter.with_suffix(".user")
    blob = _read_bytes(inter)
    if not blob.strip():
        raise UserError(f"{inter}: empty ratings file")
    head, _, body = blob.partition(b"\n")
    columns = _recbole_header(inter, _decode(inter, head, latin1_fallback=False))
    for col in ("user_id", "item_id"):
        if col not in columns:
            raise UserError(f"{inter}: missing column {col!r}")
    _decode(inter, body[: 1 << 16].rsplit(b"\n", 1)[0], latin1_fallback=False)
    names = {"user_id": "user_id", "item_id": "movie_id"}
    if "rating" in columns:
        names["rating"] = "rating"
    if "timestamp" in columns:
        names["timestamp"] = "timestamp"
    plain_header = "\t".join(columns).encode() + b"\n"
    ratings = _parse_ratings(inter, plain_header + body, "\t", header=True, names=names)

    lines = _decode(item, _read_bytes(item), latin1_fallback=False).splitlines()
    if not lines:
        raise UserError(f"{item}: empty item file")
    cols = _recbole_header(item, lines[0])
    table = _recbole_table(item, cols, lines[1:])
    if "item_id" not in table.columns:
        raise UserError(f"{item}: missing column 'item_id'")
    title_col = next((c for c in ("movie_title", "title") if c in table.columns), None)
    if title_col is None:
        raise UserError(f"{item}: missing column 'movie_title'")
    genre_col = next((c for c in ("class", "genre", "genres") if c in table.columns), None)
    titles = table[title_col].str.strip()
    if "release_year" in table.columns:
        year = table["release_year"].str.strip()
        has_year = year.str.fullmatch(r"\d{4}")
        titles = titles.where(~has_year, titles + " (" + year + ")")
    genres = [_split_genres(g, " ") for g in table[genre_col]] if genre_col else [[] for _ in range(len(table))]
    movies = _movies_frame(item, table["item_id"], titles.tolist(), genres)

    users = None
    if user.is_file():
        ulines = _decode(user, _read_bytes(user), latin1_fallback=False).splitlines()
        ucols = _recbole_header(user, ulines[0]) if ulines else []
        if "user_id" in ucols:
            users = _recbole_table(user, ucols, ulines[1:])
            users["user_id"] = _non_numeric(user, "user id", users["user_id"])
    files = [p for p in (inter, item, user) if p.is_file()]
    return _check(RawTables("recbole", ratings, movies, users, files))


def _check(raw: RawTables) -> RawTables:
    """Cross-file checks: every rated movie must be in the movie table."""
    known = raw.movies["movie_id"].to_numpy()
    rated = raw.ratings["movie_id"].to_numpy()
    missing = ~np.isin(rated, known)
    if missing.any():
        ratings_file, movies_file = raw.files[0], raw.files[1]
        example = int(rated[missing][0])
        raise UserError(
            f"{ratings_file}: {int(missing.sum())} ratings refer to movies absent from "
            f"{movies_file.name} (e.g. movie id {example})"
        )
    return raw
