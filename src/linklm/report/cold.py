"""The report's "Where text pays off" (held-out items) and "The fused model" sections."""

from __future__ import annotations

import html
from typing import Any

from linklm.config import FUSED_KINDS


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else ("" if x is None else str(x))


_STATES = {
    "budget": "capped by the budget, val still improving",
    "converged": "converged on val",
    None: "needs no training",
}


def _entries(results: dict) -> dict[str, dict]:
    out = {f"{name} (baseline)": e for name, e in results.get("baselines", {}).items() if isinstance(e, dict)}
    if "gnn" in results:
        gnn = results["gnn"]
        fallback = gnn.get("cold_start", {}).get("fallback", "?")
        out[f"gnn ({gnn.get('model', 'lightgcn')}, held-out items: {fallback})"] = gnn
    return {**out, **results.get("models", {})}


def cold_items_section(results: dict, table) -> list[tuple[str, str]]:
    """Who wins on held-out items, first, from results.json `cold_items`; then every model's AUC on
    the pairs of held-out and of the other items. Empty unless the run held items out."""
    summary = results.get("cold_items")
    if not summary or not summary.get("winner"):
        return []
    auc = summary["test_auc_cold_items"]
    winner, strongest = summary["winner"], summary.get("strongest_baseline")
    others = [v for k, v in auc.items() if k != winner]
    lead = f"{auc[winner] - max(others):+.4f} over the next best" if others else "alone"
    stopped = summary.get("stopped", {})
    parts = [
        f"On held-out items, {winner} wins: test AUC {auc[winner]:.4f} on their pairs, {lead} (one seed; "
        f"{_STATES.get(stopped.get(winner), stopped.get(winner))})."
    ]
    fused = summary.get("fused_vs_strongest")
    if fused:
        lo, hi = fused["ci95"]
        parts.append(f"The fused model scores {auc['fused']:.4f} there, {fused['auc_gain']:+.4f} [{lo:+.4f}, "
                     f"{hi:+.4f}] over the strongest of the GNN, the inductive GraphSAGE, vanilla and the floors "
                     f"({strongest}, {auc[strongest]:.4f}); the interval resamples the test users of one "
                     f"seed (fused: {_STATES.get(fused.get('model_stopped'))}; {strongest}: "
                     f"{_STATES.get(fused.get('base_stopped'))}).")  # fmt: skip
    parts.append("A held-out item has no train edge and passes no message in any split; its val and test pairs "
                 "are its ratings against as many non-edges among the held-out items.")  # fmt: skip
    rows = []
    for name, e in _entries(results).items():
        if "test_auc_cold_items" in e:
            rows.append([name, _fmt(e["test_auc_cold_items"]), _fmt(e.get("test_auc_warm_items")),
                         _fmt(e.get("test_auc"))])  # fmt: skip
    rows.sort(key=lambda row: -float(row[1] or "nan") if row[1] != "nan" else 0.0)
    md_table, html_table = table(["model", "test AUC, held-out items", "test AUC, other items", "test AUC"], rows)
    text = " ".join(parts)
    return [(f"## Where text pays off\n\n{text}\n\n{md_table}",
             f"<h2>Where text pays off</h2><p>{html.escape(text)}</p>{html_table}")]  # fmt: skip


def fused_section(results: dict, table) -> list[tuple[str, str]]:
    """The fused model and its ablations: the val-selected step beside the last step (a pre-declared
    secondary figure: selection may keep step 0, the GNN itself)."""
    models = results.get("models", {})
    kinds = [k for k in FUSED_KINDS if k in models]
    if not kinds:
        return []
    rows = []
    for kind in kinds:
        m, last = models[kind], models[kind].get("last_step", {})
        rows.append([kind, m.get("best_step"), _fmt(m.get("val_auc")), _fmt(m.get("test_auc")), last.get("step"),
                     _fmt(last.get("val_auc")), _fmt(last.get("test_auc"))])  # fmt: skip
    gnn = results.get("gnn", {})
    text = (f"The GNN's logit plus a correction learned from the text and u ⊙ m (fused), from the text alone "
            f"(fused_text) or from u ⊙ m alone (fused_kge). Each starts as the GNN (test AUC "
            f"{_fmt(gnn.get('test_auc'))}); val picks the step, step 0 included. The last step is scored "
            "too.")  # fmt: skip
    md_table, html_table = table(["model", "selected step", "val AUC", "test AUC", "last step", "last-step val AUC",
                                  "last-step test AUC"], rows)  # fmt: skip
    return [(f"## The fused model\n\n{text}\n\n{md_table}",
             f"<h2>The fused model</h2><p>{html.escape(text)}</p>{html_table}")]  # fmt: skip
