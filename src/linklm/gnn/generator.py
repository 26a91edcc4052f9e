"""GraphRepresentationGenerator: trains the link-prediction GNN and serves its KGEs.

    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=64)
    if not gen.trained:
        gen.train_model()                 # full batch; model selected by val AUC; test AUC once
    source_kge, target_kge = gen.get_embedding(user_idx, movie_idx, split="test")   # (n, 64) each

A trained model is cached under `<cache_dir>/gnn-d<dim>-<key>/` (safetensors weights, KGE tables,
metrics, per-epoch log, config), where the key hashes the GNN config and the split graph. The
constructor loads it when present. Embeddings of a split come from that split's message-passing
graph (train: train message-passing edges; val: all train edges; test: train and val edges), so a
pair's own supervision edge never feeds its embedding, and a look-up is one row of a table.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from linklm.config import GNNConfig, gnn_config
from linklm.data.graph import sample_negatives
from linklm.errors import UserError
from linklm.gnn.model import LinkGNN, adjacency
from linklm.io import artifact_record, atomic_dir, damaged, stable_hash, write_json

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"config key gnn.device is {name!r} but no CUDA device is available")
    return torch.device(name)


def _tensor_digest(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        # hashlib reads the array's buffer: .tobytes() would first copy it (0.5 GB for ml-32m's test edges)
        digest.update(t.detach().cpu().contiguous().numpy())
    return digest.hexdigest()[:16]


class GraphRepresentationGenerator:
    """Trains a heterogeneous GraphSAGE for link prediction; its node embeddings are the KGEs."""

    def __init__(
        self,
        data,
        train_data,
        val_data,
        test_data,
        kge_dimension: int = 64,
        hidden_channels: int = 64,
        *,
        config: GNNConfig | None = None,
        cache_dir: str | Path = "data/gnn",
        force_recompute: bool = False,
        **overrides: Any,
    ):
        self.config = config or gnn_config(kge_dim=kge_dimension, hidden_channels=hidden_channels, **overrides)
        self.splits = {"train": train_data, "val": val_data, "test": test_data}
        self.edge_type = next(et for et in data.edge_types if not et[1].startswith("rev_"))
        self.user_type, _, self.movie_type = self.edge_type
        self.num_users = int(data[self.user_type].num_nodes)
        self.num_movies = int(data[self.movie_type].num_nodes)
        self.movie_x = data[self.movie_type].x.float()
        self.metadata = data.metadata()
        self.device = resolve_device(self.config.device)
        self.cache_dir = Path(cache_dir)
        self.data_hash = self._data_hash()
        self.model = self._new_model()
        self.tables: dict[str, dict[str, torch.Tensor]] = {}
        self.metrics: dict[str, Any] = {}
        if not force_recompute and (self.folder / "model.safetensors").is_file():
            self._load()

    # --- identity and storage -----------------------------------------------------------------

    def _data_hash(self) -> str:
        parts = [self.movie_x]
        for split in SPLITS:
            store = self.splits[split][self.edge_type]
            parts += [store.edge_index, store.edge_label_index, store.edge_label]
        return _tensor_digest(parts)

    @property
    def key(self) -> str:
        cfg = dataclasses.asdict(self.config)
        cfg.pop("device")  # where it ran does not change what it computes
        cfg.pop("checkpoint_every")  # nor how often it was checkpointed
        return stable_hash({"format": CACHE_FORMAT, "gnn": cfg, "data": self.data_hash})

    @property
    def folder(self) -> Path:
        return self.cache_dir / f"gnn-d{self.config.kge_dim}-{self.key}"

    @property
    def trained(self) -> bool:
        return bool(self.tables)

    def _new_model(self) -> LinkGNN:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            model = LinkGNN(
                self.num_users, self.num_movies, self.movie_x.shape[1], self.metadata,
                hidden_channels=self.config.hidden_channels, kge_dimension=self.config.kge_dim,
                dropout=self.config.dropout, user_type=self.user_type, movie_type=self.movie_type,
            )  # fmt: skip
        return model.to(self.device)

    def _load(self) -> None:
        try:
            record = json.loads((self.folder / "config.json").read_text()).get("artifacts")
            problem = "no size and hash record" if record is None else damaged(self.folder, record)
            if problem is not None:
                raise ValueError(problem)
            state = load_file(self.folder / "model.safetensors")
            self.model.load_state_dict(state)
            tables = load_file(self.folder / "kge.safetensors")
            self.metrics = json.loads((self.folder / "metrics.json").read_text())
        except (OSError, SafetensorError, RuntimeError, ValueError) as exc:
            warnings.warn(f"{self.folder}: unreadable GNN cache ({exc}); it will be retrained", stacklevel=3)
            self.model = self._new_model()
            return
        self.tables = {split: {} for split in SPLITS}
        for name, table in tables.items():
            split, node_type = name.split(".", 1)
            self.tables[split][node_type] = table

    def _save(self, log: list[dict[str, Any]]) -> None:
        with atomic_dir(self.folder) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, tmp / "model.safetensors")
            flat = {
                f"{s}.{t}": table.contiguous() for s, by_type in self.tables.items() for t, table in by_type.items()
            }
            save_file(flat, tmp / "kge.safetensors")
            write_json(tmp / "metrics.json", self.metrics)
            record = artifact_record(tmp, [tmp / "model.safetensors", tmp / "kge.safetensors"])
            write_json(tmp / "config.json", {"gnn": dataclasses.asdict(self.config), "data_hash": self.data_hash,
                                             "artifacts": record})  # fmt: skip
            with open(tmp / "log.jsonl", "w") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in log)

    # --- message passing ----------------------------------------------------------------------

    def _adjacency(self, split: str) -> dict[tuple[str, str, str], torch.Tensor]:
        data = self.splits[split]
        edge_index = data[self.edge_type].edge_index.to(self.device)
        forward, reverse = adjacency(edge_index, self.num_users, self.num_movies)
        rev_type = next(et for et in data.edge_types if et != self.edge_type)
        return {self.edge_type: forward, rev_type: reverse}

    def _embed(self, adj) -> dict[str, torch.Tensor]:
        return self.model(self.movie_x.to(self.device), adj)

    @torch.no_grad()
    def _eval_embed(self, adj) -> dict[str, torch.Tensor]:
        self.model.eval()
        return self._embed(adj)

    @torch.no_grad()
    def _auc(self, split: str, z: dict[str, torch.Tensor]) -> float:
        store = self.splits[split][self.edge_type]
        src, dst = store.edge_label_index.to(self.device)
        scores = LinkGNN.decode_pairs(z[self.user_type], z[self.movie_type], src, dst)
        return float(roc_auc_score(store.edge_label.numpy(), scores.float().cpu().numpy()))

    # --- training -----------------------------------------------------------------------------

    def train_model(
        self, epochs: int | None = None, progress: bool = True, log: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Train full batch with fresh negatives each epoch; keep the epoch with the best val AUC;
        compute test AUC once with that model; cache weights and KGE tables. Returns the metrics."""
        if epochs is not None:
            self.config = dataclasses.replace(self.config, epochs=epochs)
            self.config.validate()
        cfg = self.config
        say = log or tqdm.write
        train = self.splits["train"][self.edge_type]
        pos_src, pos_dst = train.edge_label_index.to(self.device)
        # Negatives must never equal a training positive: message-passing or supervision edge.
        # torch.unique sorts; np.unique would hash the keys (numpy >= 2.3), which at ml-32m's 25 M
        # keys takes about a minute and 1.5 GB.
        keys = [ei[0] * self.num_movies + ei[1] for ei in (train.edge_index, train.edge_label_index)]
        train_keys = torch.unique(torch.cat(keys)).numpy()
        del keys
        # Test's adjacency waits until the epochs are over and train's and val's are gone: at ml-32m
        # each is several hundred MB.
        adj = {split: self._adjacency(split) for split in ("train", "val")}
        n_neg = max(1, round(cfg.neg_ratio * pos_src.numel()))
        rng = np.random.default_rng([cfg.seed, 2])
        labels = torch.cat([torch.ones(pos_src.numel()), torch.zeros(n_neg)]).to(self.device)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        best = {"val_auc": -1.0, "epoch": -1, "state": None}
        history: list[dict[str, Any]] = []
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            resumed = self._load_checkpoint(optimizer, rng)
            if resumed is not None:
                best, history = resumed["best"], resumed["history"]
                start -= resumed["elapsed"]
                say(f"resuming the GNN after epoch {resumed['epoch']} from {self.checkpoint_dir}")
            first = resumed["epoch"] + 1 if resumed else 1
            bar = tqdm(range(first, cfg.epochs + 1), desc="gnn", unit="epoch", disable=not progress,
                       initial=first - 1, total=cfg.epochs)  # fmt: skip
            for epoch in bar:
                neg_src, neg_dst = sample_negatives(self.num_users, self.num_movies, train_keys, n_neg, rng)
                src = torch.cat([pos_src, torch.from_numpy(neg_src).to(self.device)])
                dst = torch.cat([pos_dst, torch.from_numpy(neg_dst).to(self.device)])
                del neg_src, neg_dst
                loss = self._train_step(adj["train"], optimizer, src, dst, labels)
                del src, dst  # 0.25 GB at ml-32m that the val pass does not need
                val_auc = self._auc("val", self._eval_embed(adj["val"]))
                if val_auc > best["val_auc"]:
                    best = {"val_auc": val_auc, "epoch": epoch, "state": copy.deepcopy(self.model.state_dict())}
                row = {"epoch": epoch, "loss": round(loss, 6), "val_auc": round(val_auc, 6),
                       "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
                history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", val_auc=f"{val_auc:.4f}")
                say(f"epoch {epoch:4d}  loss {row['loss']:.4f}  val_auc {val_auc:.4f}")
                if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and epoch < cfg.epochs:
                    self._save_checkpoint(epoch, optimizer, rng, best, history, time.perf_counter() - start)
        train_seconds = time.perf_counter() - start
        self.model.load_state_dict(best["state"])
        self.tables = {split: self._tables(self._eval_embed(adj.pop(split))) for split in ("train", "val")}
        z = self._eval_embed(self._adjacency("test"))  # built only now that train's and val's are gone
        test_auc = self._auc("test", z)  # the only look at test
        self.tables["test"] = self._tables(z)
        self.metrics = {
            "val_auc": best["val_auc"],
            "test_auc": test_auc,
            "best_epoch": best["epoch"],
            "epochs": cfg.epochs,
            "train_seconds": round(train_seconds, 3),
            "seconds_per_epoch": round(train_seconds / cfg.epochs, 4),
            "device": str(self.device),
            "resumed_from_epoch": resumed["epoch"] if resumed else None,
        }
        self._save(history)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return self.metrics

    # --- resumable training -------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.cache_dir / f"{self.folder.name}.partial"

    def _save_checkpoint(self, epoch, optimizer, rng, best, history, elapsed) -> None:
        """Everything the next epoch depends on: weights, optimizer moments, both RNGs, the best
        model so far and the log; safetensors and JSON, written in one atomic rename."""
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors |= {f"best.{k}": v.detach().cpu().contiguous() for k, v in best["state"].items()}
        opt = optimizer.state_dict()
        for pid, state in opt["state"].items():
            tensors |= {
                f"opt.{pid}.{name}": torch.as_tensor(t).detach().cpu().contiguous() for name, t in state.items()
            }
        tensors["torch_rng"] = torch.get_rng_state()
        progress = {"key": self.key, "epoch": epoch, "best_val_auc": best["val_auc"], "best_epoch": best["epoch"],
                    "history": history, "numpy_rng": rng.bit_generator.state, "param_groups": opt["param_groups"],
                    "elapsed": elapsed}  # fmt: skip
        with atomic_dir(self.checkpoint_dir) as tmp:
            save_file(tensors, tmp / "state.safetensors")
            write_json(tmp / "progress.json", progress)

    def _load_checkpoint(self, optimizer, rng) -> dict[str, Any] | None:
        folder = self.checkpoint_dir
        if not (folder / "progress.json").is_file():
            return None
        try:
            progress = json.loads((folder / "progress.json").read_text())
            if progress["key"] != self.key:
                return None
            tensors = load_file(folder / "state.safetensors")
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            state: dict[int, dict[str, torch.Tensor]] = {}
            for name, t in tensors.items():
                if name.startswith("opt."):
                    _, pid, field = name.split(".", 2)
                    state.setdefault(int(pid), {})[field] = t
            optimizer.load_state_dict({"state": state, "param_groups": progress["param_groups"]})
            torch.set_rng_state(tensors["torch_rng"])
            rng.bit_generator.state = progress["numpy_rng"]
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            warnings.warn(f"{folder}: unusable GNN checkpoint ({exc}); training from the start", stacklevel=3)
            self.model = self._new_model()
            return None
        best_state = {k[5:]: v.to(self.device) for k, v in tensors.items() if k.startswith("best.")}
        best = {"val_auc": progress["best_val_auc"], "epoch": progress["best_epoch"], "state": best_state}
        return {
            "epoch": progress["epoch"],
            "best": best,
            "history": progress["history"],
            "elapsed": progress["elapsed"],
        }

    @staticmethod
    def _tables(z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {node_type: emb.float().cpu().contiguous() for node_type, emb in z.items()}

    def _train_step(self, adj, optimizer: torch.optim.Optimizer, src, dst, labels) -> float:
        """One full-batch step on the pairs (src, dst); returns the loss. The step's activations
        are freed on return, before the val pass."""
        self.model.train()
        optimizer.zero_grad()
        z = self._embed(adj)
        logits = LinkGNN.decode_pairs(z[self.user_type], z[self.movie_type], src, dst)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    # --- look-ups -----------------------------------------------------------------------------

    def kge_table(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached node tables of `split`: (num_users, kge_dim), (num_movies, kge_dim)."""
        if not self.trained:
            raise UserError("the GNN is not trained yet: call train_model() first")
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r} (train, val or test)")
        return self.tables[split][self.user_type], self.tables[split][self.movie_type]

    def get_embedding(self, source_ids, target_ids, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """KGEs of any (user, movie) pairs, existing or not, from `split`'s message-passing graph.

        source_ids, target_ids: (n,) contiguous node indices (`MovieLensManager.llm_index`).
        Returns source_kge, target_kge: (n, kge_dim) each. Deterministic: a table look-up.
        """
        users, movies = self.kge_table(split)
        # np.array copies: pandas hands out read-only arrays, which torch would only warn about.
        src = torch.from_numpy(np.array(source_ids, dtype=np.int64)).reshape(-1)
        dst = torch.from_numpy(np.array(target_ids, dtype=np.int64)).reshape(-1)
        if src.shape != dst.shape:
            raise UserError(f"source_ids and target_ids differ in length ({src.numel()} vs {dst.numel()})")
        for ids, n, what in ((src, self.num_users, "source"), (dst, self.num_movies, "target")):
            if ids.numel() and (ids.min() < 0 or ids.max() >= n):
                raise UserError(f"{what} ids must be node indices in [0, {n}); got {int(ids.min())}..{int(ids.max())}")
        return users[src], movies[dst]
