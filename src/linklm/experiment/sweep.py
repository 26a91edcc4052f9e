"""The KGE-dimension sweep: from which dimension do KGEs pay off, and up to which do prompts fit?

    linklm sweep                   # dims 2..128, 3 seeds, prompt and embedding_frozen vs vanilla
    linklm sweep --preset small    # dims 2, 8, 32 on a subsample: the same question on a laptop

Seeds change the GNN's and the language model's initialisation, data order and on-the-fly
negatives; the split, and so the test pairs, stay fixed, which lets every model be compared with
vanilla pair by pair. The test is a one-sided paired bootstrap over test pairs of the accuracy
gain (each pair's correctness averaged over seeds), Holm-corrected across dimensions.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linklm.config import Config
from linklm.errors import UserError
from linklm.io import write_json

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "dims": [2, 4, 8, 16, 32, 64, 128],
        "seeds": [0, 1, 2],
        "models": ["prompt", "embedding_frozen"],
        "overrides": {},
    },  # fmt: skip
    # About 40 minutes on 2 CPU cores: 2,000 train positives per run and 3 dimensions.
    "small": {
        "dims": [2, 8, 32],
        "seeds": [0, 1, 2],
        "models": ["prompt", "embedding_frozen"],
        "overrides": {"llm": {"max_train_pairs": 2000}, "gnn": {"epochs": 150}},
    },  # fmt: skip
}
ALPHA = 0.05


def paired_bootstrap(correct_model: np.ndarray, correct_base: np.ndarray, samples: int = 2000, seed: int = 0):
    """One-sided p-value that the model's accuracy exceeds the baseline's on the same pairs.

    correct_*: (pairs,) correctness in [0, 1] (averaged over seeds). Returns (gain, p)."""
    diff = np.asarray(correct_model, np.float64) - np.asarray(correct_base, np.float64)
    gain = float(diff.mean())
    rng = np.random.default_rng(seed)
    n = len(diff)
    boots = np.array([diff[rng.integers(0, n, n)].mean() for _ in range(samples)])
    # The bootstrap distribution shifted to mean 0 stands for "no gain"; p is the share of it at
    # least as large as the gain observed.
    p = float((np.sum(boots - gain >= gain) + 1) / (samples + 1))
    return gain, p


def holm(pvalues: list[float]) -> list[float]:
    order = np.argsort(pvalues)
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _sub_config(cfg: Config, name: str, kge_dim: int | None, seed: int) -> Config:
    sub = copy.deepcopy(cfg)
    sub.runs_dir = str(cfg.run_dir / "sweep" / "runs")
    sub.name = name
    sub.llm.seed = seed
    sub.gnn.seed = seed
    if kge_dim is not None:
        sub.gnn.kge_dim = kge_dim
    return sub


def _correct(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_parquet(path).sort_values(["source_idx", "target_idx"])
    return frame["label"].to_numpy(), ((frame["score"].to_numpy() > 0.5) == frame["label"].to_numpy()).astype(float)


def run_sweep(cfg: Config, dims: list[int], seeds: list[int], models: list[str], force: bool = False) -> dict:
    from linklm.experiment.pipeline import prepare_data, train_classifier, train_gnn
    from linklm.llm.models import load_tokenizer
    from linklm.llm.tokens import NodeTokens, PromptBuilder
    from linklm.report.plots import metric_vs_dimension

    start = time.perf_counter()
    out_dir = cfg.run_dir / "sweep"
    manager = prepare_data(cfg)
    tokenizer = load_tokenizer(cfg.llm.model)
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, manager.source_df, manager.target_df), "vanilla")
    from linklm.llm.models import build_model

    max_positions = build_model(cfg.llm.model, "vanilla", 1).config.max_position_embeddings
    largest = builder.largest_fitting_dim(max_positions)
    base_tokens = builder.max_length()

    per_run: list[dict[str, Any]] = []
    base_correct = []
    for seed in seeds:
        sub = _sub_config(cfg, f"vanilla-s{seed}", None, seed)
        m = train_classifier("vanilla", sub, manager, None, force=force)
        per_run.append({**_scalar(m), "model": "vanilla", "kge_dim": None, "seed": seed})
        base_correct.append(_correct(sub.run_dir / "models" / "vanilla" / "test_predictions.parquet")[1])
    base = np.mean(base_correct, axis=0)

    rows = []
    for model in models:
        raw_p = []
        model_rows = []
        for d in dims:
            tokens = base_tokens + 2 + 2 * d if model == "prompt" else base_tokens + 2
            fits = tokens <= max_positions
            row: dict[str, Any] = {"model": model, "kge_dim": d, "max_tokens": int(tokens), "fits": bool(fits)}
            if not fits:
                row.update(accuracy_mean=float("nan"), accuracy_std=float("nan"), auc_mean=float("nan"),
                           auc_std=float("nan"), p_value=None)  # fmt: skip
                model_rows.append(row)
                continue
            correct, accs, aucs = [], [], []
            for seed in seeds:
                sub = _sub_config(cfg, f"d{d}-s{seed}", d, seed)
                gen = train_gnn(sub, manager, force=force)
                m = train_classifier(model, sub, manager, gen, force=force)
                per_run.append({**_scalar(m), "model": model, "kge_dim": d, "seed": seed})
                correct.append(_correct(sub.run_dir / "models" / model / "test_predictions.parquet")[1])
                accs.append(m["test_accuracy"])
                aucs.append(m["test_auc"])
            gain, p = paired_bootstrap(np.mean(correct, axis=0), base, seed=d)
            raw_p.append(p)
            row.update(accuracy_mean=float(np.mean(accs)), accuracy_std=_std(accs), auc_mean=float(np.mean(aucs)),
                       auc_std=_std(aucs), gain=gain, p_raw=p)  # fmt: skip
            model_rows.append(row)
        tested = [r for r in model_rows if r["fits"]]
        for r, p_adj in zip(tested, holm([r["p_raw"] for r in tested]) if tested else [], strict=True):
            r["p_value"] = p_adj
        rows += model_rows

    vanilla_acc = [r["test_accuracy"] for r in per_run if r["model"] == "vanilla"]
    vanilla_auc = [r["test_auc"] for r in per_run if r["model"] == "vanilla"]
    vanilla_row = {"model": "vanilla", "kge_dim": 0, "max_tokens": int(base_tokens), "fits": True, "p_value": None}
    vanilla_row.update(accuracy_mean=float(np.mean(vanilla_acc)), accuracy_std=_std(vanilla_acc),
                       auc_mean=float(np.mean(vanilla_auc)), auc_std=_std(vanilla_auc))  # fmt: skip
    rows.insert(0, vanilla_row)
    answers = []
    for model in models:
        sig = [r for r in rows if r["model"] == model and r.get("p_value") is not None and r["p_value"] < ALPHA
               and r.get("gain", 0) > 0]  # fmt: skip
        first = f"{sig[0]['kge_dim']} (p = {sig[0]['p_value']:.3g})" if sig else f"none up to {max(dims)}"
        fit = f"largest dimension that fits the prompt: {largest}" if model == "prompt" else "every dimension fits"
        answers.append(f"{model}: smallest KGE dimension with a significant gain: {first}; {fit}")
    answer = " | ".join(answers)

    series = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model and r["fits"]]
        series[model] = ([r["accuracy_mean"] for r in mine], [r["accuracy_std"] for r in mine])
    plot_dims = {m: [r["kge_dim"] for r in rows if r["model"] == m and r["fits"]] for m in models}
    if all(plot_dims[m] == dims for m in models):
        metric_vs_dimension(dims, series, (rows[0]["accuracy_mean"], rows[0]["accuracy_std"]),
                            out_dir / "accuracy_vs_dim.png")  # fmt: skip
    else:  # some prompt dimensions did not fit: plot each model over its own dimensions
        _plot_ragged(plot_dims, series, rows[0], out_dir / "accuracy_vs_dim.png")
    result = {"dims": dims, "seeds": seeds, "models": models, "rows": rows, "runs": per_run, "answer": answer,
              "largest_fitting_prompt_dim": largest, "max_positions": max_positions, "alpha": ALPHA,
              "test": "one-sided paired bootstrap of accuracy gain over test pairs, Holm-corrected across dims",
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_json(out_dir / "sweep.json", result)
    return result


def _plot_ragged(plot_dims, series, vanilla_row, path):
    import matplotlib.pyplot as plt

    from linklm.report.plots import _save

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, dims in plot_dims.items():
        ax.errorbar(dims, series[model][0], yerr=series[model][1], marker="o", capsize=3, label=model)
    ax.axhline(vanilla_row["accuracy_mean"], color="grey", ls="--", label="vanilla")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="KGE dimension", ylabel="test accuracy")
    ax.legend(fontsize=8)
    _save(fig, path)


def _std(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _scalar(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str) or v is None}


def format_table(result: dict) -> str:
    lines = [f"{'model':<18}{'dim':>5}{'tokens':>8}{'fits':>6}{'accuracy':>20}{'AUC':>20}{'p (Holm)':>10}"]
    for r in result["rows"]:
        acc = f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}" if r["fits"] else "-"
        auc = f"{r['auc_mean']:.4f} ± {r['auc_std']:.4f}" if r["fits"] else "-"
        p = "" if r.get("p_value") is None else f"{r['p_value']:.3g}"
        lines.append(f"{r['model']:<18}{r['kge_dim']:>5}{r['max_tokens']:>8}{'yes' if r['fits'] else 'no':>6}"
                     f"{acc:>20}{auc:>20}{p:>10}")  # fmt: skip
    return "\n".join(lines)


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown sweep preset {name!r} (known: {', '.join(PRESETS)})")
    return json.loads(json.dumps(PRESETS[name]))
