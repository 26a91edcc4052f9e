"""EASE as a floor: its closed form, lambda chosen on val, and what it reports."""

import numpy as np
import pytest

from linklm import MovieLensManager
from linklm.experiment import ease as ease_module
from linklm.experiment.ease import ease, weights
from linklm.experiment.ranking import sampled_metrics

from synthetic import write_layout


def test_weights_solve_the_constrained_least_squares():
    """EASE minimises |X - XB|^2 + lambda |B|^2 with diag(B) = 0: off the diagonal, its normal
    equations read (X'X + lambda I) B = X'X."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    gram, lam = x.T @ x, 5.0
    b = weights(gram, lam)
    assert np.all(np.diag(b) == 0)
    lhs = (gram + lam * np.eye(12)) @ b
    off = ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(lhs[off], gram[off], atol=1e-9)
    # Any other zero-diagonal B does worse on the objective.
    objective = lambda m: np.sum((x - x @ m) ** 2) + lam * np.sum(m**2)  # noqa: E731
    other = b + 0.01 * rng.standard_normal(b.shape)
    np.fill_diagonal(other, 0.0)
    assert objective(b) < objective(other)


@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    root = tmp_path_factory.mktemp("ease")
    syn = write_layout(root / "ml-synth", "csv", n_users=80, n_movies=40, n_ratings=1500)
    return MovieLensManager(path=syn.folder, cache_dir=str(root / "cache"))


def test_lambda_is_the_val_best_and_test_is_reported_with_rankings(ml, tmp_path):
    out = ease(ml, ranking_users=20, predictions_path=tmp_path / "p.parquet")
    assert out["val_auc"] == max(out["val_auc_by_lambda"].values())
    assert out["val_auc_by_lambda"][f"{out['lambda']:g}"] == out["val_auc"]
    assert 0.0 <= out["test_auc"] <= 1.0 and {"test_auc_warm", "test_auc_cold"} <= set(out)
    full, sampled = out["ranking"]["full"], out["ranking"]["sampled"]
    assert {f"{m}@{k}" for m in ("recall", "ndcg", "map") for k in (10, 20)} <= set(full)
    assert sampled["users"] == 20 and "hr@10_se" in sampled
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "p.parquet")
    assert len(frame) == 2 * ml.summary()["test"]["supervision_pos"]


def test_a_held_out_item_ties_and_too_many_items_are_skipped(tmp_path, monkeypatch):
    syn = write_layout(tmp_path / "ml-synth", "csv", n_users=80, n_movies=40, n_ratings=1500)
    cold = MovieLensManager(path=syn.folder, cache_dir=str(tmp_path / "cache"), cold_items=0.25)
    out = ease(cold)
    assert out["test_auc_cold_items"] == 0.5  # no column in X: every pair of it scores 0
    monkeypatch.setattr(ease_module, "MAX_ITEMS", 10)
    assert "skipped" in ease(cold)


def test_sampled_standard_errors_are_over_users():
    scores = np.array([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    positive = np.array([0, 0, 0, 2])  # ranks 0, 2, 2, 2
    out = sampled_metrics(scores, positive, k=1)
    assert out["hr@1"] == 0.25 and out["hr@1_se"] == pytest.approx(np.std([1, 0, 0, 0], ddof=1) / 2, abs=1e-6)
    out = sampled_metrics(scores, positive, k=3)
    gains = [1.0, 0.5, 0.5, 0.5]
    assert out["ndcg@3"] == pytest.approx(np.mean(gains), abs=1e-6)
    assert out["ndcg@3_se"] == pytest.approx(np.std(gains, ddof=1) / 2, abs=1e-6)
