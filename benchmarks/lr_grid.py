"""Each model kind's learning rate, chosen on val from a small grid, once.

    python benchmarks/lr_grid.py [--models vanilla,prompt,...] [--grid 1e-4,3e-4,1e-3,3e-3]
                                 [--mlp-grid 3e-4,1e-3,3e-3] [key=value ...]

Every (kind, learning rate) trains as `make run` trains it (`configs/default.yaml`, its budget and
stopping rule, one GNN shared by all, cached), into runs/lr-grid/. A BERT kind's grid replaces
llm.lr, kge_mlp's (no pretrained weights) llm.head_lr. Only val is read: the script trains with
`train_model_on_data`, which never touches test, and scores no test pair. Per kind the highest val
AUC wins, but the current learning rate stays unless it is beaten by more than llm.selection_margin,
the margin by which a later val evaluation replaces a kept one. Each finished point is kept in
runs/lr-grid/<kind>-<lr>/point.json, so an interrupted grid resumes where it stopped; its weights
are deleted. Prints the table and the `llm.lr_by_model` mapping for configs/default.yaml, and
writes both into benchmarks/results.json under "lr_grid".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from linklm.config import RUN_KINDS, load_config
from linklm.errors import UserError
from linklm.experiment.pipeline import make_classifier, prepare_data, train_gnn
from linklm.io import write_json

ROOT = Path(__file__).resolve().parents[1]
KEPT = ("val_auc", "stopped", "epochs", "best_step", "steps", "train_seconds", "examples_per_second", "precision")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(RUN_KINDS))
    parser.add_argument("--grid", default="1e-4,3e-4,1e-3,3e-3", help="llm.lr values of the BERT kinds")
    parser.add_argument("--mlp-grid", default="3e-4,1e-3,3e-3", help="llm.head_lr values of kge_mlp")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = parser.parse_args()
    try:
        grids = {"bert": _floats(args.grid, "--grid"), "mlp": _floats(args.mlp_grid, "--mlp-grid")}
        base = _config(args.overrides)
        kinds = args.models.split(",")
        for kind in kinds:  # an unknown kind stops here, before any training
            _config(args.overrides, f"llm.lr_by_model.{kind}=1")
    except UserError as err:
        print(f"lr_grid: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    manager = prepare_data(base)
    gen = train_gnn(base, manager)
    table = {}
    for kind in kinds:
        points = {}
        for lr in grids["mlp" if kind == "kge_mlp" else "bert"]:
            points[lr] = _point(kind, lr, args.overrides, manager, gen)
            print(f"{kind:<18} lr {lr:<8g} val AUC {points[lr]['val_auc']:.4f}  {points[lr]['stopped']:<9} "
                  f"{points[lr]['epochs']:.2g} epochs  {points[lr]['train_seconds']:.0f} s", flush=True)  # fmt: skip
        table[kind] = {"points": {f"{lr:g}": p for lr, p in points.items()},
                       "current": base.llm.lr_of(kind), "chosen": choose(points, base.llm.lr_of(kind),
                                                                         base.llm.selection_margin)}  # fmt: skip
    chosen = {kind: row["chosen"] for kind, row in table.items()}
    edge = [kind for kind, row in table.items() if row["chosen"] == max(float(lr) for lr in row["points"])]
    if edge:  # the optimum may lie beyond the grid
        print(f"lr_grid: the largest learning rate of the grid won for {', '.join(edge)}: extend the grid", flush=True)
    print("\nllm.lr_by_model, chosen on val:", json.dumps(chosen))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["lr_grid"] = {"kinds": table, "lr_by_model": chosen, "at_grid_edge": edge,
                          "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def choose(points: dict[float, dict], current: float, margin: float) -> float:
    """The learning rate of the highest val AUC; the current one stays unless it is beaten by more
    than `margin`."""
    best = max(points, key=lambda lr: points[lr]["val_auc"])
    if current in points and points[best]["val_auc"] - points[current]["val_auc"] <= margin:
        return current
    return best


def _point(kind: str, lr: float, overrides: list[str], manager, gen) -> dict:
    """One (kind, lr): trained on train, selected and scored on val; kept in point.json."""
    name = f"{kind}-{lr:g}"
    cfg = _config(overrides, f"name={name}", f"llm.lr_by_model.{kind}={lr}")
    root = cfg.run_dir / "models" / kind
    done = cfg.run_dir / "point.json"
    if done.is_file():
        return json.loads(done.read_text())
    clf = make_classifier(kind, cfg, manager, gen, root)
    train = clf.train_model_on_data(None)
    point = {key: train[key] for key in KEPT} | {"val_evaluations": len(train["val_history"])}
    write_json(done, point)
    shutil.rmtree(root, ignore_errors=True)  # 190 MB of weights a point: only the figures are kept
    return point


def _config(overrides: list[str], *extra: str):
    return load_config(ROOT / "configs/default.yaml", [
        "runs_dir=runs/lr-grid", "llm.ranking_users=0", "progress=false", *extra, *overrides,
    ])  # fmt: skip


def _floats(text: str, option: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",")})
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise UserError(f"{option} must hold learning rates > 0, got {text!r}")
    return values


if __name__ == "__main__":
    main()
