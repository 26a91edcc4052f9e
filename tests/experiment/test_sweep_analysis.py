"""A sweep's rows, contrasts and answer from hand-made runs: no training."""

import numpy as np
import pytest

from linklm.experiment import stats
from linklm.experiment.sweep import PromptBudget, format_table
from linklm.experiment.sweep_analysis import answer_text, contrasts, decisions, sweep_rows

SEEDS = list(range(6))
NOISE = np.array([0.004, -0.003, 0.006, -0.005, 0.001, -0.003])  # mean 0; the same for every model
BUDGET = PromptBudget(max_positions=100, base_tokens=40, largest_fitting_dim=29)  # prompt fits d <= 29
CONTROLS = ["control_degree", "control_shuffled"]
GNN = [{"kge_dim": 16, "seed": 0, "test_auc": 0.85}, {"kge_dim": 16, "seed": 1, "test_auc": 0.87}]


def _runs(model, kge_dim, auc, acc=None, noise=NOISE):
    acc = auc - 0.05 if acc is None else acc
    return [{"model": model, "kge_dim": kge_dim, "seed": s, "test_auc": auc + n, "test_accuracy": acc + n / 2}
            for s, n in zip(SEEDS, noise, strict=True)]  # fmt: skip


def _sweep():
    rng = np.random.default_rng(3)
    jitter = lambda: 0.01 * rng.standard_normal(len(SEEDS))  # noqa: E731
    runs = _runs("vanilla", None, 0.70) + _runs("control_degree", None, 0.74)
    for d, shuffled in ((4, 0.72), (16, 0.73), (32, 0.73)):
        runs += _runs("control_shuffled", d, shuffled)
    # prompt: clearly above everything at 16, level with control_degree at 4; d = 32 does not fit
    runs += _runs("prompt", 4, 0.74, noise=NOISE + jitter()) + _runs("prompt", 16, 0.80, noise=NOISE + jitter())
    # embedding: above vanilla everywhere, but never above control_degree
    for d in (4, 16, 32):
        runs += _runs("embedding_frozen", d, 0.735, noise=NOISE + jitter())
    return runs


def test_rows_pair_every_arm_with_vanilla_and_each_control_by_seed():
    runs = _sweep()
    rows = sweep_rows(runs, ["prompt", "embedding_frozen"], CONTROLS, [4, 16, 32], BUDGET)
    by = {(r["model"], r["kge_dim"]): r for r in rows}
    assert [r["model"] for r in rows[:2]] == ["vanilla", "control_degree"]
    assert by[("prompt", 32)]["fits"] is False and "vs" not in by[("prompt", 32)]
    assert by[("embedding_frozen", 32)]["fits"] is True and by[("prompt", 16)]["max_tokens"] == 40 + 2 + 32
    auc = {(r["model"], r["kge_dim"], r["seed"]): r["test_auc"] for r in runs}
    row = by[("prompt", 16)]
    for ref, ref_dim in (("vanilla", None), ("control_degree", None), ("control_shuffled", 16)):
        expected = stats.compare([auc[("prompt", 16, s)] for s in SEEDS], [auc[(ref, ref_dim, s)] for s in SEEDS])
        assert row["vs"][ref]["auc"] == expected, ref
    assert row["auc_gain"] == pytest.approx(0.10, abs=0.01)
    assert row["auc_ci95"][0] < row["auc_gain"] < row["auc_ci95"][1]
    # the strongest control at 16 is control_degree (0.74 > 0.73); at 4 as well
    assert row["strongest_control"] == "control_degree" and row["strongest_control_auc"] == pytest.approx(0.74)
    assert row["auc_p_control"] == row["vs"]["control_degree"]["auc"]["p"]
    assert row["auc_p_all"] == max(v["auc"]["p"] for v in row["vs"].values())
    # a control's row is compared with vanilla only
    assert set(by[("control_shuffled", 4)]["vs"]) == {"vanilla"} and "auc_p_all" not in by[("control_shuffled", 4)]


def test_accuracy_is_holm_corrected_over_its_own_family():
    rows = sweep_rows(_sweep(), ["prompt", "embedding_frozen"], CONTROLS, [4, 16, 32], BUDGET)
    tested = [r for r in rows if r.get("accuracy_p_all") is not None]
    assert len(tested) == 5  # prompt at 4 and 16, embedding at 4, 16, 32
    assert [r["accuracy_p_holm"] for r in tested] == pytest.approx(stats.holm([r["accuracy_p_all"] for r in tested]))


def test_the_answer_counts_only_above_every_control():
    runs = _sweep()
    models = ["prompt", "embedding_frozen"]
    rows = sweep_rows(runs, models, CONTROLS, [4, 16, 32], BUDGET)
    decided = decisions(rows, models)
    assert decided["prompt"] == {"pays_off_from": 16, "stopped_at": 4, "level": 0.025, "significant_dims": [16]}
    # embedding beats vanilla at every d, but not control_degree: it pays off nowhere
    emb = {r["kge_dim"]: r for r in rows if r["model"] == "embedding_frozen"}
    assert all(r["vs"]["vanilla"]["auc"]["p"] < 0.001 for r in emb.values())
    assert decided["embedding_frozen"]["pays_off_from"] is None and decided["embedding_frozen"]["stopped_at"] == 32
    assert emb[32]["weakest_comparison"] == "control_degree"
    same = {"floors": {"popularity": {"test_auc": 0.83}, "preferential_attachment": {"test_auc": 0.89}},
            "gnn": [{"kge_dim": 16, "seed": s, "test_auc": 0.85 + 0.01 * s} for s in SEEDS]}  # fmt: skip
    text = answer_text(rows, models, decided, same, BUDGET)
    prompt, emb_text = text.split(" | ")
    assert prompt.startswith("prompt: KGEs pay off from d = 16 on")
    assert "largest dimension that fits the prompt: 29" in prompt
    assert "above the strongest control, control_degree (0.7400)" in prompt
    assert f"not above the GNN of d = 16 ({np.mean([0.85 + 0.01 * s for s in SEEDS]):.4f})" in prompt
    assert "not above popularity (0.8300)" in prompt and "preferential_attachment (0.8900)" in prompt
    assert emb_text.startswith("embedding_frozen: KGEs pay off at no tested dimension (at the largest fitting d = 32")
    assert "against control_degree" in emb_text and "the GNN of d = 32 n/a" in emb_text


def test_a_missing_control_run_never_lets_a_dimension_pass():
    runs = [r for r in _sweep() if not (r["model"] == "control_shuffled" and r["kge_dim"] == 16)]
    rows = sweep_rows(runs, ["prompt"], CONTROLS, [4, 16], BUDGET)
    assert decisions(rows, ["prompt"])["prompt"]["pays_off_from"] is None
    # with no controls at all, the arm faces vanilla alone (and a single arm gets the whole alpha)
    rows = sweep_rows(runs, ["prompt"], [], [4, 16], BUDGET)
    assert decisions(rows, ["prompt"])["prompt"] == {"pays_off_from": 4, "stopped_at": None, "level": 0.05,
                                                     "significant_dims": [4, 16]}  # fmt: skip


def test_contrasts_pair_each_dimension_with_the_next_smaller_one():
    runs = _sweep()
    rows = sweep_rows(runs, ["prompt", "embedding_frozen"], CONTROLS, [4, 16, 32], BUDGET)
    out = contrasts(rows, runs, ["prompt", "embedding_frozen"])
    assert [(c["model"], c["smaller_dim"], c["kge_dim"]) for c in out] == [
        ("prompt", 4, 16), ("embedding_frozen", 4, 16), ("embedding_frozen", 16, 32)]  # fmt: skip
    auc = {(r["model"], r["kge_dim"], r["seed"]): r["test_auc"] for r in runs}
    first = out[0]["auc"]
    assert first["gain"] == pytest.approx(np.mean([auc[("prompt", 16, s)] - auc[("prompt", 4, s)] for s in SEEDS]))
    assert first["p"] == stats.paired_t([auc[("prompt", 16, s)] for s in SEEDS],
                                        [auc[("prompt", 4, s)] for s in SEEDS], "two-sided")[1]  # fmt: skip
    assert "p_wilcoxon" not in first


def test_format_table_shows_gain_interval_and_both_p_values():
    runs = _sweep()
    models = ["prompt", "embedding_frozen"]
    rows = sweep_rows(runs, models, CONTROLS, [4, 16, 32], BUDGET)
    result = {"rows": rows, "floors": {"popularity": {"test_auc": 0.83}}, "test_pairs": 400,
              "gnn": GNN}  # fmt: skip
    table = format_table(result)
    line = next(x for x in table.splitlines() if x.startswith("prompt") and " 16 " in x)
    row = next(r for r in rows if r["model"] == "prompt" and r["kge_dim"] == 16)
    assert f"{row['auc_gain']:+.4f} [{row['auc_ci95'][0]:+.3f}, {row['auc_ci95'][1]:+.3f}]" in line
    assert f"{row['auc_p']:.3g}" in line and f"{row['auc_p_control']:.3g}" in line
    assert "on the same 400 test pairs: floors popularity 0.8300; GNN d=16 0.8600 ± 0.0141" in table
    assert next(x for x in table.splitlines() if x.startswith("prompt") and " 32 " in x).count("-") >= 2


def test_the_report_section_shows_the_new_columns_and_the_references():
    from linklm.report.report import _sweep_section

    models = ["prompt", "embedding_frozen"]
    rows = sweep_rows(_sweep(), models, CONTROLS, [4, 16, 32], BUDGET)
    sweep = {"rows": rows, "answer": "prompt: KGEs pay off from d = 16 on", "rule": stats.rule_text(models, CONTROLS),
             "floors": {"popularity": {"test_auc": 0.83}}, "test_pairs": 400,
             "gnn": GNN}  # fmt: skip
    md, page = _sweep_section(sweep)
    row = next(r for r in rows if r["model"] == "prompt" and r["kge_dim"] == 16)
    line = next(x for x in md.splitlines() if x.startswith("| prompt | 16 |"))
    assert f"{row['auc_gain']:+.4f} [{row['auc_ci95'][0]:+.4f}, {row['auc_ci95'][1]:+.4f}]" in line
    assert f"{row['auc_p_control']:.3g} (control_degree)" in line and f"{row['accuracy_p_holm']:.3g}" in line
    assert "AUC gain over vanilla [95 % CI]" in md and "p vs strongest control" in page
    assert "On the same 400 test pairs (mean test AUC): popularity 0.8300, GNN d = 16 0.8600." in md
    assert "Rule: Primary endpoint test AUC" in md and "<p>Rule: Primary endpoint" in page
    # a sweep.json of before the controls still renders
    vanilla = {"model": "vanilla", "kge_dim": 0, "max_tokens": 49, "fits": True, "accuracy_mean": 0.6,
               "accuracy_std": 0.01, "auc_mean": 0.7, "auc_std": 0.01, "p_value": None}  # fmt: skip
    old = {"rows": [vanilla], "answer": "x"}
    assert "| vanilla |  | 49 | yes | 0.6000 ± 0.0100 | 0.7000 ± 0.0100 |" in _sweep_section(old)[0]


def test_same_pairs_scores_floors_and_gnns_on_the_classifiers_pairs(tmp_path):
    from types import SimpleNamespace

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from linklm.experiment.sweep import _same_pairs

    rng = np.random.default_rng(0)
    users, movies = rng.integers(0, 20, 8), rng.integers(0, 30, 6)  # train degrees
    manager = SimpleNamespace(train_degrees=(users, movies), cold_items=np.zeros(6, dtype=bool))  # none held out
    every = pd.DataFrame({"source_idx": np.repeat(np.arange(8), 6), "target_idx": np.tile(np.arange(6), 8)})
    every["label"] = rng.integers(0, 2, len(every))
    every["score"] = rng.random(len(every))
    scored = every.sample(20, random_state=1).reset_index(drop=True)  # the classifiers' subsample
    paths = []
    for i, frame in enumerate([scored, scored.iloc[::-1], scored]):  # the same set, in any order
        paths.append(tmp_path / f"run{i}.parquet")
        frame.to_parquet(paths[-1])
    every.to_parquet(tmp_path / "gnn.parquet")
    runs = [{"predictions": str(p)} for p in paths]
    gnns = [{"kge_dim": 4, "seed": 0, "predictions": str(tmp_path / "gnn.parquet")},
            {"kge_dim": 4, "seed": 1, "predictions": str(tmp_path / "missing.parquet")}]  # fmt: skip
    out = _same_pairs(manager, runs, gnns)
    assert out["test_pairs"] == 20 and out["same_pairs"] is True
    src, dst, y = scored["source_idx"], scored["target_idx"], scored["label"]
    assert out["floors"]["popularity"]["test_auc"] == pytest.approx(roc_auc_score(y, movies[dst]))
    pa = np.log1p(users[src]) + np.log1p(movies[dst])
    assert out["floors"]["preferential_attachment"]["test_auc"] == pytest.approx(roc_auc_score(y, pa))
    assert out["gnn"][0]["test_auc"] == pytest.approx(roc_auc_score(y, scored["score"]))
    assert "test_auc" not in out["gnn"][1] and "predictions" not in out["gnn"][0]
    # a run that scored other pairs is named
    every.sample(20, random_state=2).to_parquet(paths[2])
    with pytest.warns(UserWarning, match="1 run\\(s\\) scored other test pairs"):
        assert _same_pairs(manager, runs, gnns)["same_pairs"] is False
