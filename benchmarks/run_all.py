"""`make bench`: every benchmark, each in its own process, then the headline figures.

    python benchmarks/run_all.py [--quick]

--quick runs reduced sizes (a smoke test of the scripts, not figures to quote); --only llm|gnn
runs one script and reports the other's figures from benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results.json"
HEADLINES = [
    ("tokenization_speedup", "per-node assembly vs HF fast tokenizer, same 1 M prompts", ">= 50x", lambda v: v >= 50),
    ("trainer_overhead", "Trainer pipeline vs bare loop, same model and batches", "<= 0.15", lambda v: v <= 0.15),
    ("synthetic_ml32m_peak_rss_gb", "data + GNN epoch + KGE tables on the ml-32m-shaped graph", "<= 16 GB",
     lambda v: v <= 16),
    ("embedding_vs_vanilla_cost", "training time of KGE injection over vanilla", "<= 1.2x", lambda v: v <= 1.2),
    ("bf16_speedup.vanilla", "training examples/s in bf16 over fp32, same batches, vanilla", ">= 1.6x",
     lambda v: v >= 1.6),
    ("bf16_speedup.embedding_frozen", "the same for the KGE-injection model", ">= 1.6x", lambda v: v >= 1.6),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["llm", "gnn"], help="run one of the two scripts, keep the other's figures")
    args = parser.parse_args()
    llm = [sys.executable, str(HERE / "bench_llm.py")]
    gnn = [sys.executable, str(HERE / "gnn_scale.py")]
    if args.quick:
        llm += ["--prompts", "20000", "--steps", "4"]
        gnn += ["--scale", "0.01"]
    for cmd in {"llm": [llm], "gnn": [gnn]}.get(args.only, [llm, gnn]):
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    results = json.loads(RESULTS.read_text())
    scale = results.get("gnn_scale" if not args.quick else "gnn_scale_0.01", {})
    if "peak_rss_gb" in scale:
        results["synthetic_ml32m_peak_rss_gb"] = scale["peak_rss_gb"]
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\n{'figure':<30}{'value':>10}  {'target':<10}{'met':<5} what")
    for key, what, target, ok in HEADLINES:
        value = results
        for part in key.split("."):  # a dotted key reads inside a dict of figures
            value = value.get(part) if isinstance(value, dict) else None
        met = "" if value is None else ("yes" if ok(value) else "NO")
        print(f"{key:<30}{'-' if value is None else value:>10}  {target:<10}{met:<5} {what}")


if __name__ == "__main__":
    main()
