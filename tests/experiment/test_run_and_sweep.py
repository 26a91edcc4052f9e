"""`linklm run` writes every stage's results and a report; `linklm sweep` answers the question."""

import json
import shutil

import numpy as np
import pytest

from linklm.cli import main
from linklm.config import FUSED_KINDS, RUN_KINDS
from linklm.llm.selection import stale_evaluations
from linklm.report.report import build_report

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.max_train_pairs=64", "llm.batch_size=32", "gnn.epochs=5", "gnn.kge_dim=4",
        "tracking=tensorboard", "llm.max_epochs=2"]  # fmt: skip


@pytest.fixture
def run_dir(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    assert main(["run", f"data.path={folder}", *TINY]) == 0
    out = capsys.readouterr().out
    for stage in ("[data]", "[ease]", "[gnn]", "[vanilla]", "[prompt]", "[embedding_frozen]", "[embedding_e2e]",
                  "[fused]", "[fused_text]", "[fused_kge]", "[control_degree]", "[control_shuffled]", "[kge_mlp]",
                  "[report]"):  # fmt: skip
        assert stage in out
    return tmp_path / "runs" / "default", folder


def test_run_writes_results_schema_and_report(run_dir, capsys):
    run, folder = run_dir
    results = json.loads((run / "results.json").read_text())
    assert {"val_auc", "test_auc", "classifier_train_auc", "model"} <= set(results["gnn"])
    assert set(results["models"]) == set(RUN_KINDS) and "control_random" not in RUN_KINDS
    for kind in RUN_KINDS:
        m = results["models"][kind]
        for key in ("test_accuracy", "test_auc", "test_f1", "test_confusion_matrix", "train_seconds",
                    "examples_per_second", "test_auc_warm", "test_auc_cold"):  # fmt: skip
            assert key in m, (kind, key)
        # every ceil(3 steps / 2) steps and at the last, for 2 epochs: 3 evaluations (the fused model
        # also at step 0), so only the fused one can run out of patience 3, and only if step 0 stayed best
        aucs = [row["eval_auc"] for row in m["val_history"]]
        assert len(aucs) == 3 + (kind in FUSED_KINDS), kind
        ran_out = stale_evaluations(aucs, 0.001) >= 3
        assert m["stopped"] == ("converged" if ran_out else "budget"), kind
        assert [row["examples"] for row in m["val_history"]] == sorted(row["examples"] for row in m["val_history"])
        said_yes = sum(row[1] for row in m["test_confusion_matrix"])
        assert m["test_positive_share"] == pytest.approx(said_yes / sum(map(sum, m["test_confusion_matrix"])), abs=1e-4)
    assert results["dataset"]["users"] == 50 and "torch" in results["environment"]
    assert set(results["baselines"]) == {"preferential_attachment", "popularity", "gnn_vanilla_average", "ease"}
    ease = results["baselines"]["ease"]
    assert {"test_auc", "lambda", "val_auc"} <= set(ease) and {"full", "sampled"} <= set(ease["ranking"])
    for kind in FUSED_KINDS:  # the fused models' last step, a secondary figure, beside the selected one
        last = results["models"][kind]["last_step"]
        assert last["step"] == results["models"][kind]["steps"] and {"test_auc", "test_auc_warm"} <= set(last)
        manifest = json.loads((run / "models" / kind / "manifest.json").read_text())
        assert "last_step_test_predictions.parquet" in manifest["artifacts"]
    assert "<h2>The fused model</h2>" in (run / "report.html").read_text()
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
    assert "out of sample" in page and "<h2>Ranking</h2>" in page and "Budget curve" in page
    margins, models = results["margins"], results["models"]  # pre-specified, with user-bootstrap intervals
    assert margins["best_control"] == max(("control_degree", "control_shuffled"), key=lambda k: models[k]["val_auc"])
    assert set(margins["comparisons"]) == {"embedding_frozen_vs_vanilla", "best_control_vs_vanilla",
                                           "embedding_frozen_vs_best_control", "fused_vs_gnn"}  # fmt: skip
    for entry in margins["comparisons"].values():
        assert entry["ci95"][0] <= entry["ci95"][1] and (entry["unit"], entry["resamples"]) == ("users", 2000)
        # each entry says on its own how much it rests on: one seed, and how far each model trained
        assert entry["seeds"] == 1 and entry["model_stopped"] == models[entry["model"]]["stopped"]
        assert entry["base_stopped"] == (None if entry["base"] == "gnn" else models[entry["base"]]["stopped"])
        assert entry["auc_gain"] == pytest.approx(models[entry["model"]]["test_auc"] - (
            results["gnn"] if entry["base"] == "gnn" else models[entry["base"]])["test_auc"])  # fmt: skip
    gain = margins["comparisons"]["fused_vs_gnn"]
    assert gain["ci95"][0] <= gain["auc_gain"] <= gain["ci95"][1] and "one seed" in margins["note"]
    assert "test-pair interval (users resampled" in page and "95 % CI" not in page and "<th>stopped</th>" in page
    assert "Capped by the budget" in page and (run / "figures" / "budget_curve.png").is_file()
    assert "![Test ROC curves" in (run / "report.md").read_text()

    # A rerun reuses every stage; the report is rebuilt from results alone.
    assert main(["run", f"data.path={folder}", *TINY]) == 0
    assert "cached" in capsys.readouterr().out
    shutil.rmtree(run / "figures")
    (run / "report.html").unlink()
    build_report(run)
    assert (run / "report.html").is_file() and (run / "figures" / "roc.png").is_file()


def test_cold_items_run_reports_every_model_on_held_out_items(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=60, n_movies=40, n_ratings=900).folder
    kinds = "[vanilla,embedding_frozen,fused,fused_text]"
    args = ["run", f"data.path={folder}", "data.cold_items=0.35", f"llm.models={kinds}", "llm.item_kge_dropout=0.5",
            "data.seed=5", *TINY[:4], "llm.max_epochs=1"]  # fmt: skip
    assert main(args) == 0
    assert "[gnn_sage]" in capsys.readouterr().out
    run = tmp_path / "runs" / "default"
    results = json.loads((run / "results.json").read_text())
    floors = [e for name, e in results["baselines"].items() if name != "gnn_vanilla_average"]
    for entry in [results["gnn"], *results["models"].values(), *floors]:
        assert entry["test_pairs_cold_items"] > 0 and 0 <= entry["test_auc_cold_items"] <= 1
    assert results["baselines"]["popularity"]["test_auc_cold_items"] == 0.5
    summary = results["cold_items"]
    auc = summary["test_auc_cold_items"]
    assert summary["winner"] == max(auc, key=auc.get) and summary["strongest_baseline"] in auc
    assert summary["fused_vs_strongest"]["base"] == summary["strongest_baseline"]
    assert results["gnn"]["cold_start"]["fallback"] in ("mean", "zero")
    md = (run / "report.md").read_text()
    assert f"## Where text pays off\n\nOn held-out items, {summary['winner']} wins" in md


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


def test_sweep_presets_and_their_user_errors(capsys):
    from linklm.experiment.sweep import load_preset

    full, small = load_preset("full"), load_preset("small")
    assert full["dims"] == [2, 4, 8, 16, 32, 64, 128] and full["seeds"] == list(range(10))
    assert set(full["controls"]) == {"control_degree", "control_shuffled", "control_random"}
    assert len(small["seeds"]) >= 10 and {"control_degree", "control_shuffled"} <= set(small["controls"])
    assert "estimate" in full["estimate"]
    assert full["vanilla_all"] is True and small["vanilla_all"] is False
    for args, message in ((["--preset", "huge"], "unknown sweep preset 'huge'"),
                          (["--dims", "2,x"], "--dims takes comma-separated integers"),
                          (["--controls", "control_noise"], "--controls: 'control_noise' is not one of"),
                          (["--models", "control_shuffled"], "--models: 'control_shuffled' is not")):  # fmt: skip
        assert main(["sweep", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_sweep_answers_above_the_controls_on_the_same_pairs(tmp_path, capsys):
    import pandas as pd

    from linklm.evaluate import evaluate_scores
    from linklm.experiment import stats

    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    args = ["sweep", "--dims", "2,300", "--seeds", "0,1", "--models", "prompt", "--controls",
            "control_degree,control_shuffled", "--no-vanilla-all", f"data.path={folder}", "llm.test_pairs=60",
            "llm.max_epochs=1", *TINY[:4]]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prompt: KGEs pay off" in out and "largest dimension that fits the prompt" in out
    assert "the strongest control, control_" in out and "AUC gain [95 % CI]" in out
    sweep_dir = tmp_path / "runs" / "default" / "sweep"
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["controls"] == ["control_degree", "control_shuffled"] and sweep["rule"] == stats.rule_text(
        ["prompt"], ["control_degree", "control_shuffled"])  # fmt: skip
    rows = {(r["model"], r["kge_dim"]): r for r in sweep["rows"]}
    assert rows[("prompt", 300)]["fits"] is False and rows[("prompt", 2)]["fits"] is True
    assert set(rows) == {("vanilla", 0), ("control_degree", 0), ("prompt", 2), ("prompt", 300), ("control_shuffled", 2)}
    runs = {(r["model"], r["kge_dim"], r["seed"]): r for r in sweep["runs"]}
    assert len(runs) == 8 and runs[("control_degree", None, 0)]["gnn_dim"] == 2  # built on the GNN of d = 2
    capped = sum(r["stopped"] == "budget" for r in runs.values())
    assert sweep["budget_runs"] == capped and f"2 seeds per arm; {capped} of 8 runs stopped on the budget" in (
        sweep["answer"])  # fmt: skip
    # each comparison pairs by seed, against vanilla and against each control
    arm = rows[("prompt", 2)]
    for ref, ref_dim in (("vanilla", None), ("control_degree", None), ("control_shuffled", 2)):
        for metric in ("auc", "accuracy"):
            mine = [runs[("prompt", 2, s)][f"test_{metric}"] for s in (0, 1)]
            base = [runs[(ref, ref_dim, s)][f"test_{metric}"] for s in (0, 1)]
            assert arm["vs"][ref][metric]["gain"] == pytest.approx(np.mean(mine) - np.mean(base)), (ref, metric)
            assert arm["vs"][ref][metric]["p"] == stats.paired_t(mine, base)[1]
    assert arm["auc_p_all"] == max(v["auc"]["p"] for v in arm["vs"].values())
    assert sweep["decisions"]["prompt"]["level"] == 0.05 and sweep["contrasts"] == []  # one fitting d
    # the same pairs: every classifier scored the same 60 test pairs; floors and GNNs are on them too
    assert sweep["test_pairs"] == 60 and sweep["same_pairs"] is True
    pairs = [pd.read_parquet(r["predictions"]) for r in sweep["runs"]]
    assert all(len(p) == 60 for p in pairs)
    assert all(f["test_pairs_warm"] + f["test_pairs_cold"] == 60 for f in sweep["floors"].values())
    assert set(sweep["floors"]) == {"popularity", "preferential_attachment"}
    assert [(g["kge_dim"], g["seed"]) for g in sweep["gnn"]] == [(2, 0), (2, 1)]  # d = 300 had no arm to feed
    gnn = pd.read_parquet(sweep_dir / "runs" / "d2-s1" / "gnn_test_predictions.parquet")
    assert len(gnn) > 60
    mine = pairs[0][["source_idx", "target_idx"]].merge(gnn, on=["source_idx", "target_idx"])
    assert sweep["gnn"][1]["test_auc"] == pytest.approx(evaluate_scores(mine["label"], mine["score"])["auc"])
    assert all(0.0 <= r["predicted_positive_share"] <= 1.0 for r in sweep["runs"])
    assert (sweep_dir / "accuracy_vs_dim.png").is_file()
    assert "p vs strongest control" in (tmp_path / "runs" / "default" / "report.md").read_text()


def test_sweep_trains_vanilla_on_every_train_edge_as_a_reference(tmp_path, capsys):
    folder = write_layout(tmp_path / "ml-synth", "csv", n_users=50, n_movies=30, n_ratings=600).folder
    args = ["sweep", "--dims", "2", "--seeds", "0,1", "--models", "embedding_frozen", "--controls", "",
            "--vanilla-all", f"data.path={folder}", "llm.test_pairs=60", "llm.max_epochs=1", *TINY[:4]]  # fmt: skip
    assert main(args) == 0
    sweep = json.loads((tmp_path / "runs" / "default" / "sweep" / "sweep.json").read_text())
    runs = {(r["model"], r["seed"]): r for r in sweep["runs"]}
    assert {k for k in runs if k[0] == "vanilla_all"} == {("vanilla_all", 0), ("vanilla_all", 1)}
    # all train edges, capped like vanilla's share at llm.max_train_pairs: the same budget of positives
    assert all(runs["vanilla_all", s]["kge_dim"] is None and runs["vanilla_all", s]["gnn_dim"] is None for s in (0, 1))
    rows = {r["model"]: r for r in sweep["rows"]}
    assert rows["vanilla_all"]["max_tokens"] == rows["vanilla"]["max_tokens"]
    gain = np.mean([runs["vanilla_all", s]["test_auc"] - runs["vanilla", s]["test_auc"] for s in (0, 1)])
    assert rows["vanilla_all"]["auc_gain"] == pytest.approx(gain)
    assert "vanilla_all (text only, trained on every train edge)" in sweep["answer"]
    assert sweep["decisions"].keys() == {"embedding_frozen"}  # a reference, outside the rule


def test_average_of_refuses_other_pairs_and_averages_scores():
    import pandas as pd

    from linklm.experiment.baselines import average_of

    a = pd.DataFrame({"source_idx": [0, 1], "target_idx": [2, 3], "label": [1, 0], "score": [0.9, 0.2]})
    b = a.assign(score=[0.5, 0.4])
    assert average_of([a, b])["score"].tolist() == pytest.approx([0.7, 0.3])
    with pytest.raises(ValueError):
        average_of([a, b.assign(target_idx=[3, 2])])
