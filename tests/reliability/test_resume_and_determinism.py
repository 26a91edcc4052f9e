"""Resumable training (a real SIGKILL), and seeds that decide the numbers."""

import json
import os
import signal
import subprocess
import sys
import time

from linklm.cli import main

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.batch_size=16", "gnn.epochs=5", "gnn.kge_dim=4"]
SCORES = ("test_accuracy", "test_auc", "test_f1", "test_confusion_matrix", "val_auc")


def _models(run):
    return json.loads((run / "results.json").read_text())["models"]


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    base = ["train", "--model", "embedding_frozen", f"data.path={folder}", "llm.max_train_pairs=96", *TINY]
    assert main([*base, "--run", "a"]) == 0
    assert main([*base, "--run", "b"]) == 0
    assert main([*base, "--run", "c", "llm.seed=7", "gnn.seed=7"]) == 0
    a, b, c = (_models(tmp_path / "runs" / r)["embedding_frozen"] for r in "abc")
    assert {k: a[k] for k in SCORES} == {k: b[k] for k in SCORES}
    assert {k: a[k] for k in SCORES} != {k: c[k] for k in SCORES}


def _cmd(folder, run):
    return [sys.executable, "-m", "linklm.cli", "train", "--model", "vanilla", "--run", run, f"data.path={folder}",
            "llm.max_train_pairs=320", "llm.max_epochs=2", "llm.checkpoint_every=2", *TINY]  # fmt: skip


def test_llm_training_resumes_after_sigkill(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=40, n_ratings=900).folder
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(_cmd(folder, "ref"), cwd=tmp_path, capture_output=True, text=True, env=env,
                               timeout=600)  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-2000:]

    checkpoints = tmp_path / "runs" / "killed" / "models" / "vanilla" / "checkpoints"
    proc = subprocess.Popen(_cmd(folder, "killed"), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if any(int(p.name.split("-")[1]) >= 6 for p in done):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed; make the config longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "runs" / "killed" / "models" / "vanilla" / "metrics.json").exists()

    resumed = subprocess.run(_cmd(folder, "killed"), cwd=tmp_path, capture_output=True, text=True, env=env,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((tmp_path / "runs" / "killed" / "models" / "vanilla" / "metrics.json").read_text())
    assert metrics["resumed_from"] is not None and metrics["resumed_from"].startswith("checkpoint-")
    ref = json.loads((tmp_path / "runs" / "ref" / "models" / "vanilla" / "metrics.json").read_text())
    assert {k: metrics[k] for k in SCORES} == {k: ref[k] for k in SCORES}
    log = tmp_path / "runs" / "killed" / "models" / "vanilla" / "train_log.jsonl"
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == sorted(set(steps)), "each step logged once across the kill"


def test_damaged_resume_files_are_not_trusted(tmp_path):
    """A checkpoint marker, trainer state or best-so-far record of the wrong shape means: start afresh."""
    from linklm.llm.training import KeepBest, resumable

    ck = tmp_path / "checkpoints"
    (ck / "checkpoint-5").mkdir(parents=True)
    (ck / "checkpoint-x").mkdir()
    (ck / "linklm_key.json").write_text('{"key": "k"}')
    (ck / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    (ck / "checkpoint-x" / "trainer_state.json").write_text('{"global_step": 9}')
    assert resumable(ck, "k") == ck / "checkpoint-5"
    for bad in ("[]", '{"global_step": "5"}', "{"):
        (ck / "checkpoint-5" / "trainer_state.json").write_text(bad)
        assert resumable(ck, "k") is None, bad
    (ck / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    (ck / "linklm_key.json").write_text("[]")
    assert resumable(ck, "k") is None
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.json").write_text('{"eval_auc": []}')
    assert KeepBest(tmp_path / "best").best is None
    (tmp_path / "best" / "best.json").write_text('{"eval_auc": 0.7, "epoch": 1.0, "step": 8}')
    assert KeepBest(tmp_path / "best").best["step"] == 8
