"""Selection on val, the same rule for every classifier kind: keep the best weights, stop when val
stops improving.

- `KeepBest` saves the weights of the best val-AUC evaluation so far and loads them back at the end;
- `EarlyStop` ends training after `patience` evaluations in a row that did not beat the kept one;
- `stale_evaluations` is the rule both follow: an evaluation replaces the kept one only if its AUC
  is higher by more than `margin`, so ties and noise keep the earlier one.

A model that ran out of epochs while val was still improving is "budget"-stopped, one that ran out of
patience "converged" (`stopped`). Both read the Trainer's log history, which a resumed run restores
from its checkpoint, so a resume counts the evaluations before the kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from linklm.artifacts import Damaged, read_json
from linklm.errors import UserError
from linklm.io import atomic_path, write_json
from linklm.runtime import Runtime


def stale_evaluations(aucs: list[float], margin: float) -> int:
    """How many of the last evaluations (val AUCs in order) did not beat the kept one by more than
    `margin`; 0 when the last one was kept."""
    best, since = None, 0
    for auc in aucs:
        if best is None or auc > best + margin:
            best, since = auc, 0
        else:
            since += 1
    return since


def val_aucs(log_history: list[dict]) -> list[float]:
    return [float(row["eval_auc"]) for row in log_history if "eval_auc" in row]


def stopped(log_history: list[dict], patience: int, margin: float) -> str:
    """ "converged" when the last `patience` evaluations gained nothing (training stopped there, or
    would have), "budget" when the epochs ran out first."""
    aucs = val_aucs(log_history)
    ran_out = patience and len(aucs) > patience and stale_evaluations(aucs, margin) >= patience
    return "converged" if ran_out else "budget"


class EarlyStop(TrainerCallback):
    """Stops training once `patience` val evaluations in a row gained no more than `margin` (0: never)."""

    def __init__(self, patience: int, margin: float):
        self.patience, self.margin = patience, margin

    def on_evaluate(self, args, state, control, **kwargs):
        if self.patience and stale_evaluations(val_aucs(state.log_history), self.margin) >= self.patience:
            control.should_training_stop = True


class KeepBest(TrainerCallback):
    """Saves the weights of the best val-AUC evaluation so far (safetensors, by `stale_evaluations`'
    rule) and restores them."""

    def __init__(self, folder: Path, margin: float = 0.0):
        self.folder, self.margin = folder, margin
        shape = {"eval_auc": (int, float), "epoch": (int, float), "step": int, "threshold?": (int, float)}
        self.best = readable(folder / "best.json", shape, None)  # a resumed run's best so far

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        auc = (metrics or {}).get("eval_auc")
        if auc is None or (self.best is not None and auc <= self.best["eval_auc"] + self.margin):
            return
        self.best = {"eval_auc": float(auc), "epoch": float(state.epoch or 0), "step": state.global_step,
                     "threshold": float(metrics.get("eval_threshold", 0.5))}  # fmt: skip
        if state.is_world_process_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            weights = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
            with atomic_path(self.folder / "model.safetensors") as tmp:
                save_file(weights, tmp)
            write_json(self.folder / "best.json", self.best)

    def load_into(self, model) -> dict:
        if self.best is None:
            raise UserError("training ended without a single validation; nothing to select a model by")
        Runtime.current().barrier()  # rank 0 may still be writing the file
        unwrap(model).load_state_dict(load_file(self.folder / "model.safetensors"))
        return self.best


def unwrap(model):
    return getattr(model, "module", model)


def readable(path: Path, shape: Any, otherwise: Any) -> Any:
    """The JSON of a file that resuming reads, if it has `shape`; `otherwise` if it is missing or damaged."""
    try:
        return read_json(path, shape)
    except Damaged:
        return otherwise
