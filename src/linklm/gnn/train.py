"""The GNN recipe: full-batch link-prediction training, read top to bottom.

    result = fit(model, graph, cfg, device, checkpoint=path, key=key)
    result.best_state, result.history, result.best_val_auc, ...

The GNN learns from its own edges only: the train message-passing edges. The train supervision
edges are the classifiers' share, held out so that the KGEs are out of sample on every pair a
classifier trains on (`classifier_train_auc` measures it). Each epoch: fresh uniform negatives
(never a train edge), one full-batch step, val AUC on the val graph; the best-val weights are kept.
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
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from linklm.artifacts import NUMBER, mismatch
from linklm.config import GNNConfig
from linklm.data.tables import sample_negatives
from linklm.errors import UserError
from linklm.gnn.model import LightGCNLink, LinkGNN, adjacency
from linklm.io import atomic_path

# In the GNN stage key: 2 = trained on its own edges only, classifiers' share held out; 3 = metrics
# carry the full ranking (experiment/ranking.py), so older caches are recomputed.
VERSION = 3
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

    @functools.cached_property
    def train_keys(self) -> np.ndarray:
        """Sorted int64 `user * num_movies + movie` of every train edge (message passing and
        supervision): what negatives must never equal."""
        src, dst, _ = self.pairs["train"]
        keys = [ei[0] * self.num_movies + ei[1] for ei in (self.edges["train"], (src, dst))]
        # torch.unique sorts; np.unique would hash the keys (numpy >= 2.3), which at ml-32m's 25 M
        # keys takes about a minute and 1.5 GB.
        return torch.unique(torch.cat(keys)).numpy()

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


def embed(model: GNN, graph: LinkGraph, adj, device) -> dict[str, torch.Tensor]:
    return model(graph.movie_x.to(device), adj)


class Diverged(ArithmeticError):
    """The model's scores are no longer finite numbers."""


@torch.no_grad()
def auc(model: GNN, graph: LinkGraph, split: str, z: dict[str, torch.Tensor], device) -> float:
    """AUC of `split`'s supervision pairs (val and test: positives and fixed negatives)."""
    return _pairs_auc(graph, z, *graph.pairs[split], device, split)


@torch.no_grad()
def classifier_train_auc(graph: LinkGraph, z: dict[str, torch.Tensor], device, seed: int) -> float:
    """AUC on the classifiers' train positives plus as many fresh negatives (never a train edge),
    scored on `z`, the train graph's embeddings: what the classifiers are fed. Those edges are held
    out of the GNN's training, so this should match the test AUC; in-sample KGEs would beat it."""
    src, dst, _ = graph.pairs["train"]
    rng = np.random.default_rng([seed, 3])
    neg_src, neg_dst = sample_negatives(graph.num_users, graph.num_movies, graph.train_keys, src.numel(), rng)
    labels = torch.cat([torch.ones(src.numel()), torch.zeros(len(neg_src))])
    src, dst = torch.cat([src, torch.from_numpy(neg_src)]), torch.cat([dst, torch.from_numpy(neg_dst)])
    return _pairs_auc(graph, z, src, dst, labels, device, "classifier train")


def _pairs_auc(graph: LinkGraph, z, src, dst, labels, device, what: str) -> float:
    user, movie = graph.relations[0][0], graph.relations[0][2]
    scores = LinkGNN.decode_pairs(z[user], z[movie], src.to(device), dst.to(device))
    if not bool(torch.isfinite(scores).all()):
        raise Diverged(f"non-finite {what} scores")
    return float(roc_auc_score(labels.numpy(), scores.float().cpu().numpy()))


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
            src, dst, labels, epoch_adj = epoch_pairs(model, graph, edges, adj["train"], cfg, rng)
            loss = train_step(model, graph, epoch_adj, optimizer, src, dst, labels, device)
            del src, dst, labels, epoch_adj  # 0.25 GB at ml-32m that the val pass does not need
            try:  # before this epoch's checkpoint: a resume never starts from a diverged model
                if not math.isfinite(loss):
                    raise Diverged(f"loss {loss}")
                val_auc = auc(model, graph, "val", eval_embed(model, graph, adj["val"], device), device)
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


def epoch_pairs(model: GNN, graph: LinkGraph, edges: torch.Tensor, adj, cfg: GNNConfig, rng):
    """One epoch's supervision (src, dst, labels: positives then fresh negatives) and the graph its
    messages pass over: all of the GNN's edges for LightGCN; for SAGE, a fresh draw of
    `cfg.supervision_share` of them as supervision, the rest as messages, so that a supervision
    edge never carries its own message."""
    device = edges.device
    positives = edges
    if isinstance(model, LinkGNN):
        held = torch.from_numpy(rng.random(edges.shape[1]) < cfg.supervision_share).to(device)
        positives, adj = edges[:, held], graph.adjacency_of(edges[:, ~held])
    n_pos = positives.shape[1]
    n_neg = max(1, round(cfg.neg_ratio * n_pos))
    neg_src, neg_dst = sample_negatives(graph.num_users, graph.num_movies, graph.train_keys, n_neg, rng)
    src = torch.cat([positives[0], torch.from_numpy(neg_src).to(device)])
    dst = torch.cat([positives[1], torch.from_numpy(neg_dst).to(device)])
    labels = torch.cat([torch.ones(n_pos, device=device), torch.zeros(n_neg, device=device)])
    return src, dst, labels, adj


def train_step(model: GNN, graph: LinkGraph, adj, optimizer, src, dst, labels, device) -> float:
    """One full-batch step on the pairs (src, dst); returns the loss. The step's activations are
    freed on return, before the val pass."""
    model.train()
    optimizer.zero_grad()
    z = embed(model, graph, adj, device)
    user, movie = graph.relations[0][0], graph.relations[0][2]
    logits = LinkGNN.decode_pairs(z[user], z[movie], src, dst, dense=True)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
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
