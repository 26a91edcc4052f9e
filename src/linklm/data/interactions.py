"""Any user–item dataset from two files: the interactions (one row per link) and the items (their text).

    linklm data --interactions examples/bookclub/interactions.csv --items examples/bookclub/items.csv \
                --user-column reader --item-column book --text-columns title,author,genres
    manager = open_dataset(data_config(interactions="reads.csv", items="books.csv"))   # Python

Each file is CSV (.csv), TSV (.tsv, .tab) or Parquet (.parquet, .pq), told by its extension. The
item id column has the same name in both files (`data.item_column`). Every interaction row is one
link; repeats of a pair are one link, and other columns (a rating, a timestamp) are not read: no
stage uses them. After the item id the prompt shows the item's `data.text_columns`, in order, joined
by [SEP] (default: every column of the items file but the id). A column named `genres` (values like
"fantasy|adventure") also gives the GNN its one-hot item features; without one, items have none.
Ids stay the dataset's own: integers when every id of a column is one as written, else text.

The tables are cached under `<cache_dir>/<folder of the interactions file>-<key>/`, the key hashing
both files' size and SHA-256, the column choice, the split config and the seed, so a changed file
rebuilds. Every problem is one `UserError` naming the file and the column, raised before anything
is written.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linklm.artifacts import stage_key
from linklm.config import DataConfig
from linklm.data.graph import BipartiteGraphManager
from linklm.data.movielens import MovieLensManager, cached_tables, fingerprint
from linklm.data.tables import TEXT_PREFIX, build_tables
from linklm.errors import UserError
from linklm.io import locked

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET = (".parquet", ".pq")
GENRES = "genres"  # an item column of this name also gives the one-hot item features ("a|b")
INTEGER_ID = r"^(0|-?[1-9][0-9]{0,17})$"  # written as an int64 would print it: "007" stays text


def dataset_name(cfg: DataConfig) -> str:
    """The dataset's name in summaries and results: the MovieLens name, the --path's name, or the
    folder holding the interactions file."""
    if cfg.interactions is None:
        return cfg.dataset if cfg.path is None else Path(cfg.path).name
    folder = Path(cfg.interactions).expanduser().resolve().parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", folder) or "tables"


def open_dataset(cfg: DataConfig, force: bool = False) -> BipartiteGraphManager:
    """The manager `cfg` names: the interactions and items files when set, else MovieLens."""
    if cfg.interactions is not None:
        return InteractionsManager(cfg, force_recompute=force)
    return MovieLensManager(config=cfg, force_recompute=force)


# --- files --------------------------------------------------------------------------------------


def table_files(cfg: DataConfig) -> tuple[Path, Path]:
    """The interactions and items files, checked to be readable table files."""
    paths = Path(str(cfg.interactions)).expanduser(), Path(str(cfg.items)).expanduser()
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: file not found")
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a file")
        if path.suffix.lower() not in (*DELIMITERS, *PARQUET):
            raise UserError(f"{path}: unknown file type {path.suffix!r} (expected .csv, .tsv, .tab or .parquet)")
    return paths


def _failed(path: Path, exc: Exception) -> UserError:
    if isinstance(exc, PermissionError):
        return UserError(f"{path}: permission denied")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Empty CSV file" in text:
        return UserError(f"{path}: empty file")
    kind = "Parquet" if path.suffix.lower() in PARQUET else path.suffix.lstrip(".").upper()
    return UserError(f"{path}: not a readable {kind} file ({text})")


def _parse_options(path: Path) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=DELIMITERS[path.suffix.lower()], newlines_in_values=True)


def _columns(path: Path) -> list[str]:
    """The column names of a table file: its header, or its Parquet schema."""
    try:
        if path.suffix.lower() in PARQUET:
            return list(pq.read_schema(path).names)
        with pacsv.open_csv(path, parse_options=_parse_options(path)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise _failed(path, exc) from None


def _read(path: Path, columns: list[str]) -> pa.Table:
    """`columns` of a table file; CSV cells come as the text written, never as guessed numbers."""
    try:
        if path.suffix.lower() in PARQUET:
            return pq.read_table(path, columns=columns)
        convert = pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.string()),
                                       strings_can_be_null=False)  # fmt: skip
        return pacsv.read_csv(path, parse_options=_parse_options(path), convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        raise _failed(path, exc) from None


def _require(path: Path, present: list[str], column: str, where: str) -> None:
    if column not in present:
        shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
        raise UserError(f"{path}: no column {column!r} ({where}; the file has {shown})")


# --- columns ------------------------------------------------------------------------------------


def _id_text(path: Path, table: pa.Table, column: str) -> pa.Array:
    """An id column as text, every row set."""
    values = table.column(column).combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if not pa.types.is_integer(values.type):
            raise UserError(f"{path}: column {column!r} holds {values.type} values; ids must be integers or text")
        values = values.cast(pa.string())
    missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
    if pc.any(missing).as_py():
        row = int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0]) + 1
        header = "" if path.suffix.lower() in PARQUET else " (not counting the header)"
        raise UserError(f"{path}: column {column!r} has no value in row {row}{header}")
    return values


def _as_ids(*columns: pa.Array) -> list[np.ndarray]:
    """int64 arrays when every id of `columns` is an integer as written, else object arrays of text:
    one rule for the item ids of both files, so they compare equal."""
    if all(pc.all(pc.match_substring_regex(c, INTEGER_ID)).as_py() for c in columns):
        return [c.cast(pa.int64()).to_numpy() for c in columns]
    return [c.to_numpy(zero_copy_only=False).astype(object) for c in columns]


def _text(values: pa.ChunkedArray) -> np.ndarray:
    """Cells as prompt text: CSV cells as written, Parquet lists joined by '|', a missing value ''."""
    cells = values.to_pylist()
    return np.array(
        ["" if v is None else "|".join(map(str, v)) if isinstance(v, list) else str(v) for v in cells], dtype=object
    )


def _show(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


# --- the tables ---------------------------------------------------------------------------------


def read_tables(cfg: DataConfig, files: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(source_df, target_df, edge_df) as `build_tables` takes them; target_df holds the prompt's
    text in `prompt_feature_<column>` columns (`tables.item_text`), `title` is the first of them."""
    inter_path, items_path = files
    user, item = cfg.user_column, cfg.item_column
    for column, where in ((user, "data.user_column, --user-column"), (item, "data.item_column, --item-column")):
        _require(inter_path, _columns(inter_path), column, where)
    present = _columns(items_path)
    _require(items_path, present, item, "data.item_column, --item-column")
    text_columns = list(cfg.text_columns) or [c for c in present if c != item]
    if not text_columns:
        raise UserError(f"{items_path}: no column but {item!r}: the prompt needs item text (a title, a name, ...)")
    for column in text_columns:
        _require(items_path, present, column, "data.text_columns, --text-columns")
    inter = _read(inter_path, [user, item])
    if inter.num_rows == 0:
        raise UserError(f"{inter_path}: no interactions")
    extra = [GENRES] if GENRES in present and GENRES not in (item, *text_columns) else []
    items = _read(items_path, [item, *text_columns, *extra])
    if items.num_rows == 0:
        raise UserError(f"{items_path}: no items")

    (user_ids,) = _as_ids(_id_text(inter_path, inter, user))
    linked, item_ids = _as_ids(_id_text(inter_path, inter, item), _id_text(items_path, items, item))
    _check_items(files, item, linked, item_ids)
    text = {column: _text(items.column(column)) for column in dict.fromkeys([*text_columns, *extra])}
    genres = text.get(GENRES)
    target_df = pd.DataFrame({"target_id": item_ids, "title": text[text_columns[0]]})
    target_df["genres"] = [[] for _ in range(len(target_df))] if genres is None else [
        [g.strip() for g in cell.split("|") if g.strip()] for cell in genres]  # fmt: skip
    for column in text_columns:
        target_df[f"{TEXT_PREFIX}{column}"] = text[column]
    source_df = pd.DataFrame({"source_id": pd.unique(user_ids)})
    return source_df, target_df, pd.DataFrame({"source_id": user_ids, "target_id": linked})


def _check_items(files: tuple[Path, Path], item: str, linked: np.ndarray, item_ids: np.ndarray) -> None:
    """Every item id of the items file once; every linked item in it."""
    inter_path, items_path = files
    repeated = pd.Index(item_ids).duplicated()
    if repeated.any():
        raise UserError(f"{items_path}: column {item!r}: item {_show(item_ids[repeated][0])} appears twice")
    absent = ~np.isin(linked, item_ids)
    if absent.any():
        raise UserError(
            f"{inter_path}: column {item!r}: {int(absent.sum()):,} of its rows name items absent from "
            f"{items_path.name} (e.g. {_show(linked[absent][0])})"
        )


def table_key(cfg: DataConfig, files: tuple[Path, Path]) -> str:
    """The data stage key of an interactions dataset: the split fields (as for MovieLens), both
    files' fingerprints and the column choice."""
    prints = {role: fingerprint([path])[0] for role, path in zip(("interactions", "items"), files, strict=True)}
    columns = {"user": cfg.user_column, "item": cfg.item_column, "text": list(cfg.text_columns)}
    return stage_key("data", cfg, files=prints, columns=columns)


class InteractionsManager(BipartiteGraphManager):
    """An interactions file and an items file as the split tables, cached like MovieLens's."""

    def __init__(self, config: DataConfig, *, force_recompute: bool = False):
        start = time.perf_counter()
        files = table_files(config)
        key = table_key(config, files)
        folder = Path(config.cache_dir) / f"{dataset_name(config)}-{key}"
        tables = None if force_recompute else cached_tables(folder)
        if tables is None:
            raw = read_tables(config, files)  # every mistake in the files is found before a write
            with locked(folder):  # one builder at a time; who waited finds the cache built
                tables = None if force_recompute else cached_tables(folder, quiet=True)
                if tables is None:
                    super().__init__(build_tables(*raw, config), config)
                    files_meta = {"interactions": str(files[0]), "items": str(files[1])}
                    self.save(folder, {"layout": "tables", "files": files_meta, "key": key})
        self.from_cache = tables is not None
        if tables is not None:
            super().__init__(tables, config, folder)
        self.key = key
        self.seconds = time.perf_counter() - start
