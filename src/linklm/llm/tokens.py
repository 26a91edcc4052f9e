"""Per-node tokenisation and vectorised prompt assembly.

Every user and every movie is tokenised once; an example's ids are the concatenation of its
user's and its movie's pieces, so the cost grows with the number of nodes, not of edges. The
result equals what the HF tokenizer gives for the full prompt string (tested):

    vanilla    [CLS] user_id [SEP] movie_id [SEP] title [SEP] genres [SEP]   (another dataset: its
               item text columns in place of title and genres, `data.text_columns`)
    prompt     ... genres [SEP] <user KGE as d tokens> [SEP] <movie KGE as d tokens> [SEP]
    embedding  ... genres [MASK] [MASK] [SEP]                 (the two [MASK] slots get the KGEs)

KGEs written as text cost exactly one token per dimension: each component is binned into
`KGE_BINS` levels by the train table's per-dimension quantiles (so one outlier cannot squeeze every
other value into a few bins) and written as the integer 0..99,
which BERT's uncased WordPiece vocabulary holds as single tokens. The seed's origin wrote 16
decimals per number, about 20 tokens each.

Segments (`token_type_ids`) say what each token belongs to; Step E groups attention by them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from linklm.config import PROMPT_FORMAT
from linklm.data.tables import item_text

# Segment ids, shared by every classifier: the token-type table is grown to len(SEGMENTS).
CLS, SEP, USER, MOVIE, USER_KGE, MOVIE_KGE = range(6)
SEGMENTS = ("cls", "sep", "user", "movie", "user_kge", "movie_kge")
KGE_BINS = 100
FORMATS = tuple(dict.fromkeys(PROMPT_FORMAT.values()))  # vanilla, prompt, embedding


@dataclass
class Pieces:
    """Ragged token pieces, one row per node, stored padded: ids/types (n, width), lengths (n,)."""

    ids: np.ndarray
    types: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_lists(cls, ids: list[list[int]], types: list[list[int]]) -> Pieces:
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        out_ids = np.zeros((len(ids), width), dtype=np.int64)
        out_types = np.zeros((len(ids), width), dtype=np.int64)
        for row, (i, t) in enumerate(zip(ids, types, strict=True)):
            out_ids[row, : len(i)] = i
            out_types[row, : len(t)] = t
        return cls(out_ids, out_types, lengths)

    @classmethod
    def fixed(cls, ids: np.ndarray, segment: int) -> Pieces:
        """Pieces of one width for every node (the KGE tokens)."""
        n, width = ids.shape
        return cls(ids.astype(np.int64), np.full((n, width), segment, dtype=np.int64), np.full(n, width, np.int64))


def vanilla_prompt(source_id, target_id, *fields: str) -> str:
    """The seed's prompt, `user_id[SEP]movie_id[SEP]title[SEP]genres` on MovieLens (`genres` is
    already the formatted string of llm_df); another dataset's item text fields in their order."""
    return "[SEP]".join(str(part) for part in (source_id, target_id, *fields))


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


class NodeTokens:
    """The token pieces of every user and movie, computed once per tokenizer and dataset.

    source_ids: (num_users,) dataset ids; target_ids: (num_movies,) dataset ids; fields: the item
    text after the id, one (num_movies,) sequence per field (MovieLens: titles, genres), each
    field joined to the next by [SEP].
    """

    def __init__(self, tokenizer, source_ids, target_ids, *fields, user_fields=()):
        self.tokenizer = tokenizer
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id, self.mask_id = tokenizer.pad_token_id, tokenizer.mask_token_id
        self.users = self._node_pieces([source_ids, *user_fields], USER)
        self.movies = self._node_pieces([target_ids, *fields], MOVIE)
        self.user_text = ["[SEP]".join(str(x) for x in row) for row in zip(source_ids, *user_fields, strict=True)]
        self.movie_text = ["[SEP]".join(str(x) for x in row) for row in zip(target_ids, *fields, strict=True)]
        self.number_ids = np.array(
            [ids[0] for ids in _tokenize(tokenizer, [str(i) for i in range(KGE_BINS)])], dtype=np.int64
        )
        single = [len(x) == 1 for x in _tokenize(tokenizer, [str(i) for i in range(KGE_BINS)])]
        if not all(single):
            raise ValueError("this tokenizer does not hold 0..99 as single tokens; KGE text would cost more")

    def _node_pieces(self, columns: list, segment: int) -> Pieces:
        """Each node's id and fields, joined by [SEP]s that keep the SEP segment as every other does."""
        parts = [_tokenize(self.tokenizer, [str(t) for t in column]) for column in columns]
        all_ids, all_types = [], []
        for pieces in zip(*parts, strict=True):
            ids, types = list(pieces[0]), [segment] * len(pieces[0])
            for piece in pieces[1:]:
                ids += [self.sep_id, *piece]
                types += [SEP] + [segment] * len(piece)
            all_ids.append(ids)
            all_types.append(types)
        return Pieces.from_lists(all_ids, all_types)

    @classmethod
    def from_frames(cls, tokenizer, source_df, target_df, user_features: bool = False) -> NodeTokens:
        """From the manager's tables; the item text is `linklm.data.tables.item_text`'s fields, and
        with `user_features` the user's (`user_feature_columns`) follow the user id."""
        fields = [text.tolist() for _, text in item_text(target_df)]
        users = [source_df[c].tolist() for c in user_feature_columns(source_df)] if user_features else []
        return cls(tokenizer, source_df["source_id"].tolist(), target_df["target_id"].tolist(), *fields,
                   user_fields=users)  # fmt: skip

    def kge_pieces(self, bins: np.ndarray, segment: int) -> Pieces:
        """Token pieces of binned KGEs: bins (n, d) ints in [0, KGE_BINS) -> one token per dimension."""
        return Pieces.fixed(self.number_ids[bins], segment)

    def slot(self, n: int, segment: int) -> Pieces:
        """One [MASK] placeholder per node, whose input embedding the KGE replaces."""
        return Pieces.fixed(np.full((n, 1), self.mask_id, dtype=np.int64), segment)


MOVIELENS_USER_FEATURES = ("age", "gender", "occupation")


def user_feature_columns(source_df) -> list[str]:
    """What llm.user_features writes after the user id: MovieLens' age, gender and occupation, or
    every column of another dataset's user table."""
    if all(c in source_df.columns for c in MOVIELENS_USER_FEATURES):
        return list(MOVIELENS_USER_FEATURES)
    return [c for c in source_df.columns if c not in ("source_idx", "source_id")]


def principal_components(tables: dict, dims: int) -> dict:
    """{split: (user_table, movie_table)} reduced to their first `dims` principal components, fitted
    on the train tables (users and movies apart) and applied to every split; unchanged when `dims`
    is 0 or not below the KGE dimension. A prompt then spends 2 * dims tokens on KGEs, not 2 * d."""
    from sklearn.decomposition import PCA

    if not dims or dims >= tables["train"][0].shape[1]:
        return tables
    pcas = [PCA(dims, random_state=0).fit(np.asarray(t, dtype=np.float64)) for t in tables["train"]]
    return {split: tuple(p.transform(np.asarray(t, dtype=np.float64)) for p, t in zip(pcas, pair, strict=True))
            for split, pair in tables.items()}  # fmt: skip


def quantile_edges(table: torch.Tensor | np.ndarray) -> np.ndarray:
    """The KGE_BINS - 1 inner bin edges of each dimension: (KGE_BINS - 1, d) train-table quantiles."""
    x = np.asarray(table, dtype=np.float64)
    return np.quantile(x, np.arange(1, KGE_BINS) / KGE_BINS, axis=0)


def kge_bins(table: torch.Tensor | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin each KGE component into 0..KGE_BINS-1 by per-dimension edges from `quantile_edges`:
    each bin holds about 1 % of the train values."""
    x = np.asarray(table, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for dim in range(x.shape[1]):
        out[:, dim] = np.searchsorted(edges[:, dim], x[:, dim], side="right")
    return out


def out_of_range(table: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray) -> int:
    """How many components of `table` lie outside the train table's per-dimension [min, max]: they
    fall into the outermost bins (clipped)."""
    x, t = np.asarray(table, dtype=np.float64), np.asarray(train, dtype=np.float64)
    return int(((x < t.min(axis=0)) | (x > t.max(axis=0))).sum())


def kge_text(bins_row: np.ndarray) -> str:
    return " ".join(str(int(b)) for b in bins_row)


def assemble(parts: list[tuple[Pieces, np.ndarray] | tuple[int, int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate per-node pieces into a padded batch.

    parts: in order, either (Pieces, row index per example) or (token id, segment) for a single
    special token shared by every example. Returns input_ids, token_type_ids, attention_mask, each
    (batch, longest); padding is dynamic (to the longest example of this batch).
    """
    batch = next(len(rows) for p, rows in parts if isinstance(p, Pieces))
    lengths = np.zeros(batch, dtype=np.int64)
    spans = []
    for piece, rows in parts:
        if isinstance(piece, Pieces):
            n = piece.lengths[rows]
            spans.append((piece, rows, lengths.copy(), n))
            lengths += n
        else:
            spans.append((piece, rows, lengths.copy(), None))
            lengths += 1
    width = int(lengths.max())
    ids = np.full((batch, width), pad_id, dtype=np.int64)
    types = np.zeros((batch, width), dtype=np.int64)
    arange = np.arange(batch)
    for piece, rows, offset, n in spans:
        if n is None:  # a special token: piece is its id, rows its segment
            ids[arange, offset] = piece
            types[arange, offset] = rows
            continue
        cols = np.arange(piece.ids.shape[1])
        valid = cols[None, :] < n[:, None]
        r = np.broadcast_to(arange[:, None], valid.shape)[valid]
        c = (offset[:, None] + cols[None, :])[valid]
        ids[r, c] = piece.ids[rows][valid]
        types[r, c] = piece.types[rows][valid]
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "attention_mask": torch.from_numpy(mask),
    }


class PromptBuilder:
    """Assembles a classifier's inputs for any (user, movie) pairs of a split.

    kind: vanilla, prompt or embedding. kge_tables: {split: (user_table, movie_table)}, each
    (num_nodes, kge_dim), needed for the prompt kind (whose text holds the binned KGEs).
    """

    def __init__(self, nodes: NodeTokens, kind: str, kge_tables: dict | None = None):
        if kind not in FORMATS:
            raise ValueError(f"unknown kind {kind!r}")
        self.nodes, self.kind = nodes, kind
        self.kge_bins: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.clipped: dict[str, int] = {}  # per split: KGE components outside the train range
        self.kge_pieces: dict[str, tuple[Pieces, Pieces]] = {}
        if kind == "prompt":
            if not kge_tables:
                raise ValueError("the prompt kind needs KGE tables")
            # Bin edges come from the train tables only, so val/test never shape the encoding.
            edges = [quantile_edges(t) for t in kge_tables["train"]]
            for split, tables in kge_tables.items():
                bins = tuple(kge_bins(t, e) for t, e in zip(tables, edges, strict=True))
                self.kge_bins[split] = bins
                pairs = zip(tables, kge_tables["train"], strict=True)
                self.clipped[split] = sum(out_of_range(t, train) for t, train in pairs)
                self.kge_pieces[split] = (
                    nodes.kge_pieces(bins[0], USER_KGE),
                    nodes.kge_pieces(bins[1], MOVIE_KGE),
                )
        elif kind == "embedding":
            self.slots = (
                nodes.slot(nodes.users.ids.shape[0], USER_KGE),
                nodes.slot(nodes.movies.ids.shape[0], MOVIE_KGE),
            )

    def _kge_parts(self, split: str):
        if self.kind == "prompt":
            return self.kge_pieces[split]
        return self.slots

    def batch(self, source_idx: np.ndarray, target_idx: np.ndarray, split: str) -> dict[str, torch.Tensor]:
        """input_ids, token_type_ids, attention_mask: (batch, longest in batch)."""
        n = self.nodes
        parts = [(n.cls_id, CLS), (n.users, source_idx), (n.sep_id, SEP), (n.movies, target_idx)]
        if self.kind == "prompt":  # two runs of numbers need a [SEP] between them
            user_part, movie_part = self._kge_parts(split)
            parts += [(n.sep_id, SEP), (user_part, source_idx), (n.sep_id, SEP), (movie_part, target_idx)]
        elif self.kind == "embedding":  # two slots, told apart by their segments: 2 tokens over vanilla
            user_part, movie_part = self._kge_parts(split)
            parts += [(user_part, source_idx), (movie_part, target_idx)]
        parts.append((n.sep_id, SEP))
        return assemble(parts, n.pad_id)

    def text(self, source_idx, target_idx, split: str) -> list[str]:
        """The full prompt strings, as the HF tokenizer would read them."""
        n = self.nodes
        texts = [f"{n.user_text[s]}[SEP]{n.movie_text[t]}" for s, t in zip(source_idx, target_idx, strict=True)]
        if self.kind == "prompt":
            ub, mb = self.kge_bins[split]
            texts = [
                f"{x}[SEP]{kge_text(ub[s])}[SEP]{kge_text(mb[t])}"
                for x, s, t in zip(texts, source_idx, target_idx, strict=True)
            ]
        elif self.kind == "embedding":
            texts = [f"{x}[MASK][MASK]" for x in texts]
        return texts

    def lengths(self, source_idx, target_idx) -> np.ndarray:
        """Token count of each pair's prompt, without assembling it."""
        n = self.nodes
        extra = {"vanilla": 0, "embedding": 2}.get(self.kind)
        if extra is None:
            extra = 2 + sum(p.ids.shape[1] for p in self._kge_parts("train"))
        return 3 + n.users.lengths[source_idx] + n.movies.lengths[target_idx] + extra

    def max_length(self, kge_dim: int | None = None) -> int:
        """The longest sequence any pair can produce (for the context-length check)."""
        base = 3 + int(self.nodes.users.lengths.max()) + int(self.nodes.movies.lengths.max())
        if self.kind == "vanilla":
            return base
        if self.kind == "embedding":
            return base + 2
        return base + 2 + 2 * int(kge_dim or 0)

    def largest_fitting_dim(self, max_positions: int) -> int:
        base = 3 + int(self.nodes.users.lengths.max()) + int(self.nodes.movies.lengths.max()) + 2
        return max(0, (max_positions - base) // 2)
