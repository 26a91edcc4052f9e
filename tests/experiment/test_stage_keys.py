"""Stage keys: a field that cannot change a stage's result reuses its cache; one that can recomputes it."""

import dataclasses
import json
from pathlib import Path

import pytest

from linklm.artifacts import STAGE_FIELDS, stage_key
from linklm.cli import main
from linklm.config import Config

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.max_train_pairs=32", "llm.batch_size=16", "gnn.epochs=3", "gnn.kge_dim=4"]


@pytest.mark.parametrize("stage,section", [("data", "data"), ("gnn", "gnn"), ("classifier", "llm")])
def test_exactly_the_named_fields_change_a_key(stage, section):
    cfg = getattr(Config(), section)
    base = stage_key(stage, cfg)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        change = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 0.5 + 0.01,
                  str: lambda v: v + "x", list: lambda v: v[:1],
                  dict: lambda v: {**v, "vanilla": 1.0}}[type(value)]  # fmt: skip
        other = stage_key(stage, dataclasses.replace(cfg, **{f.name: change(value)}))
        assert (other != base) == (f.name in STAGE_FIELDS[stage]), f"{section}.{f.name}"
    assert stage_key(stage, cfg, upstream="a") != stage_key(stage, cfg, upstream="b")


def _prompt_run(capsys, folder, *extra):
    assert main(["train", "--model", "prompt", f"data.path={folder}", *TINY, *extra]) == 0
    out = capsys.readouterr().out
    return {
        "data": "(cache," in out.split("[data]")[1].splitlines()[0],
        "gnn": "(cached)" in out.split("[gnn]")[1].splitlines()[0],
        "prompt": "[prompt] cached" in out,
    }


def test_run_reuses_or_recomputes_each_stage(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=40, n_movies=30, n_ratings=500).folder
    assert _prompt_run(capsys, folder) == {"data": False, "gnn": False, "prompt": False}
    # Inference batch size, device and progress output change no result: everything is reused.
    same = _prompt_run(capsys, folder, "llm.eval_batch_size=7", "gnn.device=cpu", "llm.device=cpu", "progress=false")
    assert same == {"data": True, "gnn": True, "prompt": True}
    # Each of these changes its own stage and every stage after it, and nothing before it.
    # A kind trains at its own learning rate (llm.lr_by_model), else at llm.lr: what counts is the
    # rate it trains at. The same rate reuses, another kind's is no change, a new one retrains.
    assert _prompt_run(capsys, folder, "llm.lr_by_model.prompt=2e-3") == {"data": True, "gnn": True, "prompt": False}
    same = _prompt_run(capsys, folder, "llm.lr=5e-5", "llm.lr_by_model.prompt=2e-3", "llm.lr_by_model.vanilla=7e-4")
    assert same == {"data": True, "gnn": True, "prompt": True}
    assert json.loads(Path("runs/default/models/prompt/metrics.json").read_text())["lr"] == 2e-3
    # {} clears the mapping: every kind at llm.lr; 2e-3 for prompt is then the same rate again
    assert _prompt_run(capsys, folder, "llm.lr_by_model={}", "llm.lr=2e-3") == {
        "data": True,
        "gnn": True,
        "prompt": True,
    }
    assert _prompt_run(capsys, folder, "llm.lr_by_model={}") == {"data": True, "gnn": True, "prompt": False}
    assert _prompt_run(capsys, folder, "gnn.kge_dim=6") == {"data": True, "gnn": False, "prompt": False}
    assert _prompt_run(capsys, folder, "data.seed=7") == {"data": False, "gnn": False, "prompt": False}
    # Data and GNN caches are keyed by content and keep every configuration; a run folder holds one
    # classifier per kind, the last one trained.
    assert _prompt_run(capsys, folder) == {"data": True, "gnn": True, "prompt": False}
    assert _prompt_run(capsys, folder, "progress=false") == {"data": True, "gnn": True, "prompt": True}
