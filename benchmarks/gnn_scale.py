"""ml-32m scale on CPU: data preparation, one GNN epoch, KGE tables, then the LLM collator (per-node
tokens of every user and movie, batches with on-the-fly negatives), with the peak memory of each.

    python benchmarks/gnn_scale.py              # the full ml-32m shape (peak ~7 GB, ~5 minutes)
    python benchmarks/gnn_scale.py --scale 0.01 # a quick look

Prints the peak RSS after each stage as it goes, then the figures, and writes them to
benchmarks/results.json under "gnn_scale".
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_graph import synthetic_ml32m  # noqa: E402

from linklm.config import DataConfig  # noqa: E402
from linklm.data import BipartiteGraphManager  # noqa: E402
from linklm.gnn import GraphRepresentationGenerator  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def collator_under_load(ml, gen, batches: int) -> dict:
    """The LLM side at ml-32m scale: per-node tokens for every user and movie, then frozen-KGE
    training batches (on-the-fly negatives against all 25.6 M training positives, dynamic padding)."""
    import numpy as np

    from linklm.data.tables import sorted_unique
    from linklm.llm.collator import LinkCollator, PairDataset
    from linklm.llm.models import load_tokenizer
    from linklm.llm.tokens import NodeTokens, PromptBuilder

    t = time.perf_counter()
    nodes = NodeTokens.from_frames(load_tokenizer("all-MiniLM-L6-v2"), ml.source_df, ml.target_df)
    t_tokens = time.perf_counter() - t
    train = ml.edge_df[ml.edge_df["split"] == "train"]
    keys = sorted_unique(train["source_idx"].to_numpy() * ml.num_targets + train["target_idx"].to_numpy())
    collate = LinkCollator(PromptBuilder(nodes, "embedding"), "train", num_sources=ml.num_sources,
                           num_targets=ml.num_targets, train_keys=keys, kge_input="tables",
                           tables=gen.kge_table("train"))  # fmt: skip
    src, dst = ml.supervision("train")
    pairs = PairDataset(src, dst, np.ones(len(src), dtype=np.int64))
    rows = np.random.default_rng(0).integers(0, len(pairs), (batches, 128))
    t = time.perf_counter()
    for batch in rows:
        collate([pairs[i] for i in batch])
    t_batches = time.perf_counter() - t
    return {
        "collator_node_tokens_seconds": round(t_tokens, 1),
        "collator_examples_per_second": round(batches * 256 / t_batches, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--kge-dim", type=int, default=64)
    parser.add_argument("--collator-batches", type=int, default=50)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    args = parser.parse_args()

    stage_peaks = {}

    def stage(name: str) -> None:
        stage_peaks[name] = round(peak_rss_gb(), 2)
        print(f"peak RSS after {name:<16} {stage_peaks[name]:6.2f} GB", flush=True)

    t = time.perf_counter()
    users, movies, edges = synthetic_ml32m(args.scale)
    t_gen = time.perf_counter() - t
    stage("synthetic graph")
    t = time.perf_counter()
    ml = BipartiteGraphManager.from_tables(users, movies, edges, DataConfig())
    del users, movies, edges
    data, train, val, test = ml.data, ml.train_data, ml.val_data, ml.test_data
    t_data = time.perf_counter() - t
    stage("data prep")

    t = time.perf_counter()
    gen = GraphRepresentationGenerator(data, train, val, test, kge_dimension=args.kge_dim, epochs=1,
                                       cache_dir="/tmp/linklm-bench-gnn", force_recompute=True)  # fmt: skip
    del data  # as in the pipeline: the generator keeps only the full graph's node counts and features
    # train_model logs once per epoch, after the epoch's val AUC and before the test AUC and KGE tables.
    gen.train_model(progress=False, log=lambda _: stage("GNN epoch"))
    t_total = time.perf_counter() - t
    stage("KGE tables")
    collator_figures = collator_under_load(ml, gen, args.collator_batches)
    stage("collator")
    figures = {
        "users": ml.num_sources,
        "movies": ml.num_targets,
        "edges": len(ml.edge_df),
        "synthetic_graph_seconds": round(t_gen, 1),
        "data_prep_seconds": round(t_data, 1),
        "gnn_epoch_seconds_incl_val_auc": round(gen.metrics["train_seconds"], 1),
        "kge_tables_and_test_seconds": round(t_total - gen.metrics["train_seconds"], 1),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        **{f"peak_rss_gb_after_{name.replace(' ', '_').lower()}": gb for name, gb in stage_peaks.items()},
        "peak_rss_target_gb": 16,
        **collator_figures,
    }
    for key, value in figures.items():
        print(f"{key:<34} {value}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["gnn_scale" if args.scale == 1.0 else f"gnn_scale_{args.scale}"] = figures
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
