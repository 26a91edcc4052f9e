"""Step E: exact Shapley values, attention by segment, and `linklm explain` on a tiny trained run."""

import dataclasses
import itertools
import json
import math
import shutil

import numpy as np
import pytest
import torch

from linklm.cli import main
from linklm.config import RUN_KINDS, Config
from linklm.explain.attention import eager_attention, mean_over_examples, segment_attention
from linklm.explain.run import load_model, open_run
from linklm.explain.shapley import coalition_values, coalitions, exact_shapley, shapley_values
from linklm.io import write_json
from linklm.llm.tokens import MOVIE, USER

from synthetic import write_layout

TINY = ["llm.model=random:L2-H32", "llm.max_train_pairs=32", "llm.batch_size=32", "gnn.epochs=3", "gnn.kge_dim=4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A trained run with all four classifiers; tests chdir to its root (its caches are relative)."""
    root = tmp_path_factory.mktemp("explain")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        folder = write_layout(root / "ml-synth", "csv", n_users=30, n_movies=20, n_ratings=300).folder
        assert main(["run", f"data.path={folder}", *TINY]) == 0
    return root


@pytest.fixture(scope="module")
def opened(tiny_run):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tiny_run)
        cfg, manager, gen, folders = open_run("runs/default")
        models = {kind: load_model(kind, cfg, manager, gen, "runs/default") for kind in folders}
    return models


# --- the exact-Shapley core on games with known answers ----------------------------------------


def _by_permutations(value, n):
    """The textbook definition: each player's marginal contribution averaged over all n! orders."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        present = torch.zeros(n, dtype=torch.bool)
        for player in order:
            before = value(present.clone())
            present[player] = True
            phi[player] += value(present.clone()) - before
    return phi / math.factorial(n)


def test_exact_shapley_matches_known_games():
    # Additive game: each player gets its own weight.
    weights = torch.tensor([0.5, -2.0, 3.0, 1.25], dtype=torch.float64)
    assert exact_shapley(lambda s: float(weights[s].sum()), 4) == pytest.approx(weights.tolist())
    # Majority of three: symmetric players share v(all) = 1 equally.
    assert exact_shapley(lambda s: float(s.sum() >= 2), 3) == pytest.approx([1 / 3] * 3)

    # Unanimity games 3*u{0,1} + 2*u{2} + u{0,3} + u{1,3}: players 0 and 1 are interchangeable.
    def game(s):
        return 3.0 * (s[0] and s[1]) + 2.0 * s[2] + 1.0 * (s[0] and s[3]) + 1.0 * (s[1] and s[3])

    phi = exact_shapley(lambda s: float(game(s)), 4)
    assert phi.tolist() == pytest.approx([2.0, 2.0, 2.0, 1.0])
    assert phi.sum() == pytest.approx(7.0)  # efficiency: v(all) - v(none)

    # An arbitrary game: the closed form equals the permutation definition; a dummy player gets 0.
    rng = np.random.default_rng(0)
    table = rng.normal(size=16)
    table[8:] = table[:8]  # player 3 (bit 3) never changes the value

    def arbitrary(s):
        return float(table[int(sum(int(b) << i for i, b in enumerate(s)))])

    phi = exact_shapley(arbitrary, 4)
    assert phi.numpy() == pytest.approx(_by_permutations(arbitrary, 4))
    assert phi[3] == pytest.approx(0.0, abs=1e-12)
    values = torch.tensor([arbitrary(c) for c in coalitions(4)])
    assert shapley_values(values[None]).sum() == pytest.approx(table[15] - table[0])


# --- the real tiny models ------------------------------------------------------------------------


def test_shapley_of_tiny_models_sums_to_full_minus_empty_prediction(opened):
    for kind, (clf, model) in opened.items():
        head = model.model.classifier.weight
        saved = head.detach().clone()
        with torch.no_grad():
            # A barely trained random model's log-odds hardly move; a steeper head lifts every
            # group's effect (x100) far above float noise, so the checks below can tell them apart.
            head.mul_(100.0)
        try:
            _check_efficiency(kind, clf, model)
        finally:
            with torch.no_grad():
                head.copy_(saved)


def _check_efficiency(kind, clf, model):
    pairs = clf.pairs(None, "test")
    src, dst = pairs.source_idx[:6], pairs.target_idx[:6]
    batch = model.inputs(src, dst)
    values = coalition_values(model.log_odds, batch, model.players, model.mask_id)
    phi = shapley_values(values)
    assert phi.shape == (6, 2 if kind == "vanilla" else 4)
    # f(all): the plain forward, which agrees with the classifier's own predict (where the
    # end-to-end model runs its GNN inside) in fp32, the precision explanations are computed in.
    full = model.log_odds(**batch).double().numpy()
    run_precision = clf.config
    clf.config = dataclasses.replace(run_precision, precision="fp32")
    _, prob = clf.predict(None, "test")
    clf.config = run_precision
    assert np.log(prob[:6] / (1 - prob[:6])) == pytest.approx(full, abs=1e-4), kind
    # f(none): every user/movie/KGE token is [MASK], and no KGE is injected.
    ids = batch["input_ids"].clone()
    ids[(batch["token_type_ids"] >= USER) & batch["attention_mask"].bool()] = model.mask_id
    empty = model.log_odds(ids, batch["token_type_ids"], batch["attention_mask"]).double().numpy()
    assert np.abs(full - empty).min() > 1e-5, kind  # the groups do matter (float noise: ~1e-7)
    assert phi.sum(1).numpy() == pytest.approx(full - empty, abs=1e-5), kind
    if kind != "vanilla":
        # The KGE groups are players: dropping them moves the prediction.
        assert phi[:, 2:].abs().mean() > 1e-4, kind


def test_attention_maps_are_row_stochastic_per_query_segment(opened):
    _, model = opened["prompt"]
    src, dst = np.arange(5), np.array([0, 3, 7, 1, 2])
    batch = model.inputs(src, dst)
    assert (batch["attention_mask"] == 0).any(), "the batch should hold padding"
    with eager_attention(model.model), torch.no_grad():
        out = model.model(**batch, output_attentions=True)
    assert model.model.config._attn_implementation != "eager"  # restored after the block
    maps = segment_attention(out.attentions, batch["token_type_ids"], batch["attention_mask"])
    assert maps.shape == (5, 2, 6, 6)
    assert torch.allclose(maps.sum(-1), torch.ones(5, 2, 6, dtype=torch.float64), atol=1e-5)
    # By hand for one example and layer: mean row of the movie tokens, summed over the user tokens.
    att = out.attentions[1][3].double().mean(0)
    types, real = batch["token_type_ids"][3], batch["attention_mask"][3].bool()
    movie_rows = att[(types == MOVIE) & real]
    assert maps[3, 1, MOVIE, USER].item() == pytest.approx(movie_rows[:, (types == USER) & real].sum(1).mean().item())
    # A segment a prompt lacks (vanilla: no KGE) is NaN, and the example mean skips it.
    _, vanilla = opened["vanilla"]
    vb = vanilla.inputs(src, dst)
    with eager_attention(vanilla.model), torch.no_grad():
        vmaps = segment_attention(vanilla.model(**vb, output_attentions=True).attentions, vb["token_type_ids"],
                                  vb["attention_mask"])  # fmt: skip
    mean = mean_over_examples(vmaps)
    assert np.isnan(mean[:, 4:]).all() and np.allclose(mean[:, :4].sum(-1), 1.0)


def test_end_to_end_kges_come_from_its_own_gnn_on_the_test_graph(opened):
    clf, model = opened["embedding_e2e"]
    frozen_clf, frozen = opened["embedding_frozen"]
    gen = frozen_clf.kge
    movie_x, adj = clf.model.graphs[2]
    with torch.no_grad():
        z = gen.model.eval()(movie_x, adj)
    # The generator's GNN on that graph gives the cached test tables: graphs[2] is the test graph.
    assert torch.allclose(z[gen.user_type], frozen.tables[0], atol=1e-5)
    assert torch.allclose(z[gen.movie_type], frozen.tables[1], atol=1e-5)
    # The end-to-end model's tables are its own GNN copy's on that graph (trained further, or, where
    # selection kept a step whose warm-up learning rate was still 0, the same weights).
    with torch.no_grad():
        own = clf.model.gnn.eval()(movie_x, adj)
    assert model.tables[0].shape == frozen.tables[0].shape
    assert torch.allclose(model.tables[0], own[gen.user_type], atol=1e-5)
    assert torch.allclose(model.tables[1], own[gen.movie_type], atol=1e-5)


# --- the command ---------------------------------------------------------------------------------


def test_explain_writes_figures_json_and_report(tiny_run, monkeypatch, capsys):
    monkeypatch.chdir(tiny_run)
    run = tiny_run / "runs" / "default"
    assert main(["explain", "--run", "runs/default", "--samples", "12"]) == 0
    assert "[explain] wrote" in capsys.readouterr().out
    out = run / "explain"
    figures = {p.name for p in out.glob("*.png")}
    assert {"attention_by_segment.png", "shapley_token_groups.png"} <= figures
    explained = [k for k in RUN_KINDS if k != "kge_mlp"]  # (kge_mlp reads no text: nothing to explain)
    assert {f"hidden_states_pca_{k}.png" for k in explained} <= figures
    result = json.loads((out / "explain.json").read_text())
    assert set(result["models"]) == set(explained) and result["samples"] == 12 and result["shapley_samples"] == 4
    for kind, m in result["models"].items():
        att = np.array(m["attention"], dtype=float)  # None (absent segment) -> nan
        rows = att[~np.isnan(att).all(-1)]
        assert np.allclose(rows.sum(-1), 1.0, atol=1e-4), kind
        assert m["shapley"]["max_efficiency_error"] < 1e-9
        assert m["shapley"]["max_grand_coalition_error"] < 1e-4
        assert 0.0 <= m["shapley"]["kge_share"] <= 1.0
        assert ("user_kge" in m["hidden"]) == (kind != "vanilla")
    assert result["models"]["vanilla"]["shapley"]["kge_share"] == 0.0
    report = (run / "report.md").read_text()
    assert "## Explainability" in report and result["summary"][:60] in report
    assert "![Attention by segment](explain/attention_by_segment.png)" in report
    assert "explain/shapley_token_groups.png" in (run / "report.md").read_text()

    # A missing model is skipped with a one-line warning (its old figure is then removed by explain_run).
    moved = tiny_run / "e2e-model"
    shutil.move(run / "models" / "embedding_e2e" / "model", moved)
    try:
        with pytest.warns(UserWarning, match="no trained embedding_e2e model, skipping it"):
            *_, folders = open_run("runs/default")
    finally:
        shutil.move(moved, run / "models" / "embedding_e2e" / "model")
    assert list(folders) == [k for k in explained if k != "embedding_e2e"]


def test_explain_without_models_is_a_user_error(tmp_path, capsys):
    run = tmp_path / "runs" / "empty"
    (run / "models").mkdir(parents=True)
    write_json(run / "config.json", Config().to_dict())
    assert main(["explain", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trained model to explain" in err
    assert main(["explain", "--run", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
