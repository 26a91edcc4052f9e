"""`linklm run` writes every stage's results and a report; `linklm sweep` answers the question."""

import json
import shutil

import numpy as np
import pytest

from linklm.cli import main
from linklm.experiment.sweep import holm, pays_off_from, seed_paired_test
from linklm.report.report import build_report

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.max_train_pairs=64", "llm.batch_size=32", "gnn.epochs=5", "gnn.kge_dim=4",
        "tracking=tensorboard"]  # fmt: skip


@pytest.fixture
def run_dir(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    assert main(["run", f"data.path={folder}", *TINY]) == 0
    out = capsys.readouterr().out
    for stage in ("[data]", "[gnn]", "[vanilla]", "[prompt]", "[embedding_frozen]", "[embedding_e2e]", "[fused]",
                  "[report]"):  # fmt: skip
        assert stage in out
    return tmp_path / "runs" / "default", folder


def test_run_writes_results_schema_and_report(run_dir, capsys):
    run, folder = run_dir
    results = json.loads((run / "results.json").read_text())
    assert {"val_auc", "test_auc", "classifier_train_auc", "model"} <= set(results["gnn"])
    for kind in ("vanilla", "prompt", "embedding_frozen", "embedding_e2e", "fused"):
        m = results["models"][kind]
        for key in ("test_accuracy", "test_auc", "test_f1", "test_confusion_matrix", "train_seconds",
                    "examples_per_second"):  # fmt: skip
            assert key in m, (kind, key)
        assert len(m["val_history"]) >= 2  # llm.evals_per_epoch = 2: selection compares checkpoints
        said_yes = sum(row[1] for row in m["test_confusion_matrix"])
        assert m["test_positive_share"] == pytest.approx(said_yes / sum(map(sum, m["test_confusion_matrix"])), abs=1e-4)
    assert results["dataset"]["users"] == 50 and "torch" in results["environment"]
    assert set(results["baselines"]) == {"preferential_attachment", "popularity", "gnn_vanilla_average"}
    for entry in (results["gnn"], *results["models"].values(), results["baselines"]["popularity"]):
        assert entry["test_pairs_warm"] + entry["test_pairs_cold"] == 2 * results["dataset"]["test"]["supervision_pos"]
        assert {"test_auc_warm", "test_auc_cold"} <= set(entry)
    assert json.loads((run / "config.json").read_text())["gnn"]["kge_dim"] == 4
    full = results["gnn"]["ranking"]  # over all movies; on 30 movies, 15 non-edges beside each positive
    assert {f"{m}@{k}" for m in ("recall", "ndcg", "map") for k in (10, 20)} < set(full) and full["users"] > 0
    sampled = [full["sampled"], results["baselines"]["popularity"]["ranking"]]
    sampled += [m["ranking"] for m in results["models"].values()]
    assert all((r["users"], r["candidates"]) == (sampled[0]["users"], 16) and 0 <= r["ndcg@10"] <= r["hr@10"] <= 1
               for r in sampled) and sampled[0]["users"] > 0  # fmt: skip
    # tracking=tensorboard: event files for the GNN's curve and for every classifier
    for logs in (run / "tensorboard" / "gnn", *(run / "models" / kind / "tensorboard" for kind in results["models"])):
        assert list(logs.glob("events.out.tfevents.*")), logs
    page = (run / "report.html").read_text()
    assert page.count("<img") >= 4 and "embedding_e2e" in page
    best = max(results["models"], key=lambda k: results["models"][k]["test_auc"])
    assert f"Best on test AUC: {best}" in page and "out of sample" in page and "<h2>Ranking</h2>" in page
    margins = results["margins"]  # the verdict's intervals: paired bootstrap of the best model's AUC gains
    assert margins["best"] == best and {"over_gnn", "over_vanilla"} <= set(margins) or best == "vanilla"
    gain = margins["over_gnn"]
    assert gain["ci95"][0] <= gain["auc_gain"] <= gain["ci95"][1]
    assert gain["auc_gain"] == pytest.approx(results["models"][best]["test_auc"] - results["gnn"]["test_auc"])
    assert "95 % CI" in page
    assert "![Test ROC curves" in (run / "report.md").read_text()

    # A rerun reuses every stage; the report is rebuilt from results alone.
    assert main(["run", f"data.path={folder}", *TINY]) == 0
    assert "cached" in capsys.readouterr().out
    shutil.rmtree(run / "figures")
    (run / "report.html").unlink()
    build_report(run)
    assert (run / "report.html").is_file() and (run / "figures" / "roc.png").is_file()


def test_a_tracker_that_is_not_installed_is_one_line(tmp_path, capsys):
    import importlib.util

    absent = next(t for t in ("mlflow", "wandb") if importlib.util.find_spec(t) is None)
    assert main(["run", f"tracking={absent}"]) == 2
    err = capsys.readouterr().err
    assert f"needs the {absent} package" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "tracking=comet"]) == 2
    assert "tracking must be one of" in capsys.readouterr().err


def test_report_needs_results(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "nothing")]) == 2
    assert "no results" in capsys.readouterr().err


def test_seed_paired_test_detects_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = 0.70 + 0.01 * rng.standard_normal(5)
    gain, p = seed_paired_test(base + 0.03 + 0.005 * rng.standard_normal(5), base)
    assert 0.02 < gain < 0.04 and p < 0.01
    noise = seed_paired_test(base + 0.01 * rng.standard_normal(5), base)[1]
    assert noise > 0.05
    assert seed_paired_test(base - 0.03, base)[1] == 1.0  # a constant loss is never a gain
    assert seed_paired_test(base + 0.01, base) == (pytest.approx(0.01), 0.0)  # constant gain: no spread
    assert seed_paired_test([0.8], [0.7])[1] is None  # one seed: nothing to test


def test_fixed_sequence_answer_needs_every_larger_dimension():
    def row(d, p, gain=0.01, fits=True):
        return {"kge_dim": d, "fits": fits, "auc_p": p, "auc_gain": gain}

    assert pays_off_from([row(2, 0.01), row(8, 0.01), row(32, 0.01)]) == 2
    assert pays_off_from([row(32, 0.01), row(2, 0.01), row(8, 0.2)]) == 32  # unsorted input; 8 breaks the run
    assert pays_off_from([row(2, 0.01), row(8, 0.01), row(32, 0.3)]) is None  # significant at 2 but not 32
    assert pays_off_from([row(2, 0.01), row(8, 0.01, gain=-0.01)]) is None
    assert pays_off_from([row(2, 0.01), row(300, None, fits=False)]) == 2  # what does not fit is not asked


def test_holm_matches_the_textbook():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_sweep_prints_the_answer_and_marks_prompts_that_do_not_fit(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    args = ["sweep", "--dims", "2,300", "--seeds", "0,1", f"data.path={folder}", *TINY[:4]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "KGEs beat vanilla significantly in test AUC" in out
    assert "largest dimension that fits the prompt" in out
    sweep = json.loads((tmp_path / "runs" / "default" / "sweep" / "sweep.json").read_text())
    rows = {(r["model"], r["kge_dim"]): r for r in sweep["rows"]}
    assert rows[("prompt", 300)]["fits"] is False and rows[("prompt", 2)]["fits"] is True
    assert rows[("embedding_frozen", 300)]["fits"] is True
    assert len([r for r in sweep["runs"] if r["model"] == "vanilla"]) == 2
    tested = [r for r in sweep["rows"] if r["model"] != "vanilla" and r["fits"]]
    assert all(r["auc_p"] is not None and r["accuracy_p"] is not None for r in tested)
    raw = sorted(p for r in tested for p in (r["auc_p_raw"], r["accuracy_p_raw"]))
    assert sorted(p for r in tested for p in (r["auc_p"], r["accuracy_p"])) == pytest.approx(holm(raw)), (
        "Holm runs across every (model, dimension, metric) test"
    )
    assert all(0.0 <= r["predicted_positive_share"] <= 1.0 for r in sweep["runs"])
    # each gain is over vanilla with the same seed, for every model (not over an earlier model's runs)
    auc = {(r["model"], r["kge_dim"], r["seed"]): r["test_auc"] for r in sweep["runs"]}
    for row in tested:
        gains = [auc[(row["model"], row["kge_dim"], s)] - auc[("vanilla", None, s)] for s in (0, 1)]
        assert row["auc_gain"] == pytest.approx(np.mean(gains)), row["model"]
    assert (tmp_path / "runs" / "default" / "sweep" / "accuracy_vs_dim.png").is_file()


def test_average_of_refuses_other_pairs_and_averages_scores():
    import pandas as pd

    from linklm.experiment.baselines import average_of

    a = pd.DataFrame({"source_idx": [0, 1], "target_idx": [2, 3], "label": [1, 0], "score": [0.9, 0.2]})
    b = a.assign(score=[0.5, 0.4])
    assert average_of([a, b])["score"].tolist() == pytest.approx([0.7, 0.3])
    with pytest.raises(ValueError):
        average_of([a, b.assign(target_idx=[3, 2])])


def test_verdict_names_an_exact_tie_with_the_gnn_and_ends_each_sentence():
    from linklm.report.report import _verdict

    models = {"vanilla": {"test_auc": 0.74}, "fused": {"test_auc": 0.950364235}}
    results = {"gnn": {"test_auc": 0.950364235}, "sweep_answer": "prompt: KGEs beat vanilla; every dimension fits",
               "baselines": {"popularity": {"test_auc": 0.835}}}  # fmt: skip
    text = _verdict(results, models)
    assert "equal to the GNN it is fed (0.9504, to the last digit)" in text and "e+00" not in text
    assert "every dimension fits. Baselines on the same pairs" in text
    results["gnn"]["test_auc"] = 0.95037
    assert "level with the GNN it is fed (0.9504, a gap of -5.8e-06)" in _verdict(results, models)
