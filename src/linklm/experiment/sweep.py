"""The KGE-dimension sweep: from which dimension do KGEs pay off, and up to which do prompts fit?

    linklm sweep                   # dims 2..128, 3 seeds, prompt and embedding_frozen vs vanilla
    linklm sweep --preset small    # dims 2, 8, 32 on a subsample: the same question on a laptop

Seeds change the GNN's and the language model's initialisation, data order and on-the-fly
negatives; the split, and so the test pairs, stay fixed. Each (model, dimension) arm and vanilla run
with the same seeds, so the test is over per-seed differences: a one-sided paired t-test (scipy)
that the arm's test AUC (and, separately, accuracy) exceeds vanilla's with the same seed. It covers
the variance of training, not only of the test pairs. Holm corrects across every (model, dimension,
metric) test. The answer follows a fixed-sequence rule over the sorted dimensions that fit: the
smallest d such that d and every larger fitting dimension gain significantly in AUC.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from linklm.config import Config
from linklm.errors import UserError
from linklm.io import write_json

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "dims": [2, 4, 8, 16, 32, 64, 128],
        "seeds": [0, 1, 2, 3, 4],
        "models": ["prompt", "embedding_frozen"],
        "overrides": {},
    },  # fmt: skip
    # The laptop-sized question: fewer dimensions, train positives and scored pairs (the same fixed
    # 4,000 of the 20,000 test pairs for every arm and seed), never fewer than 5 seeds.
    "small": {
        "dims": [4, 16],
        "seeds": [0, 1, 2, 3, 4],
        "models": ["prompt", "embedding_frozen"],
        "overrides": {"llm": {"max_train_pairs": 2000, "val_pairs": 2000, "test_pairs": 4000}, "gnn": {"epochs": 150}},
    },  # fmt: skip
}
ALPHA = 0.05
METRICS = ("auc", "accuracy")  # both are tested; the answer reads AUC, which needs no threshold
DEGENERATE_SHARE = 0.8  # a model answering one class for more of the balanced test pairs is flagged


def seed_paired_test(model_values, base_values) -> tuple[float, float | None]:
    """One-sided p-value that `model_values` exceed `base_values`, paired by seed (a paired t-test
    on the per-seed differences). Returns (mean gain, p); p is None with fewer than two seeds."""
    from scipy import stats

    diff = np.asarray(model_values, np.float64) - np.asarray(base_values, np.float64)
    gain = float(diff.mean())
    if len(diff) < 2:
        return gain, None
    if np.allclose(diff, diff[0]):  # no spread: t is infinite (or undefined at zero)
        return gain, 0.0 if gain > 0 else 1.0
    return gain, float(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)


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
    sub.llm.prompt_kge_dims = 0  # the sweep's question is the dimension itself: prompts write all of it
    sub.llm.ranking_users = 0  # the sweep compares AUC and accuracy; ranking would cost ~12 s per run
    if kge_dim is not None:
        sub.gnn.kge_dim = kge_dim
    return sub


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
    from linklm.experiment.pipeline import llm_precision, prepare_data

    start = time.perf_counter()
    llm_precision(cfg)  # a precision the device lacks stops the sweep before any stage
    dims = sorted(set(dims))  # the fixed-sequence rule reads the dimensions in order
    out_dir = cfg.run_dir / "sweep"
    manager = prepare_data(cfg)
    budget = _prompt_budget(cfg, manager)
    vanilla = _seed_runs(cfg, manager, "vanilla", None, seeds, force)
    per_run = list(vanilla)
    rows = [_vanilla_row(vanilla, budget)]
    for model in models:
        # every arm is paired with vanilla's run of the same seed (never with another arm's)
        model_rows, model_runs = _model_rows(cfg, manager, model, dims, seeds, budget, vanilla, force)
        rows += model_rows
        per_run += model_runs
    _correct_for_multiplicity(rows)
    _plot_accuracy(rows, models, dims, out_dir / "accuracy_vs_dim.png")
    degenerate = [r for r in per_run if r["degenerate"]]
    result = {"dims": dims, "seeds": seeds, "models": models, "rows": rows, "runs": per_run,
              "answer": _answer(rows, models, budget), "largest_fitting_prompt_dim": budget.largest_fitting_dim,
              "max_positions": budget.max_positions, "alpha": ALPHA, "degenerate_runs": len(degenerate),
              "test": "one-sided paired t-test over per-seed differences from vanilla (same seed), for test AUC "
                      "and accuracy; Holm across every (model, dimension, metric)",
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


def _seed_runs(cfg: Config, manager, model: str, kge_dim: int | None, seeds: list[int], force: bool) -> list[dict]:
    """Train (or reuse) `model` at `kge_dim` (None: vanilla, no GNN) once per seed; one row per run."""
    from linklm.experiment.pipeline import train_classifier, train_gnn

    runs = []
    for seed in seeds:
        sub = _sub_config(cfg, f"vanilla-s{seed}" if kge_dim is None else f"d{kge_dim}-s{seed}", kge_dim, seed)
        gen = None if kge_dim is None else train_gnn(sub, manager, force=force)
        m = train_classifier(model, sub, manager, gen, force=force)
        (tn, fp), (fn, tp) = m["test_confusion_matrix"]
        share = (fp + tp) / max(1, tn + fp + fn + tp)
        runs.append({**_scalar(m), "model": model, "kge_dim": kge_dim, "seed": seed,
                     "predicted_positive_share": share,
                     "degenerate": bool(max(share, 1 - share) > DEGENERATE_SHARE)})  # fmt: skip
    return runs


def _model_rows(cfg: Config, manager, model: str, dims: list[int], seeds: list[int], budget: PromptBudget,
                vanilla: list[dict], force: bool) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """One row per dimension for `model` with its per-seed gains over vanilla (same seeds) and raw
    p-values; and the rows of its runs."""
    base = {r["seed"]: r for r in vanilla}
    rows, runs = [], []
    for d in dims:
        tokens = budget.max_tokens(model, d)
        row: dict[str, Any] = {"model": model, "kge_dim": d, "max_tokens": int(tokens),
                               "fits": bool(tokens <= budget.max_positions)}  # fmt: skip
        if row["fits"]:
            seed_runs = _seed_runs(cfg, manager, model, d, seeds, force)
            runs += seed_runs
            row.update(_mean_std(seed_runs))
            for metric in METRICS:
                key = f"test_{metric}"
                gain, p = seed_paired_test([r[key] for r in seed_runs], [base[r["seed"]][key] for r in seed_runs])
                row[f"{metric}_gain"], row[f"{metric}_p_raw"] = gain, p
        else:
            nan = float("nan")
            row.update(accuracy_mean=nan, accuracy_std=nan, auc_mean=nan, auc_std=nan)
        rows.append(row)
    return rows, runs


def _correct_for_multiplicity(rows: list[dict]) -> None:
    """Holm across every (model, dimension, metric) test: sets `<metric>_p` on each tested row."""
    tests = [(r, m) for r in rows for m in METRICS if r.get(f"{m}_p_raw") is not None]
    adjusted = holm([r[f"{m}_p_raw"] for r, m in tests]) if tests else []
    for (r, m), p in zip(tests, adjusted, strict=True):
        r[f"{m}_p"] = p
    for r in rows:
        r["p_value"] = r.get("auc_p")  # the column the report and table show


def _vanilla_row(runs: list[dict], budget: PromptBudget) -> dict[str, Any]:
    row = {"model": "vanilla", "kge_dim": 0, "max_tokens": int(budget.base_tokens), "fits": True, "p_value": None}
    return {**row, **_mean_std(runs)}


def _mean_std(runs: list[dict]) -> dict[str, float]:
    acc, auc = [r["test_accuracy"] for r in runs], [r["test_auc"] for r in runs]
    return {"accuracy_mean": float(np.mean(acc)), "accuracy_std": _std(acc), "auc_mean": float(np.mean(auc)),
            "auc_std": _std(auc)}  # fmt: skip


def pays_off_from(rows: list[dict], metric: str = "auc") -> int | None:
    """The fixed-sequence answer: the smallest dimension d (of the rows that fit, sorted) such that d
    and every larger fitting dimension gain significantly; None if the largest one does not."""
    fitting = sorted((r for r in rows if r["fits"]), key=lambda r: r["kge_dim"])
    answer = None
    for r in reversed(fitting):
        p, gain = r.get(f"{metric}_p"), r.get(f"{metric}_gain", 0.0)
        if p is None or p >= ALPHA or gain <= 0:
            break
        answer = r["kge_dim"]
    return answer


def _answer(rows: list[dict], models: list[str], budget: PromptBudget) -> str:
    """Per model: from which dimension KGEs pay off (AUC; accuracy beside it), and what fits."""
    answers = []
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        auc, acc = pays_off_from(mine, "auc"), pays_off_from(mine, "accuracy")
        first = f"from d = {auc} on" if auc is not None else "at no tested dimension"
        first += f" (accuracy: {'from d = ' + str(acc) if acc is not None else 'none'})"
        fit = (f"largest dimension that fits the prompt: {budget.largest_fitting_dim}" if model == "prompt"
               else "every dimension fits")  # fmt: skip
        answers.append(f"{model}: KGEs beat vanilla significantly in test AUC {first}; {fit}")
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
    lines = [f"{'model':<18}{'dim':>5}{'tokens':>8}{'fits':>6}{'accuracy':>20}{'AUC':>20}{'p AUC':>10}{'p acc':>10}"]
    for r in result["rows"]:
        acc = f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}" if r["fits"] else "-"
        auc = f"{r['auc_mean']:.4f} ± {r['auc_std']:.4f}" if r["fits"] else "-"
        p_auc, p_acc = ("" if r.get(k) is None else f"{r[k]:.3g}" for k in ("auc_p", "accuracy_p"))
        lines.append(f"{r['model']:<18}{r['kge_dim']:>5}{r['max_tokens']:>8}{'yes' if r['fits'] else 'no':>6}"
                     f"{acc:>20}{auc:>20}{p_auc:>10}{p_acc:>10}")  # fmt: skip
    if result.get("degenerate_runs"):
        lines.append(f"warning: {result['degenerate_runs']} run(s) answered one class for more than "
                     f"{DEGENERATE_SHARE:.0%} of the test pairs (see runs[].degenerate in sweep.json)")  # fmt: skip
    return "\n".join(lines)


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown sweep preset {name!r} (known: {', '.join(PRESETS)})")
    return json.loads(json.dumps(PRESETS[name]))
