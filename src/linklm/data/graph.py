"""A bipartite source–target graph, its one seeded split, fixed negatives and the seed's tables.

`BipartiteGraphManager` holds three tables and derives everything else from them:
    source_df: source_idx, source_id [, features]          one row per source node (users)
    target_df: target_idx, target_id, title, genres [, prompt_feature_<name> ...]
                                                            one row per target node (movies, items)
    edge_df:   source_idx, target_idx, source_id, target_id, rating, timestamp, split, supervision
    neg_df:    source_idx, target_idx, split                fixed val/test negatives

The split follows PyG's RandomLinkSplit: val and test supervision edges are disjoint from train;
train edges are message-passing edges, of which `disjoint_train_ratio` are supervision-only (with a
ratio of 0 every train edge is both); val passes messages over all train edges, test over train and
val. The GNN learns from the train message-passing edges alone; the train supervision edges are the
classifiers' share, held out of it, so their KGEs are out of sample (`linklm.gnn.train`). Reverse
edges are derived from the forward ones, so they are always split together.

Any dataset with a source table, a target table and an edge table plugs in through
`BipartiteGraphManager.from_tables(...)`; `MovieLensManager` is the MovieLens front end.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from linklm.artifacts import seal, unseal
from linklm.config import SPLITS, DataConfig
from linklm.data.tables import TEXT_PREFIX, build_tables, item_text, sorted_unique
from linklm.errors import UserError
from linklm.io import atomic_dir, write_json

_TABLES = ("source_df", "target_df", "edge_df", "neg_df")


def genre_vocabulary(target_df: pd.DataFrame) -> list[str]:
    return sorted({g for genres in target_df["genres"] for g in genres})


class BipartiteGraphManager:
    """The split graph and the seed's tables for any source–target–edge dataset."""

    source_type = "user"
    relation = "rates"
    target_type = "movie"

    def __init__(self, tables: dict[str, pd.DataFrame], config: DataConfig, folder: Path | None = None):
        self.config = config
        self.folder = folder
        self.source_df: pd.DataFrame = tables["source_df"]
        self.target_df: pd.DataFrame = tables["target_df"]
        self.edge_df: pd.DataFrame = tables["edge_df"]
        self.neg_df: pd.DataFrame = tables["neg_df"]
        self._llm: tuple[pd.DataFrame, pd.DataFrame] | None = None

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_tables(
        cls, source_df: pd.DataFrame, target_df: pd.DataFrame, edge_df: pd.DataFrame, config: DataConfig
    ) -> BipartiteGraphManager:
        """Build from raw tables: `source_df` has `source_id`, `target_df` has `target_id` (and
        `title`, `genres`, or the prompt's text in `prompt_feature_<name>` columns: `tables.item_text`),
        `edge_df` has `source_id`, `target_id` (and optionally `rating`, `timestamp`)."""
        return cls(build_tables(source_df, target_df, edge_df, config), config)

    @classmethod
    def load(cls, folder: Path, config: DataConfig) -> BipartiteGraphManager:
        return cls(load_tables(folder), config, folder)

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write every table and the resolved config into `folder` in one atomic rename."""
        with atomic_dir(folder) as tmp:
            for name in _TABLES:
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            write_json(tmp / "config.json", {"data": self.config.__dict__})
            # Sealed: a damaged table is caught even where Parquet would parse it.
            seal(tmp, [f"{name}.parquet" for name in _TABLES], {**meta, "summary": self.summary()})
        self.folder = folder

    # --- sizes --------------------------------------------------------------------------------

    @property
    def num_sources(self) -> int:
        return len(self.source_df)

    @property
    def num_targets(self) -> int:
        return len(self.target_df)

    def summary(self) -> dict[str, Any]:
        edges = self.edge_df
        counts: dict[str, Any] = {
            "users": self.num_sources,
            "movies": self.num_targets,
            "ratings": len(edges),
        }
        for split in SPLITS:
            counts[split] = {
                "message_passing": int(len(self.message_passing_index(split)[0])),
                "supervision_pos": int(len(self.supervision(split)[0])),
                "supervision_neg": int((self.neg_df["split"] == split).sum()),
            }
        return counts

    @functools.cached_property
    def train_degrees(self) -> tuple[np.ndarray, np.ndarray]:
        """(num_sources,) and (num_targets,) counts of train edges (message passing and supervision)."""
        train = _codes(self.edge_df["split"]) == 0
        src, dst = self._edges(train)
        return np.bincount(src, minlength=self.num_sources), np.bincount(dst, minlength=self.num_targets)

    @functools.cached_property
    def cold_items(self) -> np.ndarray:
        """(num_targets,) bool: the items held out entirely (`data.cold_items`); none by default."""
        if "cold_item" not in self.target_df.columns:
            return np.zeros(self.num_targets, dtype=bool)
        return self.target_df["cold_item"].to_numpy(dtype=bool)

    @functools.cached_property
    def train_keys(self) -> np.ndarray:
        """Sorted int64 `source * num_targets + target` of every train edge: what negatives avoid."""
        src, dst = self._edges(_codes(self.edge_df["split"]) == 0)
        return sorted_unique(src.astype(np.int64) * self.num_targets + dst)

    # --- edges by role ------------------------------------------------------------------------

    def _edges(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = self.edge_df
        return e["source_idx"].to_numpy()[mask], e["target_idx"].to_numpy()[mask]

    def _edges_into(self, mask: np.ndarray | None, src_out: np.ndarray, dst_out: np.ndarray) -> None:
        """Write the source and target indices of the edges in `mask` (every edge when None) into
        src_out and dst_out: at ml-32m each masked copy that `_edges` would make first is 0.2 GB."""
        at = None if mask is None else np.flatnonzero(mask)  # one index for both columns
        for column, out in (("source_idx", src_out), ("target_idx", dst_out)):
            values = self.edge_df[column].to_numpy()
            if at is None:
                out[:] = values
            else:
                np.take(values, at, out=out)

    def _message_passing_mask(self, split: str) -> np.ndarray:
        codes = _codes(self.edge_df["split"])
        if split == "train":
            # With disjoint_train_ratio = 0 every train edge is both message passing and supervision.
            mp = ~self.edge_df["supervision"].to_numpy() | (self.config.disjoint_train_ratio == 0)
            return (codes == 0) & mp
        if split == "val":
            return codes == 0
        if split == "test":
            mask = codes <= 1
            if self.cold_items.any():  # a cold item stays cold: its val ratings pass no message at test either
                mask &= ~((codes == 1) & self.cold_items[self.edge_df["target_idx"].to_numpy()])
            return mask
        raise UserError(f"unknown split {split!r} (train, val or test)")

    def _supervision_mask(self, split: str) -> np.ndarray:
        return (_codes(self.edge_df["split"]) == SPLITS.index(split)) & self.edge_df["supervision"].to_numpy()

    def message_passing_index(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Edges whose messages build the embeddings of `split`: train's own message-passing
        edges for train, all train edges for val, train and val edges for test."""
        return self._edges(self._message_passing_mask(split))

    def supervision(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Positive supervision edges of `split`."""
        return self._edges(self._supervision_mask(split))

    # --- PyG views ----------------------------------------------------------------------------

    def _hetero(self, mask: np.ndarray | None):
        """The graph of the edges in `mask` (every edge when None)."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data[self.source_type].node_id = torch.arange(self.num_sources)
        data[self.source_type].num_nodes = self.num_sources
        data[self.target_type].node_id = torch.arange(self.num_targets)
        data[self.target_type].x = self.target_features()
        if self.cold_items.any():  # the GNN keeps them out of its negatives and gives them a fallback
            data[self.target_type].cold = torch.from_numpy(self.cold_items.copy())
        # Both relations are views of one (3, E) buffer [dst; src; dst]: the reverse edges cost E
        # indices rather than 2E (at ml-32m, 256 MB less per view). numpy, unlike torch.empty, asks
        # the kernel for huge pages: first writes to a fresh 0.2 GB then take 25 ms, not 135 ms.
        rows = np.empty((3, len(self.edge_df) if mask is None else int(np.count_nonzero(mask))), dtype=np.int64)
        self._edges_into(mask, rows[1], rows[2])
        rows[0] = rows[2]
        both = torch.from_numpy(rows)
        data[self.source_type, self.relation, self.target_type].edge_index = both[1:]
        data[self.target_type, f"rev_{self.relation}", self.source_type].edge_index = both[:2]
        return data

    def target_features(self) -> torch.Tensor:
        """One-hot genres: (num_targets, num_genres) float."""
        vocab = genre_vocabulary(self.target_df)
        genres = self.target_df["genres"]
        counts = np.fromiter(map(len, genres), dtype=np.int64, count=len(genres))
        codes = pd.Index(vocab).get_indexer(list(itertools.chain.from_iterable(genres)))
        x = torch.zeros(self.num_targets, max(len(vocab), 1))
        x[torch.from_numpy(np.repeat(np.arange(len(genres)), counts)), torch.from_numpy(codes)] = 1.0
        return x

    @property
    def data(self):
        """The whole graph as a PyG `HeteroData`, with the reverse relation."""
        return self._hetero(None)

    def split_data(self, split: str):
        """`HeteroData` of one split, as RandomLinkSplit builds it: `edge_index` holds the
        message-passing edges, `edge_label_index`/`edge_label` the supervision edges (and, for val
        and test, the fixed negatives with label 0)."""
        data = self._hetero(self._message_passing_mask(split))
        positive = self._supervision_mask(split)
        n_pos = int(np.count_nonzero(positive))
        neg = self.neg_df[self.neg_df["split"] == split]
        label_index = np.empty((2, n_pos + len(neg)), dtype=np.int64)
        self._edges_into(positive, label_index[0, :n_pos], label_index[1, :n_pos])
        label_index[0, n_pos:], label_index[1, n_pos:] = neg["source_idx"], neg["target_idx"]
        store = data[self.source_type, self.relation, self.target_type]
        store.edge_label_index = torch.from_numpy(label_index)
        store.edge_label = torch.cat([torch.ones(n_pos), torch.zeros(len(neg))])
        return data

    @property
    def train_data(self):
        return self.split_data("train")

    @property
    def val_data(self):
        return self.split_data("val")

    @property
    def test_data(self):
        return self.split_data("test")

    # --- the seed's llm_df --------------------------------------------------------------------

    def _build_llm(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        parts = []
        for split in SPLITS:
            pos_src, pos_dst = self.supervision(split)
            neg = self.neg_df[self.neg_df["split"] == split]
            part = pd.DataFrame(
                {
                    "source_idx": np.concatenate([pos_src, neg["source_idx"].to_numpy()]),
                    "target_idx": np.concatenate([pos_dst, neg["target_idx"].to_numpy()]),
                    "labels": np.concatenate([np.ones(len(pos_src), np.int64), np.zeros(len(neg), np.int64)]),
                }
            )
            # Shuffle positives and negatives together, reproducibly.
            rng = np.random.default_rng([self.config.seed, SPLITS.index(split)])
            part = part.iloc[rng.permutation(len(part))]
            part.insert(2, "split", split)
            parts.append(part)
        idx = pd.concat(parts, ignore_index=True)
        target_idx = idx["target_idx"].to_numpy()
        # Categoricals keep the text columns at one int per row even at ml-32m's 30 M rows.
        llm = pd.DataFrame(
            {
                "source_id": self.source_df["source_id"].to_numpy()[idx["source_idx"].to_numpy()],
                "target_id": self.target_df["target_id"].to_numpy()[target_idx],
                "split": pd.Categorical(idx["split"], categories=list(SPLITS)),
                "labels": idx["labels"].to_numpy(),
                # MovieLens: prompt_feature_title, prompt_feature_genres (the seed's columns)
                **{f"{TEXT_PREFIX}{name}": _categorical(text, target_idx) for name, text in item_text(self.target_df)},
            }
        )
        return llm, idx[["source_idx", "target_idx"]]

    @property
    def llm_df(self) -> pd.DataFrame:
        """One row per LLM example: train supervision positives (negatives for train are drawn on
        the fly later) and the fixed val/test positives and negatives. Ids are the dataset's own."""
        if self._llm is None:
            self._llm = self._build_llm()
        return self._llm[0]

    def generate_dataset(self, tokenize_function=None):
        """The seed's `datasets.DatasetDict` (train, val, test) of `llm_df` with the vanilla `prompt`
        column, mapped through a classifier's `tokenize_function` (batched) when one is given. The
        seed's three names below are this one method: each classifier's tokenize_function adds
        what its prompt needs (the KGEs as text, or the two KGE slots)."""
        from linklm.llm.dataset import dataset_dict

        return dataset_dict(self.llm_df, tokenize_function)

    generate_vanilla_dataset = generate_prompt_dataset = generate_embedding_dataset = generate_dataset

    @property
    def llm_index(self) -> pd.DataFrame:
        """The contiguous `source_idx`/`target_idx` of each `llm_df` row, aligned row for row."""
        if self._llm is None:
            self._llm = self._build_llm()
        return self._llm[1]


def _codes(split: pd.Series) -> np.ndarray:
    """Integer split codes (0 train, 1 val, 2 test) without materialising strings."""
    if isinstance(split.dtype, pd.CategoricalDtype) and list(split.cat.categories) == list(SPLITS):
        return split.cat.codes.to_numpy()
    return pd.Categorical(split, categories=list(SPLITS)).codes


def load_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The cached tables of `folder`; `artifacts.Damaged` if one does not match its manifest."""
    unseal(folder)
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in _TABLES}
    tables["target_df"]["genres"] = tables["target_df"]["genres"].map(list)
    return tables


def _categorical(values: np.ndarray, index: np.ndarray) -> pd.Categorical:
    categories, codes = np.unique(values.astype(str), return_inverse=True)
    return pd.Categorical.from_codes(codes[index], categories=categories)


def format_summary(summary: dict[str, Any], seconds: float | None = None) -> str:
    lines = [f"users {summary['users']:,}  movies {summary['movies']:,}  ratings {summary['ratings']:,}"]
    for split in SPLITS:
        s = summary[split]
        lines.append(
            f"{split:<5}  message-passing {s['message_passing']:>9,}  "
            f"supervision +{s['supervision_pos']:,} / -{s['supervision_neg']:,}"
        )
    if seconds is not None:
        lines.append(f"prepared in {seconds:.2f} s")
    return "\n".join(lines)
