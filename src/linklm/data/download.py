"""GroupLens downloads, checksum checks and safe archive extraction.

`fetch_grouplens("ml-32m", dest)` downloads `ml-32m.zip` (once), verifies its MD5 against the
published checksum and returns the path of the zip. `safe_extract(zip, folder)` refuses any member
that would land outside `folder`, absolute names, `..` components and symbolic links.

The base URL can point elsewhere (a mirror, or `file://` in the tests) via `LINKLM_GROUPLENS_URL`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from linklm.errors import UserError
from linklm.io import atomic_dir, atomic_path

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

# MD5 sums GroupLens publishes beside each archive (`<name>.zip.md5`). The archives whose content is
# updated over time (ml-latest-small) or that are newer than this table are checked against the
# `.md5` file fetched from the same place instead.
PUBLISHED_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-10m": "ce571fd55effeba0271552578f2648bd",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
GROUPLENS_DATASETS = ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")


def base_url() -> str:
    return os.environ.get("LINKLM_GROUPLENS_URL", GROUPLENS_URL).rstrip("/")


def _open(url: str, timeout: float = 30.0):
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http(s) and file:// only)


def _offline_hint(name: str, url: str, exc: Exception) -> UserError:
    reason = getattr(exc, "reason", exc)
    return UserError(
        f"could not download {name} from {url} ({reason}); download it elsewhere and pass "
        f"path=/path/to/{name}.zip (CLI: --path /path/to/{name}.zip)"
    )


def published_md5(name: str) -> str:
    if name in PUBLISHED_MD5:
        return PUBLISHED_MD5[name]
    url = f"{base_url()}/{name}.zip.md5"
    try:
        with _open(url) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _offline_hint(name, url, exc) from None
    token = text.split()[0] if text.split() else ""
    if len(token) != 32 or any(c not in "0123456789abcdef" for c in token.lower()):
        raise UserError(f"{url}: not an MD5 checksum file")
    return token.lower()


def fetch_grouplens(name: str, dest: str | Path) -> Path:
    """Download `<name>.zip` into `dest` unless a verified copy is already there."""
    if name not in GROUPLENS_DATASETS:
        known = ", ".join(GROUPLENS_DATASETS)
        raise UserError(f"unknown dataset {name!r}: pass one of {known}, or path= to a local zip/folder")
    dest = Path(dest)
    target = dest / f"{name}.zip"
    verified = dest / f"{name}.zip.verified"
    if target.exists() and verified.exists():
        return target
    expected = published_md5(name)
    url = f"{base_url()}/{name}.zip"
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with _open(url) as response, atomic_path(target) as tmp, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            out.flush()
            if digest.hexdigest() != expected:
                raise UserError(
                    f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, published {expected}); "
                    "the download was discarded"
                )
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise _offline_hint(name, url, exc) from None
    verified.write_text(expected + "\n")
    return target


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a zip into `target` atomically, refusing members that could escape it."""
    archive, target = Path(archive), Path(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member(archive, info)
            bad = zf.testzip()
            if bad is not None:
                raise UserError(f"{archive}: corrupt zip (member {bad} fails its CRC check)")
            with atomic_dir(target) as tmp:
                root = tmp.resolve()
                for info in members:
                    out = (tmp / info.filename).resolve()
                    if not out.is_relative_to(root):
                        raise UserError(f"{archive}: member {info.filename!r} escapes the target folder")
                    zf.extract(info, tmp)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive}: not a readable zip archive ({exc}); is it truncated?") from None
    except (EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise UserError(f"{archive}: cannot extract ({exc or type(exc).__name__}); is it truncated?") from None
    return target


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{archive}: refusing absolute member path {name!r}")
    if ".." in path.parts:
        raise UserError(f"{archive}: refusing member {name!r} with a '..' component")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UserError(f"{archive}: refusing symbolic link member {name!r}")
