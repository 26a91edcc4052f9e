"""The seed's classifiers: VanillaClassifier, PromptClassifier and EmbeddingClassifier.

    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, root_path="runs/x/vanilla")
    dataset = ml.generate_vanilla_dataset(clf.tokenize_function)
    clf.train_model_on_data(dataset, epochs=1, batch_size=256)   # val every epoch, best kept
    clf.evaluate_model(dataset, split="test")                    # accuracy, auc, f1, confusion

PromptClassifier and EmbeddingClassifier take the trained GraphRepresentationGenerator as `kge`;
EmbeddingClassifier(end_to_end=True) trains the GNN together with BERT. Training uses the HF
Trainer (so it runs under torchrun / accelerate launch unchanged), with negatives drawn on the fly
by the collator, dynamic padding, and per-step loss and accuracy logged to `train_log.jsonl`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from linklm.config import LLMConfig, llm_config
from linklm.errors import UserError
from linklm.evaluate import evaluate_scores
from linklm.io import atomic_path, stable_hash, write_json
from linklm.llm.collator import LinkCollator, PairDataset
from linklm.llm.models import EndToEndKGEClassifier, KGEBertForSequenceClassification, build_model, load_tokenizer
from linklm.llm.tokens import NodeTokens, PromptBuilder

SPLITS = ("train", "val", "test")


def _positive_probability(logits) -> np.ndarray:
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    return torch.softmax(logits, dim=-1)[:, 1].numpy()


def _val_metrics(prediction) -> dict[str, float]:
    metrics = evaluate_scores(prediction.label_ids, _positive_probability(prediction.predictions))
    return {"auc": metrics["auc"], "accuracy": metrics["accuracy"], "f1": metrics["f1"]}


class _StepLog(TrainerCallback):
    """Flushes per-step loss and accuracy to JSONL at every logging step, on the main process only."""

    def __init__(self, trainer: LinkTrainer):
        self.trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.trainer.flush_step_log()


class _QuietProgress(ProgressCallback):
    """The Trainer's progress bars, without a printed dict at every logging step: the per-step
    figures go to train_log.jsonl and each stage prints one summary line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "eval_auc") and isinstance(v, float)}
            self.training_bar.set_postfix(shown, refresh=False)


class LinkTrainer(Trainer):
    """The HF Trainer, recording each training step's loss and batch accuracy."""

    def __init__(self, *args, step_log_path: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(_QuietProgress)
        self.step_log_path = step_log_path
        self._pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self.add_callback(_StepLog(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss
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
                fh.write(
                    json.dumps({"step": step, "epoch": round(epoch, 4), "loss": loss.item(), "accuracy": acc.item()})
                )
                fh.write("\n")
        self._pending.clear()


class LinkClassifier:
    """Shared machinery of the three classifiers; subclasses set `kind` (and how KGEs are used)."""

    kind = "vanilla"  # what the prompt looks like: vanilla, prompt or embedding
    name = "vanilla"  # the results.json key

    def __init__(
        self,
        df,
        source_df,
        target_df,
        root_path: str | Path,
        model_name: str | None = None,
        *,
        kge=None,
        config: LLMConfig | None = None,
        **overrides: Any,
    ):
        if config is None:
            config = llm_config(**({"model": model_name} if model_name else {}), **overrides)
        elif model_name:
            config = dataclasses.replace(config, model=model_name)
        self.config = config
        self.df, self.source_df, self.target_df = df, source_df, target_df
        self.root = Path(root_path)
        self.kge = kge
        if self.kind != "vanilla" and kge is None:
            raise UserError(f"{type(self).__name__} needs kge= a trained GraphRepresentationGenerator")
        self.tokenizer = load_tokenizer(config.model)
        self.nodes = NodeTokens.from_frames(self.tokenizer, source_df, target_df)
        tables = {s: kge.kge_table(s) for s in SPLITS} if kge is not None else None
        self.builder = PromptBuilder(self.nodes, self.kind, tables)
        self.model = self._build()
        self._check_context()
        self.metrics: dict[str, Any] = {}

    # --- construction -------------------------------------------------------------------------

    @property
    def kge_dim(self) -> int | None:
        return self.kge.config.kge_dim if self.kge is not None else None

    def _build(self):
        return build_model(self.config.model, self.kind, self.config.num_layers or None, self.kge_dim, self.config.seed)

    @property
    def backbone(self):
        """The HF model (for the end-to-end classifier, the BERT part without the GNN)."""
        return self.model

    def _check_context(self) -> None:
        limit = self.backbone.config.max_position_embeddings
        needed = self.builder.max_length(self.kge_dim)
        if needed > limit:
            fits = self.builder.largest_fitting_dim(limit)
            raise UserError(
                f"prompts at KGE dimension {self.kge_dim} need {needed} tokens, more than the model's {limit} "
                f"positions; the largest dimension that fits is {fits}"
            )

    # --- the seed's tokenisation API ----------------------------------------------------------

    def indices(self, source_ids, target_ids) -> tuple[np.ndarray, np.ndarray]:
        """Dataset ids -> contiguous node indices (source_df/target_df are sorted by id)."""
        out = []
        for ids, frame, col in ((source_ids, self.source_df, "source_id"), (target_ids, self.target_df, "target_id")):
            known = frame[col].to_numpy()
            ids = np.asarray(ids, dtype=np.int64)
            pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
            if len(ids) and (known[pos] != ids).any():
                raise UserError(f"unknown {col} {int(ids[known[pos] != ids][0])}")
            out.append(pos)
        return out[0], out[1]

    def tokenize_function(self, batch: dict[str, list]) -> dict[str, list]:
        """For `datasets.map(batched=True)`: ids assembled from per-node pieces, plus the prompt text."""
        src, dst = self.indices(batch["source_id"], batch["target_id"])
        splits = batch.get("split") or ["test"] * len(src)
        out: dict[str, list] = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "prompt": []}
        for split in dict.fromkeys(splits):
            rows = np.array([i for i, s in enumerate(splits) if s == split])
            enc = self.builder.batch(src[rows], dst[rows], split)
            lengths = enc["attention_mask"].sum(1).tolist()
            texts = self.builder.text(src[rows], dst[rows], split)
            for j, n in enumerate(lengths):
                out["input_ids"].append((rows[j], enc["input_ids"][j, :n].tolist()))
                out["attention_mask"].append((rows[j], [1] * n))
                out["token_type_ids"].append((rows[j], enc["token_type_ids"][j, :n].tolist()))
                out["prompt"].append((rows[j], texts[j]))
        return {k: [v for _, v in sorted(pairs, key=lambda p: p[0])] for k, pairs in out.items()}

    # --- data -----------------------------------------------------------------------------------

    def _pairs(self, dataset, split: str) -> PairDataset:
        """Pairs of a split, from a DatasetDict made by generate_*_dataset, or from `df` when None."""
        if dataset is None:
            frame = self.df[self.df["split"] == split]
            src, dst = self.indices(frame["source_id"].to_numpy(), frame["target_id"].to_numpy())
            return PairDataset(src, dst, frame["labels"].to_numpy())
        if split not in dataset:
            raise UserError(f"the dataset has no {split!r} split (it has {', '.join(dataset.keys())})")
        part = dataset[split]
        src, dst = self.indices(np.asarray(part["source_id"]), np.asarray(part["target_id"]))
        return PairDataset(src, dst, np.asarray(part["labels"]))

    def _by_length(self, pairs: PairDataset) -> PairDataset:
        """The same pairs ordered by prompt length: with dynamic padding, evaluation batches then
        pad to about their own length instead of the batch's longest (~1.7x less work on ml-100k)."""
        order = np.argsort(self.builder.lengths(pairs.source_idx, pairs.target_idx), kind="stable")
        return PairDataset(pairs.source_idx[order], pairs.target_idx[order], pairs.labels[order])

    def _train_keys(self) -> np.ndarray:
        """Every training positive (GNN message-passing and supervision edges alike), as sorted keys."""
        if self.kge is not None:
            store = self.kge.splits["train"][self.kge.edge_type]
            edges = torch.cat([store.edge_index, store.edge_label_index], dim=1).numpy()
            src, dst = edges[0], edges[1]
        else:
            frame = self.df[(self.df["split"] == "train") & (self.df["labels"] == 1)]
            src, dst = self.indices(frame["source_id"].to_numpy(), frame["target_id"].to_numpy())
        return np.unique(src.astype(np.int64) * len(self.target_df) + dst)

    def collator(self, split: str, seed: int = 0, negatives: bool = True) -> LinkCollator:
        """The collator of `split`; train batches get on-the-fly negatives unless negatives=False."""
        draw = split == "train" and negatives
        return LinkCollator(
            self.builder, split, num_sources=len(self.source_df), num_targets=len(self.target_df),
            train_keys=self._train_keys() if draw else None, neg_ratio=self.config.neg_ratio if draw else 0.0,
            kge=self.kge_mode, tables=self.kge.kge_table(split) if self.kge_mode == "tables" else None, seed=seed,
        )  # fmt: skip

    kge_mode = "none"  # how the collator hands KGEs to the model: none, tables or indices

    # --- training -------------------------------------------------------------------------------

    def _device_args(self) -> dict[str, Any]:
        device = self.config.device
        cuda = torch.cuda.is_available() and device != "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"config key llm.device is {device!r} but no CUDA device is available")
        bf16 = cuda and torch.cuda.is_bf16_supported()
        return {"use_cpu": not cuda, "bf16": bf16, "fp16": cuda and not bf16}

    def _optimizers(self):
        return (None, None)

    def train_model_on_data(
        self, dataset=None, epochs: int | None = None, batch_size: int | None = None, callbacks: list | None = None
    ) -> dict:
        """Train with on-the-fly negatives; evaluate val every epoch and keep the best model by val
        AUC. Never touches test. Returns val metrics, training time and throughput. `callbacks` are
        extra HF TrainerCallbacks (progress hooks, timers)."""
        cfg = self.config
        epochs = epochs or cfg.epochs
        batch_size = batch_size or cfg.batch_size
        positives_per_batch = max(1, int(round(batch_size / (1 + cfg.neg_ratio))))
        train, val = self._pairs(dataset, "train"), self._by_length(self._pairs(dataset, "val"))
        train = PairDataset(train.source_idx[train.labels == 1], train.target_idx[train.labels == 1],
                            train.labels[train.labels == 1])  # fmt: skip
        if cfg.max_train_pairs and len(train) > cfg.max_train_pairs:
            keep = np.random.default_rng(cfg.seed).choice(len(train), cfg.max_train_pairs, replace=False)
            keep.sort()
            train = PairDataset(train.source_idx[keep], train.target_idx[keep], train.labels[keep])
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "train_log.jsonl"
        checkpoints, best_dir = self.root / "checkpoints", self.root / "best"
        steps_per_epoch = max(1, -(-len(train) // positives_per_batch))
        # What makes a checkpoint reusable: a leftover from another config is discarded, not resumed.
        identity = {"kind": self.name, "llm": dataclasses.asdict(cfg), "epochs": epochs, "batch": batch_size}
        identity.update(train=len(train), val=len(val), kge=self.kge.key if self.kge else None)
        key = stable_hash(identity)
        resume = _resumable(checkpoints, key)  # every rank reads it before rank 0 changes anything
        args = TrainingArguments(
            output_dir=str(checkpoints),
            per_device_train_batch_size=positives_per_batch,
            per_device_eval_batch_size=cfg.eval_batch_size,
            num_train_epochs=epochs,
            learning_rate=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_steps=cfg.warmup_ratio,
            eval_strategy="epoch",
            # Checkpoints for resuming a killed run, several per epoch; the best model by val AUC is
            # kept apart by _KeepBest, since load_best_model_at_end would tie saving to evaluation.
            save_strategy="steps",
            save_steps=cfg.checkpoint_every or max(1, steps_per_epoch // 4),
            save_total_limit=1,
            logging_strategy="steps",
            logging_steps=10,
            report_to="none",
            remove_unused_columns=False,
            seed=cfg.seed,
            data_seed=cfg.seed,
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,  # every parameter is used in every step
            **self._device_args(),
        )
        if args.process_index == 0:  # (creating the arguments joined the process group, if any)
            if not resume:
                for folder in (checkpoints, best_dir):
                    shutil.rmtree(folder, ignore_errors=True)
                log_path.unlink(missing_ok=True)
                checkpoints.mkdir(parents=True)
                write_json(checkpoints / "linklm_key.json", {"key": key})
            else:
                _truncate_log(log_path, resume)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        keep_best = _KeepBest(best_dir)
        collate = _SplitCollator(self, cfg.seed)
        trainer = LinkTrainer(
            model=self.model, args=args, data_collator=collate,
            train_dataset=_Tagged(train, "train"), eval_dataset=_Tagged(val, "val"),
            compute_metrics=_val_metrics, optimizers=self._optimizers(), step_log_path=log_path,
            callbacks=[keep_best, _ShardAudit(collate, self.root / "shards"), *(callbacks or [])],
        )  # fmt: skip
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - start
        trainer.flush_step_log()
        self.model = trainer.model
        best = keep_best.load_into(self.model)
        history = [row for row in trainer.state.log_history if "eval_auc" in row]
        examples = len(train) * epochs * (1 + cfg.neg_ratio)
        self.metrics = {
            "val_auc": float(best["eval_auc"]),
            "best_epoch": best["epoch"],
            "val_history": history,
            "train_seconds": round(seconds, 2),
            "train_examples": int(examples),
            "examples_per_second": round(examples / seconds, 1),
            "epochs": epochs,
            "batch_size": batch_size,
            "resumed_from": resume.name if resume else None,
        }
        if trainer.is_world_process_zero():
            self.save_pretrained(self.root / "model")
            for folder in (checkpoints, best_dir):
                shutil.rmtree(folder, ignore_errors=True)
        return self.metrics

    @torch.no_grad()
    def predict(self, dataset=None, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """(labels, positive-class probabilities) of every pair of `split`."""
        pairs = self._pairs(dataset, split)
        order = np.argsort(self.builder.lengths(pairs.source_idx, pairs.target_idx), kind="stable")
        pairs = PairDataset(pairs.source_idx[order], pairs.target_idx[order], pairs.labels[order])
        collate = self.collator(split, negatives=False)
        model = self.model.eval()
        device = next(model.parameters()).device
        scores = []
        for start in range(0, len(pairs), self.config.eval_batch_size):
            rows = range(start, min(start + self.config.eval_batch_size, len(pairs)))
            batch = collate([pairs[i] for i in rows])
            batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, enabled=device.type == "cuda", dtype=torch.bfloat16):
                logits = model(**batch).logits
            scores.append(_positive_probability(logits.float().cpu()))
        unsorted = np.empty(len(order), dtype=np.float64)
        unsorted[order] = np.concatenate(scores)
        return pairs.labels[np.argsort(order)], unsorted

    def evaluate_model(self, dataset=None, split: str = "test", predictions_path: str | Path | None = None):
        """Accuracy, ROC-AUC, F1 and the confusion matrix on `split` (test by default); with
        `predictions_path`, every pair's label and score are also written there as Parquet."""
        labels, scores = self.predict(dataset, split)
        if predictions_path is not None:
            import pandas as pd

            from linklm.io import write_parquet

            pairs = self._pairs(dataset, split)
            frame = pd.DataFrame({"source_idx": pairs.source_idx, "target_idx": pairs.target_idx,
                                  "label": labels, "score": scores})  # fmt: skip
            write_parquet(predictions_path, frame)
        return evaluate_scores(labels, scores)

    # --- persistence ----------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.backbone.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / "linklm.json", {"kind": self.kind, "name": self.name, "llm": self.config.__dict__})

    def load_pretrained(self, folder: str | Path) -> None:
        """Load weights saved by `save_pretrained` into this classifier (same kind and shape)."""
        folder = Path(folder)
        if not (folder / "model.safetensors").is_file():
            raise UserError(f"{folder}: no model.safetensors to load")
        state = load_file(folder / "model.safetensors")
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise UserError(f"{folder}: weights do not fit this classifier ({(unexpected or missing)[0]})")


def _resumable(checkpoints: Path, key: str) -> Path | None:
    """The latest complete checkpoint of a run with the same key, if any."""
    marker = checkpoints / "linklm_key.json"
    try:
        if json.loads(marker.read_text())["key"] != key:
            return None
    except (OSError, ValueError, KeyError):
        return None
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _truncate_log(path: Path, checkpoint: Path) -> None:
    """Drop per-step rows written after `checkpoint`: they are trained (and logged) again."""
    if not path.is_file():
        return
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(r + "\n" for r in rows))


class _KeepBest(TrainerCallback):
    """Saves the weights of the best val-AUC evaluation so far (safetensors) and restores them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.best = json.loads((folder / "best.json").read_text()) if (folder / "best.json").is_file() else None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        auc = (metrics or {}).get("eval_auc")
        if auc is None or (self.best is not None and auc <= self.best["eval_auc"]):
            return
        self.best = {"eval_auc": float(auc), "epoch": float(state.epoch or 0), "step": state.global_step}
        if state.is_world_process_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            weights = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
            with atomic_path(self.folder / "model.safetensors") as tmp:
                save_file(weights, tmp)
            write_json(self.folder / "best.json", self.best)

    def load_into(self, model) -> dict:
        if self.best is None:
            raise UserError("training ended without a single validation; nothing to select a model by")
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # rank 0 may still be writing the file
        state = load_file(self.folder / "model.safetensors")
        _unwrap(model).load_state_dict(state)
        return self.best


def _unwrap(model):
    return getattr(model, "module", model)


class _Tagged(torch.utils.data.Dataset):
    """A PairDataset whose items say their split, so one collator serves train and val."""

    def __init__(self, pairs: PairDataset, split: str):
        self.pairs, self.split = pairs, split

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return {**self.pairs[i], "split": self.split}


class _SplitCollator:
    """Routes each batch to the train or the val collator (the Trainer takes one collator)."""

    def __init__(self, classifier: LinkClassifier, seed: int):
        self.by_split = {s: classifier.collator(s, seed=seed) for s in ("train", "val")}
        self.seen: list[tuple[int, int]] | None = [] if classifier.config.audit_shards else None

    def __call__(self, features):
        if self.seen is not None and features[0]["split"] == "train":
            self.seen += [(int(f["source_idx"]), int(f["target_idx"])) for f in features]
        return self.by_split[features[0]["split"]](features)


class _ShardAudit(TrainerCallback):
    """With llm.audit_shards, each rank writes the train positives it saw in each epoch
    (<root>/shards/rank<r>-epoch<e>.json), so a DDP run can be checked for disjoint shards."""

    def __init__(self, collator: _SplitCollator, folder: Path):
        self.collator, self.folder = collator, folder

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.collator.seen is None:
            return
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        write_json(self.folder / f"rank{rank}-epoch{round(state.epoch or 0)}.json", sorted(self.collator.seen))
        self.collator.seen.clear()


class VanillaClassifier(LinkClassifier):
    """Text only: user_id[SEP]movie_id[SEP]title[SEP]genres."""

    kind = name = "vanilla"


class PromptClassifier(LinkClassifier):
    """The vanilla prompt followed by the user's and the movie's KGE written as text (1 token/dim)."""

    kind = name = "prompt"


class EmbeddingClassifier(LinkClassifier):
    """The vanilla prompt plus two slots whose input embeddings are the projected KGEs.

    end_to_end=False: KGEs from the GNN's cached tables (frozen). end_to_end=True: the GNN runs
    inside the model on each split's message-passing graph and trains with BERT.
    """

    kind = "embedding"

    def __init__(self, *args, end_to_end: bool = False, **kwargs):
        self.end_to_end = end_to_end
        self.name = "embedding_e2e" if end_to_end else "embedding_frozen"
        self.kge_mode = "indices" if end_to_end else "tables"
        super().__init__(*args, **kwargs)

    def _build(self):
        classifier = super()._build()
        if not self.end_to_end:
            return classifier
        gen = self.kge
        gnn = copy.deepcopy(gen.model).cpu()
        graphs = {code: (gen.movie_x, {k: v.cpu() for k, v in gen._adjacency(split).items()})
                  for code, split in enumerate(SPLITS)}  # fmt: skip
        return EndToEndKGEClassifier(classifier, gnn, graphs, gen.user_type, gen.movie_type)

    @property
    def backbone(self):
        return self.model.classifier if self.end_to_end else self.model

    def _optimizers(self):
        if not self.end_to_end:
            return (None, None)
        cfg = self.config
        decay = [p for n, p in self.model.classifier.named_parameters() if "bias" not in n and "LayerNorm" not in n]
        no_decay = [p for n, p in self.model.classifier.named_parameters() if "bias" in n or "LayerNorm" in n]
        groups = [
            {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0},
            {"params": list(self.model.gnn.parameters()), "lr": cfg.gnn_lr, "weight_decay": 0.0},
        ]
        return (torch.optim.AdamW(groups), None)

    def save_pretrained(self, folder: str | Path) -> None:
        super().save_pretrained(folder)
        if self.end_to_end:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.gnn.state_dict().items()}
            save_file(state, Path(folder) / "gnn.safetensors")

    def load_pretrained(self, folder: str | Path) -> None:
        super().load_pretrained(folder)
        if self.end_to_end:
            self.model.gnn.load_state_dict(load_file(Path(folder) / "gnn.safetensors"))


__all__ = [
    "EmbeddingClassifier",
    "KGEBertForSequenceClassification",
    "LinkClassifier",
    "PromptClassifier",
    "VanillaClassifier",
]
