"""The seed's classifiers: VanillaClassifier, PromptClassifier, EmbeddingClassifier (the fused ones: `fused`).

    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, root_path="runs/x/vanilla")
    dataset = ml.generate_vanilla_dataset(clf.tokenize_function)
    clf.train_model_on_data(dataset, epochs=3, batch_size=256)   # at most 3 epochs, val picks the step
    clf.evaluate_model(dataset, split="test")                    # accuracy, auc, f1, confusion

Thin faces over the components (per-node tokens and prompt assembly in `tokens`, negatives on the
fly in `collator`, the BERT models in `models`) and the training recipe in `training`. Prompt and
Embedding classifiers take the trained GraphRepresentationGenerator as `kge`;
EmbeddingClassifier(end_to_end=True) trains a copy of its GNN together with BERT.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from linklm.config import SPLITS, LLMConfig, llm_config
from linklm.errors import UserError
from linklm.evaluate import evaluate_scores
from linklm.io import stable_hash, write_json, write_parquet
from linklm.llm import training
from linklm.llm.collator import SPLIT_CODES, LinkCollator, PairDataset
from linklm.llm.models import (
    EndToEndKGEClassifier,
    build_model,
    load_tokenizer,
)
from linklm.llm.optimizers import end_to_end_optimizer
from linklm.llm.tokens import NodeTokens, PromptBuilder, principal_components
from linklm.runtime import Runtime, autocast, resolve_device, resolve_precision


class LinkClassifier:
    """Shared machinery of every classifier kind; subclasses set the prompt format and how the
    model receives KGEs (the controls and kge_mlp live in `controls`).

    df, source_df, target_df: the manager's `llm_df`, users and movies. root_path: where training
    writes its log, checkpoints and the final `model/`. model_name: `llm.model` (MiniLM, a folder,
    a hub id, `random:L2-H128`). kge: the trained GraphRepresentationGenerator (prompt and embedding
    kinds). config: an `LLMConfig`; or pass any of its fields as keywords. train_keys: sorted
    `source * num_targets + target` of every train edge, which on-the-fly negatives avoid (the
    pipeline passes the manager's, so every kind draws under the same exclusion set).
    """

    prompt_format = "vanilla"  # tokens.PromptBuilder: vanilla, prompt or embedding
    architecture = None  # models.build_model's kind, when it is not the prompt format (fused)
    name = "vanilla"  # the model kind: results.json key and folder name
    kge_input = "none"  # how the collator hands KGEs to the model: none, tables or indices
    progress = True  # progress bars while training (the pipeline sets it from the run's config)
    starts_as_gnn = False  # whether the untrained model scores as the GNN does (then val also sees step 0)
    _at_last_step = None  # called with the last step's model before the best one is loaded (`fused`)
    tracking = "none"  # where training curves also go (linklm.tracking; the pipeline sets it too)

    def __init__(
        self,
        df: pd.DataFrame,
        source_df: pd.DataFrame,
        target_df: pd.DataFrame,
        root_path: str | Path,
        model_name: str | None = None,
        *,
        kge=None,
        config: LLMConfig | None = None,
        train_keys: np.ndarray | None = None,
        **overrides: Any,
    ):
        if config is None:  # the kind's val-chosen learning rate (llm.lr_by_model) unless one is given
            config = llm_config(**({"model": model_name} if model_name else {}), **overrides)
            config = config if {"lr", "head_lr"} & set(overrides) else config.for_model(self.name)
        elif model_name:
            config = dataclasses.replace(config, model=model_name)
        self.config = config
        self.df, self.source_df, self.target_df = df, source_df, target_df
        self.root = Path(root_path)
        self.kge = kge
        self.known_train_keys = train_keys
        if self.prompt_format != "vanilla" and kge is None:
            raise UserError(f"{type(self).__name__} needs kge= a trained GraphRepresentationGenerator")
        self.tokenizer = load_tokenizer(config.model)
        self.nodes = NodeTokens.from_frames(self.tokenizer, source_df, target_df, config.user_features)
        tables = {s: kge.kge_table(s) for s in SPLITS} if kge is not None else None
        if self.prompt_format == "prompt":
            tables = principal_components(tables, config.prompt_kge_dims)
        self.builder = PromptBuilder(self.nodes, self.prompt_format, tables)
        self.model = self._build()
        self._check_context()
        self.metrics: dict[str, Any] = {}
        self.threshold = 0.5  # the cut on P(link) for accuracy and F1; training sets it on val

    # --- construction -------------------------------------------------------------------------

    @property
    def kge_dim(self) -> int | None:
        return self.kge.config.kge_dim if self.kge is not None else None

    @property
    def written_dims(self) -> int | None:
        """KGE components per node the prompt writes as text: llm.prompt_kge_dims of them, else all."""
        written = self.prompt_format == "prompt" and self.config.prompt_kge_dims
        return min(self.kge_dim, written) if written else self.kge_dim

    def _build(self):
        cfg, kind = self.config, self.architecture or self.prompt_format
        return build_model(cfg.model, kind, cfg.num_layers or None, self.kge_dim, cfg.seed)

    @property
    def backbone(self):
        """The HF model (for the end-to-end classifier, the BERT part without the GNN)."""
        return self.model

    def _check_context(self) -> None:
        limit = self.backbone.config.max_position_embeddings
        needed = self.builder.max_length(self.written_dims)
        if needed > limit:
            raise UserError(f"prompts at KGE dimension {self.kge_dim} need {needed} tokens, more than the model's "
                            f"{limit} positions; the largest dimension that fits is "
                            f"{self.builder.largest_fitting_dim(limit)}")  # fmt: skip

    # --- the seed's tokenisation API ----------------------------------------------------------

    def node_indices(self, source_ids, target_ids) -> tuple[np.ndarray, np.ndarray]:
        """Dataset ids -> contiguous node indices (source_df/target_df are sorted by id)."""
        out = []
        for ids, frame, col in ((source_ids, self.source_df, "source_id"), (target_ids, self.target_df, "target_id")):
            known = frame[col].to_numpy()
            ids = np.asarray(ids, dtype=known.dtype)  # int64, or text ids (linklm.data.interactions)
            pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
            if len(ids) and (known[pos] != ids).any():
                bad = ids[known[pos] != ids][0]
                raise UserError(f"unknown {col} {bad.item() if isinstance(bad, np.generic) else bad}")
            out.append(pos)
        return out[0], out[1]

    def tokenize_function(self, batch: dict[str, list]) -> dict[str, list]:
        """For `datasets.map(batched=True)`: ids assembled from per-node pieces, plus the prompt text."""
        src, dst = self.node_indices(batch["source_id"], batch["target_id"])
        splits = np.asarray(batch.get("split") or ["test"] * len(src))
        out: dict[str, list] = {"input_ids": [None] * len(src), "attention_mask": [None] * len(src),
                                "token_type_ids": [None] * len(src), "prompt": [None] * len(src)}  # fmt: skip
        for split in dict.fromkeys(splits.tolist()):
            rows = np.flatnonzero(splits == split)
            enc = self.builder.batch(src[rows], dst[rows], split)
            texts = self.builder.text(src[rows], dst[rows], split)
            for j, (row, n) in enumerate(zip(rows, enc["attention_mask"].sum(1).tolist(), strict=True)):
                out["input_ids"][row] = enc["input_ids"][j, :n].tolist()
                out["attention_mask"][row] = [1] * n
                out["token_type_ids"][row] = enc["token_type_ids"][j, :n].tolist()
                out["prompt"][row] = texts[j]
        return out

    # --- data -----------------------------------------------------------------------------------

    def pairs(self, dataset, split: str) -> PairDataset:
        """Pairs of a split, from a DatasetDict made by generate_*_dataset, or from `df` when None."""
        if dataset is None:
            frame = self.df[self.df["split"] == split]
            src, dst = self.node_indices(frame["source_id"].to_numpy(), frame["target_id"].to_numpy())
            return PairDataset(src, dst, frame["labels"].to_numpy())
        if split not in dataset:
            raise UserError(f"the dataset has no {split!r} split (it has {', '.join(dataset.keys())})")
        part = dataset[split]
        src, dst = self.node_indices(np.asarray(part["source_id"]), np.asarray(part["target_id"]))
        return PairDataset(src, dst, np.asarray(part["labels"]))

    def _by_length(self, pairs: PairDataset) -> tuple[PairDataset, np.ndarray]:
        """The same pairs ordered by prompt length, and that order: with dynamic padding, batches
        then pad to about their own length instead of the batch's longest (~1.7x less work on ml-100k)."""
        order = np.argsort(self.builder.lengths(pairs.source_idx, pairs.target_idx), kind="stable")
        return PairDataset(pairs.source_idx[order], pairs.target_idx[order], pairs.labels[order]), order

    def _train_keys(self) -> np.ndarray:
        """The training positives negatives must avoid, as sorted `source * num_targets + target`
        keys: the ones given, else every train edge the GNN knows, else (vanilla on its own) the train
        positives of `df`."""
        if self.known_train_keys is not None:
            return self.known_train_keys
        if self.kge is not None:
            return self.kge.graph.train_keys
        frame = self.df[(self.df["split"] == "train") & (self.df["labels"] == 1)]
        src, dst = self.node_indices(frame["source_id"].to_numpy(), frame["target_id"].to_numpy())
        return np.unique(src.astype(np.int64) * len(self.target_df) + dst)

    def collator(self, split: str, seed: int = 0, negatives: bool = True) -> LinkCollator:
        """The collator of `split`; train batches get on-the-fly negatives unless negatives=False."""
        draw = split == "train" and negatives
        return LinkCollator(
            self.builder, split, num_sources=len(self.source_df), num_targets=len(self.target_df),
            train_keys=self._train_keys() if draw else None, neg_ratio=self.config.neg_ratio if draw else 0.0,
            kge_input=self.kge_input, tables=self.kge_tables(split) if self.kge_input == "tables" else None,
            seed=seed, **(self._held_out_items(split) if draw else {}),
        )  # fmt: skip

    def _held_out_items(self, split: str) -> dict[str, Any]:
        """Training negatives never name a held-out item (target_df `cold_item`); with
        llm.item_kge_dropout, the vector such an item gets: the mean of the other items' KGEs."""
        cold = self.target_df["cold_item"].to_numpy(bool) if "cold_item" in self.target_df else None
        out: dict[str, Any] = {"negative_targets": np.flatnonzero(~cold) if cold is not None and cold.any() else None}
        if self.config.item_kge_dropout > 0 and self.kge_input == "tables":
            movies = self.kge_tables(split)[1]
            warm = movies if cold is None else movies[torch.from_numpy(~cold)]
            out |= {"item_dropout": self.config.item_kge_dropout, "fallback": warm.mean(0)}
        return out

    def kge_tables(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The KGEs this classifier is fed on `split`: (num_users, kge_dim), (num_movies, kge_dim)."""
        if self.kge is None:
            raise UserError(f"{self.name} uses no KGEs")
        return self.kge.kge_table(split)

    # --- training and evaluation ------------------------------------------------------------

    def precision(self, device) -> str:
        """llm.precision on `device` (fp32, bf16, fp16): training, val and test scoring all run in it."""
        return resolve_precision(self.config.precision, device, "llm.precision")

    def _optimizer(self):
        return None  # the Trainer's own AdamW

    def _train_positives(self, dataset) -> PairDataset:
        cfg = self.config
        train = self.pairs(dataset, "train")
        positive = train.labels == 1
        train = PairDataset(train.source_idx[positive], train.target_idx[positive], train.labels[positive])
        if cfg.max_train_pairs and len(train) > cfg.max_train_pairs:
            keep = np.sort(np.random.default_rng(cfg.seed).choice(len(train), cfg.max_train_pairs, replace=False))
            train = PairDataset(train.source_idx[keep], train.target_idx[keep], train.labels[keep])
        return train

    def _val_pairs(self, dataset) -> PairDataset:
        """The val pairs that select the model: llm.val_pairs of them, the same for every kind of a seed."""
        return self.pairs(dataset, "val").subsample(self.config.val_pairs, [self.config.seed, 7])

    def train_model_on_data(
        self, dataset=None, epochs: int | None = None, batch_size: int | None = None, callbacks: list | None = None
    ) -> dict:
        """Train with on-the-fly negatives for at most `epochs` (llm.max_epochs), evaluating val every
        llm.eval_steps and stopping after llm.patience evaluations without a gain; keep the best model
        by val AUC. Never touches test. Returns val metrics (with `stopped`: converged or budget),
        training time and throughput. `callbacks` are extra HF TrainerCallbacks (progress hooks, timers)."""
        cfg = self.config
        epochs, batch_size = epochs or cfg.max_epochs, batch_size or cfg.batch_size
        train, (val, _) = self._train_positives(dataset), self._by_length(self._val_pairs(dataset))
        device = resolve_device(cfg.device, "llm.device")
        # What makes a checkpoint reusable: a leftover from another config is discarded, not resumed.
        identity = {"kind": self.name, "llm": dataclasses.asdict(cfg), "epochs": epochs, "batch": batch_size,
                    "train": len(train), "val": len(val), "kge": self.kge.key if self.kge else None}  # fmt: skip
        spec = training.TrainSpec(
            epochs=epochs, positives_per_batch=max(1, int(round(batch_size / (1 + cfg.neg_ratio)))),
            eval_batch_size=cfg.eval_batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every,
            checkpoint_minutes=cfg.checkpoint_minutes,
            cpu=device.type == "cpu", precision=self.precision(device), progress=self.progress,
            key=stable_hash(identity), name=self.name, evals_per_epoch=cfg.evals_per_epoch, tracking=self.tracking,
            eval_on_start=self.starts_as_gnn, length_slices=cfg.length_slices, selection_margin=cfg.selection_margin,
            patience=cfg.patience, eval_steps=cfg.eval_steps,
        )  # fmt: skip
        collate = training.SplitCollator({s: self.collator(s, seed=cfg.seed) for s in ("train", "val")},
                                         1 + cfg.neg_ratio, audit=cfg.audit_shards)  # fmt: skip
        self.root.mkdir(parents=True, exist_ok=True)
        self.model, self.metrics = training.fit(
            self.model, train, val, collate, spec, self.root, optimizer=self._optimizer(), callbacks=callbacks,
            audit=training.ShardAudit(collate, self.root / "shards") if cfg.audit_shards else None,
            at_last_step=self._at_last_step,
        )  # fmt: skip
        self.metrics.update(batch_size=batch_size, precision=spec.precision)
        self.threshold = self.metrics["threshold"]
        if Runtime.current().main:
            with training.hf_progress_bars(self.progress):
                self.save_pretrained(self.root / "model")
        return self.metrics

    @torch.no_grad()
    def predict(
        self, dataset=None, split: str = "test", pairs: PairDataset | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, positive-class probabilities) of every pair of `split`, in the split's order; or
        of `pairs`, scored as pairs of `split` (its KGE tables and prompts)."""
        pairs, order = self._by_length(self.pairs(dataset, split) if pairs is None else pairs)
        collate = self.collator(split, negatives=False)
        model = self.model.eval()
        device = next(model.parameters()).device
        scores = []
        for start in range(0, len(pairs), self.config.eval_batch_size):
            rows = range(start, min(start + self.config.eval_batch_size, len(pairs)))
            batch = collate([pairs[i] for i in rows])
            batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, self.precision(device)):
                logits = model(**batch).logits
            scores.append(training.positive_probability(logits.float().cpu()))
        unsorted = np.empty(len(order), dtype=np.float64)
        unsorted[order] = np.concatenate(scores)
        return pairs.labels[np.argsort(order)], unsorted

    def evaluate_model(self, dataset=None, split: str = "test", predictions_path: str | Path | None = None):
        """Accuracy, ROC-AUC, F1 and the confusion matrix on `split` (test by default), accuracy and F1
        at the val-chosen `threshold`; with `predictions_path`, every pair's label and score are also
        written there as Parquet. On test, llm.test_pairs of them: the same for every kind and seed."""
        pairs = self.pairs(dataset, split)
        pairs = pairs.subsample(self.config.test_pairs, [0, 11]) if split == "test" else pairs
        labels, scores = self.predict(dataset, split, pairs=pairs)
        if predictions_path is not None:
            frame = pd.DataFrame({"source_idx": pairs.source_idx, "target_idx": pairs.target_idx,
                                  "label": labels, "score": scores})  # fmt: skip
            write_parquet(predictions_path, frame)
        return evaluate_scores(labels, scores, threshold=self.threshold)

    # --- persistence ----------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.backbone.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        info = {"kind": self.prompt_format, "name": self.name, "llm": dataclasses.asdict(self.config),
                "threshold": self.threshold}  # fmt: skip
        write_json(folder / "linklm.json", info)

    def load_pretrained(self, folder: str | Path) -> None:
        """Load weights saved by `save_pretrained` into this classifier (same kind and shape)."""
        folder = Path(folder)
        if not (folder / "model.safetensors").is_file():
            raise UserError(f"{folder}: no model.safetensors to load")
        state = load_file(folder / "model.safetensors")
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise UserError(f"{folder}: weights do not fit this classifier ({(unexpected or missing)[0]})")
        self.threshold = training.saved_threshold(folder / "linklm.json")


class VanillaClassifier(LinkClassifier):
    """Text only: user_id[SEP]movie_id[SEP]title[SEP]genres."""


class PromptClassifier(LinkClassifier):
    """The vanilla prompt followed by the user's and the movie's KGE written as text (1 token/dim)."""

    prompt_format = name = "prompt"


class EmbeddingClassifier(LinkClassifier):
    """The vanilla prompt plus two slots whose input embeddings are the projected KGEs.

    end_to_end=False: KGEs from the GNN's cached tables (frozen). end_to_end=True: a copy of the GNN
    runs inside the model on each split's message-passing graph and trains with BERT.
    """

    prompt_format, name = "embedding", "embedding_frozen"  # (the controls, frozen too, carry their own name)

    def __init__(self, *args: Any, end_to_end: bool = False, **kwargs: Any):
        self.end_to_end = end_to_end
        self.name = "embedding_e2e" if end_to_end else self.name
        self.kge_input = "indices" if end_to_end else "tables"
        super().__init__(*args, **kwargs)

    def _build(self):
        classifier = super()._build()
        if not self.end_to_end:
            return classifier
        graph, cpu = self.kge.graph, torch.device("cpu")
        graphs = {SPLIT_CODES[split]: (graph.movie_x, graph.adjacency(split, cpu)) for split in SPLITS}
        gnn = copy.deepcopy(self.kge.model).cpu()
        return EndToEndKGEClassifier(classifier, gnn, graphs, self.kge.user_type, self.kge.movie_type)

    @property
    def backbone(self):
        return self.model.classifier if self.end_to_end else self.model

    def kge_tables(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.end_to_end:
            return super().kge_tables(split)
        with torch.no_grad():
            z = self.model.eval().node_kges(SPLIT_CODES[split])
        return z[self.model.user_type], z[self.model.movie_type]

    def _optimizer(self):
        if not self.end_to_end:
            return None
        cfg = self.config
        return end_to_end_optimizer(self.model, cfg.lr, cfg.gnn_lr, cfg.weight_decay)

    def save_pretrained(self, folder: str | Path) -> None:
        super().save_pretrained(folder)
        if self.end_to_end:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.gnn.state_dict().items()}
            save_file(state, Path(folder) / "gnn.safetensors")

    def load_pretrained(self, folder: str | Path) -> None:
        super().load_pretrained(folder)
        if self.end_to_end:
            self.model.gnn.load_state_dict(load_file(Path(folder) / "gnn.safetensors"))
