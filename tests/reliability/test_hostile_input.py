"""The bad-input matrix, grown from issue 13's hostile probes: archives, config values, degenerate
splits, odd bytes in data files and metadata of the wrong shape.

Every case in `CASES` runs the real CLI entry and must end with exit code 2 and one line on stderr
that names the file or key, no traceback, and nothing half-written: no temporary file, no cache
folder without its manifest or extraction record, no run folder. The cases after it are inputs that
must give the correct result instead (a BOM, damaged caches rebuilt with one warning).
"""

import functools
import json
import os
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from linklm.artifacts import MANIFEST, read_json, seal
from linklm.cli import main
from linklm.data import download
from linklm.data.download import RECORD

from synthetic import write_layout, zip_folder

TINY = ["gnn.epochs=3", "gnn.kge_dim=4", "progress=false"]


# --- archives ---------------------------------------------------------------------------------


def _archive(tmp_path: Path, method: int = zipfile.ZIP_DEFLATED, extra: dict[str, bytes] | None = None) -> Path:
    """A GroupLens-shaped zip of the synthetic csv layout, plus `extra` members."""
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    archive = tmp_path / "ml-synth.zip"
    with zipfile.ZipFile(archive, "w", method) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"ml-synth/{path.name}")
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return archive


def _headers(blob: bytes):
    """(offset of each local header, offset of each central-directory entry)."""
    local, central, at = [], [], 0
    while (at := blob.find(b"PK\x03\x04", at)) != -1:
        local.append(at)
        at += 4
    at = 0
    while (at := blob.find(b"PK\x01\x02", at)) != -1:
        central.append(at)
        at += 4
    return local, central


def _patched(archive: Path, *, flag: int = 0, method: int | None = None) -> Path:
    """Set a general-purpose flag bit (1: encrypted) or the compression method of every member."""
    blob = bytearray(archive.read_bytes())
    local, central = _headers(bytes(blob))
    for flag_at in [o + 6 for o in local] + [o + 8 for o in central]:
        blob[flag_at] |= flag
        if method is not None:
            blob[flag_at + 2 : flag_at + 4] = struct.pack("<H", method)
    archive.write_bytes(bytes(blob))
    return archive


def _member_data_offset(archive: Path, name: str) -> int:
    blob = archive.read_bytes()
    with zipfile.ZipFile(archive) as zf:
        at = zf.getinfo(name).header_offset
    name_len, extra_len = struct.unpack("<HH", blob[at + 26 : at + 30])
    return at + 30 + name_len + extra_len


def _flip(archive: Path, at: int, count: int) -> Path:
    blob = bytearray(archive.read_bytes())
    for i in range(at, at + count):
        blob[i] ^= 0x5A
    archive.write_bytes(bytes(blob))
    return archive


def _link_member(tmp_path: Path) -> Path:
    archive = _archive(tmp_path)
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("ml-synth/u.data")
        info.external_attr = (0o120777) << 16  # a symbolic link to /etc/passwd
        zf.writestr(info, "/etc/passwd")
    return archive


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "x.zip")
    return tmp_path / "x.zip"


def _data(path) -> list[str]:
    return ["data", "--path", str(path), "data.cache_dir=cache"]


ARCHIVES = {
    "corrupt deflate stream": lambda t: (
        _data(_flip(a := _archive(t), _member_data_offset(a, "ml-synth/ratings.csv") + 20, 40)), "ratings.csv"),
    "encrypted members": lambda t: (_data(_patched(_archive(t), flag=0x1)), "encrypted"),
    "zip bomb as ratings.csv": lambda t: (
        _data(_archive(t, extra={"bomb/ratings.csv": b"userId,movieId\n" + bytes(2 << 20)})), "compression ratio"),
    "bad CRC in a stored member": lambda t: (
        _data(_flip(a := _archive(t, zipfile.ZIP_STORED), _member_data_offset(a, "ml-synth/movies.csv") + 30, 1)),
        "CRC"),
    "unsupported compression method": lambda t: (_data(_patched(_archive(t), method=98)), "cannot be extracted"),
    "member with a .. component": lambda t: (_data(_archive(t, extra={"ml-synth/../../evil": b"x"})), "'..'"),
    "absolute member": lambda t: (_data(_archive(t, extra={"/tmp/evil": b"x"})), "absolute"),
    "symbolic-link member": lambda t: (_data(_link_member(t)), "symbolic link"),
    "zip without MovieLens files": lambda t: (_data(_only_readme(t)), "no MovieLens files"),
    "empty file named .zip": lambda t: (_data(_touch(t / "empty.zip")), "not a readable zip"),
    "FIFO named .zip": lambda t: (_data(_fifo(t)), "not a regular file"),
    "a device as --path": lambda t: (_data("/dev/null"), "not a regular file"),
    "empty folder named .zip": lambda t: (_data(_mkdir(t / "folder.zip")), "no MovieLens files"),
}  # fmt: skip


def _only_readme(tmp_path: Path) -> Path:
    archive = tmp_path / "readme.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-x/README.txt", "nothing to read here")
    return archive


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# --- data files -------------------------------------------------------------------------------


def _layout(tmp_path: Path, layout: str, name: str, edit) -> tuple[list[str], str]:
    folder = write_layout(tmp_path / "ml-synth", layout).folder
    path = folder / name
    path.write_bytes(edit(path.read_bytes()))
    return _data(folder), name


def _second_line(blob: bytes, new: bytes) -> bytes:
    lines = blob.split(b"\n")
    lines[1] = new
    return b"\n".join(lines)


READERS = {
    "timestamp 1e400": lambda t: _layout(t, "csv", "ratings.csv", lambda b: _second_line(b, b"7,1,4.0,1e400")),
    "rating inf": lambda t: _layout(t, "csv", "ratings.csv", lambda b: _second_line(b, b"7,1,inf,900000000")),
    "ratings.csv in UTF-16": lambda t: _layout(t, "csv", "ratings.csv", lambda b: b.decode().encode("utf-16")),
    "header only": lambda t: _layout(t, "csv", "ratings.csv", lambda b: b.split(b"\n")[0] + b"\n"),
    "movie id 1e400 in u.item": lambda t: _layout(t, "ml-100k", "u.item", lambda b: b"1e400" + b[b.index(b"|"):]),
    "NUL bytes in movies.dat": lambda t: _layout(t, "dat", "movies.dat", lambda b: b"\x00" * 64 + b),
    "RecBole .item row longer than its header": lambda t: _layout(
        t, "recbole", "ml-synth.item", lambda b: b.rstrip(b"\n") + b"\textra\tfields\n"),
    "RecBole header naming a column twice": lambda t: _layout(
        t, "recbole", "ml-synth.inter", lambda b: b.replace(b"rating:float", b"user_id:token", 1)),
}  # fmt: skip


# --- config values and splits -----------------------------------------------------------------


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    return path


def _synth(tmp_path: Path) -> str:
    return f"data.path={write_layout(tmp_path / 'ml-synth', 'csv').folder}"


def _model_folder(tmp_path: Path, files: tuple[str, ...]) -> str:
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    return str(folder)


CONFIG = {
    "negative data.seed": lambda t: (["data", "data.seed=-1"], "data.seed"),
    "negative gnn.seed": lambda t: (["gnn", "gnn.seed=-5"], "gnn.seed"),
    "llm.seed past 2**32": lambda t: (["data", "llm.seed=4294967296"], "llm.seed"),
    "NUL byte in the run name": lambda t: (["data", "--config", str(_yaml(t, 'name: "a\\0b"\n'))], "name"),
    "NUL byte in data.path": lambda t: (["data", "--config", str(_yaml(t, 'data:\n  path: "x\\0y"\n'))], "data.path"),
    "gnn.device=cpux": lambda t: (["gnn", "gnn.device=cpux"], "gnn.device"),
    "llm.device=cuda:x": lambda t: (["train", "--model", "vanilla", "llm.device=cuda:x"], "llm.device"),
    "absurd --kge-dim": lambda t: (["gnn", "--kge-dim", str(10**9)], "gnn.kge_dim"),
    "absurd gnn.hidden_channels": lambda t: (["gnn", "gnn.hidden_channels=100000"], "gnn.hidden_channels"),
    "gnn.lr=.nan": lambda t: (["gnn", "gnn.lr=.nan"], "gnn.lr"),
    "data.neg_ratio=.inf": lambda t: (["data", "data.neg_ratio=.inf"], "data.neg_ratio"),
    "data.val_ratio=0": lambda t: (["data", "data.val_ratio=0"], "data.val_ratio"),
    "data.test_ratio=0": lambda t: (["data", "data.test_ratio=0"], "data.test_ratio"),
    "override with an empty key part": lambda t: (["data", "data..seed=1"], "data..seed"),
    "model folder without config.json": lambda t: (
        ["train", "--model", "vanilla", _synth(t), f"llm.model={_model_folder(t, ())}"], "config.json"),
    "model folder without tokenizer": lambda t: (
        ["run", _synth(t), f"llm.model={_model_folder(t, ('config.json',))}"], "tokenizer.json"),
    "model path that is no folder": lambda t: (["train", "--model", "vanilla", "llm.model=./no-such-model"],
                                               "no-such-model"),
    "val without negatives": lambda t: (["data", _synth(t), "data.cache_dir=cache", "data.neg_ratio=0.001"],
                                        "data.neg_ratio"),
    "too few ratings for a val split": lambda t: (
        ["data", f"data.path={write_layout(t / 'ml-tiny', 'csv', n_users=3, n_movies=3, n_ratings=5).folder}",
         "data.cache_dir=cache", "data.val_ratio=0.05", "data.test_ratio=0.05"], "data.val_ratio"),
}  # fmt: skip


# --- environment and metadata handed over by the user ------------------------------------------

URLS = {"a URL without a scheme": "not a url", "an ftp URL": "ftp://example.org/ml", "http without a host": "http://"}


def _run_folder(tmp_path: Path, results: str, config: str | None = None) -> Path:
    run = tmp_path / "elsewhere" / "r1"
    run.mkdir(parents=True)
    (run / "results.json").write_text(results)
    if config is not None:
        (run / "config.json").write_text(config)
    return run


def _url_case(url: str, tmp_path: Path):
    return ["data", "--dataset", "ml-1m", "data.cache_dir=cache"], "LINKLM_GROUPLENS_URL", {"LINKLM_GROUPLENS_URL": url}


def _report_case(results: str, tmp_path: Path):
    return ["report", "--run", str(_run_folder(tmp_path, results))], "results.json"


GOOD_METRICS = {"test_accuracy": 0.5, "test_auc": 0.5, "test_f1": 0.5, "test_confusion_matrix": [[1, 1], [1, 1]],
                "val_auc": 0.5, "train_seconds": 1.0, "examples_per_second": 1.0}  # fmt: skip
METADATA = {
    "results.json is a list": "[]",
    "results.json truncated": json.dumps({"models": {"vanilla": GOOD_METRICS}})[:40],
    "results.json models is a list": '{"models": []}',
    "results.json model record lacks keys": '{"models": {"vanilla": {"test_auc": 0.5}}}',
    "results.json gnn AUC is a string": '{"gnn": {"val_auc": 0.5, "test_auc": "high", "best_epoch": 1, '
                                        '"train_seconds": 1}}',
    "results.json confusion matrix of strings": json.dumps(
        {"models": {"vanilla": {**GOOD_METRICS, "test_confusion_matrix": [["a"]]}}}),
}  # fmt: skip

CASES = {
    **{f"archive: {k}": v for k, v in ARCHIVES.items()},
    **{f"reader: {k}": v for k, v in READERS.items()},
    **{f"config: {k}": v for k, v in CONFIG.items()},
    **{f"LINKLM_GROUPLENS_URL: {k}": functools.partial(_url_case, url) for k, url in URLS.items()},
    **{f"report: {k}": functools.partial(_report_case, text) for k, text in METADATA.items()},
    "explain: config.json is a list": lambda t: (
        ["explain", "--run", str(_run_folder(t, "{}", config="[]"))], "config.json"),
}  # fmt: skip


def _half_written(root: Path) -> list[Path]:
    """Temporary files, and cache folders without the manifest or record that says they are whole."""
    found = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    cache = root / "cache"
    if cache.is_dir():
        found += [
            p for p in cache.iterdir() if p.is_dir() and p.name not in ("raw", "gnn") and not (p / MANIFEST).is_file()
        ]
        found += [p for p in cache.glob("raw/*") if p.is_dir() and not (p / RECORD).is_file()]
        found += [p for p in cache.glob("gnn/*") if p.is_dir() and not (p / MANIFEST).is_file()]
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, case):
    argv, names, *env = CASES[case](tmp_path)  # (a third item: environment variables to set)
    for key, value in (env[0] if env else {}).items():
        monkeypatch.setenv(key, value)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("linklm: error: ") and names in err, err
    assert "Traceback" not in err
    assert _half_written(tmp_path) == []
    assert not (tmp_path / "runs").exists(), "a run that failed on its input writes no run folder"


# --- inputs that must give the correct result ------------------------------------------------


def test_a_byte_order_mark_is_read_past(tmp_path):
    from linklm import MovieLensManager

    syn = write_layout(tmp_path / "ml-synth", "csv")
    for name in ("ratings.csv", "movies.csv"):
        path = syn.folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves "CSV UTF-8"
    summary = MovieLensManager(path=syn.folder, cache_dir="cache").summary()
    assert (summary["users"], summary["movies"], summary["ratings"]) == (syn.users, syn.movies, syn.ratings)


def test_only_the_files_linklm_reads_are_extracted(tmp_path):
    zeros = bytes(150 << 20)  # 150 MB of zeros: a 150 KB member, never written out
    archive = _archive(tmp_path, extra={"ml-synth/genome-scores.csv": zeros, "ml-synth/tags.csv": b"a,b\n"})
    assert archive.stat().st_size < 1 << 20
    assert main(_data(archive)) == 0
    extracted = sorted(p.name for p in (tmp_path / "cache" / "raw").glob("*/**/*") if p.is_file())
    assert extracted == [RECORD, "movies.csv", "ratings.csv"]


def test_the_size_cap_names_the_member(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, "MAX_EXTRACTED_BYTES", 2000)  # the synthetic files are ~10 KB
    assert main(_data(_archive(tmp_path))) == 2
    err = capsys.readouterr().err.strip()
    assert "ml-synth/" in err and "past" in err and len(err.splitlines()) == 1
    assert _half_written(tmp_path) == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage", ["truncated ratings.csv", "flipped byte", "record is a list", "record deleted"])
def test_damaged_extracted_files_are_extracted_again(tmp_path, damage):
    from linklm import MovieLensManager

    archive = zip_folder(write_layout(tmp_path / "ml-synth", "csv").folder, tmp_path / "ml-synth.zip")
    first = MovieLensManager(path=archive, cache_dir="cache", force_recompute=True)
    (raw,) = (tmp_path / "cache" / "raw").glob("ml-synth-*/ml-synth/ratings.csv")
    size = raw.stat().st_size
    record = raw.parents[1] / RECORD
    if damage == "truncated ratings.csv":
        os.truncate(raw, size // 3)
    elif damage == "flipped byte":
        _flip(raw, size // 2, 1)
    elif damage == "record is a list":
        record.write_text("[]")
    else:
        record.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = MovieLensManager(path=archive, cache_dir="cache", force_recompute=True)
    ours = [str(w.message) for w in caught if "extracting" in str(w.message)]
    assert len(ours) == (0 if damage == "record deleted" else 1), ours  # no record: never extracted, no warning
    assert raw.stat().st_size == size and again.edge_df.equals(first.edge_df)
    assert read_json(record, download.RECORD_SHAPE)["files"]["ml-synth/ratings.csv"]["size"] == size


def test_a_download_that_changed_size_is_fetched_again(tmp_path, monkeypatch):
    import hashlib

    site = tmp_path / "site"
    site.mkdir()
    archive = zip_folder(write_layout(tmp_path / "src" / "ml-32m", "csv").folder, site / "ml-32m.zip")
    (site / "ml-32m.zip.md5").write_text(hashlib.md5(archive.read_bytes()).hexdigest() + "  ml-32m.zip\n")
    monkeypatch.setenv("LINKLM_GROUPLENS_URL", site.as_uri())
    first = download.fetch_grouplens("ml-32m", tmp_path / "dl")
    os.truncate(first, first.stat().st_size // 2)
    with pytest.warns(UserWarning, match="changed size"):
        again = download.fetch_grouplens("ml-32m", tmp_path / "dl")
    assert again.read_bytes() == archive.read_bytes()


def _reseal(folder: Path, name: str, text: str) -> None:
    """Replace one sealed file and seal the folder again: the manifest agrees, the content is wrong."""
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / name).write_text(text)
    seal(folder, list(manifest["artifacts"]), manifest["meta"])


@pytest.mark.parametrize("metrics,resealed", [("[]", True), ("{}", True), ('{"val_auc": "high"}', True),
                                              ('{"val_auc": 0.5', False)])  # fmt: skip
def test_gnn_metrics_of_the_wrong_shape_are_retrained(tmp_path, metrics, resealed):
    args = ["gnn", _synth(tmp_path), *TINY]
    assert main(args) == 0
    (folder,) = [p for p in (tmp_path / "data" / "gnn").glob("gnn-d4-*") if p.is_dir()]
    before = json.loads((folder / "metrics.json").read_text())
    if resealed:
        _reseal(folder, "metrics.json", metrics)
    else:  # the manifest's size and hash records cover metrics.json too
        (folder / "metrics.json").write_text(metrics)
    with pytest.warns(UserWarning, match="metrics.json") as caught:
        assert main(args) == 0
    assert len([w for w in caught if "retrained" in str(w.message)]) == 1
    after = json.loads((folder / "metrics.json").read_text())
    assert after["test_auc"] == before["test_auc"]


@pytest.mark.parametrize("meta", [{}, {"gnn": [], "key": "x"}, "another key"])
def test_a_gnn_manifest_whose_meta_is_wrong_is_retrained(tmp_path, meta):
    args = ["gnn", _synth(tmp_path), *TINY]
    assert main(args) == 0
    (folder,) = [p for p in (tmp_path / "data" / "gnn").glob("gnn-d4-*") if p.is_dir()]
    manifest = json.loads((folder / MANIFEST).read_text())
    meta = {**manifest["meta"], "key": "0" * 12} if meta == "another key" else meta
    seal(folder, list(manifest["artifacts"]), meta)
    with pytest.warns(UserWarning, match="unreadable GNN cache") as caught:
        assert main(args) == 0
    assert len([w for w in caught if "retrained" in str(w.message)]) == 1
    assert json.loads((folder / MANIFEST).read_text())["meta"] == manifest["meta"]


def test_classifier_metrics_of_the_wrong_shape_are_retrained(tmp_path):
    args = ["train", "--model", "vanilla", _synth(tmp_path), "llm.model=random:L2-H32", "llm.batch_size=16",
            "llm.max_train_pairs=48", *TINY]  # fmt: skip
    assert main(args) == 0
    root = tmp_path / "runs" / "default" / "models" / "vanilla"
    before = json.loads((root / "metrics.json").read_text())
    _reseal(root, "metrics.json", json.dumps({k: v for k, v in before.items() if k != "test_auc"}))
    with pytest.warns(UserWarning, match="retraining vanilla") as caught:
        assert main(args) == 0
    assert len([w for w in caught if "test_auc" in str(w.message)]) == 1
    assert json.loads((root / "metrics.json").read_text())["test_auc"] == before["test_auc"]


def test_a_damaged_results_json_is_started_afresh(tmp_path):
    args = ["gnn", _synth(tmp_path), *TINY]
    assert main(args) == 0
    results = tmp_path / "runs" / "default" / "results.json"
    results.write_text('{"models": {"vanilla"')  # truncated
    with pytest.warns(UserWarning, match="results.json") as caught:
        assert main(args) == 0
    assert len([w for w in caught if "afresh" in str(w.message)]) == 1
    assert {"dataset", "gnn"} <= set(json.loads(results.read_text()))
