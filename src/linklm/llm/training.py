"""The classifier recipe: train with the HF Trainer, select on val, keep the best weights, resume.

    metrics = fit(model, train_pairs, val_pairs, collators, TrainSpec(...), folder)

`fit` reads top to bottom: the checkpoint folder is reused only for the same training identity,
`TrainingArguments` are built from the spec, the Trainer trains with val AUC every `eval_steps` until
val stops improving or the epochs run out (`selection`), and the best-by-val weights (kept apart as
safetensors by `KeepBest`) are loaded back at the end. Per-step
loss and batch accuracy go to `train_log.jsonl`. It never touches test.

Resuming a killed run loads the Trainer's own checkpoints (optimizer and scheduler states are
torch pickles, which transformers 5 reads with `torch.load(weights_only=True)`); every artifact a
finished run keeps is safetensors, Parquet or JSON.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging

from linklm import tracking
from linklm.errors import UserError
from linklm.evaluate import accuracy_threshold, evaluate_scores
from linklm.io import atomic_path, write_json
from linklm.llm.collator import PairDataset
from linklm.llm.selection import EarlyStop, KeepBest, readable, stopped
from linklm.llm.slices import forward_by_length
from linklm.runtime import Runtime, autocast


@dataclass(frozen=True)
class TrainSpec:
    """How to train: every field the Trainer needs, resolved by the caller.

    positives_per_batch: positives per device step (the collator adds the negatives); cpu: train on
    the CPU even where a GPU exists; precision: fp32, bf16 or fp16 (`runtime.resolve_precision`); key: the
    training identity, which decides whether a checkpoint left in the folder is resumed or discarded.
    """

    epochs: int  # the most epochs (llm.max_epochs): the budget
    positives_per_batch: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    seed: int
    checkpoint_every: int
    cpu: bool
    precision: str
    progress: bool
    key: str
    name: str = "classifier"  # for messages: the model kind
    evals_per_epoch: int = 1  # val evaluations per epoch, evenly spaced (the best one is kept)
    tracking: str = "none"  # where the curves also go: none, tensorboard, mlflow, wandb (linklm.tracking)
    # Also evaluate before the first step: the fused model starts as its GNN, and selection keeps it
    eval_on_start: bool = False
    length_slices: int = 1  # a training batch runs as this many slices of similar length (`slices`)
    selection_margin: float = 0.0  # val AUC gain a later evaluation needs to replace the kept one
    checkpoint_minutes: float = 0.0  # with checkpoint_every 0: a checkpoint after this much training (0: none)
    patience: int = 0  # val evaluations without a gain above selection_margin that stop training (0: never)
    eval_steps: int = 0  # steps between val evaluations (0: evals_per_epoch evenly spaced ones per epoch)


def positive_probability(logits) -> np.ndarray:
    """sigmoid(logit 1 - logit 0), the softmax's positive class, in float64: it keeps apart scores
    that float32 would round to one value (above a logit of ~17 every one becomes 1.0), and a fused
    model that is still its GNN scores exactly as the GNN's `sigmoid(<u, m>)` does."""
    logits = torch.as_tensor(np.asarray(logits)).double()
    return torch.sigmoid(logits[:, 1] - logits[:, 0]).numpy()


def _val_metrics(prediction) -> dict[str, float]:
    """Val AUC, accuracy and F1 at 0.5, and the cut that would make val most accurate (kept with the
    best weights: test accuracy is read at it)."""
    scores = positive_probability(prediction.predictions)
    metrics = evaluate_scores(prediction.label_ids, scores)
    threshold = accuracy_threshold(prediction.label_ids, scores)
    return {"auc": metrics["auc"], "accuracy": metrics["accuracy"], "f1": metrics["f1"], "threshold": threshold}


def fit(model, train: PairDataset, val: PairDataset, collate, spec: TrainSpec, folder: Path, *, optimizer=None,
        callbacks: list | None = None, audit=None, at_last_step=None) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Train `model` on `train` (positives; `collate` adds negatives), pick the epoch by val AUC.

    collate: a callable taking Trainer features tagged with their split (`Tagged`). at_last_step:
    called as (model, log history) with the last step's weights, before the best are loaded; what it
    returns is the figures' `last_step`. Returns the trained model with its best-by-val weights
    loaded, and the training figures."""
    log_path, checkpoints, best_dir = folder / "train_log.jsonl", folder / "checkpoints", folder / "best"
    steps_per_epoch = max(1, -(-len(train) // spec.positives_per_batch))
    resume = resumable(checkpoints, spec.key)  # every rank reads it before rank 0 changes anything
    report_to, trackers = tracking.trainer_callbacks(spec.tracking, folder)
    args = _arguments(spec, checkpoints, eval_interval(spec, steps_per_epoch), report_to)
    if args.process_index == 0:  # (creating the arguments joined the process group, if any)
        _prepare(folder, spec.key, resume)
    Runtime.current().barrier()
    keep_best = KeepBest(best_dir, spec.selection_margin)
    trainer = LinkTrainer(
        model=model, args=args, data_collator=collate, train_dataset=Tagged(train, "train"),
        eval_dataset=Tagged(val, "val"), compute_metrics=_val_metrics, optimizers=(optimizer, None),
        step_log_path=log_path, length_slices=spec.length_slices, precision=spec.precision,
        callbacks=[keep_best, EarlyStop(spec.patience, spec.selection_margin), *([audit] if audit else []),
                   *trackers, *(callbacks or []),
                   *([TimedCheckpoints(spec.checkpoint_minutes)] if not spec.checkpoint_every else [])],
    )  # fmt: skip
    trainer.add_callback(_Divergence(trainer, spec))
    start = time.perf_counter()
    with hf_progress_bars(spec.progress):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - start
    trainer.flush_step_log()
    last = at_last_step(trainer.model, trainer.state.log_history) if at_last_step is not None else None
    best = keep_best.load_into(trainer.model)
    seen = _examples_seen(len(train), spec.positives_per_batch, steps_per_epoch, collate.examples_per_positive)
    history = trainer.state.log_history
    metrics = {
        "val_auc": float(best["eval_auc"]),
        "threshold": float(best.get("threshold", 0.5)),
        "best_epoch": best["epoch"],
        "best_step": best["step"],
        # every evaluation, with the training examples seen by then: the budget curve
        "val_history": [{**row, "examples": seen(row["step"])} for row in history if "eval_auc" in row],
        "stopped": stopped(history, spec.patience, spec.selection_margin),
        "train_seconds": round(seconds, 2),
        "train_examples": seen(trainer.state.global_step),
        "examples_per_second": round(seen(trainer.state.global_step) / seconds, 1),
        "steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "max_epochs": spec.epochs,
        "resumed_from": resume.name if resume else None,
        **({"last_step": last} if last is not None else {}),
    }
    if trainer.is_world_process_zero():
        for leftover in (checkpoints, best_dir):
            shutil.rmtree(leftover, ignore_errors=True)
    return trainer.model, metrics


def eval_interval(spec: TrainSpec, steps_per_epoch: int) -> int:
    """Steps between val evaluations: spec.eval_steps, else evals_per_epoch evenly spaced ones an epoch."""
    return spec.eval_steps or max(1, -(-steps_per_epoch // spec.evals_per_epoch))


def _examples_seen(positives: int, per_batch: int, steps_per_epoch: int, per_positive: float):
    """Training examples (positives and their negatives) seen after a given number of steps."""

    def seen(step: int) -> int:
        epochs, rest = divmod(step, steps_per_epoch)
        return int(round((epochs * positives + min(rest * per_batch, positives)) * per_positive))

    return seen


def saved_threshold(info_path: Path) -> float:
    """The val-chosen cut saved with a model (`linklm.json`); 0.5 for one saved before there was one."""
    return float(readable(info_path, {"threshold?": (int, float)}, {}).get("threshold", 0.5))


@contextlib.contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars (e.g. "Writing model shards" at each save) on or off for the
    duration, then as they were."""
    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def _arguments(spec: TrainSpec, checkpoints: Path, eval_steps: int, report_to: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=spec.positives_per_batch,
        per_device_eval_batch_size=spec.eval_batch_size,
        num_train_epochs=spec.epochs,
        learning_rate=spec.lr,
        weight_decay=spec.weight_decay,
        # transformers >= 5 (pinned in pyproject.toml) reads a warmup_steps below 1 as a share of the steps.
        warmup_steps=spec.warmup_ratio,
        eval_strategy="steps",
        # Evenly spaced, the last one at the last step (which the Trainer always evaluates): 63 steps
        # and 2 evaluations per epoch are steps 32 and 63, not 31, 62 and 63.
        eval_steps=max(1, eval_steps),
        eval_on_start=spec.eval_on_start,
        # Checkpoints for resuming a killed run: every checkpoint_every steps, else by time
        # (TimedCheckpoints); the best model by val AUC is kept apart by KeepBest, since
        # load_best_model_at_end would tie saving to evaluation.
        save_strategy="steps" if spec.checkpoint_every else "no",
        save_steps=spec.checkpoint_every or 1,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=10,
        report_to=report_to,
        remove_unused_columns=False,
        seed=spec.seed,
        data_seed=spec.seed,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter is used in every step
        disable_tqdm=not spec.progress,
        use_cpu=spec.cpu,
        bf16=spec.precision == "bf16",
        fp16=spec.precision == "fp16",
    )


def _prepare(folder: Path, key: str, resume: Path | None) -> None:
    """Rank 0 only: a fresh start clears what an older run left; a resume trims the step log."""
    log_path, checkpoints = folder / "train_log.jsonl", folder / "checkpoints"
    if resume:
        truncate_log(log_path, resume)
        return
    for leftover in (checkpoints, folder / "best"):
        shutil.rmtree(leftover, ignore_errors=True)
    log_path.unlink(missing_ok=True)
    checkpoints.mkdir(parents=True)
    write_json(checkpoints / "linklm_key.json", {"key": key})


def resumable(checkpoints: Path, key: str) -> Path | None:
    """The latest complete checkpoint of a run with the same key, if any."""
    if readable(checkpoints / "linklm_key.json", {"key": str}, {}).get("key") != key:
        return None
    # (a checkpoint whose trainer state is damaged is no place to resume from)
    done = [p for p in checkpoints.glob("checkpoint-*")
            if p.name[len("checkpoint-"):].isdigit() and readable(p / "trainer_state.json", STATE, None)]  # fmt: skip
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


STATE = {"global_step": int}  # what linklm reads of a Trainer checkpoint's trainer_state.json


def truncate_log(path: Path, checkpoint: Path) -> None:
    """Drop per-step rows written after `checkpoint`: they are trained (and logged) again."""
    if not path.is_file():
        return
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(r + "\n" for r in rows))


class LinkTrainer(Trainer):
    """The HF Trainer, recording each training step's loss and batch accuracy."""

    def __init__(self, *args, step_log_path: Path | None = None, length_slices: int = 1, precision: str = "fp32",
                 **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.length_slices, self.precision = length_slices, precision
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(QuietProgress)
        self.pop_callback(PrinterCallback)  # without progress bars: nothing printed per logging step
        self.step_log_path = step_log_path
        self._pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self.finite: torch.Tensor | None = None  # whether every training loss so far was finite
        self.add_callback(_StepLog(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Training batches run as slices of similar length; not under DDP, whose reducer wants one
        # forward per backward (`module`: the wrapper's model).
        slices = self.length_slices if model.training and not hasattr(model, "module") else 1
        # One autocast for the whole batch: its weight casts are cached across the slices, and the
        # end-to-end model's BERT (which `forward_by_length` calls past the wrapped forward) is in it.
        with autocast(self.args.device, self.precision):
            outputs = forward_by_length(model, inputs, slices)
        loss = outputs.loss
        if model.training:  # a tensor flag: reading it only at log and save steps keeps the GPU busy
            ok = torch.isfinite(loss.detach())
            self.finite = ok if self.finite is None else self.finite & ok
        if model.training and self.step_log_path is not None and self.is_world_process_zero():
            correct = (outputs.logits.argmax(-1) == inputs["labels"]).float().mean()
            # Kept as tensors: reading them here would stall the GPU at every step.
            self._pending.append((self.state.global_step + 1, self.state.epoch or 0.0, loss.detach(), correct.detach()))
        return (loss, outputs) if return_outputs else loss

    def flush_step_log(self) -> None:
        if not self._pending or self.step_log_path is None:
            return
        with open(self.step_log_path, "a") as fh:
            for step, epoch, loss, acc in self._pending:
                row = {"step": step, "epoch": round(epoch, 4), "loss": loss.item(), "accuracy": acc.item()}
                fh.write(json.dumps(row) + "\n")
        self._pending.clear()


class _Divergence(TrainerCallback):
    """Stops training with one line naming the model and the learning rate to lower when a loss was
    not finite; checked at every logging step and before every checkpoint, so none holds a NaN."""

    def __init__(self, trainer: LinkTrainer, spec: TrainSpec):
        self.trainer, self.spec = trainer, spec

    def on_step_end(self, args, state, control, **kwargs):
        checked = (control.should_save or control.should_log) and self.trainer.finite is not None
        if checked and not bool(self.trainer.finite):
            raise UserError(f"the {self.spec.name} classifier diverged by step {state.global_step} (a loss was "
                            f"not finite); lower llm.lr (now {self.spec.lr})")  # fmt: skip


class TimedCheckpoints(TrainerCallback):
    """Asks for a checkpoint once `minutes` of training passed since the last one (or the start),
    by rank 0's clock, so that every rank saves at the same step."""

    def __init__(self, minutes: float):  # (made as training starts: `fit` builds it)
        self.seconds, self.last = minutes * 60, time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        due = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        if Runtime.current().from_main(due):
            control.should_save = True
            self.last = time.monotonic()


class _StepLog(TrainerCallback):
    """Flushes per-step loss and accuracy to JSONL at every logging step, on the main process only."""

    def __init__(self, trainer: LinkTrainer):
        self.trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.trainer.flush_step_log()


class QuietProgress(ProgressCallback):
    """The Trainer's progress bars, without a printed dict at every logging step: the per-step
    figures go to train_log.jsonl and each stage prints one summary line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "eval_auc") and isinstance(v, float)}
            self.training_bar.set_postfix(shown, refresh=False)


class Tagged(torch.utils.data.Dataset):
    """A PairDataset whose items say their split, so one collator serves train and val."""

    def __init__(self, pairs: PairDataset, split: str):
        self.pairs, self.split = pairs, split

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return {**self.pairs[i], "split": self.split}


class SplitCollator:
    """Routes each batch to the train or the val collator (the Trainer takes one collator); with
    `audit`, remembers the train positives this rank saw (for `ShardAudit`)."""

    def __init__(self, by_split: dict, examples_per_positive: float, audit: bool = False):
        self.by_split = by_split
        self.examples_per_positive = examples_per_positive
        self.seen: list[tuple[int, int]] | None = [] if audit else None

    def __call__(self, features):
        if self.seen is not None and features[0]["split"] == "train":
            self.seen += [(int(f["source_idx"]), int(f["target_idx"])) for f in features]
        return self.by_split[features[0]["split"]](features)


class ShardAudit(TrainerCallback):
    """Each rank writes the train positives it saw in each epoch (<folder>/rank<r>-epoch<e>.json),
    so a DDP run can be checked for disjoint shards."""

    def __init__(self, collator: SplitCollator, folder: Path):
        self.collator, self.folder = collator, folder

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.collator.seen is None:
            return
        rank = Runtime.current().rank
        write_json(self.folder / f"rank{rank}-epoch{round(state.epoch or 0)}.json", sorted(self.collator.seen))
        self.collator.seen.clear()
