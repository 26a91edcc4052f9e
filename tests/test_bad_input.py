"""Bad input ends with one line naming the file and the problem, exit code 2, nothing half-written."""

import subprocess
import sys
import zipfile
from pathlib import Path

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
    # Nothing half-extracted: no extracted file, no temporary folder from atomic_dir, no extraction record.
    # Empty folders (cache/raw) and the empty lock file of the extraction may stay.
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() or p.name.endswith(".tmp")]
    assert [p for p in leftovers if p.suffix != ".lock" or p.stat().st_size] == []


# --- the rest of the matrix: configs, models, ids, permissions, a full disk ------------------------


@pytest.mark.parametrize(
    "override,key",
    [("gnn.kge_dim=0", "gnn.kge_dim"), ("gnn.epochs=0", "gnn.epochs"), ("llm.models=[vanilla,bert9]", "llm.models"),
     ("data.neg_ratio=-0.5", "data.neg_ratio"), ("llm.batch_size=-4", "llm.batch_size"),
     ("gnn.device=tpu", "gnn.device"), ("data.cold_items=0.75", "data.cold_items"),
     ("data.negatives=hardest", "data.negatives"), ("llm.item_kge_dropout=1.0", "llm.item_kge_dropout")],
)  # fmt: skip
def test_bad_values_name_the_key(capsys, override, key):
    assert main(["run", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err


def test_unknown_model_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    code = main(["train", "--model", "vanilla", f"data.path={folder}", "llm.model=no-such-org/no-such-model"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no-such-org/no-such-model" in err


def test_unknown_ids_and_splits_in_the_api(tmp_path):
    from linklm import MovieLensManager, UserError
    from linklm.llm import VanillaClassifier

    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    ml = MovieLensManager(path=folder)
    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "clf", "random:L2-H32")
    with pytest.raises(UserError, match="unknown source_id 999999"):
        clf.node_indices([999999], [int(ml.target_df["target_id"].iloc[0])])
    with pytest.raises(UserError, match="split"):
        ml.message_passing_index("dev")


def _run(args, cwd, *, user=None, fsize=None):
    """The real console entry in a subprocess, optionally as another user or with a file-size limit."""
    import os
    import resource
    import signal

    def limits():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if user is not None:
            os.setgid(user)
            os.setuid(user)

    return subprocess.run([sys.executable, "-m", "linklm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, preexec_fn=limits)  # fmt: skip


def test_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=300, n_movies=200, n_ratings=20000).folder
    proc = _run(["data", "--path", str(folder), "data.cache_dir=cache"], tmp_path, fsize=64 * 1024)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "too large" in proc.stderr.lower() or "no space" in proc.stderr.lower()
    leftovers = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert not [p for p in leftovers if p.is_file() and p.suffix != ".lock"], leftovers  # (locks are empty)


DROP_PRIVILEGES = """
import os, sys
import linklm.cli, linklm.data.movielens, linklm.experiment.pipeline  # imported while still root
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)  # root reads and writes everything: become "nobody" to see permissions bite
sys.exit(linklm.cli.main(sys.argv[1:]))
"""


@pytest.fixture
def open_tmp():
    """A folder every user can reach (pytest's own tmp root is private to its owner)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="linklm-perm-"))
    base.chmod(0o777)
    yield base
    for p in [base, *base.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(base)


def test_unreadable_file_and_unwritable_folder(open_tmp):
    import os

    tmp_path = open_tmp
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    (folder / "movies.csv").chmod(0o000)

    def run(cache):
        args = [sys.executable, "-c", DROP_PRIVILEGES, "data", "--path", str(folder), f"data.cache_dir={cache}"]
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    proc = run(tmp_path / "cache")
    assert proc.returncode == 2, proc.stderr
    assert "movies.csv" in proc.stderr and "permission" in proc.stderr.lower()
    assert proc.stderr.strip().count("\n") == 0
    (folder / "movies.csv").chmod(0o666)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    proc = run(locked / "cache")
    assert proc.returncode == 2, proc.stderr
    assert "locked" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not os.listdir(locked)


@pytest.mark.parametrize("stage,override", [("GNN", "gnn.lr=1e30"), ("vanilla", "llm.lr=1e9")])
def test_divergence_is_one_line_naming_the_learning_rate(tmp_path, capsys, stage, override):
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    tiny = ["llm.model=random:L2-H32", "llm.batch_size=16", "llm.max_train_pairs=160", "gnn.epochs=5",
            "gnn.kge_dim=4", "llm.checkpoint_every=2", "progress=false", "data.disjoint_train_ratio=0.3"]  # fmt: skip
    model = "vanilla" if stage == "vanilla" else "prompt"
    assert main(["train", "--model", model, f"data.path={folder}", *tiny, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged" in err, err  # progress=false: no progress bars either
    assert override.split("=")[0] in err and "lower" in err
    # Nothing of the failed stage was kept as finished: no sealed GNN, no sealed classifier.
    assert not list((tmp_path / "data").glob("gnn/*/manifest.json")) or stage == "vanilla"
    assert not (tmp_path / "runs" / "default" / "models" / model / "manifest.json").exists()
