"""GroupLens downloads, checksum checks and safe archive extraction.

`fetch_grouplens("ml-32m", dest)` downloads `ml-32m.zip` (once), verifies its MD5 against the
published checksum and returns the path of the zip. `safe_extract(zip, folder)` treats the archive
as hostile: it refuses the whole archive if any member would land outside `folder` (absolute names,
`..` components, symbolic links), extracts only the files a reader opens (`readers.is_input`), caps
what they may expand to (`MAX_EXTRACTED_BYTES`, `MAX_RATIO`), refuses encrypted members, and turns a
corrupt member into one line naming it. Beside the files it writes the sizes and CRC-32s the archive
declared (`RECORD`); `verify_extracted` checks them before each use, so a truncated extracted file is
extracted again rather than read.

The base URL can point elsewhere (a mirror, or `file://` in the tests) via `LINKLM_GROUPLENS_URL`.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import stat
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from linklm.artifacts import check_files, read_json
from linklm.data.readers import is_input
from linklm.errors import UserError
from linklm.io import atomic_dir, atomic_path, write_json

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

# What the members linklm reads may expand to, checked on the sizes the archive declares before
# anything is written (zipfile never returns more than a member declares, and the copy counts too).
# ml-32m, the largest release, expands to 0.9 GB of such files: 4 GiB leaves room for larger
# releases, while a zip bomb cannot fill the disk.
MAX_EXTRACTED_BYTES = 4 << 30
# MovieLens tables deflate about 4:1; 150 MB of zeros deflates about 1000:1. A member claiming more
# than 100:1 is no ratings table. Members under RATIO_EXEMPT_BYTES are exempt: a small repetitive
# file may compress that well and cannot hurt.
MAX_RATIO = 100
RATIO_EXEMPT_BYTES = 1 << 20
RECORD = ".linklm-extracted.json"  # the sizes and CRC-32s of what was extracted, beside it
RECORD_SHAPE = {"archive": str, "files": {"*": {"size": int, "crc32": int}}}


def base_url() -> str:
    """The GroupLens base URL: `LINKLM_GROUPLENS_URL` if set (an http(s):// or file:// URL)."""
    url = os.environ.get("LINKLM_GROUPLENS_URL", GROUPLENS_URL).rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = urllib.parse.SplitResult("", "", "", "", "")
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise UserError(f"LINKLM_GROUPLENS_URL must be an http://, https:// or file:// URL, got {url!r}")
    return url


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
    if _still_verified(target, verified):
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
    verified.write_text(f"{expected} {target.stat().st_size}\n")
    return target


def _still_verified(target: Path, verified: Path) -> bool:
    """Whether the download was verified and still has the size it had then (a record without a
    size, from an older linklm, is trusted); one that changed is downloaded again."""
    if not (target.is_file() and verified.is_file()):
        return False
    recorded = verified.read_text(errors="replace").split()[1:2]
    if recorded and recorded != [str(target.stat().st_size)]:
        warnings.warn(f"{target} changed size since it was verified; downloading it again", stacklevel=3)
        return False
    return True


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract the members linklm reads from a zip into `target`, atomically (see the module docstring)."""
    archive, target = Path(archive), Path(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _members(archive, zf.infolist())
            with atomic_dir(target) as tmp:
                for info in members:
                    _extract(archive, zf, info, tmp)
                files = {info.filename: {"size": info.file_size, "crc32": info.CRC} for info in members}
                write_json(tmp / RECORD, {"archive": archive.name, "files": files})
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive}: not a readable zip archive ({exc}); is it truncated?") from None
    except (EOFError, zipfile.LargeZipFile) as exc:
        raise UserError(f"{archive}: cannot extract ({exc or type(exc).__name__}); is it truncated?") from None
    return target


def verify_extracted(target: str | Path) -> None:
    """The files `safe_extract` wrote into `target` still have the sizes and CRC-32s the archive
    declared; `artifacts.Damaged` names the first that does not (or a missing or damaged record)."""
    check_files(target, read_json(Path(target) / RECORD, RECORD_SHAPE)["files"])


def _members(archive: Path, infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The members to extract: every member checked for escapes, the ones linklm reads for size."""
    for info in infos:
        _check_member(archive, info)
    wanted = [i for i in infos if not i.is_dir() and is_input(PurePosixPath(i.filename.replace("\\", "/")).name)]
    if not wanted:
        raise UserError(f"{archive}: no MovieLens files inside (expected u.data, ratings.dat, ratings.csv or a .inter)")
    total = 0
    for info in wanted:
        name = info.filename
        if info.flag_bits & 0x1:
            raise UserError(f"{archive}: member {name!r} is encrypted; pass an archive without a password")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_EXEMPT_BYTES and ratio > MAX_RATIO:
            raise UserError(f"{archive}: member {name!r} claims a compression ratio of {ratio:.0f}:1 "
                            f"(at most {MAX_RATIO}:1 is accepted); is it a zip bomb?")  # fmt: skip
        total += info.file_size
        if total > MAX_EXTRACTED_BYTES:
            raise UserError(f"{archive}: member {name!r} takes what would be extracted past "
                            f"{MAX_EXTRACTED_BYTES >> 30} GiB, more than any MovieLens release")  # fmt: skip
    return wanted


def _extract(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path) -> None:
    """Copy one member into `folder`, counting what it expands to; a corrupt one is one line."""
    name = info.filename
    out = (folder / name).resolve()
    if not out.is_relative_to(folder.resolve()):
        raise UserError(f"{archive}: member {name!r} escapes the target folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with zf.open(info) as src, open(out, "wb") as dst:
            while block := src.read(1 << 20):
                written += len(block)
                if written > info.file_size:
                    raise UserError(f"{archive}: member {name!r} expands past the {info.file_size} bytes it declares")
                dst.write(block)
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{archive}: member {name!r} cannot be extracted ({reason}); is the archive damaged?") from None


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
