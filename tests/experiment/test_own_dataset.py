"""`linklm data --interactions ... --items ...`, then `linklm run --config` on the same keys: the whole
pipeline on a dataset that is not MovieLens (examples/bookclub)."""

import json
from pathlib import Path

import pandas as pd
import yaml

from linklm.cli import main

BOOKCLUB = Path(__file__).resolve().parents[2] / "examples" / "bookclub"
# One classifier per prompt format (text; KGEs as text; KGE slots), the part a dataset changes: the
# five kinds together run on MovieLens in test_run_and_sweep.py.
KINDS = ["vanilla", "prompt", "embedding_frozen"]
TINY = {"gnn": {"epochs": 5, "kge_dim": 4},
        "llm": {"model": "random:L2-H32", "max_train_pairs": 32, "batch_size": 16, "val_pairs": 200,
                "evals_per_epoch": 1, "models": KINDS}}  # fmt: skip


def test_data_then_run_on_the_bookclub_example(tmp_path, capsys):
    files = {"interactions": str(BOOKCLUB / "interactions.csv"), "items": str(BOOKCLUB / "items.csv")}
    assert main(["data", "--interactions", files["interactions"], "--items", files["items"], "--user-column",
                 "reader", "--item-column", "book", "--text-columns", "title,author,genres"]) == 0  # fmt: skip
    assert "dataset bookclub (built" in capsys.readouterr().out

    config = tmp_path / "bookclub.yaml"
    data = {**files, "user_column": "reader", "item_column": "book", "text_columns": ["title", "author", "genres"]}
    config.write_text(yaml.safe_dump({"name": "bookclub", "progress": False, "data": data, **TINY}))
    assert main(["run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[data] bookclub:" in out and "(cache," in out  # the flags and the config keys are the same dataset

    results = json.loads((tmp_path / "runs" / "bookclub" / "results.json").read_text())
    reads = pd.read_csv(BOOKCLUB / "interactions.csv")
    assert results["dataset"]["users"] == reads["reader"].nunique() and results["dataset"]["name"] == "bookclub"
    assert 0.0 <= results["gnn"]["test_auc"] <= 1.0 and "val_auc" in results["gnn"]
    assert set(results["models"]) == set(KINDS)
    for kind, metrics in results["models"].items():
        assert 0.0 <= metrics["test_auc"] <= 1.0 and 0.0 <= metrics["val_auc"] <= 1.0, kind
    assert (tmp_path / "runs" / "bookclub" / "report.html").is_file()


def test_a_missing_column_in_the_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    data = {"interactions": str(BOOKCLUB / "interactions.csv"), "items": str(BOOKCLUB / "items.csv"),
            "user_column": "reader", "item_column": "book", "text_columns": ["title", "blurb"]}  # fmt: skip
    config.write_text(yaml.safe_dump({"data": data, **TINY}))
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "items.csv" in err and "'blurb'" in err, err
    assert not (tmp_path / "data").exists()  # nothing cached
