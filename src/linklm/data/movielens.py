"""MovieLensManager: any MovieLens release (or RecBole atomic files) as the seed's split tables.

    from linklm import MovieLensManager
    ml = MovieLensManager()                      # embedded MovieLens-100K, offline
    ml = MovieLensManager("ml-32m")              # downloaded from GroupLens, checksum verified
    ml = MovieLensManager(path="~/ml-1m.zip")    # a local zip or folder in any GroupLens layout
    ml.llm_df, ml.source_df, ml.target_df, ml.train_data, ml.val_data, ml.test_data

Processed tables are cached under `<cache_dir>/<dataset>-<key>/`, where the key hashes the input
files' content, the split config and the seed; a second construction reads only Parquet.
"""

from __future__ import annotations

import importlib.metadata
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import ArrowException

from linklm.artifacts import Damaged, sealed, stage_key
from linklm.config import DataConfig, data_config
from linklm.data.download import GROUPLENS_DATASETS, RECORD, fetch_grouplens, safe_extract, verify_extracted
from linklm.data.graph import BipartiteGraphManager, load_tables
from linklm.data.readers import RawTables, is_input, read_folder
from linklm.data.tables import build_tables
from linklm.errors import UserError
from linklm.io import file_sha256, locked

EMBEDDED_DATASET = "ml-100k"
EMBEDDED_DIR = "recbole/dataset_example/ml-100k"


def embedded_ml100k() -> Path | None:
    """The MovieLens-100K atomic files inside the installed recbole wheel, found without importing it."""
    try:
        dist = importlib.metadata.distribution("recbole")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file(EMBEDDED_DIR)))
    return folder if (folder / "ml-100k.inter").is_file() else None


def resolve_source(cfg: DataConfig) -> Path:
    """The folder holding the raw files: the user's path, the embedded copy, or a download."""
    cache = Path(cfg.cache_dir)
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        if path.is_dir():
            return path
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        if not path.is_file():  # a FIFO or a device would block or never end, hashed or unzipped
            raise UserError(f"{path}: not a regular file or folder")
        if path.suffix.lower() != ".zip":
            raise UserError(f"{path}: expected a .zip archive or a folder")
        return _extracted(path, cache / "raw" / f"{path.stem}-{file_sha256(path)[:12]}")
    if cfg.dataset == EMBEDDED_DATASET and (embedded := embedded_ml100k()) is not None:
        return embedded
    if cfg.dataset not in GROUPLENS_DATASETS:
        known = ", ".join(GROUPLENS_DATASETS)
        raise UserError(f"unknown dataset {cfg.dataset!r}: pass one of {known}, or --path to a local zip/folder")
    archive = fetch_grouplens(cfg.dataset, cache / "raw")
    return _extracted(archive, cache / "raw" / cfg.dataset)


def _extracted(archive: Path, target: Path) -> Path:
    """`archive` extracted into `target` once. Extracted files that no longer have the sizes and
    CRC-32s the archive declared (a truncated ratings.csv) are extracted again, with one warning."""
    if _intact(target):
        return target
    with locked(target):  # one extractor at a time; who waited finds the files extracted
        if not _intact(target, quiet=True):
            safe_extract(archive, target)
    return target


def _intact(target: Path, quiet: bool = False) -> bool:
    if not (target / RECORD).is_file():  # never extracted (or by a linklm that kept no record)
        return False
    try:
        verify_extracted(target)
    except Damaged as exc:
        if not quiet:
            warnings.warn(f"{exc}; extracting {target.name} again", stacklevel=4)
        return False
    return True


def cached_tables(folder: Path, quiet: bool = False) -> dict[str, pd.DataFrame] | None:
    """The tables of a sealed cache folder; None if there is none, or (with one warning unless
    `quiet`) if it is damaged."""
    if not sealed(folder):
        return None
    try:
        return load_tables(folder)
    except (OSError, ValueError, ArrowException, Damaged) as exc:
        if not quiet:
            warnings.warn(f"{folder}: unreadable cache ({exc}); rebuilding it", stacklevel=4)
        return None


def fingerprint(files: list[Path]) -> list[dict[str, Any]]:
    return [{"name": f.name, "size": f.stat().st_size, "sha256": file_sha256(f)} for f in sorted(files)]


def input_files(folder: Path) -> list[Path]:
    """The files a reader will use, found without parsing them (for the cache key)."""
    files = [p for p in folder.rglob("*") if p.is_file() and is_input(p.name)]
    if not files:
        raise UserError(
            f"{folder}: no MovieLens files found (expected u.data, ratings.dat, ratings.csv or a RecBole .inter)"
        )
    return files


def tables_from_raw(raw: RawTables) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rename a reader's output to the generic source/target/edge tables."""
    users = raw.users.rename(columns={"user_id": "source_id"}) if raw.users is not None else None
    if users is None:
        users = pd.DataFrame({"source_id": raw.ratings["user_id"].unique()})
    movies = raw.movies.rename(columns={"movie_id": "target_id"})
    edges = raw.ratings.rename(columns={"user_id": "source_id", "movie_id": "target_id"})
    return users, movies, edges


class MovieLensManager(BipartiteGraphManager):
    """MovieLens as `source_df` (users), `target_df` (movies), `edge_df` (ratings), a fixed split
    and the seed's `llm_df`. Keyword arguments are `DataConfig` fields (`seed`, `val_ratio`, ...)."""

    def __init__(
        self,
        dataset: str = EMBEDDED_DATASET,
        path: str | Path | None = None,
        *,
        force_recompute: bool = False,
        config: DataConfig | None = None,
        **overrides: Any,
    ):
        if config is None:
            config = data_config(dataset=dataset, path=None if path is None else str(path), **overrides)
        start = time.perf_counter()
        source = resolve_source(config)
        files = input_files(source)
        prints = fingerprint(files)
        key = stage_key("data", config, files=prints)
        label = config.dataset if config.path is None else Path(config.path).stem
        folder = Path(config.cache_dir) / f"{label}-{key}"
        tables = None if force_recompute else cached_tables(folder)
        if tables is None:
            with locked(folder):  # one builder at a time; who waited finds the cache built
                tables = None if force_recompute else cached_tables(folder, quiet=True)
                if tables is None:
                    raw = read_folder(source)
                    super().__init__(build_tables(*tables_from_raw(raw), config), config)
                    self.save(folder, {"layout": raw.layout, "source": str(source), "files": prints, "key": key})
        self.from_cache = tables is not None
        if tables is not None:
            super().__init__(tables, config, folder)
        self.key = key
        self.seconds = time.perf_counter() - start
