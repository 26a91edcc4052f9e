"""The GNN recipe: full-batch link-prediction training, read top to bottom.

    result = fit(model, graph, cfg, device, checkpoint=path, key=key)
    result.best_state, result.history, result.best_val_auc, ...

The GNN learns from its own edges only: the train message-passing edges. The train supervision
edges are the classifiers' share, held out so that the KGEs are out of sample on every pair a
classifier trains on (`classifier_train_auc` measures it). Each epoch: fresh uniform negatives
(never one of its own edges: the classifiers' share is as unseen as val and test), one full-batch
step, val AUC on the val graph; the best-val weights are kept.
LightGCN scores every one of its edges while propagating over all of them, as in its paper; SAGE
draws `cfg.supervision_share` of them each epoch as supervision and passes messages over the rest.
Every `cfg.checkpoint_every` epochs the whole training state (weights, Adam moments, both RNGs, the
best model, the log, the config) goes into one safetensors file, so a killed run resumes exactly
where it was. The test split is never read here: `GraphRepresentationGenerator` evaluates it once,
afterwards.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from linklm.artifacts import NUMBER, mismatch
from linklm.config import GNNConfig
from linklm.data.tables import sample_negatives, sorted_unique
from linklm.errors import UserError
from linklm.gnn.model import LightGCNLink, LinkGNN, PairIndex, adjacency, uses_pair_index
from linklm.io import atomic_path

# In the GNN stage key: 2 = trained on its own edges only, classifiers' share held out; 3 = metrics
# carry the full ranking (experiment/ranking.py); 4 = negatives avoid the GNN's own edges only.
# 5 = held-out items (data.cold_items): never a negative, a fallback vector chosen on val.
VERSION = 5
GNN = LinkGNN | LightGCNLink


@dataclass
class LinkGraph:
    """What the GNN trains and embeds on, for each split, as tensors.

    movie_x: (num_movies, num_features); edges[split]: (2, E) message-passing edges user→movie;
    pairs[split]: supervision (src (n,), dst (n,), labels (n,)); relations: the user→movie relation
    and its reverse.
    """

    num_users: int
    num_movies: int
    movie_x: torch.Tensor
    edges: dict[str, torch.Tensor]
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    relations: tuple[tuple[str, str, str], tuple[str, str, str]]
    cold: torch.Tensor | None = None  # (num_movies,) bool: held-out items (data.cold_items), or None

    @functools.cached_property
    def negative_movies(self) -> np.ndarray | None:
        """The movies a training negative may be: all (None), or only the warm ones, so that a held-out
        item is never seen in training, not even as a negative."""
        return None if self.cold is None else np.flatnonzero(~self.cold.numpy())

    @functools.cached_property
    def train_keys(self) -> np.ndarray:
        """Sorted int64 `user * num_movies + movie` of every train edge (message passing and
        supervision): what negatives must never equal."""
        src, dst, _ = self.pairs["train"]
        keys = [(ei[0] * self.num_movies + ei[1]).numpy() for ei in (self.edges["train"], (src, dst))]
        return sorted_unique(np.concatenate(keys))

    @functools.cached_property
    def own_keys(self) -> np.ndarray:
        """Sorted keys of the GNN's own training edges (train message passing): what its training
        negatives avoid. The classifiers' share is as unknown to it as val and test are, so a pair of
        either may be drawn as a negative alike."""
        edges = self.edges["train"]
        return sorted_unique((edges[0] * self.num_movies + edges[1]).numpy())

    def adjacency(self, split: str, device: torch.device) -> dict[tuple[str, str, str], torch.Tensor]:
        """Sparse CSR adjacencies of `split`'s message-passing graph, both directions, on `device`."""
        return self.adjacency_of(self.edges[split].to(device))

    def adjacency_of(self, edge_index: torch.Tensor) -> dict[tuple[str, str, str], torch.Tensor]:
        """Both directions' sparse CSR adjacencies of (2, E) user→movie edges, on their device."""
        forward, reverse = adjacency(edge_index, self.num_users, self.num_movies)
        return {self.relations[0]: forward, self.relations[1]: reverse}


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_val_auc: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    resumed_from_epoch: int | None = None


@dataclass
class Pairs:
    """(n,) index pairs src→dst with their labels; `index`: the same pairs as the `PairIndex` that
    the decoder reads where it scores through one (`uses_pair_index`: a large graph on a CPU), else
    None. Built once for the pairs scored every epoch: LightGCN's edges and the val pairs."""

    src: torch.Tensor
    dst: torch.Tensor
    labels: torch.Tensor
    index: PairIndex | None = None

    @classmethod
    def of(cls, graph: LinkGraph, src, dst, labels, device, train: bool = False) -> Pairs:
        """Pairs on `device`; train: they will be trained on (the index also serves movie gradients)."""
        src, dst, labels = src.to(device), dst.to(device), labels.to(device)
        index = None
        if uses_pair_index(graph.num_users, graph.num_movies, torch.device(device)):
            index = PairIndex.of(src, dst, graph.num_users, graph.num_movies, movie_grad=train)
        return cls(src, dst, labels, index)


def decode(graph: LinkGraph, z: dict[str, torch.Tensor], pairs: list[Pairs], dense: bool = False) -> torch.Tensor:
    """(n,) logits of every pair of `pairs`, block after block."""
    user, movie = graph.relations[0][0], graph.relations[0][2]
    if all(p.index is not None for p in pairs):
        return LinkGNN.decode_index(z[user], z[movie], *(p.index for p in pairs))
    src, dst = torch.cat([p.src for p in pairs]), torch.cat([p.dst for p in pairs])
    return LinkGNN.decode_pairs(z[user], z[movie], src, dst, dense=dense)


def embed(model: GNN, graph: LinkGraph, adj, device) -> dict[str, torch.Tensor]:
    return model(graph.movie_x.to(device), adj)


def with_fallback(graph: LinkGraph, z: dict[str, torch.Tensor], option: str = "mean") -> dict[str, torch.Tensor]:
    """`z` with each held-out item's vector the warm items' mean ("mean") or zeros ("zero"). Epoch
    selection sees the mean: an untrained vector would only add noise to val (the generator then
    picks the fallback on val)."""
    if graph.cold is None:
        return z
    movie = graph.relations[0][2]
    cold = graph.cold.to(z[movie].device)
    movies = z[movie].clone()
    movies[cold] = movies[~cold].mean(0) if option == "mean" else 0.0
    return {**z, movie: movies}


class Diverged(ArithmeticError):
    """The model's scores are no longer finite numbers."""


@torch.no_grad()
def auc(model: GNN, graph: LinkGraph, split: str, z: dict[str, torch.Tensor], device,
        pairs: Pairs | None = None) -> float:  # fmt: skip
    """AUC of `split`'s supervision pairs (val and test: positives and fixed negatives); `pairs`:
    those pairs, when already prepared (`Pairs.of`)."""
    pairs = pairs if pairs is not None else Pairs.of(graph, *graph.pairs[split], device)
    return _pairs_auc(graph, z, pairs, split)


@torch.no_grad()
def classifier_train_auc(graph: LinkGraph, z: dict[str, torch.Tensor], device, seed: int) -> float:
    """AUC on the classifiers' train positives plus as many fresh negatives (never a train edge),
    scored on `z`, the train graph's embeddings: what the classifiers are fed. Those edges are held
    out of the GNN's training, so this should match the test AUC; in-sample KGEs would beat it."""
    src, dst, _ = graph.pairs["train"]
    rng = np.random.default_rng([seed, 3])
    neg_src, neg_dst = sample_negatives(graph.num_users, graph.num_movies, graph.train_keys, src.numel(), rng,
                                        targets=graph.negative_movies)  # fmt: skip
    labels = torch.cat([torch.ones(src.numel()), torch.zeros(len(neg_src))])
    src, dst = torch.cat([src, torch.from_numpy(neg_src)]), torch.cat([dst, torch.from_numpy(neg_dst)])
    return _pairs_auc(graph, z, Pairs.of(graph, src, dst, labels, device), "classifier train")


def _pairs_auc(graph: LinkGraph, z, pairs: Pairs, what: str) -> float:
    scores = decode(graph, z, [pairs])
    if not bool(torch.isfinite(scores).all()):
        raise Diverged(f"non-finite {what} scores")
    return roc_auc(pairs.labels, scores.float())


def roc_auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """ROC AUC of (n,) scores for (n,) 0/1 labels, as the Mann-Whitney statistic: the share of
    (positive, negative) pairs ranked right, ties counting one half, which is what sklearn's
    roc_auc_score computes. One sort in torch: sklearn takes 2.5 s on ml-32m's 6.4 M val pairs."""
    positive = labels.bool()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positives and negatives")
    ordered, order = torch.sort(scores)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    # Twice the 1-based rank of each score, a tied group at its mean rank: integers, so that the
    # AUC is an exact fraction, rounded once.
    doubled_ranks = (2 * counts.cumsum(0) - counts + 1)[group]
    doubled_sum = int(doubled_ranks[positive[order]].sum())
    return (doubled_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg)


@torch.no_grad()
def eval_embed(model: GNN, graph: LinkGraph, adj, device) -> dict[str, torch.Tensor]:
    model.eval()
    return embed(model, graph, adj, device)


def fit(
    model: GNN,
    graph: LinkGraph,
    cfg: GNNConfig,
    device: torch.device,
    *,
    checkpoint: Path,
    key: str,
    progress: bool = True,
    say: Callable[[str], None] = tqdm.write,
) -> FitResult:
    """Train `model` (already on `device`) for cfg.epochs; returns the best-val state and the log."""
    edges = graph.edges["train"].to(device)  # the GNN's own edges; graph.pairs["train"] is never read
    # Test's adjacency is never built here: at ml-32m each adjacency is several hundred MB.
    adj = {split: graph.adjacency(split, device) for split in ("train", "val")}
    val = Pairs.of(graph, *graph.pairs["val"], device)
    positives = None  # LightGCN trains on the same edges every epoch: their index is built once
    if isinstance(model, LightGCNLink):
        positives = Pairs.of(graph, *edges, torch.ones(edges.shape[1]), device, train=True)
    rng = np.random.default_rng([cfg.seed, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    result = FitResult(best_state={}, best_val_auc=-1.0, best_epoch=-1)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        resumed = load_checkpoint(checkpoint, key, model, optimizer, rng, device)
        if resumed is not None:
            result, elapsed = resumed
            start -= elapsed
            say(f"resuming the GNN after epoch {result.resumed_from_epoch} from {checkpoint}")
        first = len(result.history) + 1
        bar = tqdm(range(first, cfg.epochs + 1), desc="gnn", unit="epoch", disable=not progress,
                   initial=first - 1, total=cfg.epochs)  # fmt: skip
        for epoch in bar:
            pairs, epoch_adj = epoch_pairs(model, graph, edges, adj["train"], cfg, rng, positives)
            loss = train_step(model, graph, epoch_adj, optimizer, pairs, device)
            del pairs, epoch_adj  # 1 GB at ml-32m that the val pass does not need
            try:  # before this epoch's checkpoint: a resume never starts from a diverged model
                if not math.isfinite(loss):
                    raise Diverged(f"loss {loss}")
                val_auc = auc(model, graph, "val", with_fallback(graph, eval_embed(model, graph, adj["val"], device)),
                              device, val)  # fmt: skip
            except Diverged as exc:
                raise UserError(f"the GNN diverged at epoch {epoch} ({exc}); lower gnn.lr (now {cfg.lr})") from None
            if val_auc > result.best_val_auc:
                result.best_val_auc, result.best_epoch = val_auc, epoch
                result.best_state = copy.deepcopy(model.state_dict())
            row = {"epoch": epoch, "loss": round(loss, 6), "val_auc": round(val_auc, 6),
                   "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
            result.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", val_auc=f"{val_auc:.4f}")
            say(f"epoch {epoch:4d}  loss {row['loss']:.4f}  val_auc {val_auc:.4f}")
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and epoch < cfg.epochs:
                save_checkpoint(checkpoint, key, cfg, model, optimizer, rng, result, time.perf_counter() - start)
    result.train_seconds = time.perf_counter() - start
    return result


def epoch_pairs(model: GNN, graph: LinkGraph, edges: torch.Tensor, adj, cfg: GNNConfig, rng,
                positives: Pairs | None = None) -> tuple[list[Pairs], Any]:  # fmt: skip
    """One epoch's supervision ([positives, fresh negatives]) and the graph its messages pass over:
    all of the GNN's edges for LightGCN (`positives`, when given, are those edges, prepared); for
    SAGE, a fresh draw of `cfg.supervision_share` of them as supervision, the rest as messages, so
    that a supervision edge never carries its own message."""
    device = edges.device
    if isinstance(model, LinkGNN):
        held = torch.from_numpy(rng.random(edges.shape[1]) < cfg.supervision_share).to(device)
        adj = graph.adjacency_of(edges[:, ~held])
        positives = Pairs.of(graph, *edges[:, held], torch.ones(int(held.sum())), device, train=True)
    elif positives is None:
        positives = Pairs.of(graph, *edges, torch.ones(edges.shape[1]), device, train=True)
    n_neg = max(1, round(cfg.neg_ratio * positives.src.numel()))
    # Sorted, the negatives are already in the order of a PairIndex; the loss and its gradients do
    # not depend on the order of the pairs (only the float rounding of the mean loss does).
    neg_src, neg_dst = sample_negatives(graph.num_users, graph.num_movies, graph.own_keys, n_neg, rng, ordered=True,
                                        targets=graph.negative_movies)  # fmt: skip
    negatives = Pairs.of(graph, torch.from_numpy(neg_src), torch.from_numpy(neg_dst), torch.zeros(n_neg), device,
                         train=True)  # fmt: skip
    return [positives, negatives], adj


def train_step(model: GNN, graph: LinkGraph, adj, optimizer, pairs: list[Pairs], device) -> float:
    """One full-batch step on `pairs`; returns the loss. The step's activations are freed on
    return, before the val pass."""
    model.train()
    optimizer.zero_grad()
    z = embed(model, graph, adj, device)
    logits = decode(graph, z, pairs, dense=True)
    loss = F.binary_cross_entropy_with_logits(logits, torch.cat([p.labels for p in pairs]))
    loss.backward()
    optimizer.step()
    return loss.item()


# --- resumable checkpoints: one safetensors file that carries its config and progress -----------


def save_checkpoint(path: Path, key: str, cfg: GNNConfig, model, optimizer, rng, result: FitResult, elapsed: float):
    """Everything the next epoch depends on, in one file written by one atomic rename: weights,
    Adam moments, the torch RNG and the best model as tensors; the config, the numpy RNG, the log
    and the optimizer's hyperparameters as JSON in the file's metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v.detach().cpu().contiguous() for k, v in result.best_state.items()}
    opt = optimizer.state_dict()
    for pid, state in opt["state"].items():
        tensors |= {f"opt.{pid}.{name}": torch.as_tensor(t).detach().cpu().contiguous() for name, t in state.items()}
    tensors["torch_rng"] = torch.get_rng_state()
    progress = {"key": key, "config": asdict(cfg), "best_val_auc": result.best_val_auc,
                "best_epoch": result.best_epoch, "history": result.history, "numpy_rng": rng.bit_generator.state,
                "param_groups": opt["param_groups"], "elapsed": elapsed}  # fmt: skip
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"linklm": json.dumps(progress)})


# What `load_checkpoint` reads back from a checkpoint's metadata (`save_checkpoint` writes it).
CHECKPOINT_SHAPE = {"key": str, "best_val_auc": NUMBER, "best_epoch": int, "history": [{"epoch": int}],
                    "numpy_rng": dict, "param_groups": [dict], "elapsed": NUMBER}  # fmt: skip


def load_checkpoint(path: Path, key: str, model, optimizer, rng, device) -> tuple[FitResult, float] | None:
    """Restore a checkpoint of the same key into model, optimizer and both RNGs; None if there is
    none (or it belongs to another config). A damaged one is reported and training starts over."""
    if not path.is_file():
        return None
    before = copy.deepcopy(model.state_dict())
    try:
        with safe_open(path, framework="pt") as fh:
            progress = json.loads((fh.metadata() or {})["linklm"])
            if (problem := mismatch(progress, CHECKPOINT_SHAPE, "its metadata")) is not None:
                raise ValueError(problem)
            if progress["key"] != key:
                return None
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (not a dict)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in tensors.items():
            if name.startswith("opt."):
                _, pid, field_name = name.split(".", 2)
                state.setdefault(int(pid), {})[field_name] = t
        optimizer.load_state_dict({"state": state, "param_groups": progress["param_groups"]})
        torch.set_rng_state(tensors["torch_rng"])
        rng.bit_generator.state = progress["numpy_rng"]
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        model.load_state_dict(before)  # a half-loaded checkpoint must not leak into the fresh start
        warnings.warn(f"{path}: unusable GNN checkpoint ({exc}); training from the start", stacklevel=3)
        return None
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    history = progress["history"]
    result = FitResult(best, progress["best_val_auc"], progress["best_epoch"], history,
                       resumed_from_epoch=history[-1]["epoch"] if history else 0)  # fmt: skip
    return result, progress["elapsed"]
