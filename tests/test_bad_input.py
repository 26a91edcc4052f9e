"""Bad input ends with one line naming the file and the problem, exit code 2, nothing half-written."""

import subprocess
import sys
import zipfile

import pytest

from linklm.cli import main

from synthetic import write_layout, zip_folder


def _break(tmp_path, case):
    """Write a broken dataset for `case`; return the --path to pass and a word the error must name."""
    if case == "missing path":
        return tmp_path / "nope", "nope"
    if case == "not a zip":
        bad = tmp_path / "ratings.txt"
        bad.write_text("x")
        return bad, "ratings.txt"
    if case == "truncated zip":
        syn = write_layout(tmp_path / "ml-synth", "csv")
        archive = zip_folder(syn.folder, tmp_path / "ml-synth.zip")
        blob = archive.read_bytes()
        archive.write_bytes(blob[: len(blob) // 2])
        return archive, "ml-synth.zip"
    folder = tmp_path / "ml-synth"
    layout = {
        "missing file": "csv",
        "missing column": "csv",
        "non-numeric id": "dat",
        "empty ratings": "ml-100k",
        "absent movie": "csv",
        "bad encoding": "csv",
        "recbole missing column": "recbole",
    }[case]
    write_layout(folder, layout)
    if case == "missing file":
        (folder / "movies.csv").unlink()
        return folder, "movies.csv"
    if case == "missing column":
        text = (folder / "ratings.csv").read_text().replace("movieId", "film")
        (folder / "ratings.csv").write_text(text)
        return folder, "ratings.csv"
    if case == "non-numeric id":
        with open(folder / "ratings.dat", "a") as fh:
            fh.write("abc::1::5::0\n")
        return folder, "ratings.dat"
    if case == "empty ratings":
        (folder / "u.data").write_text("")
        return folder, "u.data"
    if case == "absent movie":
        with open(folder / "ratings.csv", "a") as fh:
            fh.write("7,123456789,4.0,900000000\n")
        return folder, "ratings.csv"
    if case == "bad encoding":
        text = (folder / "movies.csv").read_text(encoding="utf-8")
        (folder / "movies.csv").write_bytes(text.encode("latin-1"))
        return folder, "movies.csv"
    if case == "recbole missing column":
        inter = folder / "ml-synth.inter"
        inter.write_text(inter.read_text().replace("item_id:token", "thing:token"))
        return folder, "ml-synth.inter"
    raise AssertionError(case)


CASES = ["missing path", "not a zip", "truncated zip", "missing file", "missing column", "non-numeric id",
         "empty ratings", "absent movie", "bad encoding", "recbole missing column"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_data_is_one_clear_line(tmp_path, capsys, case):
    path, names = _break(tmp_path, case)
    code = main(["data", "--path", str(path), "data.cache_dir=cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("linklm: error: ") and names in err
    assert "Traceback" not in err
    cache = tmp_path / "cache"
    leftovers = [p for p in cache.rglob("*")] if cache.exists() else []
    assert not [p for p in leftovers if p.suffix == ".tmp" or p.name.endswith(".parquet")], leftovers


@pytest.mark.parametrize(
    "override,key",
    [("data.sed=3", "data.sed"), ("data.val_ratio=1.5", "data.val_ratio"), ("data.seed=abc", "data.seed"),
     ("data.neg_ratio=-1", "data.neg_ratio"), ("colour=red", "colour")],
)  # fmt: skip
def test_bad_config_names_the_key(capsys, override, key):
    assert main(["data", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: [1, 2\n")
    assert main(["data", "--config", str(cfg)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "linklm.cli", "data", "--path", str(tmp_path / "missing.zip")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.zip" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_zip_leaves_no_extraction(tmp_path):
    syn = write_layout(tmp_path / "ml-synth", "csv")
    archive = zip_folder(syn.folder, tmp_path / "ml-synth.zip")
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
    archive.write_bytes(archive.read_bytes()[:-40])
    assert main(["data", "--path", str(archive), "data.cache_dir=cache"]) == 2
    assert not list((tmp_path / "cache").rglob("*.csv")) if (tmp_path / "cache").exists() else True
