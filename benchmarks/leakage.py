"""How much better are train-pair KGEs than test-pair KGEs, and do the KGE models over-trust them?

    python benchmarks/leakage.py --run runs/default [--pairs 5000]

The GNN was trained on the train supervision pairs the language models train on, so its scores on
those pairs are better than on test pairs. This prints, side by side:
  - the GNN's AUC on train pairs (train tables, fresh negatives) and on test pairs (test tables);
  - each trained classifier's accuracy/AUC on the same train sample and on test;
so the train–test gap of a KGE model can be compared with vanilla's gap. Writes the figures to
benchmarks/results.json under "leakage".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from linklm.config import Config, load_config
from linklm.data.tables import sample_negatives
from linklm.evaluate import evaluate_scores
from linklm.experiment.pipeline import make_classifier, prepare_data, train_gnn
from linklm.llm.collator import PairDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/default")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--models", help="comma-separated kinds to check (default: all of the run's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    args = parser.parse_args()
    run = Path(args.run)
    saved = json.loads((run / "config.json").read_text())
    cfg: Config = load_config(None, [])
    for section in ("data", "gnn", "llm"):
        for key, value in saved[section].items():
            setattr(getattr(cfg, section), key, value)
    cfg.name, cfg.runs_dir = run.name, str(run.parent)

    manager = prepare_data(cfg)
    gen = train_gnn(cfg, manager)
    rng = np.random.default_rng(0)
    src, dst = manager.supervision("train")
    take = rng.choice(len(src), min(args.pairs, len(src)), replace=False)
    src, dst = src[take], dst[take]
    e = manager.edge_df
    train = e[e["split"] == "train"]
    keys = np.unique(train["source_idx"].to_numpy() * manager.num_targets + train["target_idx"].to_numpy())
    neg_src, neg_dst = sample_negatives(manager.num_sources, manager.num_targets, keys, len(src), rng)
    all_src, all_dst = np.concatenate([src, neg_src]), np.concatenate([dst, neg_dst])
    labels = np.concatenate([np.ones(len(src)), np.zeros(len(src))]).astype(np.int64)

    def gnn_auc(s, d, y, split):
        u, m = gen.get_embedding(s, d, split=split)
        return float(roc_auc_score(y, torch.sigmoid((u * m).sum(-1)).numpy()))

    test = manager.llm_df["split"] == "test"
    t_idx = manager.llm_index[test.to_numpy()]
    t_y = manager.llm_df.loc[test, "labels"].to_numpy()
    figures = {
        "gnn_train_pairs_auc": gnn_auc(all_src, all_dst, labels, "train"),
        "gnn_test_auc": gnn_auc(t_idx["source_idx"].to_numpy(), t_idx["target_idx"].to_numpy(), t_y, "test"),
    }
    for kind in args.models.split(",") if args.models else cfg.llm.models:
        folder = run / "models" / kind / "model"
        if not (folder / "model.safetensors").is_file():
            continue
        clf = make_classifier(kind, cfg, manager, gen, run / "models" / kind)
        clf.load_pretrained(folder)
        pairs = PairDataset(all_src, all_dst, labels)
        clf.pairs = lambda dataset, split, pairs=pairs, orig=clf.pairs: (
            pairs if split == "train" else orig(dataset, split)
        )
        tr = evaluate_scores(*clf.predict(None, "train"))
        te = json.loads((run / "models" / kind / "metrics.json").read_text())
        figures[f"{kind}_train_accuracy"] = tr["accuracy"]
        figures[f"{kind}_test_accuracy"] = te["test_accuracy"]
        figures[f"{kind}_gap"] = tr["accuracy"] - te["test_accuracy"]
    for key, value in figures.items():
        print(f"{key:<34} {value:.4f}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["leakage"] = {k: round(v, 4) for k, v in figures.items()}
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
