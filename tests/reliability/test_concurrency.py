"""Several linklm processes on one fresh cache: every one succeeds, and the work is done once."""

import os
import stat
import subprocess
import sys

import pytest

from synthetic import write_layout


def _linklm(*args: str, cwd) -> subprocess.Popen:
    code = "import sys; from linklm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _all(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
        outs.append(out)
    return outs


@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_data_builds_once(tmp_path, n):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=40, n_ratings=900).folder
    outs = _all([_linklm("data", f"data.path={folder}", cwd=tmp_path) for _ in range(n)])
    assert sum("(built:" in out for out in outs) == 1, outs
    assert sum("(cache:" in out for out in outs) == n - 1
    tables = [p for p in (tmp_path / "data").iterdir() if p.is_dir()]
    assert len(tables) == 1 and not [p for p in (tmp_path / "data").iterdir() if p.name.endswith(".tmp")]
    assert len({tuple(out.splitlines()[1:-1]) for out in outs}) == 1, "every process reports the same split"


@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_gnn_trains_once(tmp_path, n):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=40, n_ratings=900).folder
    args = ["gnn", f"data.path={folder}", "gnn.epochs=40", "gnn.kge_dim=4", "progress=false"]
    outs = _all([_linklm(*args, f"name=r{i}", cwd=tmp_path) for i in range(n)])
    gnn_lines = [next(line for line in out.splitlines() if line.startswith("[gnn]")) for out in outs]
    assert sum("(cached)" not in line for line in gnn_lines) == 1, gnn_lines
    assert len({line.split(",")[1] for line in gnn_lines}) == 1, "the same test AUC everywhere"
    assert len([p for p in (tmp_path / "data" / "gnn").glob("gnn-d4-*") if p.is_dir()]) == 1


def test_caches_follow_the_umask(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    code = ("import os, sys; os.umask(0o022); from linklm.cli import main; "
            f"sys.exit(main(['data', 'data.path={folder}']))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cache = next(p for p in (tmp_path / "data").iterdir() if p.is_dir())
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    for file in cache.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    assert os.access(cache / "manifest.json", os.R_OK)
