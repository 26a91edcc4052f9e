"""The stages of a run: data, GNN, classifiers; each writes its part of `<run>/results.json`.

    linklm run   --config configs/default.yaml     # every stage
    linklm train --model vanilla                   # data, GNN (cached), one classifier

Each stage ends with one summary line. A stage whose artifacts exist under the same stage key
(`linklm.artifacts.stage_key`: only the config fields that change its result) is reused: the data
and the GNN through their content-keyed caches, a classifier through its sealed folder
`<run>/models/<kind>/`. `--force` redoes them. Where the run computes is decided once, here
(`Runtime.current()`), and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

from linklm import tracking
from linklm.artifacts import CLASSIFIER_METRICS, RESULTS_SHAPE, Damaged, read_json, seal, sealed, stage_key, unseal
from linklm.config import FUSED_KINDS, LLM_KINDS, TEXT_ONLY, Config
from linklm.errors import UserError
from linklm.experiment import ranking
from linklm.io import locked, write_json
from linklm.llm.fused import LAST_STEP_PREDICTIONS
from linklm.runtime import Runtime, resolve_device, resolve_precision

_MODEL_FILES = ("metrics.json", "model/model.safetensors", "test_predictions.parquet")


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


def update_results(cfg: Config, section: str, values: Any) -> None:
    """Merge one stage's results into <run>/results.json (written atomically, by rank 0 only)."""
    if not Runtime.current().main:
        return
    path = cfg.run_dir / "results.json"
    try:
        results = read_json(path, dict) if path.is_file() else {}
    except Damaged as exc:  # every stage of a run writes its part again: what is lost comes back
        warnings.warn(f"{exc}; starting it afresh", stacklevel=2)
        results = {}
    if section in ("models", "baselines") and isinstance(results.get(section), dict):  # one entry per model
        results[section].update(values)
    else:
        results[section] = values
    results["environment"] = environment()
    write_json(path, results)


def prepare_data(cfg: Config, force: bool = False):
    from linklm.data import dataset_name, open_dataset

    manager = open_dataset(cfg.data, force=force)
    s = manager.summary()
    name = dataset_name(cfg.data)
    Runtime.current().say(
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
    if not gen.trained:
        gen.train_model(progress=cfg.progress)  # (or loads it, if another process trained it meanwhile)
    cached, m = gen.from_cache, gen.metrics
    rt = Runtime.current()
    rt.say(
        f"[gnn] d={cfg.gnn.kge_dim}: val AUC {m['val_auc']:.4f} (epoch {m['best_epoch']}), "
        f"test AUC {m['test_auc']:.4f}, {m['train_seconds']:.1f} s training" + (" (cached)" if cached else "")
    )
    if rt.main:
        predictions = cfg.run_dir / "gnn_test_predictions.parquet"
        gnn_predictions(gen, manager, predictions)
        update_results(cfg, "gnn", {**m, "kge_dim": cfg.gnn.kge_dim, "folder": str(gen.folder),
                                    **_warm_cold(manager, predictions),
                                    "ranking": ranking.gnn_ranking(gen, manager, cfg.llm.ranking_users)})  # fmt: skip
        if cfg.tracking != "none":
            rows = [json.loads(line) for line in (gen.folder / "log.jsonl").read_text().splitlines() if line]
            tracking.log_curve(cfg.tracking, cfg.run_dir, "gnn", rows)
    return gen


def gnn_predictions(gen, manager, path: Path) -> None:
    """The GNN's own test scores (sigmoid of the dot product of the test tables), for the report."""
    import pandas as pd
    import torch

    from linklm.io import write_parquet

    test = manager.llm_df["split"] == "test"
    idx = manager.llm_index[test.to_numpy()]
    src, dst = idx["source_idx"].to_numpy(copy=True), idx["target_idx"].to_numpy(copy=True)
    user, movie = gen.get_embedding(src, dst, split="test")
    scores = torch.sigmoid((user * movie).sum(-1).double()).numpy()  # float64, as the classifiers' scores
    labels = manager.llm_df.loc[test, "labels"].to_numpy()
    write_parquet(path, pd.DataFrame({"source_idx": src, "target_idx": dst, "label": labels,
                                      "score": scores}))  # fmt: skip


def make_classifier(kind: str, cfg: Config, manager, gen, root: Path):
    from linklm.llm import EmbeddingClassifier, PromptClassifier, VanillaClassifier
    from linklm.llm.controls import CONTROLS, KGEMLPClassifier, VanillaAllClassifier
    from linklm.llm.fused import FUSED

    classes = {"vanilla": VanillaClassifier, "prompt": PromptClassifier, "embedding_frozen": EmbeddingClassifier,
               "embedding_e2e": EmbeddingClassifier, **FUSED, **CONTROLS,
               "kge_mlp": KGEMLPClassifier, "vanilla_all": VanillaAllClassifier}  # fmt: skip
    if kind not in classes:
        raise UserError(f"unknown model kind {kind!r} (known: {', '.join(LLM_KINDS)})")
    # Every kind draws its negatives under the same exclusion set: all train edges.
    options: dict[str, Any] = {"config": cfg.llm.for_model(kind), "train_keys": manager.train_keys}
    if kind not in TEXT_ONLY:
        options["kge"] = gen
    if kind == "vanilla_all":  # every train edge: the GNN's message-passing ones are val's graph
        options["train_edges"] = manager.message_passing_index("val")
    if kind.startswith("embedding_"):
        options["end_to_end"] = kind == "embedding_e2e"
    clf = classes[kind](manager.llm_df, manager.source_df, manager.target_df, root, **options)
    clf.progress, clf.tracking = cfg.progress, cfg.tracking
    return clf


def llm_precision(cfg: Config) -> str:
    """The classifiers' precision (fp32, bf16, fp16) on their device; one the device cannot train in
    stops the run here, before any stage."""
    return resolve_precision(cfg.llm.precision, resolve_device(cfg.llm.device, "llm.device"), "llm.precision")


def classifier_key(kind: str, cfg: Config, manager, gen) -> str:
    """The classifier stage key: its kind, the data, the GNN it reads (if any), the llm fields that
    change its result (`artifacts.STAGE_FIELDS`) and the training precision (bf16 on a GPU changes
    the numbers; which device of a kind does not). The learning rate is the kind's own
    (llm.lr_by_model)."""
    llm = cfg.llm.for_model(kind)
    # recipe: the version of the training recipe; 4 stops training when val stops improving
    upstream = {"kind": kind, "data": manager.key, "gnn": gen.key if kind not in TEXT_ONLY else None, "recipe": 4,
                "precision": llm_precision(cfg)}  # fmt: skip
    if kind == "embedding_e2e":
        upstream["gnn_lr"] = llm.gnn_lr
    if kind in (*FUSED_KINDS, "kge_mlp"):
        upstream["head_lr"] = llm.head_lr
    if kind == "prompt":
        upstream["prompt_kge_dims"] = llm.prompt_kge_dims
    return stage_key("classifier", llm, **upstream)


def _cached_classifier(kind: str, root: Path, key: str, quiet: bool = False) -> dict[str, Any] | None:
    """The metrics of a finished classifier stage of this key, or None (with a warning if damaged)."""
    if not sealed(root):
        return None
    try:
        if unseal(root).get("stage_key") != key:
            return None
        return read_json(root / "metrics.json", CLASSIFIER_METRICS)
    except (Damaged, OSError, ValueError) as exc:
        if not quiet:
            warnings.warn(f"{exc}; retraining {kind}", stacklevel=3)
        return None


def train_classifier(kind: str, cfg: Config, manager, gen, force: bool = False) -> dict[str, Any]:
    """Train one classifier (val picks the epoch), then evaluate test once; cached per run."""
    rt = Runtime.current()
    root = cfg.run_dir / "models" / kind
    key = classifier_key(kind, cfg, manager, gen)
    metrics = None if force else _cached_classifier(kind, root, key)
    if metrics is None and rt.world == 1:  # another process may be training it: wait, then look again
        with locked(root):
            metrics = None if force else _cached_classifier(kind, root, key, quiet=True)
            if metrics is None:
                return _train_classifier(kind, cfg, manager, gen, root, key)
    elif metrics is None:  # under DDP the ranks train together; rank 0 alone writes
        return _train_classifier(kind, cfg, manager, gen, root, key)
    rt.say(f"[{kind}] cached: test accuracy {metrics['test_accuracy']:.4f}, AUC {metrics['test_auc']:.4f}")
    return metrics


def _train_classifier(kind: str, cfg: Config, manager, gen, root: Path, key: str) -> dict[str, Any]:
    rt = Runtime.current()
    (root / "manifest.json").unlink(missing_ok=True)  # the folder is about to change: no longer sealed
    start = time.perf_counter()
    clf = make_classifier(kind, cfg, manager, gen, root)
    train = clf.train_model_on_data(None)
    if not rt.main:
        return train  # rank 0 alone evaluates test and writes the results
    test = clf.evaluate_model(None, split="test", predictions_path=root / "test_predictions.parquet")  # once
    metrics = {
        **{f"test_{name}": test[name] for name in ("accuracy", "auc", "f1")},
        "test_confusion_matrix": test["confusion_matrix"],
        # Share of test pairs answered "yes": far from 0.5 on balanced pairs, the model says one class.
        "test_positive_share": round(sum(row[1] for row in test["confusion_matrix"]) / test["n"], 4),
        **{name: train[name] for name in ("val_auc", "val_history", "stopped", "best_epoch", "best_step", "steps",
                                          "epochs", "max_epochs", "resumed_from", "train_seconds",
                                          "examples_per_second", "train_examples", "threshold", "precision")},
        **({"last_step": train["last_step"]} if "last_step" in train else {}),  # fused: a secondary figure
        "total_seconds": round(time.perf_counter() - start, 2),
        "lr": cfg.llm.lr_of(kind),  # its own (llm.lr_by_model), chosen on val
        "llm_model": cfg.llm.model,
        "num_layers": cfg.llm.num_layers,
        "kge_dim": cfg.gnn.kge_dim if kind not in TEXT_ONLY else None,
        **({"prompt_kge_dims": clf.written_dims} if kind == "prompt" else {}),  # KGE tokens per node
        "stage_key": key,
        **ranking.classifier_ranking(clf, manager, cfg.llm.ranking_users),  # HR@10, NDCG@10 on sampled candidates
    }  # fmt: skip
    if clf.builder.clipped:  # KGEs as text: components of val/test tables beyond the train range
        metrics["kge_clipped_components"] = clf.builder.clipped
    write_json(root / "metrics.json", metrics)
    extra = [name for name in (LAST_STEP_PREDICTIONS,) if (root / name).is_file()]
    seal(root, [*_MODEL_FILES, *extra], {"stage_key": key, "kind": kind})
    rt.say(
        f"[{kind}] test accuracy {metrics['test_accuracy']:.4f}, AUC {metrics['test_auc']:.4f}, "
        f"F1 {metrics['test_f1']:.4f} (val AUC {metrics['val_auc']:.4f}; lr {metrics['lr']:g}; "
        f"{metrics['train_seconds']:.0f} s, {metrics['examples_per_second']:.0f} examples/s; "
        f"{metrics['epochs']:.2g} epochs, {metrics['stopped']})"
    )
    return metrics


def run_models(cfg: Config, kinds: list[str], force: bool = False, gnn: bool = True) -> dict[str, Any]:
    """Data and its floors, then the GNN (always when `gnn`, else only if a model needs KGEs), then
    each classifier; every model's test AUC is also split into warm and cold pairs."""
    from linklm.experiment import baselines

    tracking.require(cfg.tracking)  # a tracker that is not installed stops the run before any work
    if kinds:
        llm_precision(cfg)  # so does a precision the device lacks
    rt = Runtime.current()
    if rt.main:
        write_json(cfg.run_dir / "config.json", cfg.to_dict())
    manager = rt.main_first(lambda: prepare_data(cfg))
    update_results(cfg, "baselines", baselines.floors(manager, cfg.llm.ranking_users))
    if rt.main:
        ease = baselines.ease_floor(manager, cfg)
        if "skipped" in ease:
            rt.say(f"[ease] skipped: {ease['skipped']}")
        else:
            rt.say(f"[ease] lambda {ease['lambda']:g} (val AUC {ease['val_auc']:.4f}): test AUC {ease['test_auc']:.4f}")
            update_results(cfg, "baselines", {"ease": ease})
    needs_gnn = gnn or any(k not in TEXT_ONLY for k in kinds)
    gen = rt.main_first(lambda: train_gnn(cfg, manager, force=force and rt.main)) if needs_gnn else None
    if needs_gnn and manager.cold_items.any() and cfg.gnn.model != "sage" and rt.main:
        update_results(cfg, "baselines", {"gnn_sage": inductive_gnn(cfg, manager, force)})
    results = {}
    for kind in kinds:
        results[kind] = train_classifier(kind, cfg, manager, gen, force=force)
        if rt.main:
            folder = cfg.run_dir / "models" / kind
            results[kind] = {**results[kind], **_warm_cold(manager, folder / "test_predictions.parquet")}
            if (folder / LAST_STEP_PREDICTIONS).is_file() and "last_step" in results[kind]:
                results[kind]["last_step"] = {**results[kind]["last_step"],
                                              **_warm_cold(manager, folder / LAST_STEP_PREDICTIONS)}  # fmt: skip
        update_results(cfg, "models", {kind: results[kind]})
    if rt.main:
        _ensemble(cfg)
        _margins(cfg, kinds)
        if manager.cold_items.any():
            update_results(cfg, "cold_items", baselines.cold_items_summary(cfg.run_dir, manager))
    return results


def inductive_gnn(cfg: Config, manager, force: bool = False) -> dict[str, Any]:
    """The seed's GraphSAGE beside a LightGCN run on held-out items: it embeds a new item from its
    genres (inductive), where LightGCN has only its fallback. Same config but gnn.model; cached."""
    import dataclasses

    from linklm.gnn import GraphRepresentationGenerator

    sage = dataclasses.replace(cfg.gnn, model="sage")
    gen = GraphRepresentationGenerator(
        manager.data, manager.train_data, manager.val_data, manager.test_data,
        config=sage, cache_dir=Path(cfg.data.cache_dir) / "gnn", force_recompute=force,
    )  # fmt: skip
    if not gen.trained:
        gen.train_model(progress=cfg.progress)
    path = cfg.run_dir / "gnn_sage_test_predictions.parquet"
    gnn_predictions(gen, manager, path)
    m = gen.metrics
    Runtime.current().say(f"[gnn_sage] inductive GraphSAGE: val AUC {m['val_auc']:.4f}, test AUC {m['test_auc']:.4f}"
                          f" (held-out items: {m.get('cold_start', {}).get('fallback')} input vector)")  # fmt: skip
    keep = ("model", "val_auc", "test_auc", "cold_start", "best_epoch", "train_seconds")
    return {**{k: m[k] for k in keep if k in m}, **_warm_cold(manager, path)}


def _margins(cfg: Config, kinds: list[str]) -> None:
    """results.json `margins`: the pre-specified test AUC differences (`baselines.COMPARISONS`) with
    user-bootstrap intervals, over every classifier of the run (`kinds` and those results.json
    already holds) and the GNN; the strongest control is picked by val AUC."""
    import pandas as pd

    from linklm.experiment import baselines

    path = cfg.run_dir / "results.json"
    models = read_json(path, RESULTS_SHAPE).get("models", {}) if path.is_file() else {}
    paths = {"gnn": cfg.run_dir / "gnn_test_predictions.parquet"}
    paths.update({kind: cfg.run_dir / "models" / kind / "test_predictions.parquet" for kind in {*models, *kinds}})
    tables = {name: pd.read_parquet(path) for name, path in paths.items() if path.is_file()}
    if len(tables) > 1:
        val = {kind: m["val_auc"] for kind, m in models.items()}
        stopped = {kind: m.get("stopped") for kind, m in models.items()}
        update_results(cfg, "margins", baselines.margins(tables, val, stopped=stopped))


def _warm_cold(manager, predictions: Path) -> dict[str, Any]:
    import pandas as pd

    from linklm.experiment import baselines

    frame = pd.read_parquet(predictions)
    return baselines.warm_cold(manager, frame["source_idx"].to_numpy(), frame["target_idx"].to_numpy(),
                               frame["label"].to_numpy(), frame["score"].to_numpy())  # fmt: skip


def _ensemble(cfg: Config) -> None:
    """baselines.gnn_vanilla_average: the mean of the GNN's and vanilla's test scores, when both ran."""
    import pandas as pd

    from linklm.evaluate import evaluate_scores
    from linklm.experiment import baselines

    paths = [cfg.run_dir / "gnn_test_predictions.parquet", cfg.run_dir / "models/vanilla/test_predictions.parquet"]
    if not all(p.is_file() for p in paths):
        return
    gnn, vanilla = (pd.read_parquet(p) for p in paths)
    if len(vanilla) != len(gnn):  # vanilla scored llm.test_pairs of the test pairs: the GNN on the same
        keys = ["source_idx", "target_idx"]
        gnn = vanilla[keys].merge(gnn.drop_duplicates(keys), on=keys, how="left")
    mean = baselines.average_of([gnn, vanilla])
    update_results(
        cfg, "baselines", {"gnn_vanilla_average": {"test_auc": evaluate_scores(mean["label"], mean["score"])["auc"]}}
    )
