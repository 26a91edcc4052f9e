"""The artifact layer: every cached stage is a folder sealed with a manifest, named by a stage key.

    key = stage_key("gnn", cfg.gnn, data=data_key)          # the fields that change the result
    with atomic_dir(folder) as tmp:                          # linklm.io: one rename, never half a folder
        save_file(weights, tmp / "model.safetensors")
        seal(tmp, ["model.safetensors"], meta={"key": key})  # sizes and SHA-256 of each file
    meta = unseal(folder)                                    # the meta back, or Damaged(reason)

This module is the only place where size and hash records are written and checked. A stage that
finds its folder `Damaged` warns in one line and rebuilds it. Every JSON file linklm reads back
(manifests, metrics, results, records of extracted archives) goes through `read_json`, which checks
it against a small shape (`{"size": int, "gnn?": dict}`, `{"*": dict}`, `[str]`) where it is read:
valid JSON of the wrong shape is damage like any other, never a `KeyError` three calls later.

`stage_key` names, per stage, exactly the config fields that change what the stage computes: where
it ran (`device`), how often it checkpointed, how large its inference batches were or whether it
showed progress bars do not, so changing them reuses the cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from linklm.errors import UserError
from linklm.io import file_crc32, file_sha256, stable_hash, write_json

MANIFEST = "manifest.json"
# Bump when what a manifest means changes: it is part of every stage key.
FORMAT = 2

# The config fields each stage's result depends on. Anything else (device, checkpoint_every,
# eval_batch_size, audit_shards, which models a run trains, progress output) is left out on purpose.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("val_ratio", "test_ratio", "disjoint_train_ratio", "neg_ratio", "seed", "cold_items", "negatives"),
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
        "max_epochs",
        "patience",
        "eval_steps",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_ratio",
        "neg_ratio",
        "item_kge_dropout",
        "user_features",
        "max_train_pairs",
        "evals_per_epoch",
        "selection_margin",
        "val_pairs",
        "seed",
        "ranking_users",  # the sampled ranking is part of a classifier's evaluation (metrics.json)
        "test_pairs",
    ),  # fmt: skip
}

# --- the shapes of the JSON files linklm reads back (`read_json`): what their readers index -------
NUMBER = (int, float)
# A manifest: its format, the stage's meta and one size/hash record per file.
MANIFEST_SHAPE = {"format": int, "meta": dict, "artifacts": {"*": {"size": int, "sha256": str}}}
# The meta of a GNN's manifest: its config and stage key (also in its weights' safetensors metadata).
GNN_META = {"gnn": dict, "key": str}
# A GNN's metrics.json (read by the run and, inside results.json, by the report).
GNN_METRICS = {"val_auc": NUMBER, "test_auc": NUMBER, "best_epoch": int, "train_seconds": NUMBER}
# A classifier's metrics.json (the same).
CLASSIFIER_METRICS = {
    "test_accuracy": NUMBER, "test_auc": NUMBER, "test_f1": NUMBER, "test_confusion_matrix": [[int]],
    "val_auc": NUMBER, "train_seconds": NUMBER, "examples_per_second": NUMBER,
    # "converged" or "budget" (val still improving at llm.max_epochs); absent in folders sealed before it
    "stopped?": str, "val_history?": [{"eval_auc": NUMBER, "step?": int, "examples?": NUMBER}],
}  # fmt: skip
# A run's results.json as the report reads it: every section optional, each one whole.
RESULTS_SHAPE = {
    "dataset?": {"name": str, "users": int, "movies": int, "ratings": int},
    "gnn?": GNN_METRICS,
    "models?": {"*": CLASSIFIER_METRICS},
    "baselines?": {"*": {"test_auc": NUMBER}},
    "margins?": {"comparisons?": {"*": {"model": str, "base": str, "auc_gain": NUMBER, "ci95": [NUMBER]}}},
    "environment?": dict,
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
    manifest = read_json(path, MANIFEST_SHAPE)
    if manifest["format"] != FORMAT:
        raise Damaged(f"{path} is not a linklm manifest of format {FORMAT}")
    check_files(folder, manifest["artifacts"])
    return manifest["meta"]


def check_files(folder: str | Path, records: dict[str, dict[str, Any]]) -> None:
    """Each file of `records` (`{name: {"size": n, "sha256": hex}}`, or `"crc32": int` where an
    archive recorded that) has its size and digest; `Damaged` names the first that does not."""
    folder = Path(folder)
    for name, expected in records.items():
        file = folder / name
        if not file.is_file():
            raise Damaged(f"{file} is missing")
        if file.stat().st_size != expected["size"]:
            raise Damaged(f"{file} has {file.stat().st_size} bytes, its record says {expected['size']}")
        digest = "sha256" if "sha256" in expected else "crc32"
        if (file_sha256(file) if digest == "sha256" else file_crc32(file)) != expected[digest]:
            raise Damaged(f"{file} does not match its recorded {'SHA-256' if digest == 'sha256' else 'CRC-32'}")


def read_json(path: str | Path, shape: Any, *, user: bool = False) -> Any:
    """The JSON value of `path`, checked against `shape`: a type (or tuple of types), `{key: shape}`
    for an object with at least those keys (`"key?"`: if present; `"*"`: every value), or `[shape]`
    for a list of them.

    Raises `Damaged` naming the file and the first mismatch, in one line; with `user=True` (a file
    the user handed over, which linklm cannot rebuild) a `UserError` instead.
    """
    path = Path(path)
    error = UserError if user else Damaged
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path} is not readable JSON ({type(exc).__name__})") from None
    if (problem := mismatch(value, shape)) is not None:
        raise error(f"{path} is not a linklm {path.name} ({problem})")
    return value


def mismatch(value: Any, shape: Any, where: str = "") -> str | None:
    """Where `value` departs from `shape` (see `read_json`), in a few words (`where`: the path to
    `value`, like `['models']['vanilla']`); None if it does not."""
    here = where or "the top level"
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{here} should be an object, not {_kind(value)}"
        checks = []
        for key, sub in shape.items():
            if key == "*":
                checks += [(v, sub, f"{where}[{k!r}]") for k, v in value.items()]
            elif key.endswith("?"):
                if key[:-1] in value:
                    checks.append((value[key[:-1]], sub, f"{where}[{key[:-1]!r}]"))
            elif key not in value:
                return f"{here} lacks {key!r}"
            else:
                checks.append((value[key], sub, f"{where}[{key!r}]"))
        return next((found for args in checks if (found := mismatch(*args))), None)
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{here} should be a list, not {_kind(value)}"
        return next((found for i, v in enumerate(value) if (found := mismatch(v, shape[0], f"{where}[{i}]"))), None)
    types = shape if isinstance(shape, tuple) else (shape,)
    # JSON's true is no size or count: bool passes only where it is asked for.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return f"{here} should be {' or '.join(t.__name__ for t in types)}, not {_kind(value)}"
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
