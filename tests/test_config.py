"""Defaults, then YAML, then key=value: each layer overrides the one before."""

from pathlib import Path

import pytest

from linklm import UserError
from linklm.config import LLM_KINDS, LR_BY_MODEL, LLMConfig, load_config, parse_overrides


def test_layers_override_in_order(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: exp\ndata:\n  seed: 5\n  val_ratio: 0.2\n")
    cfg = load_config(cfg_file, ["data.seed=9"])
    assert cfg.name == "exp" and cfg.data.val_ratio == 0.2 and cfg.data.seed == 9
    assert cfg.data.test_ratio == 0.1  # default kept
    assert load_config().data.seed == 687406  # the record split (docs/protocol.md)


def test_override_types_are_coerced_and_checked():
    assert load_config(None, ["data.disjoint_train_ratio=0"]).data.disjoint_train_ratio == 0.0  # int -> float
    assert load_config(None, ["data.path=null"]).data.path is None
    with pytest.raises(UserError, match="data.seed"):
        load_config(None, ["data.seed=1.5"])
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["seed"])


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.glob("*.yaml"))
    assert {"default.yaml", "ml-32m-gpu.yaml"} <= {path.name for path in paths}
    names = []
    for path in paths:
        cfg = load_config(path)
        names.append(cfg.name)
        # The first line is a comment with the command that runs this very file.
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#") and ("linklm run" in first or "make run" in first), path.name
        assert f"configs/{path.name}" in first, path.name
    assert len(set(names)) == len(names), "two configs would write to the same runs/<name>/"

    default = load_config(root / "default.yaml")
    # what the grid chose stands in both places: `linklm sweep` without --config reads the dataclass
    assert default.llm.lr_by_model == load_config().llm.lr_by_model and set(default.llm.lr_by_model) == set(LLM_KINDS)
    assert default.data.seed == load_config().data.seed
    assert default.name == "default" and default.data.dataset == "ml-100k"
    gpu = load_config(root / "ml-32m-gpu.yaml")
    assert gpu.name == "ml-32m" and gpu.data.dataset == "ml-32m"


def test_floats_in_e_notation_are_floats_and_non_finite_ones_are_refused():
    assert load_config(None, ["gnn.lr=1e-3"]).gnn.lr == 0.001  # YAML 1.1 reads this as a string
    assert load_config(None, ["llm.lr=3E-4"]).llm.lr == 0.0003
    for bad in ("gnn.lr=.nan", "data.neg_ratio=.inf", "llm.lr=inf", "gnn.lr=abc"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            load_config(None, [bad])


def test_a_learning_rate_per_model_kind_merges_and_is_checked(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("llm:\n  lr: 2.0e-4\n  head_lr: 5.0e-3\n  lr_by_model: {prompt: 1.0e-3, kge_mlp: 3e-3}\n")
    llm = load_config(cfg_file, ["llm.lr_by_model.vanilla=3e-4"]).llm  # one entry more, the others kept
    assert llm.lr_by_model == {**LR_BY_MODEL, "prompt": 1e-3, "kge_mlp": 3e-3, "vanilla": 3e-4}
    assert [llm.lr_of(k) for k in ("vanilla", "prompt", "fused", "kge_mlp")] == [3e-4, 1e-3, LR_BY_MODEL["fused"], 3e-3]
    # A BERT kind trains at its own llm.lr; kge_mlp, which has no pretrained weights, at its head_lr.
    assert (llm.for_model("prompt").lr, llm.for_model("prompt").head_lr) == (1e-3, 5e-3)
    assert (llm.for_model("kge_mlp").lr, llm.for_model("kge_mlp").head_lr) == (2e-4, 3e-3)
    assert llm.lr == 2e-4 and llm.head_lr == 5e-3  # the section itself is not changed
    bare = LLMConfig(lr=2e-4, head_lr=5e-3, lr_by_model={})  # a kind not named trains at llm.lr (kge_mlp: head_lr)
    assert (bare.lr_of("prompt"), bare.lr_of("kge_mlp"), bare.for_model("fused").lr) == (2e-4, 5e-3, 2e-4)
    # A layer that sets llm.lr alone means that rate for every BERT kind (kge_mlp keeps its own).
    flat = load_config(cfg_file, ["llm.lr=5e-5"]).llm
    assert flat.lr_by_model == {"kge_mlp": 3e-3} and flat.lr_of("vanilla") == flat.lr_of("prompt") == 5e-5
    assert (
        load_config(None, ["llm.lr=5e-5", "llm.lr_by_model.prompt=1e-3"]).llm.lr_of("vanilla") == LR_BY_MODEL["vanilla"]
    )
    bad = {"llm.lr_by_model.bert=1e-3": "unknown model kind 'bert'", "llm.lr_by_model.vanilla=0": "> 0",
           "llm.lr_by_model.vanilla=abc": "lr_by_model.vanilla must be a float",
           "llm.lr_by_model=3": "mapping"}  # fmt: skip
    for override, message in bad.items():
        with pytest.raises(UserError, match=message):
            load_config(None, [override])
