"""GraphRepresentationGenerator: the seed's face of the GNN stage; it trains the GNN and serves its KGEs.

    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=64)
    if not gen.trained:
        gen.train_model()                 # full batch; model selected by val AUC; test AUC once
    source_kge, target_kge = gen.get_embedding(source_idx, target_idx, split="test")   # (n, 64) each

A trained model is cached under `<cache_dir>/gnn-d<dim>-<key>/` (weights whose safetensors metadata
holds the config, KGE tables, metrics, per-epoch log, sealed by `linklm.artifacts`), where the key is
the GNN stage key of the config and the split graph. The constructor loads it when present.
Embeddings of a split come from that split's message-passing graph (train: train message-passing
edges; val: all train edges; test: train and val edges), so a pair's own supervision edge never
feeds its embedding, and a look-up is one row of a table.

The training loop itself is the recipe `linklm.gnn.train.fit`; the models (`gnn.model`) are in `linklm.gnn.model`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from linklm.artifacts import GNN_META, GNN_METRICS, Damaged, mismatch, read_json, seal, sealed, stage_key, unseal
from linklm.config import SPLITS, GNNConfig, gnn_config
from linklm.errors import UserError
from linklm.gnn import train as recipe
from linklm.gnn.model import LightGCNLink, LinkGNN
from linklm.io import atomic_dir, discard, locked, write_json
from linklm.runtime import resolve_device

COLD_FALLBACKS = ("mean", "zero")  # GraphRepresentationGenerator._choose_fallback
_FILES = ("model.safetensors", "kge.safetensors", "metrics.json", "log.jsonl")


def _tensor_digest(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        # hashlib reads the array's buffer: .tobytes() would first copy it (0.5 GB for ml-32m's test edges)
        digest.update(t.detach().cpu().contiguous().numpy())
    return digest.hexdigest()[:16]


def link_graph(data, splits: dict[str, Any]) -> recipe.LinkGraph:
    """The recipe's tensors from PyG's HeteroData: the whole graph and its three split views."""
    edge_type = next(et for et in data.edge_types if not et[1].startswith("rev_"))
    rev_type = next(et for et in data.edge_types if et != edge_type)
    user_type, _, movie_type = edge_type
    pairs = {}
    for split in SPLITS:
        store = splits[split][edge_type]
        pairs[split] = (store.edge_label_index[0], store.edge_label_index[1], store.edge_label)
    store = data[movie_type]
    return recipe.LinkGraph(
        num_users=int(data[user_type].num_nodes), num_movies=int(store.num_nodes),
        movie_x=store.x.float(), edges={split: splits[split][edge_type].edge_index for split in SPLITS},
        pairs=pairs, relations=(edge_type, rev_type), cold=store.get("cold", None),
    )  # fmt: skip


class GraphRepresentationGenerator:
    """Trains a heterogeneous GraphSAGE for link prediction; its node embeddings are the KGEs.

    data, train_data, val_data, test_data: the manager's `HeteroData` graph and split views.
    kge_dimension, hidden_channels (and any other `GNNConfig` field as a keyword): the model, unless
    a whole `config` is given. cache_dir: where trained models are kept. force_recompute: retrain
    even when a cached model exists.
    """

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
        self.graph = link_graph(data, {"train": train_data, "val": val_data, "test": test_data})
        self.user_type, _, self.movie_type = self.graph.relations[0]
        self.num_users, self.num_movies = self.graph.num_users, self.graph.num_movies
        self.metadata = data.metadata()
        self.device = resolve_device(self.config.device, "gnn.device")
        self.cache_dir = Path(cache_dir)
        self.key = stage_key("gnn", self.config, data=self._data_hash(), recipe=recipe.VERSION)
        self.model = self._new_model()
        self.tables: dict[str, dict[str, torch.Tensor]] = {}
        self.metrics: dict[str, Any] = {}
        self.force_recompute = force_recompute
        self.from_cache = False  # whether the model was loaded rather than trained by this object
        if not force_recompute and sealed(self.folder):
            self._load()

    # --- identity and storage -----------------------------------------------------------------

    def _data_hash(self) -> str:
        parts = [self.graph.movie_x] + ([self.graph.cold] if self.graph.cold is not None else [])
        for split in SPLITS:
            src, dst, labels = self.graph.pairs[split]
            parts += [self.graph.edges[split], torch.stack([src, dst]), labels]
        return _tensor_digest(parts)

    @property
    def folder(self) -> Path:
        return self.cache_dir / f"gnn-d{self.config.kge_dim}-{self.key}"

    @property
    def checkpoint_path(self) -> Path:
        """The resumable training state of this model: one file, removed once training is done."""
        return self.cache_dir / f"{self.folder.name}.checkpoint.safetensors"

    @property
    def trained(self) -> bool:
        return bool(self.tables)

    def _new_model(self) -> LinkGNN | LightGCNLink:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.model == "lightgcn":
                model = LightGCNLink(
                    self.num_users, self.num_movies, self.metadata, kge_dimension=cfg.kge_dim,
                    num_layers=cfg.num_layers, user_type=self.user_type, movie_type=self.movie_type,
                )  # fmt: skip
            else:
                model = LinkGNN(
                    self.num_users, self.num_movies, self.graph.movie_x.shape[1], self.metadata,
                    hidden_channels=cfg.hidden_channels, kge_dimension=cfg.kge_dim,
                    dropout=cfg.dropout, user_type=self.user_type, movie_type=self.movie_type,
                )  # fmt: skip
        return model.to(self.device)

    def _load(self, quiet: bool = False) -> None:
        try:
            meta = unseal(self.folder)
            if (problem := mismatch(meta, GNN_META, "its manifest's meta")) or meta["key"] != self.key:
                raise Damaged(problem or f"its manifest names another model ({meta['key']})")
            state = load_file(self.folder / "model.safetensors")
            self.model.load_state_dict(state)
            tables = load_file(self.folder / "kge.safetensors")
            self.metrics = read_json(self.folder / "metrics.json", GNN_METRICS)
        except (OSError, SafetensorError, RuntimeError, ValueError, Damaged) as exc:
            if not quiet:
                warnings.warn(f"{self.folder}: unreadable GNN cache ({exc}); it will be retrained", stacklevel=3)
            self.model = self._new_model()
            return
        self.from_cache = True
        self.tables = {split: {} for split in SPLITS}
        for name, table in tables.items():
            split, node_type = name.split(".", 1)
            self.tables[split][node_type] = table

    def _save(self, log: list[dict[str, Any]]) -> None:
        config = {"gnn": dataclasses.asdict(self.config), "key": self.key}
        with atomic_dir(self.folder) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            # The weights carry their own config: the file alone says what model it holds.
            save_file(state, tmp / "model.safetensors", metadata={"linklm": json.dumps(config)})
            flat = {f"{s}.{t}": table.contiguous() for s, tables in self.tables.items() for t, table in tables.items()}
            save_file(flat, tmp / "kge.safetensors")
            write_json(tmp / "metrics.json", self.metrics)
            with open(tmp / "log.jsonl", "w") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in log)
            seal(tmp, list(_FILES), config)

    # --- training -----------------------------------------------------------------------------

    def train_model(
        self, epochs: int | None = None, progress: bool = True, log: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Train full batch with fresh negatives each epoch; keep the epoch with the best val AUC;
        compute test AUC once with that model; cache weights and KGE tables. Returns the metrics."""
        if epochs is not None:
            self.config = dataclasses.replace(self.config, epochs=epochs)
            self.config.validate()
            self.key = stage_key("gnn", self.config, data=self._data_hash(), recipe=recipe.VERSION)
        with locked(self.folder):  # one trainer per model; who waited loads what it trained
            if not self.force_recompute and sealed(self.folder):
                self._load(quiet=True)  # (a damaged cache was reported when this object was made)
                if self.trained:
                    return self.metrics
            return self._train(progress, log)

    def _train(self, progress: bool, log: Callable[[str], None] | None) -> dict[str, Any]:
        from linklm.experiment.ranking import gnn_full_ranking

        fit = recipe.fit(self.model, self.graph, self.config, self.device, checkpoint=self.checkpoint_path,
                         key=self.key, progress=progress, say=log or tqdm.write)  # fmt: skip
        self.model.load_state_dict(fit.best_state)
        cold_start = self._choose_fallback() if self.graph.cold is not None else None
        self.tables = {split: self._table(split) for split in ("train", "val")}
        # Test's adjacency is built only now that train's and val's are gone (hundreds of MB at ml-32m).
        z = self._fallback(recipe.eval_embed(self.model, self.graph, self.graph.adjacency("test", self.device),
                                             self.device))  # fmt: skip
        test_auc = recipe.auc(self.model, self.graph, "test", z, self.device)  # the only look at test
        self.tables["test"] = _cpu(z)
        self.metrics = {
            "model": self.config.model,
            "val_auc": fit.best_val_auc if cold_start is None else cold_start["val_auc"][cold_start["fallback"]],
            **({"cold_start": cold_start} if cold_start is not None else {}),
            "test_auc": test_auc,
            "classifier_train_auc": recipe.classifier_train_auc(
                self.graph,
                {t: table.to(self.device) for t, table in self.tables["train"].items()},
                self.device,
                self.config.seed,
            ),
            "ranking": gnn_full_ranking(
                self.graph, self.tables["test"][self.user_type], self.tables["test"][self.movie_type], self.device
            ),  # test, once
            "best_epoch": fit.best_epoch,
            "epochs": self.config.epochs,
            "train_seconds": round(fit.train_seconds, 3),
            "seconds_per_epoch": round(fit.train_seconds / self.config.epochs, 4),
            "device": str(self.device),
            "resumed_from_epoch": fit.resumed_from_epoch,
        }
        self._save(fit.history)
        discard(self.checkpoint_path)  # and a write a kill cut short, if any
        return self.metrics

    def _table(self, split: str) -> dict[str, torch.Tensor]:
        z = recipe.eval_embed(self.model, self.graph, self.graph.adjacency(split, self.device), self.device)
        return _cpu(self._fallback(z))

    # --- held-out items (data.cold_items) -----------------------------------------------------

    fallback: str | None = None  # what a held-out item is embedded as (COLD_FALLBACKS), chosen on val

    def _choose_fallback(self) -> dict[str, Any]:
        """A held-out item has no trained vector. Pick, by val AUC, what it gets instead:
        - LightGCN (transductive): the mean of the warm items' output vectors ("mean"), worth the
          user's activity on a new item, or zeros ("zero"), which ties every pair of a cold item;
        - GraphSAGE (inductive: its genres pass through the encoder): its own free input vector
          set to zeros ("zero": genres alone) or to the warm items' mean ("mean")."""
        val_auc = {}
        for option in COLD_FALLBACKS:
            self._set_fallback(option)
            val_auc[option] = recipe.auc(self.model, self.graph, "val", self._device_table("val"), self.device)
        best = max(COLD_FALLBACKS, key=lambda option: val_auc[option])  # first listed wins a tie
        self._set_fallback(best)
        return {"fallback": best, "val_auc": val_auc, "cold_items": int(self.graph.cold.sum()),
                "inductive": isinstance(self.model, LinkGNN)}  # fmt: skip

    def _device_table(self, split: str) -> dict[str, torch.Tensor]:
        return {t: table.to(self.device) for t, table in self._table(split).items()}

    def _set_fallback(self, option: str) -> None:
        self.fallback = option
        if isinstance(self.model, LinkGNN):  # inductive: the input vector, before the encoder
            cold = self.graph.cold.to(self.device)
            with torch.no_grad():
                weight = self.model.movie_emb.weight
                weight[cold] = weight[~cold].mean(0) if option == "mean" else 0.0

    def _fallback(self, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """LightGCN's output vectors with the held-out items' rows replaced (`_choose_fallback`)."""
        if self.fallback is None or isinstance(self.model, LinkGNN):
            return z
        return recipe.with_fallback(self.graph, z, self.fallback)

    # --- look-ups -----------------------------------------------------------------------------

    def kge_table(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached node tables of `split`: (num_users, kge_dim), (num_movies, kge_dim)."""
        if not self.trained:
            raise UserError("the GNN is not trained yet: call train_model() first")
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r} (train, val or test)")
        return self.tables[split][self.user_type], self.tables[split][self.movie_type]

    def get_embedding(self, source_idx, target_idx, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """KGEs of any (user, movie) pairs, existing or not, from `split`'s message-passing graph.

        source_idx, target_idx: (n,) contiguous node indices (`MovieLensManager.llm_index`), not
        dataset ids. Returns source_kge, target_kge: (n, kge_dim) each. Deterministic: a table look-up.
        """
        users, movies = self.kge_table(split)
        # np.array copies: pandas hands out read-only arrays, which torch would only warn about.
        src = torch.from_numpy(np.array(source_idx, dtype=np.int64)).reshape(-1)
        dst = torch.from_numpy(np.array(target_idx, dtype=np.int64)).reshape(-1)
        if src.shape != dst.shape:
            raise UserError(f"source_idx and target_idx differ in length ({src.numel()} vs {dst.numel()})")
        for idx, n, what in ((src, self.num_users, "source"), (dst, self.num_movies, "target")):
            if idx.numel() and (idx.min() < 0 or idx.max() >= n):
                raise UserError(f"{what}_idx must be node indices in [0, {n}); got {int(idx.min())}..{int(idx.max())}")
        return users[src], movies[dst]


def _cpu(z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {node_type: emb.float().cpu().contiguous() for node_type, emb in z.items()}
