"""Defaults, then YAML, then key=value: each layer overrides the one before."""

import pytest

from linklm import UserError
from linklm.config import load_config, parse_overrides


def test_layers_override_in_order(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: exp\ndata:\n  seed: 5\n  val_ratio: 0.2\n")
    cfg = load_config(cfg_file, ["data.seed=9"])
    assert cfg.name == "exp" and cfg.data.val_ratio == 0.2 and cfg.data.seed == 9
    assert cfg.data.test_ratio == 0.1  # default kept
    assert load_config().data.seed == 42


def test_override_types_are_coerced_and_checked():
    assert load_config(None, ["data.val_ratio=0"]).data.val_ratio == 0.0
    assert load_config(None, ["data.path=null"]).data.path is None
    with pytest.raises(UserError, match="data.seed"):
        load_config(None, ["data.seed=1.5"])
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["seed"])


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in root.glob("*.yaml"):
        load_config(path)
