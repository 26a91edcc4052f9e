"""The artifact layer: every cached stage is a folder sealed with a manifest, named by a stage key.

    key = stage_key("gnn", cfg.gnn, data=data_key)          # the fields that change the result
    with atomic_dir(folder) as tmp:                          # linklm.io: one rename, never half a folder
        save_file(weights, tmp / "model.safetensors")
        seal(tmp, ["model.safetensors"], meta={"key": key})  # sizes and SHA-256 of each file
    meta = unseal(folder)                                    # the meta back, or Damaged(reason)

This module is the only place where size and hash records are written and checked. A stage that
finds its folder `Damaged` warns in one line and rebuilds it.

`stage_key` names, per stage, exactly the config fields that change what the stage computes: where
it ran (`device`), how often it checkpointed, how large its inference batches were or whether it
showed progress bars do not, so changing them reuses the cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from linklm.io import file_sha256, stable_hash, write_json

MANIFEST = "manifest.json"
# Bump when what a manifest means changes: it is part of every stage key.
FORMAT = 2

# The config fields each stage's result depends on. Anything else (device, checkpoint_every,
# eval_batch_size, audit_shards, which models a run trains, progress output) is left out on purpose.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("val_ratio", "test_ratio", "disjoint_train_ratio", "neg_ratio", "seed"),
    "gnn": (
        "model",
        "kge_dim",
        "num_layers",
        "hidden_channels",
        "supervision_share",
        "epochs",
        "lr",
        "weight_decay",
        "dropout",
        "neg_ratio",
        "seed",
    ),
    "classifier": (
        "model",
        "num_layers",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_ratio",
        "neg_ratio",
        "max_train_pairs",
        "evals_per_epoch",
        "val_pairs",
        "seed",
        "ranking_users",  # the sampled ranking is part of a classifier's evaluation (metrics.json)
        "test_pairs",
    ),  # fmt: skip
}


class Damaged(Exception):
    """A sealed folder whose manifest or files do not check out; str() says what, in one line."""


def stage_key(stage: str, section: Any, **upstream: Any) -> str:
    """A short hash of the fields of `section` (a config dataclass or dict) that change `stage`'s
    result, plus `upstream` (the keys of the stages it reads, or extra fields such as a model kind)."""
    values = asdict(section) if is_dataclass(section) else dict(section)
    picked = {name: values[name] for name in STAGE_FIELDS[stage]}
    return stable_hash({"format": FORMAT, "stage": stage, "config": picked, "upstream": upstream})


def record(folder: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each file of `folder` named in `names` (paths relative to it)."""
    folder = Path(folder)
    return {name: {"size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)} for name in names}


def seal(folder: str | Path, names: list[str], meta: dict[str, Any] | None = None) -> None:
    """Write `folder`/manifest.json: `meta` and the size and hash of every file in `names`."""
    write_json(Path(folder) / MANIFEST, {"format": FORMAT, "meta": meta or {}, "artifacts": record(folder, names)})


def sealed(folder: str | Path) -> bool:
    """Whether `folder` has a manifest at all (it may still be damaged: `unseal` checks)."""
    return (Path(folder) / MANIFEST).is_file()


def unseal(folder: str | Path) -> dict[str, Any]:
    """The meta of a sealed folder whose every file matches its record; `Damaged` otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Damaged(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Damaged(f"{path} is not readable JSON ({type(exc).__name__})") from None
    if not _manifest_shaped(manifest):
        raise Damaged(f"{path} is not a linklm manifest of format {FORMAT}")
    for name, expected in manifest["artifacts"].items():
        file = folder / name
        if not file.is_file():
            raise Damaged(f"{file} is missing")
        if file.stat().st_size != expected["size"]:
            raise Damaged(f"{file} has {file.stat().st_size} bytes, {expected['size']} were written")
        if file_sha256(file) != expected["sha256"]:
            raise Damaged(f"{file} does not match its recorded SHA-256")
    return manifest["meta"]


def _manifest_shaped(manifest: Any) -> bool:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return False
    if not isinstance(manifest.get("meta"), dict) or not isinstance(manifest.get("artifacts"), dict):
        return False
    return all(
        isinstance(r, dict) and isinstance(r.get("size"), int) and isinstance(r.get("sha256"), str)
        for r in manifest["artifacts"].values()
    )
