"""The data collator: negatives drawn on the fly, prompts assembled per batch, KGEs looked up.

A training batch of P positives gets round(P × neg_ratio) uniform (user, movie) negatives, none of
which equals a training positive (message-passing or supervision edge) or another negative of the
batch. Val and test batches carry their fixed negatives from the split and draw none.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from linklm.config import SPLITS
from linklm.data.tables import sample_negatives
from linklm.llm.tokens import PromptBuilder

SPLIT_CODES = {split: code for code, split in enumerate(SPLITS)}


class PairDataset(Dataset):
    """(source_idx, target_idx, label) triples; what the HF Trainer iterates over."""

    def __init__(self, source_idx, target_idx, labels):
        self.source_idx = np.asarray(source_idx, dtype=np.int64)
        self.target_idx = np.asarray(target_idx, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, int]:
        return {"source_idx": self.source_idx[i], "target_idx": self.target_idx[i], "labels": self.labels[i]}

    def subsample(self, cap: int, seed) -> PairDataset:
        """`cap` of the pairs (all when cap is 0 or not below their number), drawn by `seed`, in order."""
        if not cap or len(self) <= cap:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), cap, replace=False))
        return PairDataset(self.source_idx[keep], self.target_idx[keep], self.labels[keep])


class LinkCollator:
    """Turns a list of pairs into model inputs for one split.

    builder: assembles token ids. kge_input: "none", "tables" (frozen KGEs from `tables`, each
    (num_nodes, kge_dim)) or "indices" (the end-to-end model computes them from node indices).
    train_keys: sorted `source * num_targets + target` of every training positive, needed when
    drawing negatives. negative_targets: the targets a negative may be (None: all; held-out items
    are left out, so that training never sees them). item_dropout: the share of a training batch's
    pairs (negatives included) whose target KGE is replaced by `fallback`, the vector a held-out item
    gets, so that a model learns what to do where the graph knows nothing of the item.
    """

    def __init__(
        self,
        builder: PromptBuilder,
        split: str,
        *,
        num_sources: int,
        num_targets: int,
        train_keys: np.ndarray | None = None,
        neg_ratio: float = 1.0,
        kge_input: str = "none",
        tables: tuple[torch.Tensor, torch.Tensor] | None = None,
        seed: int = 0,
        negative_targets: np.ndarray | None = None,
        item_dropout: float = 0.0,
        fallback: torch.Tensor | None = None,
    ):
        self.builder, self.split = builder, split
        self.num_sources, self.num_targets = num_sources, num_targets
        self.train_keys = train_keys
        self.neg_ratio = neg_ratio
        self.kge_input, self.tables = kge_input, tables
        self.seed = seed
        self.negative_targets, self.item_dropout, self.fallback = negative_targets, item_dropout, fallback
        if item_dropout > 0 and (kge_input != "tables" or fallback is None):
            raise ValueError("item_dropout replaces KGEs from tables and needs the fallback vector")
        if neg_ratio > 0 and train_keys is None:
            raise ValueError("a collator drawing negatives needs train_keys to keep them off the positives")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        src = np.fromiter((f["source_idx"] for f in features), dtype=np.int64, count=len(features))
        dst = np.fromiter((f["target_idx"] for f in features), dtype=np.int64, count=len(features))
        labels = np.fromiter((f["labels"] for f in features), dtype=np.int64, count=len(features))
        if self.neg_ratio > 0:
            n_neg = int(round(len(features) * self.neg_ratio))
            # Negatives are a function of the seed and the batch's positives, not of how many
            # batches came before: a run resumed from a checkpoint draws exactly what an
            # uninterrupted one would, and DDP ranks (which see other positives) draw others.
            rng = np.random.default_rng([self.seed, zlib.crc32(src.tobytes()), zlib.crc32(dst.tobytes())])
            neg_src, neg_dst = sample_negatives(self.num_sources, self.num_targets, self.train_keys, n_neg, rng,
                                                targets=self.negative_targets)  # fmt: skip
            src, dst = np.concatenate([src, neg_src]), np.concatenate([dst, neg_dst])
            labels = np.concatenate([labels, np.zeros(n_neg, dtype=np.int64)])
        batch = self.builder.batch(src, dst, self.split)
        batch["labels"] = torch.from_numpy(labels)
        if self.kge_input == "tables":
            users, movies = self.tables
            batch["source_kge"] = users[torch.from_numpy(src)]
            batch["target_kge"] = movies[torch.from_numpy(dst)]
            if self.item_dropout > 0 and self.neg_ratio > 0:  # rng: drawn above, a function of the batch
                dropped = torch.from_numpy(rng.random(len(dst)) < self.item_dropout)
                batch["target_kge"][dropped] = self.fallback.to(batch["target_kge"].dtype)
        elif self.kge_input == "indices":
            batch["source_idx"] = torch.from_numpy(src)
            batch["target_idx"] = torch.from_numpy(dst)
            batch["split_code"] = torch.full((len(src),), SPLIT_CODES[self.split], dtype=torch.long)
        return batch
