"""A sweep's rows, contrasts and answer, from its runs alone (no training, no files).

    rows = sweep_rows(runs, models, controls, dims, budget)   one per arm or control and d
    contrasts(rows, runs, models)                              each d against the next smaller d
    decisions(rows, models)                                    the rule of linklm.experiment.stats
    answer_text(rows, models, decisions, same_pairs, budget)   the answer line

A run is a dict with model, kge_dim (None for vanilla and control_degree), seed, test_auc and
test_accuracy. Every comparison pairs runs by seed; `budget` is the sweep's PromptBudget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linklm.experiment import stats

FLAT_CONTROL = "control_degree"  # trained once per seed: its input does not depend on d
METRICS = ("auc", "accuracy")  # AUC decides; accuracy is secondary


def _by_seed(runs: list[dict], model: str, kge_dim: int | None) -> dict[int, dict]:
    return {r["seed"]: r for r in runs if r["model"] == model and r["kge_dim"] == kge_dim}


def _summary(mine: dict[int, dict]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_seeds": len(mine)}
    for metric in METRICS:
        values = [r[f"test_{metric}"] for r in mine.values()]
        out[f"{metric}_mean"] = float(np.mean(values)) if values else float("nan")
        out[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def versus(mine: dict[int, dict], ref: dict[int, dict], alternative: str = "greater") -> dict[str, Any]:
    """Paired comparisons of two sets of runs over the seeds both have, per metric."""
    seeds = sorted(set(mine) & set(ref))
    return {metric: stats.compare([mine[s][f"test_{metric}"] for s in seeds],
                                  [ref[s][f"test_{metric}"] for s in seeds], alternative)
            for metric in METRICS}  # fmt: skip


def sweep_rows(runs: list[dict], models: list[str], controls: list[str], dims: list[int], budget) -> list[dict]:
    """The vanilla row, control_degree's (once), then per arm and per d-dependent control one row per d."""
    vanilla = _by_seed(runs, "vanilla", None)
    rows = [{"model": "vanilla", "kge_dim": 0, "max_tokens": int(budget.base_tokens), "fits": True,
             **_summary(vanilla)}]  # fmt: skip
    everything = _by_seed(runs, "vanilla_all", None)  # a reference outside the rule (preset full)
    if everything:
        rows.append(_row("vanilla_all", 0, everything, {"vanilla": vanilla}, budget, arm=False))
    flat = _by_seed(runs, FLAT_CONTROL, None) if FLAT_CONTROL in controls else {}
    if flat:
        rows.append(_row(FLAT_CONTROL, 0, flat, {"vanilla": vanilla}, budget, arm=False))
    for model in [*models, *(c for c in controls if c != FLAT_CONTROL)]:
        for d in dims:
            mine = _by_seed(runs, model, d)
            refs = {"vanilla": vanilla}
            if model in models:  # an arm also faces every control of its d
                refs.update({c: (flat if c == FLAT_CONTROL else _by_seed(runs, c, d)) for c in controls})
            if mine or model in models:
                rows.append(_row(model, d, mine, refs, budget, arm=model in models))
    _holm_accuracy([r for r in rows if r["model"] in models])
    return rows


def _row(model: str, d: int, mine: dict[int, dict], refs: dict[str, dict], budget, arm: bool) -> dict[str, Any]:
    tokens = budget.max_tokens(model, d) if d else budget.base_tokens + (2 if model == FLAT_CONTROL else 0)
    row: dict[str, Any] = {"model": model, "kge_dim": d, "max_tokens": int(tokens),
                           "fits": bool(tokens <= budget.max_positions), **_summary(mine)}  # fmt: skip
    if not mine:
        return row
    row["vs"] = {name: versus(mine, ref) for name, ref in refs.items() if ref}
    vs_vanilla = row["vs"].get("vanilla", {}).get("auc", {})
    row.update(auc_gain=vs_vanilla.get("gain"), auc_ci95=vs_vanilla.get("ci95"), auc_p=vs_vanilla.get("p"))
    controls = {name: _summary(ref)["auc_mean"] for name, ref in refs.items() if name != "vanilla" and ref}
    if arm:  # what the rule reads: an arm faces vanilla and every control
        row["strongest_control"] = max(controls, key=controls.get) if controls else None
        row["strongest_control_auc"] = controls.get(row["strongest_control"])
        row["auc_p_control"] = row["vs"][row["strongest_control"]]["auc"]["p"] if controls else None
        for metric in METRICS:  # every comparison must hold: the largest p is the test's (None if one is missing)
            ps = [row["vs"].get(name, {}).get(metric, {}).get("p") for name in refs]
            row[f"{metric}_p_all"] = stats.union_p(ps)
        weakest = [(v["auc"]["p"] if v["auc"]["p"] is not None else 2.0, name) for name, v in row["vs"].items()]
        row["weakest_comparison"] = max(weakest)[1]
    return row


def _holm_accuracy(arm_rows: list[dict]) -> None:
    """Accuracy, the secondary endpoint: Holm over every (arm, d) of its intersection-union p."""
    tested = [r for r in arm_rows if r.get("accuracy_p_all") is not None]
    for r, p in zip(tested, stats.holm([r["accuracy_p_all"] for r in tested]), strict=True):
        r["accuracy_p_holm"] = p


def contrasts(rows: list[dict], runs: list[dict], models: list[str]) -> list[dict]:
    """Per arm, each tested d against the next smaller tested d: the paired difference (two-sided)."""
    out = []
    for model in models:
        tested = sorted(r["kge_dim"] for r in rows if r["model"] == model and r.get("n_seeds"))
        for small, large in zip(tested, tested[1:], strict=False):
            diff = versus(_by_seed(runs, model, large), _by_seed(runs, model, small), "two-sided")
            out.append({"model": model, "kge_dim": large, "smaller_dim": small, **diff})
    return out


def decisions(rows: list[dict], models: list[str], alpha: float = stats.ALPHA) -> dict[str, dict]:
    """The primary rule per arm: the fixed sequence over the fitting d at alpha / len(models)."""
    level = alpha / max(1, len(models))
    out = {}
    for model in models:
        tests = {r["kge_dim"]: r.get("auc_p_all") for r in rows if r["model"] == model and r["fits"]}
        answer, stopped = stats.fixed_sequence(tests, level)
        out[model] = {"pays_off_from": answer, "stopped_at": stopped, "level": level,
                      "significant_dims": sorted(d for d in tests if answer is not None and d >= answer)}  # fmt: skip
    return out


def answer_text(rows: list[dict], models: list[str], decided: dict[str, dict], same_pairs: dict, budget) -> str:
    """Per arm: from which d it pays off, where it stands at that d (or where the sequence stopped)
    against its strongest control, the GNN of the same d and the floors; accuracy; what fits."""
    parts = []
    for model in models:
        mine = {r["kge_dim"]: r for r in rows if r["model"] == model}
        dec = decided[model]
        if dec["pays_off_from"] is not None:
            d = dec["pays_off_from"]
            head = (f"KGEs pay off from d = {d} on (test AUC above vanilla and every control at each fitting "
                    f"d >= {d}, p < {dec['level']:.3g})")  # fmt: skip
        elif dec["stopped_at"] is not None:
            d, row = dec["stopped_at"], mine[dec["stopped_at"]]
            p = row.get("vs", {}).get(row.get("weakest_comparison"), {}).get("auc", {}).get("p")
            head = (f"KGEs pay off at no tested dimension (at the largest fitting d = {d}, against "
                    f"{row.get('weakest_comparison', 'vanilla')}: p {_p(p)}, needed < {dec['level']:.3g})")  # fmt: skip
        else:
            parts.append(f"{model}: no tested dimension fits")
            continue
        accuracy = sorted(k for k, r in mine.items() if r.get("accuracy_p_holm", 1.0) < stats.ALPHA)
        acc = "d = " + ", ".join(map(str, accuracy)) if accuracy else "none"
        fit = (f"largest dimension that fits the prompt: {budget.largest_fitting_dim}" if model == "prompt"
               else "every dimension fits")  # fmt: skip
        parts.append(f"{model}: {head}; {_standing(mine[d], same_pairs)}; accuracy (secondary, Holm): {acc}; {fit}")
    everything = next((r for r in rows if r["model"] == "vanilla_all" and r.get("auc_gain") is not None), None)
    if everything:  # a reference, outside the rule: how far text gets on every train edge
        low, high = everything["auc_ci95"] or (float("nan"), float("nan"))
        auc, gain = everything["auc_mean"], everything["auc_gain"]
        parts.append(f"vanilla_all (text only, trained on every train edge): mean test AUC {auc:.4f}, "
                     f"{gain:+.4f} [{low:+.3f}, {high:+.3f}] over vanilla")  # fmt: skip
    return " | ".join(parts)


def _standing(row: dict, same_pairs: dict) -> str:
    """The arm's mean test AUC at its d against its strongest control, the GNN of that d and the floors."""
    auc, d = row["auc_mean"], row["kge_dim"]

    def against(name: str, value: float | None) -> str:
        if value is None or not np.isfinite(value):
            return f"{name} n/a"
        return f"{'above' if auc > value else 'not above'} {name} ({value:.4f})"

    gnn = [g["test_auc"] for g in same_pairs.get("gnn", []) if g["kge_dim"] == d]
    items = [against(f"the strongest control, {row.get('strongest_control')}", row.get("strongest_control_auc")),
             against(f"the GNN of d = {d}", float(np.mean(gnn)) if gnn else None),
             *(against(name, f["test_auc"]) for name, f in sorted(same_pairs.get("floors", {}).items()))]  # fmt: skip
    return f"at d = {d} its mean test AUC {auc:.4f} is " + ", ".join(items)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"
