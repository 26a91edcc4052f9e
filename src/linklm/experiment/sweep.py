"""The KGE-dimension sweep: from which dimension do KGEs pay off, above what carries no graph?

    linklm sweep --preset small    # d = 4, 16, 10 seeds, on a subsample: the question on a laptop
    linklm sweep --preset full     # d = 2..128, 10 seeds, every control (also the default)

Seeds change the GNN's and the language model's initialisation, data order and on-the-fly
negatives; the split, and so the test pairs, stay fixed. Every arm (prompt, embedding_frozen) and
every control runs with the same seeds and is scored on the same test pairs (`llm.test_pairs` of
them, the same draw for every run), so each comparison is over per-seed differences.

The controls carry what a KGE arm carries minus the graph: control_degree (each node's log train
degree in the KGE slots; trained once per seed, built on that seed's GNN of the smallest d),
control_shuffled (the d-dim KGE table with its node rows permuted) and control_random (a fixed
Gaussian vector of dim d per node), the last two at every d and seed. A KGE arm pays off at d only
if it beats vanilla and every control of that d: the rule, its tests and intervals are in
linklm.experiment.stats; rows, contrasts and the answer in linklm.experiment.sweep_analysis.
sweep.json also gives, on the sweep's own test pairs, the floors (popularity, preferential
attachment) and each (d, seed) GNN's test AUC.

Sizes on 2 CPU cores: small, 80 trainings and 20 GNNs, 41 min 20 s measured (2026-12-02, an Intel
Xeon in bf16; an estimated 70 min on a slower bf16 CPU); full (an estimate, not measured), 310
trainings (70 of them prompts of up to 2 + 2 * 128 KGE tokens, 10 of them vanilla_all) and 70
GNNs on all train positives and test pairs, about 18-33 h.

`--preset full` also trains vanilla_all once per seed: the text-only arm on every train edge, not
only the classifiers' held-out share (~9x the positives at the default split, ~3 h of the total).
It is a reference beside the answer, outside the rule: does text with the graph's whole supervision
catch up with the KGE arms?
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from linklm.config import CONTROL_KINDS, TEXT_ONLY, Config
from linklm.errors import UserError
from linklm.experiment import stats
from linklm.experiment.sweep_analysis import FLAT_CONTROL, answer_text, contrasts, decisions, sweep_rows
from linklm.io import write_json

_FULL = {
    "dims": [2, 4, 8, 16, 32, 64, 128],
    "seeds": list(range(10)),
    "models": ["prompt", "embedding_frozen"],
    "controls": list(CONTROL_KINDS),
    "vanilla_all": True,  # the text-only arm also trained on every train edge, once per seed
    "overrides": {},
    "estimate": (
        "310 trainings (10 of them vanilla_all, on ~9x the positives) and 70 GNNs: about 18-33 h "
        "on 2 CPU cores (an estimate, not measured)"
    ),
}
PRESETS: dict[str, dict[str, Any]] = {
    "default": _FULL,
    "full": _FULL,
    # The laptop-sized question: fewer dimensions, train positives and scored pairs (the same fixed
    # 4,000 of the 20,000 test pairs for every arm and seed), 10 seeds; control_random is left out
    # for time (control_shuffled keeps every KGE value and destroys the graph).
    "small": {
        "dims": [4, 16],
        "seeds": list(range(10)),
        "models": ["prompt", "embedding_frozen"],
        "controls": ["control_degree", "control_shuffled"],
        "vanilla_all": False,
        "overrides": {"llm": {"max_train_pairs": 2000, "val_pairs": 2000, "test_pairs": 4000}, "gnn": {"epochs": 150}},
        "estimate": "80 trainings and 20 GNNs: 41 min measured on a 2-core Intel Xeon in bf16 (2026-12-02)",
    },  # fmt: skip
}
ALPHA = stats.ALPHA
DEGENERATE_SHARE = 0.8  # a model answering one class for more of the balanced test pairs is flagged
_KEYS = ["source_idx", "target_idx"]


def _convergence(runs: list[dict], seeds: list[int]) -> str:
    """How much evidence the answer rests on: seeds per arm, and the runs the budget capped."""
    capped = sum(r.get("stopped") == "budget" for r in runs)
    return (f" | {len(seeds)} seeds per arm; {capped} of {len(runs)} runs stopped on the budget (llm.max_epochs) "
            "with val still improving")  # fmt: skip


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
        plus 2 + 2 * kge_dim tokens for the prompt model, plus 2 (one slot per KGE) for the embedding
        ones and the controls."""
        return self.base_tokens + 2 + 2 * kge_dim if model == "prompt" else self.base_tokens + 2

    def fits(self, model: str, kge_dim: int) -> bool:
        return self.max_tokens(model, kge_dim) <= self.max_positions


def run_sweep(cfg: Config, dims: list[int], seeds: list[int], models: list[str], controls: list[str] = (),
              force: bool = False, vanilla_all: bool = False) -> dict:  # fmt: skip
    from linklm.experiment.pipeline import llm_precision, prepare_data

    start = time.perf_counter()
    llm_precision(cfg)  # a precision the device lacks stops the sweep before any stage
    dims, controls = sorted(set(dims)), [c for c in CONTROL_KINDS if c in controls]  # the rule reads d in order
    out_dir = cfg.run_dir / "sweep"
    manager = prepare_data(cfg)
    budget = _prompt_budget(cfg, manager)
    text = ["vanilla", *(["vanilla_all"] if vanilla_all else [])]
    runs = [_one_run(k, _sub_config(cfg, f"{k}-s{s}", None, s), manager, None, force) for k in text for s in seeds]
    kge_runs, gnns = _kge_runs(cfg, manager, dims, seeds, models, controls, budget, force)
    runs += kge_runs
    rows = sweep_rows(runs, models, controls, dims, budget)
    same = _same_pairs(manager, runs, gnns)
    decided = decisions(rows, models, ALPHA)
    _plot_accuracy(rows, out_dir / "accuracy_vs_dim.png")
    result = {"dims": dims, "seeds": seeds, "models": models, "controls": controls, "rows": rows,
              "contrasts": contrasts(rows, runs, models), **same, "runs": runs, "decisions": decided,
              "answer": answer_text(rows, models, decided, same, budget) + _convergence(runs, seeds),
              "rule": stats.rule_text(models, controls), "budget_runs": sum(r.get("stopped") == "budget" for r in runs),
              "alpha": ALPHA, "largest_fitting_prompt_dim": budget.largest_fitting_dim,
              "max_positions": budget.max_positions, "degenerate_runs": sum(r["degenerate"] for r in runs),
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


def _kge_runs(cfg: Config, manager, dims: list[int], seeds: list[int], models: list[str], controls: list[str],
              budget: PromptBudget, force: bool) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """Per d (that some arm fits) and seed: the GNN, then every arm that fits and every d-dependent
    control; control_degree once per seed, on the GNN of the first such d. Returns runs and GNNs."""
    from linklm.experiment.pipeline import train_gnn

    runs, gnns, flat_done = [], [], False
    for d in dims:
        arms = [m for m in models if budget.fits(m, d)]
        if not arms:
            continue
        kinds = arms + [c for c in controls if c != FLAT_CONTROL]
        if FLAT_CONTROL in controls and not flat_done:
            kinds.append(FLAT_CONTROL)
            flat_done = True
        for seed in seeds:
            sub = _sub_config(cfg, f"d{d}-s{seed}", d, seed)
            gen = train_gnn(sub, manager, force=force)
            gnns.append({"kge_dim": d, "seed": seed, "test_auc_all_pairs": gen.metrics["test_auc"],
                         "predictions": str(sub.run_dir / "gnn_test_predictions.parquet")})  # fmt: skip
            runs += [_one_run(kind, sub, manager, gen, force) for kind in kinds]
    return runs, gnns


def _one_run(kind: str, sub: Config, manager, gen, force: bool) -> dict:
    """Train (or reuse) one classifier of the sweep; its row of `runs`."""
    from linklm.experiment.pipeline import train_classifier

    m = train_classifier(kind, sub, manager, gen, force=force)
    (tn, fp), (fn, tp) = m["test_confusion_matrix"]
    share = (fp + tp) / max(1, tn + fp + fn + tp)
    kge_dim = None if kind in (*TEXT_ONLY, FLAT_CONTROL) else sub.gnn.kge_dim
    return {**_scalar(m), "model": kind, "kge_dim": kge_dim, "gnn_dim": None if gen is None else sub.gnn.kge_dim,
            "seed": sub.llm.seed, "predicted_positive_share": share,
            "degenerate": bool(max(share, 1 - share) > DEGENERATE_SHARE),
            "predictions": str(sub.run_dir / "models" / kind / "test_predictions.parquet")}  # fmt: skip


def _same_pairs(manager, runs: list[dict], gnns: list[dict]) -> dict[str, Any]:
    """On the test pairs the classifiers scored (the first run's; every run's must be the same set):
    the floors, and each (d, seed) GNN's test AUC."""
    import pandas as pd

    from linklm.evaluate import evaluate_scores
    from linklm.experiment import baselines

    pairs = pd.read_parquet(runs[0]["predictions"], columns=[*_KEYS, "label"])
    ref = _sorted_pairs(pairs)
    other = [r["predictions"] for r in runs[1:]
             if not np.array_equal(_sorted_pairs(pd.read_parquet(r["predictions"], columns=_KEYS)), ref)]  # fmt: skip
    if other:  # a paired comparison of other pairs would mix the pairs' variance into the seeds'
        warnings.warn(f"{len(other)} run(s) scored other test pairs than {runs[0]['predictions']}, e.g. {other[0]}",
                      stacklevel=2)  # fmt: skip
    floors = baselines.floors(manager, pairs=(pairs["source_idx"].to_numpy(), pairs["target_idx"].to_numpy(),
                                              pairs["label"].to_numpy()))  # fmt: skip
    out = []
    for g in gnns:
        entry = {k: v for k, v in g.items() if k != "predictions"}
        if Path(g["predictions"]).is_file():  # rank 0 writes it
            scores = pairs[_KEYS].merge(pd.read_parquet(g["predictions"]).drop_duplicates(_KEYS), on=_KEYS, how="left")
            entry["test_auc"] = evaluate_scores(scores["label"], scores["score"])["auc"]
        out.append(entry)
    return {"test_pairs": len(pairs), "same_pairs": not other, "floors": floors, "gnn": out}


def _sorted_pairs(frame) -> np.ndarray:
    """The (source_idx, target_idx) rows of `frame`, sorted: a set of pairs, comparable by equality."""
    rows = frame[_KEYS].to_numpy()
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def _plot_accuracy(rows: list[dict], path: Path) -> None:
    """Mean accuracy per dimension of every arm and d-dependent control, over the dimensions it ran
    at, with vanilla (rows[0]) flat."""
    from linklm.report.plots import metric_vs_dimension_ragged

    ran = [r for r in rows if r["kge_dim"] and r.get("n_seeds")]
    names = list(dict.fromkeys(r["model"] for r in ran))
    mine = {m: [r for r in ran if r["model"] == m] for m in names}
    series = {m: ([r["accuracy_mean"] for r in rs], [r["accuracy_std"] for r in rs]) for m, rs in mine.items()}
    metric_vs_dimension_ragged({m: [r["kge_dim"] for r in rs] for m, rs in mine.items()}, series,
                               rows[0]["accuracy_mean"], path)  # fmt: skip


def _scalar(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str) or v is None}


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _gain(row: dict) -> str:
    if row.get("auc_gain") is None:
        return ""
    low, high = row.get("auc_ci95") or (float("nan"), float("nan"))
    return f"{row['auc_gain']:+.4f} [{low:+.3f}, {high:+.3f}]"


def format_table(result: dict) -> str:
    """The rows (mean ± std; AUC gain over vanilla [95 % t-interval]; one-sided paired t p against
    vanilla and against the strongest control; accuracy's Holm p), then the same-pair references."""
    head = (f"{'model':<18}{'dim':>5}{'tokens':>7}{'fits':>5}{'accuracy':>18}{'AUC':>18}{'AUC gain [95 % CI]':>27}"
            f"{'p van':>9}{'p ctrl':>9}{'p acc':>9}")  # fmt: skip
    lines = [head]
    for r in result["rows"]:
        ran = r.get("n_seeds") and r["fits"]
        acc = f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}" if ran else "-"
        auc = f"{r['auc_mean']:.4f} ± {r['auc_std']:.4f}" if ran else "-"
        lines.append(f"{r['model']:<18}{r['kge_dim'] or '-':>5}{r['max_tokens']:>7}{'yes' if r['fits'] else 'no':>5}"
                     f"{acc:>18}{auc:>18}{_gain(r):>27}{_p(r.get('auc_p')):>9}{_p(r.get('auc_p_control')):>9}"
                     f"{_p(r.get('accuracy_p_holm')):>9}")  # fmt: skip
    floors = ", ".join(f"{name} {f['test_auc']:.4f}" for name, f in sorted(result.get("floors", {}).items()))
    gnn: dict[int, list[float]] = {}
    for g in result.get("gnn", []):
        if g.get("test_auc") is not None:
            gnn.setdefault(g["kge_dim"], []).append(g["test_auc"])
    per_d = ", ".join(f"d={d} {np.mean(v):.4f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.4f}"
                      for d, v in sorted(gnn.items()))  # fmt: skip
    lines.append(f"on the same {result.get('test_pairs', '?')} test pairs: floors {floors or '-'}; GNN {per_d or '-'}")
    lines.append("p ctrl: against the strongest control of that d; the rule: sweep.json `rule`")
    if result.get("degenerate_runs"):
        lines.append(f"warning: {result['degenerate_runs']} run(s) answered one class for more than "
                     f"{DEGENERATE_SHARE:.0%} of the test pairs (see runs[].degenerate in sweep.json)")  # fmt: skip
    return "\n".join(lines)


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown sweep preset {name!r} (known: {', '.join(PRESETS)})")
    return json.loads(json.dumps(PRESETS[name]))
