"""DDP: `linklm train` under torchrun with 2 CPU processes (gloo) on a tiny config."""

import json
import os
import subprocess
import sys
from pathlib import Path

from synthetic import write_layout


def test_two_ranks_train_disjoint_shards_and_write_once(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=40, n_ratings=800).folder
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "linklm.cli", "train", "--model", "vanilla",
           f"data.path={folder}", "llm.model=random:L2-H32", "llm.max_train_pairs=64", "llm.batch_size=16",
           "llm.max_epochs=2", "llm.audit_shards=true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("[vanilla] test accuracy") == 1, "only rank 0 reports"
    assert out.count("[data]") == 1

    model = tmp_path / "runs" / "default" / "models" / "vanilla"
    results = json.loads((tmp_path / "runs" / "default" / "results.json").read_text())
    assert list(results["models"]) == ["vanilla"]
    assert (model / "model" / "model.safetensors").is_file() and (model / "test_predictions.parquet").is_file()
    for epoch in (1, 2):
        shards = [{tuple(p) for p in json.loads((model / "shards" / f"rank{r}-epoch{epoch}.json").read_text())}
                  for r in (0, 1)]  # fmt: skip
        assert shards[0] and shards[1] and not (shards[0] & shards[1]), "each rank sees its own shard"
        assert len(shards[0] | shards[1]) == 64, "together they cover the epoch"
