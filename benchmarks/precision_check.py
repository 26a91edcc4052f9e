"""Does bf16 training hold accuracy? fp32 against bf16 on val AUC, over seeds, at `make run`'s budget.

    python benchmarks/precision_check.py [--seeds 0,1,2] [--models vanilla,embedding_frozen,fused]

Each (model, seed) is trained twice, `llm.precision=fp32` and `llm.precision=bf16`, with everything
else as `configs/default.yaml` (one GNN, cached, shared by every run), into runs/precision-check/.
bf16 holds when, for every model, the mean paired difference of val AUC (bf16 - fp32, same seed)
is within the seed spread: the standard deviation of fp32's val AUC over the seeds. Only val is
read (selection is made there); the runs score test too, as every stage does, but it is not
printed. Writes the table into benchmarks/results.json under "precision_check". About 35 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from linklm.config import load_config
from linklm.errors import UserError
from linklm.experiment.pipeline import llm_precision, prepare_data, train_classifier, train_gnn

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="vanilla,embedding_frozen,fused")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    start = time.perf_counter()

    def config(precision: str, seed: int, name: str = "data"):
        return load_config(ROOT / "configs/default.yaml", [
            "runs_dir=runs/precision-check", f"name={name}", f"llm.precision={precision}", f"llm.seed={seed}",
            "llm.ranking_users=0", "progress=false", *args.overrides,
        ])  # fmt: skip

    base = config("fp32", seeds[0])
    try:  # a machine without bf16 stops here, before any training, as `linklm train` would
        llm_precision(config("bf16", seeds[0]))
    except UserError as err:
        print(f"precision_check: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    manager = prepare_data(base)
    gen = train_gnn(base, manager)
    rows = []
    for model in models:
        runs = {}
        for seed in seeds:
            for precision in ("fp32", "bf16"):
                cfg = config(precision, seed, f"{model}-{precision}-s{seed}")
                runs[precision, seed] = train_classifier(model, cfg, manager, gen)
        fp32 = [runs["fp32", s]["val_auc"] for s in seeds]
        bf16 = [runs["bf16", s]["val_auc"] for s in seeds]
        gaps = [b - f for b, f in zip(bf16, fp32, strict=True)]
        spread = statistics.stdev(fp32) if len(seeds) > 1 else float("nan")
        speed = [runs["bf16", s]["examples_per_second"] / runs["fp32", s]["examples_per_second"] for s in seeds]
        rows.append({
            "model": model, "seeds": seeds, "val_auc_fp32": fp32, "val_auc_bf16": bf16,
            "mean_fp32": statistics.mean(fp32), "mean_bf16": statistics.mean(bf16),
            "mean_gap": statistics.mean(gaps), "seed_spread_fp32": spread,
            "within_spread": bool(abs(statistics.mean(gaps)) <= spread),
            "examples_per_second_ratio": [round(r, 2) for r in speed],
        })  # fmt: skip
        r = rows[-1]
        print(f"{model:<18} fp32 {r['mean_fp32']:.4f}  bf16 {r['mean_bf16']:.4f}  gap {r['mean_gap']:+.4f}  "
              f"seed spread {spread:.4f}  within: {r['within_spread']}  "
              f"bf16/fp32 examples/s {r['examples_per_second_ratio']}", flush=True)  # fmt: skip
    result = {"rows": rows, "holds": all(r["within_spread"] for r in rows),
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["precision_check"] = result
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"bf16 holds accuracy: {result['holds']} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
