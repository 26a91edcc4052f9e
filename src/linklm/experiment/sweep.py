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
from typing import Any, NamedTuple

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


class PromptBudget(NamedTuple):
    """How many tokens the prompts take, against the language model's context."""

    max_positions: int  # the language model's context
    base_tokens: int  # the longest vanilla prompt
    largest_fitting_dim: int  # the largest KGE dimension whose prompts still fit

    def max_tokens(self, model: str, kge_dim: int) -> int:
        """The longest prompt of `model` at `kge_dim`, as PromptBuilder.max_length counts it: vanilla's
        plus 2 + 2 * kge_dim tokens for the prompt model, plus 2 (one slot per KGE) for the embedding ones."""
        return self.base_tokens + 2 + 2 * kge_dim if model == "prompt" else self.base_tokens + 2


def run_sweep(cfg: Config, dims: list[int], seeds: list[int], models: list[str], force: bool = False) -> dict:
    from linklm.experiment.pipeline import prepare_data

    start = time.perf_counter()
    out_dir = cfg.run_dir / "sweep"
    manager = prepare_data(cfg)
    budget = _prompt_budget(cfg, manager)
    per_run, base_correct = _seed_runs(cfg, manager, "vanilla", None, seeds, force)
    base = np.mean(base_correct, axis=0)
    rows = [_vanilla_row(per_run, budget)]
    for model in models:
        model_rows, model_runs = _model_rows(cfg, manager, model, dims, seeds, budget, base, force)
        rows += model_rows
        per_run += model_runs
    _plot_accuracy(rows, models, dims, out_dir / "accuracy_vs_dim.png")
    result = {"dims": dims, "seeds": seeds, "models": models, "rows": rows, "runs": per_run,
              "answer": _answer(rows, models, dims, budget), "largest_fitting_prompt_dim": budget.largest_fitting_dim,
              "max_positions": budget.max_positions, "alpha": ALPHA,
              "test": "one-sided paired bootstrap of accuracy gain over test pairs, Holm-corrected across dims",
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_json(out_dir / "sweep.json", result)
    return result


def _prompt_budget(cfg: Config, manager) -> PromptBudget:
    from linklm.llm.models import build_model, load_tokenizer
    from linklm.llm.tokens import NodeTokens, PromptBuilder

    tokenizer = load_tokenizer(cfg.llm.model)
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, manager.source_df, manager.target_df), "vanilla")
    max_positions = build_model(cfg.llm.model, "vanilla", 1).config.max_position_embeddings
    largest = builder.largest_fitting_dim(max_positions)
    return PromptBudget(max_positions, builder.max_length(), largest)


def _seed_runs(cfg: Config, manager, model: str, kge_dim: int | None, seeds: list[int], force: bool):
    """Train (or reuse) `model` at `kge_dim` (None: vanilla, no GNN) once per seed.

    Returns one row per run and each run's correctness per test pair, (seeds, pairs)."""
    from linklm.experiment.pipeline import train_classifier, train_gnn

    runs, correct = [], []
    for seed in seeds:
        sub = _sub_config(cfg, f"vanilla-s{seed}" if kge_dim is None else f"d{kge_dim}-s{seed}", kge_dim, seed)
        gen = None if kge_dim is None else train_gnn(sub, manager, force=force)
        m = train_classifier(model, sub, manager, gen, force=force)
        runs.append({**_scalar(m), "model": model, "kge_dim": kge_dim, "seed": seed})
        correct.append(_correct(sub.run_dir / "models" / model / "test_predictions.parquet")[1])
    return runs, correct


def _model_rows(cfg: Config, manager, model: str, dims: list[int], seeds: list[int], budget: PromptBudget,
                base: np.ndarray, force: bool) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """One row per dimension for `model`, tested against vanilla's correctness `base` and
    Holm-corrected across the dimensions that fit; and the rows of its runs."""
    rows, runs = [], []
    for d in dims:
        tokens = budget.max_tokens(model, d)
        row: dict[str, Any] = {"model": model, "kge_dim": d, "max_tokens": int(tokens),
                               "fits": bool(tokens <= budget.max_positions)}  # fmt: skip
        if row["fits"]:
            seed_runs, correct = _seed_runs(cfg, manager, model, d, seeds, force)
            runs += seed_runs
            gain, p = paired_bootstrap(np.mean(correct, axis=0), base, seed=d)
            row.update(_mean_std(seed_runs), gain=gain, p_raw=p)
        else:
            nan = float("nan")
            row.update(accuracy_mean=nan, accuracy_std=nan, auc_mean=nan, auc_std=nan, p_value=None)
        rows.append(row)
    tested = [r for r in rows if r["fits"]]
    for r, p_adj in zip(tested, holm([r["p_raw"] for r in tested]) if tested else [], strict=True):
        r["p_value"] = p_adj
    return rows, runs


def _vanilla_row(runs: list[dict], budget: PromptBudget) -> dict[str, Any]:
    row = {"model": "vanilla", "kge_dim": 0, "max_tokens": int(budget.base_tokens), "fits": True, "p_value": None}
    return {**row, **_mean_std(runs)}


def _mean_std(runs: list[dict]) -> dict[str, float]:
    acc, auc = [r["test_accuracy"] for r in runs], [r["test_auc"] for r in runs]
    return {"accuracy_mean": float(np.mean(acc)), "accuracy_std": _std(acc), "auc_mean": float(np.mean(auc)),
            "auc_std": _std(auc)}  # fmt: skip


def _answer(rows: list[dict], models: list[str], dims: list[int], budget: PromptBudget) -> str:
    """Per model, the smallest dimension with a significant gain over vanilla, and which dimensions fit."""
    answers = []
    for model in models:
        sig = [r for r in rows if r["model"] == model and r.get("p_value") is not None and r["p_value"] < ALPHA
               and r.get("gain", 0) > 0]  # fmt: skip
        first = f"{sig[0]['kge_dim']} (p = {sig[0]['p_value']:.3g})" if sig else f"none up to {max(dims)}"
        fit = (f"largest dimension that fits the prompt: {budget.largest_fitting_dim}" if model == "prompt"
               else "every dimension fits")  # fmt: skip
        answers.append(f"{model}: smallest KGE dimension with a significant gain: {first}; {fit}")
    return " | ".join(answers)


def _plot_accuracy(rows: list[dict], models: list[str], dims: list[int], path: Path) -> None:
    """Mean accuracy per dimension and model, over the dimensions that fit, with vanilla (rows[0]) flat."""
    from linklm.report.plots import metric_vs_dimension, metric_vs_dimension_ragged

    fitting = {m: [r for r in rows if r["model"] == m and r["fits"]] for m in models}
    series = {m: ([r["accuracy_mean"] for r in mine], [r["accuracy_std"] for r in mine]) for m, mine in fitting.items()}
    plot_dims = {m: [r["kge_dim"] for r in mine] for m, mine in fitting.items()}
    vanilla = rows[0]
    if all(plot_dims[m] == dims for m in models):
        metric_vs_dimension(dims, series, (vanilla["accuracy_mean"], vanilla["accuracy_std"]), path)
    else:  # some prompt dimensions did not fit: plot each model over its own dimensions
        metric_vs_dimension_ragged(plot_dims, series, vanilla["accuracy_mean"], path)


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
