"""Everything linklm does on a CUDA GPU, checked and timed in one go (run it via gpu_check.sh).

    python benchmarks/gpu_check.py [--dry-run] [--out benchmarks/gpu.json] [--gnn-scale 1.0]

Steps, each timed, each written to --out as soon as it ends (a run cut short keeps what it did):
1. environment: torch, CUDA, the GPU, bf16 support, the training precision linklm picks;
2. pipeline: `linklm run` on configs/default.yaml with the GNN and the classifiers on cuda;
3. agreement: each model's test AUC against the CPU run's (benchmarks/cpu_reference.json);
4. nccl: a one-rank NCCL process group, all_reduce and barrier, as `Runtime` uses them;
5. gnn_scale: GNN epochs on the ml-32m-shaped synthetic graph (synthetic_graph.py) on cuda.

--dry-run does the same on the CPU with small sizes and a random 2-layer BERT: a test that the
script works, not figures to quote. Exit code 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent
# Test AUCs of two runs of the same config can differ by seed noise alone: different RNG streams on
# cuda, bf16 instead of fp32. A gap beyond these is a bug, not noise (the GNN is the steadier model).
TOLERANCE = {"gnn": 0.015, "classifier": 0.04}
DRY_RUN_OVERRIDES = ["llm.model=random:L2-H128", "gnn.epochs=3", "llm.max_train_pairs=256", "llm.batch_size=64",
                     "data.val_ratio=0.02", "data.test_ratio=0.02"]  # fmt: skip


def environment(device: str) -> dict:
    import torch

    from linklm.runtime import resolve_precision

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
            "precision": resolve_precision("auto", torch.device(device), "llm.precision")}  # fmt: skip
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 1024**3, 1),
                 "bf16_supported": torch.cuda.is_bf16_supported()}  # fmt: skip
    return info


def pipeline(device: str, work: Path, dry_run: bool) -> dict:
    overrides = ["name=gpu_check", f"runs_dir={work / 'runs'}", f"data.cache_dir={work / 'data'}",
                 f"gnn.device={device}", f"llm.device={device}", "progress=false"]  # fmt: skip
    overrides += DRY_RUN_OVERRIDES if dry_run else []
    cmd = [sys.executable, "-m", "linklm.cli", "run", "--config", str(REPO / "configs/default.yaml"), *overrides]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    results = json.loads((work / "runs/gpu_check/results.json").read_text())
    gnn = results["gnn"]
    models = {kind: {key: m.get(key) for key in ("test_auc", "test_accuracy", "val_auc", "train_seconds",
                                                 "examples_per_second")}
              for kind, m in results["models"].items()}  # fmt: skip
    return {"seconds": round(seconds, 1), "gnn": {key: gnn.get(key) for key in ("test_auc", "val_auc",
            "train_seconds", "seconds_per_epoch", "device")}, "models": models}  # fmt: skip


def agreement(run: dict, reference: dict) -> dict:
    """Test AUC here minus the CPU run's, per model, and whether each gap is within TOLERANCE."""
    rows = {"gnn": (run["gnn"]["test_auc"], reference["gnn"], TOLERANCE["gnn"])}
    rows |= {kind: (m["test_auc"], reference["models"].get(kind), TOLERANCE["classifier"])
             for kind, m in run["models"].items()}  # fmt: skip
    out = {}
    for name, (here, cpu, tol) in rows.items():
        gap = None if cpu is None else round(here - cpu, 4)
        out[name] = {"test_auc": here, "cpu_test_auc": cpu, "difference": gap, "tolerance": tol,
                     "agrees": gap is not None and abs(gap) <= tol}  # fmt: skip
    return out


def nccl(device: str) -> dict:
    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        x = torch.arange(4.0, device=device)
        dist.all_reduce(x)
        dist.barrier()
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0], x
    finally:
        dist.destroy_process_group()
    return {"backend": backend, "ranks": 1, "note": "one GPU: a multi-rank NCCL run needs a GPU per rank"}


def gnn_scale(device: str, work: Path, scale: float, epochs: int = 3) -> dict:
    sys.path.insert(0, str(HERE))
    from synthetic_graph import synthetic_ml32m

    from linklm.config import DataConfig
    from linklm.data import BipartiteGraphManager
    from linklm.gnn import GraphRepresentationGenerator

    t = time.perf_counter()
    ml = BipartiteGraphManager.from_tables(*synthetic_ml32m(scale), DataConfig())
    prep = time.perf_counter() - t
    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=64,
                                       epochs=epochs, device=device, cache_dir=work / "gnn_scale",
                                       force_recompute=True)  # fmt: skip
    stamps = [time.perf_counter()]
    gen.train_model(progress=False, log=lambda _: stamps.append(time.perf_counter()))  # once per epoch
    epoch_seconds = [round(b - a, 3) for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"scale": scale, "users": ml.num_sources, "movies": ml.num_targets, "edges": len(ml.edge_df),
            "graph_and_data_prep_seconds": round(prep, 1), "epoch_seconds_incl_val_auc": epoch_seconds,
            "steady_epoch_seconds": min(epoch_seconds[1:] or epoch_seconds), "test_auc": gen.metrics["test_auc"],
            "peak_gpu_memory_gb": _peak_gpu_gb(device)}  # fmt: skip


def _peak_gpu_gb(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 1024**3, 2) if device == "cuda" else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, small sizes: checks the script only")
    parser.add_argument("--out", type=Path, default=HERE / "gpu.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/linklm-gpu-check"), help="caches and runs")
    parser.add_argument("--gnn-scale", type=float, help="share of ml-32m's size (default 1, dry run 0.001)")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out, e.g. gnn_scale")
    parser.add_argument("--reference", type=Path, default=HERE / "cpu_reference.json")
    args = parser.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    scale = args.gnn_scale or (0.001 if args.dry_run else 1.0)
    report = {"date": date.today().isoformat(), "dry_run": args.dry_run, "steps": {}}
    reference = json.loads(args.reference.read_text())
    steps = [("environment", lambda: environment(device)),
             ("pipeline", lambda: pipeline(device, args.work, args.dry_run)),
             ("agreement", lambda: agreement(report["steps"]["pipeline"], reference)),
             ("nccl", lambda: nccl(device)),
             ("gnn_scale", lambda: gnn_scale(device, args.work, scale))]  # fmt: skip
    failed = []
    for name, step in steps:
        if name in args.skip.split(","):
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            report["steps"][name] = step()
        except Exception as exc:  # noqa: BLE001 (a failed step is a finding; the next steps still run)
            traceback.print_exc()
            report["steps"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        report["steps"][name]["step_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(report["steps"][name], indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    disagree = [k for k, v in report["steps"].get("agreement", {}).items() if isinstance(v, dict) and not v["agrees"]]
    if disagree and not args.dry_run:  # the dry run trains another model on fewer pairs: gaps are expected
        failed.append(f"agreement ({', '.join(disagree)})")
    print(f"wrote {args.out}; " + (f"FAILED: {', '.join(failed)}" if failed else "every step passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
