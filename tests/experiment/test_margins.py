"""results.json `margins` (pre-specified comparisons, the strongest control picked on val) and the
report's first paragraph, on prediction tables and results made up here (nothing is trained)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from linklm.experiment.baselines import COMPARISONS, margins
from linklm.report import plots
from linklm.report.report import _verdict, build_report

USERS, PAIRS = 60, 600


def _table(strength: float, seed: int) -> pd.DataFrame:
    """Test predictions of a model whose score is `strength` × label + noise, on fixed pairs."""
    pairs = np.random.default_rng(0)
    src, dst, labels = pairs.integers(0, USERS, PAIRS), np.arange(PAIRS), pairs.integers(0, 2, PAIRS)
    noise = np.random.default_rng(seed).normal(0, 1, PAIRS)
    return pd.DataFrame({"source_idx": src, "target_idx": dst, "label": labels, "score": strength * labels + noise})


STRENGTH = {"gnn": 3.0, "vanilla": 0.5, "embedding_frozen": 2.0, "fused": 3.1, "control_degree": 1.0,
            "control_shuffled": 1.5, "kge_mlp": 2.5}  # fmt: skip


def _tables() -> dict[str, pd.DataFrame]:
    return {name: _table(s, seed) for seed, (name, s) in enumerate(STRENGTH.items())}


def test_margins_are_the_pre_specified_comparisons_and_the_control_is_picked_on_val():
    tables = _tables()
    # control_shuffled is better on test, control_degree on val; kge_mlp is best on val but no control
    val = {"vanilla": 0.6, "embedding_frozen": 0.8, "fused": 0.9, "control_degree": 0.72, "control_shuffled": 0.70,
           "kge_mlp": 0.95}  # fmt: skip
    out = margins(tables, val, resamples=500)
    assert out["best_control"] == "control_degree" and out["best_control_by"] == "val_auc"
    assert out["best_control_val_auc"] == 0.72
    assert set(out["comparisons"]) == set(COMPARISONS)
    expected = {"embedding_frozen_vs_vanilla": ("embedding_frozen", "vanilla"),
                "best_control_vs_vanilla": ("control_degree", "vanilla"),
                "embedding_frozen_vs_best_control": ("embedding_frozen", "control_degree"),
                "fused_vs_gnn": ("fused", "gnn")}  # fmt: skip
    for key, (model, base) in expected.items():
        entry = out["comparisons"][key]
        assert (entry["model"], entry["base"]) == (model, base)
        a, b = tables[model], tables[base]
        assert entry["auc_gain"] == pytest.approx(roc_auc_score(a.label, a.score) - roc_auc_score(b.label, b.score))
        assert entry["model_auc"] - entry["base_auc"] == pytest.approx(entry["auc_gain"])
        assert entry["ci95"][0] < entry["ci95"][1]
        assert (entry["resamples"], entry["unit"], entry["pairs"]) == (500, "users", PAIRS)
        assert entry["units"] == tables["gnn"]["source_idx"].nunique()
    assert out["comparisons"]["embedding_frozen_vs_vanilla"]["ci95"][0] > 0  # a real gain, clear of zero
    assert "users" in out["note"] and "one seed" in out["note"] and "val AUC, never test" in out["note"]
    json.dumps(out)


def test_margins_leave_out_what_did_not_run_and_compare_on_shared_pairs():
    tables = _tables()
    only = margins({k: tables[k] for k in ("gnn", "vanilla")}, {"vanilla": 0.6}, resamples=100)
    assert only["comparisons"] == {} and only["best_control"] is None and "best_control_val_auc" not in only
    # no control: embedding_frozen against vanilla only; vanilla scored the first 200 pairs only
    some = {"vanilla": tables["vanilla"].iloc[:200], "embedding_frozen": tables["embedding_frozen"]}
    out = margins(some, {"vanilla": 0.6, "embedding_frozen": 0.8}, resamples=100)
    assert list(out["comparisons"]) == ["embedding_frozen_vs_vanilla"]
    entry = out["comparisons"]["embedding_frozen_vs_vanilla"]
    head = tables["embedding_frozen"].iloc[:200]
    assert entry["pairs"] == 200 and entry["model_auc"] == pytest.approx(roc_auc_score(head.label, head.score))


def _results(**extra) -> dict:
    models = {
        "vanilla": {"test_auc": 0.74, "val_auc": 0.75, "stopped": "converged"},
        "embedding_frozen": {"test_auc": 0.93, "val_auc": 0.92, "stopped": "budget"},
        "control_degree": {"test_auc": 0.86, "val_auc": 0.87, "stopped": "converged"},
        "control_shuffled": {"test_auc": 0.88, "val_auc": 0.80},  # better on test: never picked for it
        "fused": {"test_auc": 0.95, "val_auc": 0.95, "stopped": "budget"},
    }
    results = {"gnn": {"test_auc": 0.9504, "classifier_train_auc": 0.9501},
               "baselines": {"popularity": {"test_auc": 0.835}, "preferential_attachment": {"test_auc": 0.871},
                             "gnn_vanilla_average": {"test_auc": 0.93}}}  # fmt: skip
    return {**results, **extra}, models


def test_verdict_gives_the_comparisons_with_their_intervals_then_floors_sweep_and_budget():
    def entry(model, base, gain, low, high):
        return {"model": model, "base": base, "auc_gain": gain, "ci95": [low, high], "resamples": 2000, "unit": "users"}

    comparisons = {"embedding_frozen_vs_vanilla": entry("embedding_frozen", "vanilla", 0.19, 0.17, 0.21),
                   "best_control_vs_vanilla": entry("control_degree", "vanilla", 0.12, 0.10, 0.14),
                   "embedding_frozen_vs_best_control": entry("embedding_frozen", "control_degree", 0.07, 0.05, 0.09),
                   "fused_vs_gnn": entry("fused", "gnn", -0.0004, -0.002, 0.001)}  # fmt: skip
    results, models = _results(margins={"comparisons": comparisons}, sweep_answer="KGEs beat every control")
    text = _verdict(results, models)
    assert text.startswith("Test AUC differences: **embedding_frozen − vanilla +0.1900 [+0.1700, +0.2100]**; ")
    assert "strongest control (control_degree) − vanilla +0.1200 [+0.1000, +0.1400]" in text
    assert "embedding_frozen − strongest control (control_degree) +0.0700 [+0.0500, +0.0900]" in text
    assert "fused − the GNN it is fed (0.9504) -0.0004 [-0.0020, +0.0010]" in text
    assert "test-pair interval (users resampled, 2,000 resamples; one seed per model" in text
    assert "95 % CI" not in text and "control_shuffled" not in text
    floors = "Floors on the same pairs (no training): popularity 0.8350, preferential attachment 0.8710; GNN 0.9504"
    assert text.index(floors) < text.index("Sweep (seeds repeated") < text.index("Capped by the budget")
    assert "Capped by the budget (val still improving at llm.max_epochs): embedding_frozen, fused." in text
    assert text.endswith("their KGEs are out of sample.")


def test_verdict_without_margins_says_the_differences_have_no_interval():
    results, models = _results()
    text = _verdict(results, models)
    assert "embedding_frozen − vanilla +0.1900 (one seed's test AUCs, no interval)" in text
    assert "in brackets" not in text.lower() and "[" not in text
    models["fused"]["test_auc"] = 0.9504  # exactly the GNN's; then a hair below it
    assert "fused − the GNN it is fed (0.9504) 0 (equal to the last digit)" in _verdict(results, models)
    models["fused"]["test_auc"] = 0.9503942
    assert "fused − the GNN it is fed (0.9504) -5.8e-06 (level)" in _verdict(results, models)
    only = {"vanilla": models["vanilla"]}
    assert _verdict(results, only).startswith("No pre-specified comparison")
    assert _verdict(results, {}) == ""


def test_budget_points_read_examples_or_else_steps_times_the_batch():
    rows = [{"step": 2, "eval_auc": 0.6, "examples": 96}, {"step": 4, "eval_auc": 0.7}, {"eval_auc": 0.8}]
    assert plots.budget_points(rows, batch_size=32) == [(96.0, 0.6), (128.0, 0.7)]
    assert plots.budget_points(rows) == [(96.0, 0.6)]


def test_report_has_the_stopped_column_and_the_budget_curve(tmp_path):
    results, models = _results(margins={"best": "fused", "over_gnn": {"auc_gain": 0.0, "ci95": [0.0, 0.0]}})
    for m in models.values():  # the rest of what the report reads of a classifier
        m.update(test_accuracy=0.8, test_f1=0.8, test_confusion_matrix=[[40, 10], [10, 40]], train_seconds=5.0,
                 examples_per_second=100.0, val_history=[{"step": 1, "eval_auc": m["val_auc"] - 0.01},
                                                         {"step": 2, "eval_auc": m["val_auc"]}])  # fmt: skip
    models["fused"]["val_history"][0]["examples"] = 50  # one row with examples, the others from steps
    results["models"] = models
    results["gnn"].update(val_auc=0.95, best_epoch=3, train_seconds=2.0)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "config.json").write_text(json.dumps({"llm": {"batch_size": 32}}))
    build_report(tmp_path)  # an old results.json: margins of the best model on test, no intervals shown
    md = (tmp_path / "report.md").read_text()
    assert "| stopped |" in md and "| budget |" in md and "| converged |" in md
    assert "![Budget curve: val AUC against training examples](figures/budget_curve.png)" in md
    assert (tmp_path / "figures" / "budget_curve.png").stat().st_size > 1000
    assert "(one seed's test AUCs, no interval)" in md and "Best on test AUC" not in md
