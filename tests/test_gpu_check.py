"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, on the CPU, with small sizes."""

import json
import subprocess
import sys
from pathlib import Path

from linklm.config import RUN_KINDS

REPO = Path(__file__).resolve().parents[1]
STEPS = ["environment", "pipeline", "agreement", "nccl", "gnn_scale"]


def test_gpu_check_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(out), "--work", str(tmp_path / "w")],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    assert list(report["steps"]) == STEPS
    assert not [name for name, step in report["steps"].items() if "error" in step]
    pipeline = report["steps"]["pipeline"]
    assert set(pipeline["models"]) == set(RUN_KINDS)
    assert all(m["examples_per_second"] > 0 for m in pipeline["models"].values())
    # Every model is compared with the CPU reference; the dry run's small model is not expected to agree.
    reference = json.loads((REPO / "benchmarks/cpu_reference.json").read_text())
    agreement = report["steps"]["agreement"]
    for name in ["gnn", *reference["models"]]:
        assert agreement[name]["difference"] == round(agreement[name]["test_auc"] - agreement[name]["cpu_test_auc"], 4)
    scale = report["steps"]["gnn_scale"]
    assert scale["edges"] > 0 and len(scale["epoch_seconds_incl_val_auc"]) == 3
