"""GNN training killed with SIGKILL resumes from its last checkpoint and ends where an
uninterrupted run with the same seed ends."""

import json
import os
import signal
import subprocess
import sys
import time

from synthetic import write_layout


def _cmd(folder, run):
    return [sys.executable, "-m", "linklm.cli", "gnn", "--run", run, "--epochs", "400", "--kge-dim", "8",
            f"data.path={folder}", "gnn.checkpoint_every=5"]  # fmt: skip


def test_gnn_training_resumes_after_sigkill(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=300, n_movies=200, n_ratings=12000).folder
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The reference trains into its own cache, so the killed run cannot simply load its result.
    ref = subprocess.run([*_cmd(folder, "ref"), "data.cache_dir=ref-cache"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=600)  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(_cmd(folder, "killed"), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    progress = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "data" / "gnn").glob("*.checkpoint.safetensors"))
        if found and _checkpoint_epoch(found[0]) >= 20:
            progress = found[0]
            break
        time.sleep(0.05)
    assert proc.poll() is None and progress is not None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    resumed = subprocess.run(_cmd(folder, "killed"), cwd=tmp_path, capture_output=True, text=True, env=env,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the GNN after epoch" in resumed.stdout
    a = json.loads((tmp_path / "runs" / "ref" / "results.json").read_text())["gnn"]
    b = json.loads((tmp_path / "runs" / "killed" / "results.json").read_text())["gnn"]
    assert b["resumed_from_epoch"] >= 20
    assert (a["val_auc"], a["test_auc"], a["best_epoch"]) == (b["val_auc"], b["test_auc"], b["best_epoch"])
    assert not list((tmp_path / "data" / "gnn").glob("*.checkpoint.*")), "the checkpoint is removed once done"


def _checkpoint_epoch(path) -> int:
    """The last epoch a GNN checkpoint holds, from the JSON in its safetensors metadata."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        progress = json.loads(fh.metadata()["linklm"])
    assert progress["config"]["epochs"] > 0  # the checkpoint carries its own config
    return progress["history"][-1]["epoch"]
