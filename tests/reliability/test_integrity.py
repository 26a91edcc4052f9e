"""A truncated or altered artifact in a run folder is detected, reported in one warning, rebuilt."""

import json
import os

import pytest

from linklm.cli import main

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.batch_size=16", "llm.max_train_pairs=48", "gnn.epochs=3", "gnn.kge_dim=4"]


@pytest.mark.parametrize("victim", ["model/model.safetensors", "test_predictions.parquet", "metrics.json"])
def test_damaged_model_artifact_is_rebuilt_with_one_warning(tmp_path, victim):
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    args = ["train", "--model", "vanilla", f"data.path={folder}", *TINY]
    assert main(args) == 0
    root = tmp_path / "runs" / "default" / "models" / "vanilla"
    before = json.loads((root / "metrics.json").read_text())
    target = root / victim
    os.truncate(target, target.stat().st_size // 2)
    with pytest.warns(UserWarning) as caught:
        assert main(args) == 0
    ours = [w for w in caught if "retraining vanilla" in str(w.message)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    after = json.loads((root / "metrics.json").read_text())
    assert after["test_accuracy"] == before["test_accuracy"], "rebuilt, with the same seed, to the same result"
    assert main(args) == 0  # and now it is a clean cache again


def test_discard_removes_a_file_and_the_writes_a_kill_cut_short(tmp_path):
    from linklm.io import atomic_path, discard

    target = tmp_path / "gnn-d8[x].checkpoint.safetensors"  # glob's special characters, taken literally
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    cut_short = tmp_path / f".{target.name}.k1ll3d.tmp"  # what atomic_path leaves when SIGKILL hits mid-write
    cut_short.write_text("half")
    others = [tmp_path / ".gnn-d8x.checkpoint.safetensors.abc.tmp", tmp_path / "other.safetensors"]
    for path in others:
        path.write_text("keep")
    discard(target)
    assert not target.exists() and not cut_short.exists()
    assert all(path.exists() for path in others)
    discard(target)  # nothing left to remove: no error
