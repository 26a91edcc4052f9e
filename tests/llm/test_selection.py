"""Selection on val: the best evaluation is kept, and training stops once val stops improving."""

import pytest

from linklm import UserError
from linklm.config import load_config
from linklm.llm import VanillaClassifier
from linklm.llm.selection import stale_evaluations, stopped

from .conftest import TINY

FAST = {"max_train_pairs": 64, "batch_size": 32, "eval_batch_size": 64, "evals_per_epoch": 1}


@pytest.mark.parametrize(
    "aucs,margin,stale",
    [
        ([], 0.001, 0),
        ([0.5], 0.001, 0),
        ([0.5, 0.6, 0.7], 0.001, 0),
        ([0.5, 0.6, 0.6005, 0.59], 0.001, 2),  # +0.0005 is inside the margin: not a gain
        ([0.5, 0.6, 0.6005, 0.59], 0.0, 1),
        ([0.7, 0.6, 0.65, 0.7], 0.0, 3),  # equal to the kept one is not a gain
        ([0.7, 0.6, 0.65, 0.71], 0.0, 0),
    ],
)
def test_stale_evaluations_follow_the_selection_margin(aucs, margin, stale):
    assert stale_evaluations(aucs, margin) == stale


def test_stopped_says_converged_only_when_patience_ran_out():
    rows = [{"eval_auc": a} for a in (0.6, 0.7, 0.69, 0.68)]
    assert stopped(rows, patience=2, margin=0.0) == "converged"
    assert stopped(rows, patience=3, margin=0.0) == "budget"  # still had patience when the epochs ran out
    assert stopped(rows, patience=0, margin=0.0) == "budget"  # patience 0: never stops early
    assert stopped([{"loss": 1.0}, *rows], patience=2, margin=0.0) == "converged"  # training rows are not evaluations


def test_training_stops_when_val_stops_improving(tiny, tmp_path):
    ml, _ = tiny
    # A learning rate this small leaves val AUC where it started: no evaluation gains the margin.
    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "clf", TINY, **FAST, lr=1e-12,
                            max_epochs=6, patience=2)  # fmt: skip
    m = clf.train_model_on_data(None)
    positives = len(clf._train_positives(None))
    steps_per_epoch = -(-positives // 16)  # 16 positives and 16 negatives a step
    assert len(m["val_history"]) == 3 and m["stopped"] == "converged"
    assert m["steps"] == 3 * steps_per_epoch and m["epochs"] == pytest.approx(3.0)
    assert m["best_step"] == steps_per_epoch and m["max_epochs"] == 6
    # each evaluation says how many training examples (positives and their negatives) came before it
    assert [row["examples"] for row in m["val_history"]] == [2 * positives, 4 * positives, 6 * positives]
    assert m["train_examples"] == 6 * positives


def test_without_patience_training_uses_the_whole_budget(tiny, tmp_path):
    ml, _ = tiny
    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "clf", TINY, **FAST, lr=1e-12,
                            max_epochs=3, patience=0, eval_steps=2)  # fmt: skip
    m = clf.train_model_on_data(None)
    steps = 3 * -(-len(clf._train_positives(None)) // 16)
    assert m["stopped"] == "budget" and m["steps"] == steps
    # every llm.eval_steps, not per epoch, and at the last step
    assert [row["step"] for row in m["val_history"]] == sorted({*range(2, steps + 1, 2), steps})


def test_the_old_epochs_key_names_its_successor():
    with pytest.raises(UserError, match=r"llm\.epochs is now llm\.max_epochs"):
        load_config(None, ["llm.epochs=2"])
