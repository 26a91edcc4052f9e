"""The stages of a run: data, GNN, classifiers; each writes its part of `<run>/results.json`.

    linklm run   --config configs/default.yaml     # every stage
    linklm train --model vanilla                   # data, GNN (cached), one classifier

Each stage ends with one summary line. Stages whose artifacts exist are reused (the data and the
GNN through their content-keyed caches, a classifier through `<run>/models/<kind>/metrics.json`);
`--force` redoes them.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from linklm.config import LLM_KINDS, Config
from linklm.errors import UserError
from linklm.io import artifact_record, damaged, stable_hash, write_json


def distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun / accelerate launch, joins the process group they set up."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


def is_main() -> bool:
    return distributed()[0] == 0


def main_first(stage):
    """Run `stage` on rank 0 first (it builds the caches), then on the other ranks (which load them)."""
    import torch

    rank, world = distributed()
    if world > 1 and rank != 0:
        torch.distributed.barrier()
    result = stage()
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    return result


def say(line: str) -> None:
    if is_main():
        print(line, flush=True)


def environment() -> dict[str, Any]:
    import pandas
    import torch
    import torch_geometric
    import transformers

    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "transformers": transformers.__version__,
        "pandas": pandas.__version__,
        "device": device,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }


def update_results(cfg: Config, section: str, values: Any) -> dict[str, Any] | None:
    """Merge one stage's results into <run>/results.json (written atomically, by rank 0 only)."""
    if not is_main():
        return None
    path = cfg.run_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if isinstance(values, dict) and isinstance(results.get(section), dict) and section == "models":
        results[section].update(values)
    else:
        results[section] = values
    results["environment"] = environment()
    write_json(path, results)
    return results


def prepare_data(cfg: Config, force: bool = False):
    from linklm.data import MovieLensManager

    manager = MovieLensManager(config=cfg.data, force_recompute=force)
    s = manager.summary()
    name = cfg.data.dataset if cfg.data.path is None else Path(cfg.data.path).name
    say(
        f"[data] {name}: {s['users']:,} users, {s['movies']:,} movies, {s['ratings']:,} ratings; "
        f"train/val/test supervision {s['train']['supervision_pos']:,}/{s['val']['supervision_pos']:,}/"
        f"{s['test']['supervision_pos']:,} (+ as many val/test negatives) "
        f"({'cache' if manager.from_cache else 'built'}, {manager.seconds:.1f} s)"
    )
    update_results(cfg, "dataset", {"name": name, **s})
    return manager


def train_gnn(cfg: Config, manager, force: bool = False):
    from linklm.gnn import GraphRepresentationGenerator

    gen = GraphRepresentationGenerator(
        manager.data, manager.train_data, manager.val_data, manager.test_data,
        config=cfg.gnn, cache_dir=Path(cfg.data.cache_dir) / "gnn", force_recompute=force,
    )  # fmt: skip
    cached = gen.trained
    if not cached:
        gen.train_model()
    m = gen.metrics
    say(
        f"[gnn] d={cfg.gnn.kge_dim}: val AUC {m['val_auc']:.4f} (epoch {m['best_epoch']}), "
        f"test AUC {m['test_auc']:.4f}, {m['train_seconds']:.1f} s training" + (" (cached)" if cached else "")
    )
    update_results(cfg, "gnn", {**m, "kge_dim": cfg.gnn.kge_dim, "folder": str(gen.folder)})
    if is_main():
        gnn_predictions(gen, manager, cfg.run_dir / "gnn_test_predictions.parquet")
    return gen


def gnn_predictions(gen, manager, path: Path) -> None:
    """The GNN's own test scores (sigmoid of the dot product of the test tables), for the report."""
    import numpy as np
    import pandas as pd
    import torch

    from linklm.io import write_parquet

    test = manager.llm_df["split"] == "test"
    idx = manager.llm_index[test.to_numpy()]
    src, dst = idx["source_idx"].to_numpy(copy=True), idx["target_idx"].to_numpy(copy=True)
    user, movie = gen.get_embedding(src, dst, split="test")
    scores = torch.sigmoid((user * movie).sum(-1)).numpy()
    labels = manager.llm_df.loc[test, "labels"].to_numpy()
    write_parquet(path, pd.DataFrame({"source_idx": src, "target_idx": dst, "label": labels,
                                      "score": scores.astype(np.float64)}))  # fmt: skip


def make_classifier(kind: str, cfg: Config, manager, gen, root: Path):
    from linklm.llm import EmbeddingClassifier, PromptClassifier, VanillaClassifier

    args = (manager.llm_df, manager.source_df, manager.target_df, root)
    if kind == "vanilla":
        return VanillaClassifier(*args, config=cfg.llm)
    if kind == "prompt":
        return PromptClassifier(*args, kge=gen, config=cfg.llm)
    if kind in ("embedding_frozen", "embedding_e2e"):
        return EmbeddingClassifier(*args, kge=gen, config=cfg.llm, end_to_end=kind == "embedding_e2e")
    raise UserError(f"unknown model kind {kind!r} (known: {', '.join(LLM_KINDS)})")


def train_classifier(kind: str, cfg: Config, manager, gen, force: bool = False) -> dict[str, Any]:
    """Train one classifier (val picks the epoch), then evaluate test once; cached per run."""
    root = cfg.run_dir / "models" / kind
    done = root / "metrics.json"
    # Everything that changes this model's result; a finished stage is reused only if it matches.
    key = stable_hash({"kind": kind, "data": asdict(cfg.data), "llm": asdict(cfg.llm),
                       "gnn": asdict(cfg.gnn) if kind != "vanilla" else None})  # fmt: skip
    if done.is_file() and not force:
        try:
            metrics = json.loads(done.read_text())
            problem = damaged(root, metrics["artifacts"]) if metrics.get("stage_key") == key else "stale"
        except (ValueError, KeyError, TypeError):
            metrics, problem = None, f"{done} is not readable"
        if problem is None:
            say(f"[{kind}] cached: test accuracy {metrics['test_accuracy']:.4f}, AUC {metrics['test_auc']:.4f}")
            return metrics
        if problem != "stale":
            warnings.warn(f"{problem}; retraining {kind}", stacklevel=2)
    start = time.perf_counter()
    clf = make_classifier(kind, cfg, manager, gen, root)
    train = clf.train_model_on_data(None)
    if not is_main():
        return train  # rank 0 alone evaluates test and writes the results
    test = clf.evaluate_model(None, split="test", predictions_path=root / "test_predictions.parquet")  # once
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_auc": test["auc"],
        "test_f1": test["f1"],
        "test_confusion_matrix": test["confusion_matrix"],
        "val_auc": train["val_auc"],
        "val_history": train["val_history"],
        "best_epoch": train["best_epoch"],
        "resumed_from": train["resumed_from"],
        "train_seconds": train["train_seconds"],
        "examples_per_second": train["examples_per_second"],
        "train_examples": train["train_examples"],
        "total_seconds": round(time.perf_counter() - start, 2),
        "llm_model": cfg.llm.model,
        "num_layers": cfg.llm.num_layers,
        "kge_dim": cfg.gnn.kge_dim if kind != "vanilla" else None,
        "stage_key": key,
    }
    files = [root / "model" / "model.safetensors", root / "test_predictions.parquet"]
    metrics["artifacts"] = artifact_record(root, [f for f in files if f.is_file()])
    write_json(done, metrics)
    say(
        f"[{kind}] test accuracy {metrics['test_accuracy']:.4f}, AUC {metrics['test_auc']:.4f}, "
        f"F1 {metrics['test_f1']:.4f} (val AUC {metrics['val_auc']:.4f}; {metrics['train_seconds']:.0f} s, "
        f"{metrics['examples_per_second']:.0f} examples/s)"
    )
    return metrics


def run_models(cfg: Config, kinds: list[str], force: bool = False, gnn: bool = True) -> dict[str, Any]:
    """Data, then the GNN (always when `gnn`, else only if a model needs KGEs), then each classifier."""
    if is_main():
        write_json(cfg.run_dir / "config.json", cfg.to_dict())
    manager = main_first(lambda: prepare_data(cfg))
    needs_gnn = gnn or any(k != "vanilla" for k in kinds)
    gen = main_first(lambda: train_gnn(cfg, manager, force=force and is_main())) if needs_gnn else None
    results = {}
    for kind in kinds:
        results[kind] = train_classifier(kind, cfg, manager, gen, force=force)
        update_results(cfg, "models", {kind: results[kind]})
    return results
