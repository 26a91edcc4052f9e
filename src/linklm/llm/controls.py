"""Controls: what a KGE arm is given, minus the graph. A KGE gain counts only above them.

    control_degree     embedding_frozen with each node's standardised log degree in its two slots
    control_shuffled   embedding_frozen with the KGE table's rows permuted across nodes: every value
                       kept, the graph destroyed
    control_random     embedding_frozen with a fixed Gaussian vector per node, of the KGE's dimension
                       and spread: capacity to memorise node identities, no graph
    kge_mlp            no text at all: an MLP on [u, m, u ⊙ m] of the same KGEs
    vanilla_all        the other way round, a reference: text only, trained on every train edge
                       (the GNN's own ones too, ~9x the positives) instead of the held-out share

The three controls are `EmbeddingClassifier`s in every other respect (the same slots, projection,
prompt, seeds, pairs, negatives, budget and stopping rule); only the vectors in the slots differ.
LightGCN's KGEs carry each node's degree in their norm, so `control_degree` asks whether degree
alone explains a KGE arm's gain. Its degrees are counted on each split's message-passing graph, the
edges the GNN's KGEs of that split were computed from, so it sees what the KGEs see of degree.
Each control's vectors are drawn from `llm.seed` and are the same in every split. The KGE arms
learn only from train edges the GNN never saw, so that their KGEs are out of sample; text needs no
such hold-out, and vanilla_all asks how far text gets with the graph's whole supervision.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from linklm.config import SPLITS
from linklm.errors import UserError
from linklm.llm.classifier import EmbeddingClassifier, LinkClassifier, VanillaClassifier
from linklm.llm.collator import PairDataset


class ControlClassifier(EmbeddingClassifier):
    """embedding_frozen with other vectors in its KGE slots (`vectors`, per subclass)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, end_to_end=False, **kwargs)  # a control is always frozen

    def kge_tables(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            return super().kge_tables(split)  # (its error names the split)
        return self._tables[split]

    @functools.cached_property
    def _tables(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.config.seed, 23])
        return self.vectors({s: super(ControlClassifier, self).kge_tables(s) for s in SPLITS}, rng)

    def vectors(self, kges: dict, rng: np.random.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class DegreeControl(ControlClassifier):
    """Each node's log(1 + degree) on the split's message-passing graph, standardised by the train
    split's mean and spread per node type: a 1-dimensional "KGE"."""

    name = "control_degree"

    @property
    def kge_dim(self) -> int | None:
        return 1

    def vectors(self, kges: dict, rng: np.random.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        graph = self.kge.graph
        logs = {}
        for split in SPLITS:
            users, movies = graph.edges[split].numpy()
            logs[split] = [np.log1p(np.bincount(users, minlength=graph.num_users)),
                           np.log1p(np.bincount(movies, minlength=graph.num_movies))]  # fmt: skip
        centre = [(t.mean(), t.std() or 1.0) for t in logs["train"]]
        return {split: tuple(torch.tensor((t - mu) / sd, dtype=torch.float32).unsqueeze(1)
                             for t, (mu, sd) in zip(pair, centre, strict=True))
                for split, pair in logs.items()}  # fmt: skip


class ShuffledControl(ControlClassifier):
    """The KGE tables with their rows permuted within each node type, by one permutation for every split."""

    name = "control_shuffled"

    def vectors(self, kges: dict, rng: np.random.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        perms = [torch.from_numpy(rng.permutation(len(t))) for t in kges["train"]]
        return {split: tuple(t[p] for t, p in zip(pair, perms, strict=True)) for split, pair in kges.items()}


class RandomControl(ControlClassifier):
    """A fixed Gaussian vector per node, with the spread of the train KGE table of its node type."""

    name = "control_random"

    def vectors(self, kges: dict, rng: np.random.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        draw = [torch.tensor(rng.standard_normal(tuple(t.shape)), dtype=torch.float32) for t in kges["train"]]
        fixed = tuple(z * float(t.std()) + float(t.mean()) for z, t in zip(draw, kges["train"], strict=True))
        return dict.fromkeys(kges, fixed)


class KGEMLPConfig(PretrainedConfig):
    model_type = "linklm-kge-mlp"

    def __init__(self, kge_dim: int = 64, hidden_size: int = 256, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.kge_dim, self.hidden_size, self.dropout = kge_dim, hidden_size, dropout


class KGEMLP(PreTrainedModel):
    """Two-class logits from [u, m, u ⊙ m]; reads `source_kge` and `target_kge` (batch, kge_dim) and
    ignores the text the collator also hands over."""

    config_class = KGEMLPConfig
    base_model_prefix = "mlp"

    def __init__(self, config: KGEMLPConfig):
        super().__init__(config)
        d, h = config.kge_dim, config.hidden_size
        self.mlp = nn.Sequential(nn.Linear(3 * d, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, h),
                                 nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, 2))  # fmt: skip
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.reset_parameters()

    def forward(self, source_kge=None, target_kge=None, labels=None, **text) -> SequenceClassifierOutput:
        u, m = source_kge.float(), target_kge.float()
        logits = self.mlp(torch.cat([u, m, u * m], -1))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class KGEMLPClassifier(LinkClassifier):
    """kge_mlp: the frozen KGEs of a pair through an MLP, trained like every classifier (the same
    pairs, negatives, budget and stopping rule) at llm.head_lr, the learning rate of new modules."""

    prompt_format, name, kge_input = "vanilla", "kge_mlp", "tables"

    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get("kge") is None:
            raise UserError(f"{type(self).__name__} needs kge= a trained GraphRepresentationGenerator")
        super().__init__(*args, **kwargs)

    def _build(self):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return KGEMLP(KGEMLPConfig(kge_dim=self.kge_dim))

    def _check_context(self) -> None:
        pass  # no prompt reaches the model

    def _optimizer(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.config.head_lr,
                                 weight_decay=self.config.weight_decay, fused=True)  # fmt: skip


class VanillaAllClassifier(VanillaClassifier):
    """vanilla_all: vanilla whose train positives are `train_edges`, every train edge (the manager's
    `message_passing_index("val")`), capped at llm.max_train_pairs as vanilla's are."""

    name = "vanilla_all"

    def __init__(self, *args: Any, train_edges: tuple[np.ndarray, np.ndarray], **kwargs: Any):
        self.train_edges = train_edges
        super().__init__(*args, **kwargs)

    def pairs(self, dataset, split: str) -> PairDataset:
        if split != "train":
            return super().pairs(dataset, split)
        src, dst = self.train_edges
        return PairDataset(src, dst, np.ones(len(src)))


CONTROLS = {cls.name: cls for cls in (DegreeControl, ShuffledControl, RandomControl)}
