"""Atomic file and folder writes, and content hashes (integrity records live in `linklm.artifacts`).

Every artifact is written to a temporary name beside its target and renamed into place, so a
killed run leaves either the old artifact or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from linklm.errors import UserError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `target`."""
    target = Path(target)
    _make_parent(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600: a shared cache must follow the umask
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def discard(target: str | Path) -> None:
    """Remove `target` and the temporary files that `atomic_path` writes beside it: a process killed
    mid-write (SIGKILL runs no cleanup) leaves one behind. Only for a target no other process is
    writing (the caller holds its lock)."""
    target = Path(target)
    target.unlink(missing_ok=True)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    _make_parent(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def locked(target: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `target` (a file `<target>.lock` beside it) across processes: the
    builder of a cache holds it, and whoever waited re-checks the cache before building again."""
    from filelock import FileLock

    target = Path(target)
    _make_parent(target)
    with FileLock(f"{target}.lock", mode=0o666 & ~_umask()):
        yield


def _umask() -> int:
    try:  # Linux says it without changing it
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)  # elsewhere reading the umask means setting it: put it straight back
        os.umask(mask)
        return mask


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target.parent}: cannot create folder ({exc.strerror})") from None


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_crc32(path: str | Path, chunk: int = 1 << 22) -> int:
    """The CRC-32 zip archives record per member (zlib's, as an unsigned int)."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short hash of a JSON-able object, stable across runs and machines."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
