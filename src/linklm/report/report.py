"""`report.md` and `report.html` for a run folder, from results.json, logs and predictions only.

    linklm report --run runs/default        (also the last stage of `linklm run`)

Nothing here loads a model or trains anything: a report can be rebuilt at any time, in seconds.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linklm.artifacts import RESULTS_SHAPE, read_json
from linklm.config import LLM_KINDS
from linklm.errors import UserError
from linklm.io import atomic_path
from linklm.report import cold, plots


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise UserError(f"{results_path}: no results to report (run `linklm run` first)")
    results = read_json(results_path, RESULTS_SHAPE, user=True)
    models = {k: results["models"][k] for k in LLM_KINDS if k in results.get("models", {})}
    sweep = run_dir / "sweep" / "sweep.json"
    if sweep.is_file():  # the verdict also gives the sweep's answer
        results["sweep_answer"] = json.loads(sweep.read_text()).get("answer", "")
    sections = [
        _summary(results, models),
        *cold.cold_items_section(results, _table),
        *cold.fused_section(results, _table),
        *_ranking_section(results, models),
    ]
    images = _model_figures(run_dir, models)
    later_sections, later_images = _sweep_and_explain(run_dir)
    md, page = _render(run_dir, results, sections + later_sections, images + later_images)
    with atomic_path(run_dir / "report.md") as tmp:
        tmp.write_text(md, encoding="utf-8")
    with atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return run_dir / "report.html"


def _model_figures(run_dir: Path, models: dict) -> list[tuple[str, Path]]:
    """The figures drawn from the models' results, logs and test predictions: (title, png) pairs."""
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    images: list[tuple[str, Path]] = []
    curves = _roc_inputs(run_dir, models)
    if curves:
        images.append(("Test ROC curves of every model", plots.roc_curves(curves, figures / "roc.png")))
    if models:
        logs = {k: _read_jsonl(run_dir / "models" / k / "train_log.jsonl") for k in models}
        val = {k: models[k].get("val_history", []) for k in models}
        images.append(("Training curves", plots.training_curves(logs, val, figures / "training_curves.png")))
        if any(val.values()):
            capped = tuple(k for k in models if models[k].get("stopped") == "budget")
            curve = plots.budget_curve(val, figures / "budget_curve.png", _batch_size(run_dir), capped)
            images.append(("Budget curve: val AUC against training examples", curve))
        names = list(models)
        images.append((
            "Test accuracy by model",
            plots.accuracy_bars(names, [models[k]["test_accuracy"] for k in names], None, figures / "accuracy.png"),
        ))  # fmt: skip
        matrices = {k: models[k]["test_confusion_matrix"] for k in names}
        images.append(("Confusion matrices (test)", plots.confusion_matrices(matrices, figures / "confusion.png")))
    return images


def _batch_size(run_dir: Path) -> int | None:
    """llm.batch_size of the run (config.json), for val evaluations recorded without `examples`."""
    try:
        return int(json.loads((run_dir / "config.json").read_text())["llm"]["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _roc_inputs(run_dir: Path, models: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{model: (labels, scores)} on the test pairs, the GNN's first, for every saved prediction file."""
    files = {"gnn": run_dir / "gnn_test_predictions.parquet"}
    files.update({kind: run_dir / "models" / kind / "test_predictions.parquet" for kind in models})
    curves = {}
    for name, path in files.items():
        if path.is_file():
            frame = pd.read_parquet(path)
            curves[name] = (frame["label"].to_numpy(), frame["score"].to_numpy())
    return curves


def _sweep_and_explain(run_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, Path]]]:
    """The sections and figures of `linklm sweep` and `linklm explain`, for those that were run."""
    sections: list[tuple[str, str]] = []
    images: list[tuple[str, Path]] = []
    sweep = run_dir / "sweep" / "sweep.json"
    if sweep.is_file():
        sections.append(_sweep_section(json.loads(sweep.read_text())))
        if (run_dir / "sweep" / "accuracy_vs_dim.png").is_file():
            images.append(("Accuracy against KGE dimension", run_dir / "sweep" / "accuracy_vs_dim.png"))
    explain = run_dir / "explain" / "explain.json"
    if explain.is_file():
        sections.append(_explain_section(json.loads(explain.read_text())))
        for png in sorted((run_dir / "explain").glob("*.png")):
            images.append((png.stem.replace("_", " ").capitalize(), png))
    return sections, images


def _render(run_dir: Path, results: dict, sections: list[tuple[str, str]],
            images: list[tuple[str, Path]]) -> tuple[str, str]:  # fmt: skip
    """report.md's text and report.html's page. sections: (markdown, html) fragments; images:
    (title, png) pairs, linked from the markdown and embedded in the page."""
    name = html.escape(str(results.get("dataset", {}).get("name", run_dir.name)))
    md = [f"# linklm report: {name}", ""]
    body = [f"<h1>linklm report: {name}</h1>"]
    for text, fragment in sections:
        md += [text, ""]
        body.append(fragment)
    for title, path in images:
        rel = path.relative_to(run_dir)
        md += [f"## {title}", "", f"![{title}]({rel.as_posix()})", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    env = results.get("environment", {})
    md += ["## Environment", "", "```", json.dumps(env, indent=2), "```"]
    body.append(f"<h2>Environment</h2><pre>{html.escape(json.dumps(env, indent=2))}</pre>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>linklm report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
    return "\n".join(md) + "\n", page


def _table(header: list[str], rows: list[list[Any]]) -> tuple[str, str]:
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return "\n".join(md), f"<table><tr>{th}</tr>{trs}</table>"


def _fmt(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else ("" if x is None else str(x))


def _summary(results: dict, models: dict) -> tuple[str, str]:
    ds = results.get("dataset", {})
    intro = (
        f"Dataset **{ds.get('name', '?')}**: {ds.get('users', '?'):,} users, {ds.get('movies', '?'):,} movies, "
        f"{ds.get('ratings', '?'):,} ratings. Every model is selected on val and scored once on the same "
        "test pairs (50 % fixed negatives)."
        if ds
        else ""
    )
    rows = []
    baselines = sorted(results.get("baselines", {}).items(), key=lambda item: item[1]["test_auc"])
    for name, floor in baselines:  # no training: the floors, and the ensemble; weakest first
        rows.append([f"{name} (baseline)", "", _fmt(floor["test_auc"]), "", _warm_cold_cell(floor), "", "", "", ""])
    gnn = results.get("gnn")
    if gnn:
        label = f"gnn ({gnn.get('model', 'sage')}, dot product)"
        rows.append([label, "", _fmt(gnn["test_auc"]), "", _warm_cold_cell(gnn), _fmt(gnn["val_auc"]),
                     _fmt(gnn["train_seconds"], 1), "", ""])  # fmt: skip
    for kind, m in models.items():
        if m.get("prompt_kge_dims") and m["prompt_kge_dims"] != m.get("kge_dim"):
            kind = f"{kind} ({m['prompt_kge_dims']} of {m['kge_dim']} KGE components as text)"
        rows.append([kind, _fmt(m["test_accuracy"]), _fmt(m["test_auc"]), _fmt(m["test_f1"]), _warm_cold_cell(m),
                     _fmt(m["val_auc"]), _fmt(m["train_seconds"], 1), _fmt(m["examples_per_second"], 0),
                     _fmt(m.get("stopped"))])  # fmt: skip
    header = ["model", "test accuracy", "test AUC", "test F1", "AUC warm / cold", "val AUC", "train s", "examples/s",
              "stopped"]  # fmt: skip
    md_table, html_table = _table(header, rows)
    text = " ".join(part for part in (_verdict(results, models), intro) if part)
    return (
        f"## Results\n\n{text}\n\n{md_table}",
        f"<h2>Results</h2><p>{html.escape(text).replace('**', '')}</p>{html_table}",
    )


# How the verdict names each pre-specified comparison (experiment.baselines.COMPARISONS)
_LABELS = {
    "embedding_frozen_vs_vanilla": "embedding_frozen − vanilla",
    "best_control_vs_vanilla": "strongest control ({control}) − vanilla",
    "embedding_frozen_vs_best_control": "embedding_frozen − strongest control ({control})",
    "fused_vs_gnn": "fused − the GNN it is fed ({gnn})",
}


def _verdict(results: dict, models: dict) -> str:
    """The answer first: the pre-specified differences with their test-pair intervals, then the
    floors and the GNN, the sweep's answer, the models the budget capped, and whether the KGEs
    were out of sample."""
    if not models:
        return ""
    sentences = [_answer(results, models)]
    floors = {k: f for k, f in results.get("baselines", {}).items() if k in ("popularity", "preferential_attachment")}
    listed = [f"{name.replace('_', ' ')} {f['test_auc']:.4f}" for name, f in sorted(floors.items())]
    gnn = results.get("gnn")
    others = [f"GNN {gnn['test_auc']:.4f}"] if gnn else []
    if "gnn_vanilla_average" in results.get("baselines", {}):
        others.append(f"GNN–vanilla score average {results['baselines']['gnn_vanilla_average']['test_auc']:.4f}")
    if listed or others:
        head = f"Floors on the same pairs (no training): {', '.join(listed)}" if listed else "On the same pairs"
        sentences.append("; ".join([head, *others]) + ".")
    if results.get("sweep_answer"):
        sentences.append(f"Sweep (seeds repeated, training variance included): {results['sweep_answer'].rstrip('.')}.")
    capped = [kind for kind, m in models.items() if m.get("stopped") == "budget"]
    if capped:
        sentences.append(f"Capped by the budget (val still improving at llm.max_epochs): {', '.join(capped)}.")
    if gnn and "classifier_train_auc" in gnn:
        sentences.append(f"The GNN scores the classifiers' train pairs at AUC {gnn['classifier_train_auc']:.4f} "
                         f"(test {gnn['test_auc']:.4f}): their KGEs are out of sample.")  # fmt: skip
    return " ".join(sentences)


def _answer(results: dict, models: dict) -> str:
    """The pre-specified comparisons whose models both ran: from results.json `margins` with their
    intervals, else (a run from before them) the bare difference of test AUCs, said to be one."""
    from linklm.experiment.baselines import COMPARISONS, best_control

    margins = results.get("margins", {})
    entries = margins.get("comparisons", {})
    control = best_control({kind: m["val_auc"] for kind, m in models.items()})
    gnn = results.get("gnn")
    aucs = {**{kind: m["test_auc"] for kind, m in models.items()}, **({"gnn": gnn["test_auc"]} if gnn else {})}
    parts = []
    for key, (model, base) in COMPARISONS.items():
        model, base = (control if name == "best_control" else name for name in (model, base))
        if model not in aucs or base not in aucs:
            continue
        entry = entries.get(key, {})
        base_auc = entry.get("base_auc", aucs[base])  # on the pairs compared (llm.test_pairs may take fewer)
        label = _LABELS[key].format(control=control, gnn=f"{base_auc:.4f}")
        if (entry.get("model"), entry.get("base")) == (model, base):
            parts.append(f"{label} {_gain(entry['auc_gain'], entry['ci95'])}")
        else:  # a run from before margins were pre-specified
            parts.append(f"{label} {_gain(aucs[model] - aucs[base], None)} (one seed's test AUCs, no interval)")
    if not parts:
        return ("No pre-specified comparison (embedding_frozen, the strongest control and fused against vanilla "
                "or the GNN) has both its models in this run.")  # fmt: skip
    parts[0] = f"**{parts[0]}**"
    resamples = next((e["resamples"] for e in entries.values() if isinstance(e.get("resamples"), int)), None)
    qualifier = (f". In brackets: the 95 % test-pair interval (users resampled, {resamples:,} resamples; one seed "
                 "per model, so training variance is not in it)" if resamples else "")  # fmt: skip
    return "Test AUC differences: " + "; ".join(parts) + qualifier + "."


def _gain(gain: float, ci: list[float] | None) -> str:
    """A difference of AUCs: 4 decimals, or where it rounds to zero its size (or "0, to the last
    digit"); with its interval when there is one."""
    if gain == 0:
        text = "0 (equal to the last digit)"
    elif abs(gain) < 5e-5:
        text = f"{gain:+.1e} (level)"
    else:
        text = f"{gain:+.4f}"
    if ci is not None and all(np.isfinite(ci)):
        text += f" [{ci[0]:+.4f}, {ci[1]:+.4f}]"
    return text


def _ranking_section(results: dict, models: dict) -> list[tuple[str, str]]:
    """Top-k figures (experiment/ranking.py): every model on the same sampled candidates, and the
    GNN's full ranking over all movies. Empty when the run computed none."""
    gnn = results.get("gnn", {}).get("ranking", {})
    ease = results.get("baselines", {}).get("ease", {}).get("ranking", {})
    entries = {"popularity (baseline)": results.get("baselines", {}).get("popularity", {}).get("ranking"),
               "ease (baseline)": ease.get("sampled"), "gnn": gnn.get("sampled"),
               **{k: m.get("ranking") for k, m in models.items()}}  # fmt: skip
    full = [f"{m}@{k}" for m in ("recall", "ndcg", "map") for k in (10, 20)]
    rows = {name: [name, _with_se(e, "hr@10"), _with_se(e, "ndcg@10")] + [""] * len(full)
            for name, e in entries.items() if e}  # fmt: skip
    for name, entry in (("ease (baseline)", ease.get("full", {})), ("gnn", gnn)):
        if "recall@10" in entry:
            rows.setdefault(name, [name, "", ""] + [""] * len(full))[3:] = [_fmt(entry.get(key)) for key in full]
    if not rows:
        return []
    parts = [f"HR@10 and NDCG@10 (± standard error over users): one test movie of each of {e['users']} test users "
             f"among {e['candidates']} candidates (the others: movies the user never rated), the same for every model."
             for e in [next((e for e in entries.values() if e), None)] if e]  # fmt: skip
    if "recall@10" in gnn:
        parts.append(f"Full ranking (GNN and EASE): all test movies of each of {gnn['users']} test users among all "
                     "movies but their train and val ones.")  # fmt: skip
    text = " ".join(parts)
    md_table, html_table = _table(["model", "HR@10", "NDCG@10", *(f"full {k}" for k in full)], list(rows.values()))
    return [(f"## Ranking\n\n{text}\n\n{md_table}", f"<h2>Ranking</h2><p>{html.escape(text)}</p>{html_table}")]


def _with_se(entry: dict, key: str) -> str:
    se = entry.get(f"{key}_se")
    return _fmt(entry.get(key)) + (f" ± {se:.3f}" if isinstance(se, float) and np.isfinite(se) else "")


def _warm_cold_cell(entry: dict) -> str:
    if "test_auc_warm" not in entry:
        return ""
    return f"{_fmt(entry['test_auc_warm'])} / {_fmt(entry['test_auc_cold'])}"


def _sweep_section(sweep: dict) -> tuple[str, str]:
    """The sweep's answer, its rows (mean ± std; AUC gain over vanilla with its 95 % t-interval over
    seeds; one-sided paired p against vanilla and the strongest control; accuracy's Holm p), the
    same-pair references (floors, GNN per d) and the rule."""
    header = ["model", "KGE dim", "tokens/prompt (max)", "fits", "accuracy mean ± std", "AUC mean ± std",
              "AUC gain over vanilla [95 % CI]", "p vs vanilla", "p vs strongest control",
              "p accuracy (Holm)"]  # fmt: skip

    def p(value) -> str:
        return "" if value is None else f"{value:.3g}"

    rows = []
    for row in sweep["rows"]:
        ran = row.get("fits", True) and row.get("n_seeds", 1)
        gain, ci = row.get("auc_gain"), row.get("auc_ci95") or [float("nan")] * 2
        control = f"{p(row.get('auc_p_control'))} ({row['strongest_control']})" if row.get("strongest_control") else ""
        rows.append([
            row["model"], row["kge_dim"] or "", row.get("max_tokens", ""), "yes" if row.get("fits", True) else "no",
            f"{row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f}" if ran else "",
            f"{row['auc_mean']:.4f} ± {row['auc_std']:.4f}" if ran else "",
            "" if gain is None else f"{gain:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]", p(row.get("auc_p")), control,
            p(row.get("accuracy_p_holm", row.get("accuracy_p"))),
        ])  # fmt: skip
    md_table, html_table = _table(header, rows)
    gnn: dict[int, list[float]] = {}
    for g in sweep.get("gnn", []):
        if g.get("test_auc") is not None:
            gnn.setdefault(g["kge_dim"], []).append(g["test_auc"])
    refs = [f"{name} {f['test_auc']:.4f}" for name, f in sorted(sweep.get("floors", {}).items())]
    refs += [f"GNN d = {d} {np.mean(v):.4f}" for d, v in sorted(gnn.items())]
    notes = [f"On the same {sweep.get('test_pairs', '')} test pairs (mean test AUC): {', '.join(refs)}."]
    notes = (notes if refs else []) + ([f"Rule: {sweep['rule']}"] if sweep.get("rule") else [])
    answer = sweep.get("answer", "")
    return (
        f"## KGE-dimension sweep\n\n**{answer}**\n\n{md_table}" + "".join(f"\n\n{n}" for n in notes),
        f"<h2>KGE-dimension sweep</h2><p><b>{html.escape(answer)}</b></p>{html_table}"
        + "".join(f"<p>{html.escape(n)}</p>" for n in notes),
    )


def _explain_section(explain: dict) -> tuple[str, str]:
    text = explain.get("summary", "")
    return f"## Explainability\n\n{text}", f"<h2>Explainability</h2><p>{html.escape(text)}</p>"
