"""Settings of a cold-item run, chosen on val: each grid point's val AUC on held-out items.

    python benchmarks/cold_grid.py [--kind fused] [--point NAME:key=value,key=value ...] [key=value ...]

Every point trains one classifier kind (fused by default) as `configs/cold-items.yaml` trains it,
on the development split (data.seed 42) unless an override names another, with the point's
overrides on top; one GNN per split, cached. Only val is read: `train_model_on_data` never touches
test, and the selected model then scores the val pairs it was selected on, split into held-out items
and the others. The point of the highest val AUC on held-out items wins. Each finished point is kept
in runs/cold-grid/<name>/point.json (an interrupted grid resumes); its weights are deleted. Prints
the table and writes it into benchmarks/results.json under "cold_grid".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from linklm.config import load_config
from linklm.errors import UserError
from linklm.evaluate import evaluate_scores
from linklm.experiment.pipeline import make_classifier, prepare_data, train_gnn
from linklm.io import write_json

ROOT = Path(__file__).resolve().parents[1]
KEPT = ("val_auc", "stopped", "epochs", "best_step", "steps", "train_seconds")
POINTS = ["base:", "lr3e-4:llm.lr_by_model.fused=3e-4", "dropout0.5:llm.item_kge_dropout=0.5",
          "layers4:llm.num_layers=4", "epochs6:llm.max_epochs=6"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="fused")
    parser.add_argument("--point", action="append", help="NAME:key=value,key=value (repeatable)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every point")
    args = parser.parse_args()
    try:
        points = dict(_parse(p) for p in (args.point or POINTS))
        for extra in points.values():  # a bad key or value stops here, before any training
            _config(args.overrides, *extra)
    except UserError as err:
        print(f"cold_grid: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    table = {}
    for name, extra in points.items():
        table[name] = _point(args.kind, name, [*args.overrides, *extra])
        p = table[name]
        print(f"{name:<12} val AUC {p['val_auc']:.4f}  held-out items {p['val_auc_cold_items']:.4f}  "
              f"others {p['val_auc_warm_items']:.4f}  {p['stopped']:<9} {p['epochs']:.2g} epochs  "
              f"{p['train_seconds']:.0f} s", flush=True)  # fmt: skip
    best = max(table, key=lambda n: table[n]["val_auc_cold_items"])
    print(f"\nchosen on val (held-out items): {best} {' '.join(points[best])}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["cold_grid"] = {"kind": args.kind, "points": table, "overrides": {n: e for n, e in points.items()},
                            "chosen": best, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _point(kind: str, name: str, overrides: list[str]) -> dict:
    cfg = _config(overrides, f"name={name}")
    done = cfg.run_dir / "point.json"
    if done.is_file():
        return json.loads(done.read_text())
    manager = prepare_data(cfg)
    gen = train_gnn(cfg, manager)
    root = cfg.run_dir / "models" / kind
    clf = make_classifier(kind, cfg, manager, gen, root)
    train = clf.train_model_on_data(None)
    val = clf._val_pairs(None)
    labels, scores = clf.predict(None, "val", pairs=val)
    cold = manager.cold_items[val.target_idx]
    point = {key: train[key] for key in KEPT} | {"overrides": overrides}
    for group, mask in (("cold_items", cold), ("warm_items", ~cold)):
        point[f"val_auc_{group}"] = evaluate_scores(labels[mask], scores[mask])["auc"] if mask.any() else np.nan
    write_json(done, point)
    shutil.rmtree(root, ignore_errors=True)
    return point


def _parse(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    if not name:
        raise UserError(f"--point must be NAME:key=value,..., got {text!r}")
    return name, [kv for kv in rest.split(",") if kv]


def _config(overrides: list[str], *extra: str):
    return load_config(ROOT / "configs/cold-items.yaml", [
        "runs_dir=runs/cold-grid", "data.seed=42", "llm.ranking_users=0", "progress=false", *overrides, *extra,
    ])  # fmt: skip


if __name__ == "__main__":
    main()
