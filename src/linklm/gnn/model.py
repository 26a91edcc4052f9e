"""The link-prediction GNNs (`gnn.model`) and their dot-product decoder.

- sage: the seed's heterogeneous two-layer GraphSAGE, as in PyG's MovieLens tutorial: users get a
  learned embedding, movies their genre features plus a learned embedding; `to_hetero` turns the
  homogeneous encoder into one with a SAGEConv per relation.
- lightgcn: LightGCN (He et al., 2020), the propagation of PyG's `LGConv` on the bipartite graph:
  learned embeddings only, no weights or non-linearities between layers, the layers averaged.

Both take (movie_x, adjacencies) and return {"user": (U, d), "movie": (M, d)}, so every classifier
works with either. Message passing runs on sparse CSR adjacencies (`adjacency()`), so memory grows
with nodes × channels, not edges × channels: torch.sparse.mm replaces PyG's gather/scatter. On a
CPU the pairs a loss or an AUC scores become such a pattern too (`PairIndex`), for the same reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv, to_hetero


class SAGEEncoder(nn.Module):
    """Two SAGEConv layers; `to_hetero` maps the arguments by their names, `x` and `edge_index`."""

    def __init__(self, hidden_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.conv1 = SAGEConv(hidden_channels, hidden_channels)
        self.conv2 = SAGEConv(hidden_channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = self.dropout(self.conv1(x, edge_index).relu())
        return self.conv2(x, edge_index)


class LinkGNN(nn.Module):
    """Node embeddings (the KGEs) for users and movies, and a dot-product link score."""

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        num_features: int,
        metadata: tuple[list[str], list[tuple[str, str, str]]],
        hidden_channels: int = 64,
        kge_dimension: int = 64,
        dropout: float = 0.0,
        user_type: str = "user",
        movie_type: str = "movie",
    ):
        super().__init__()
        self.user_type, self.movie_type = user_type, movie_type
        self.user_emb = nn.Embedding(num_users, hidden_channels)
        self.movie_emb = nn.Embedding(num_movies, hidden_channels)
        self.movie_lin = nn.Linear(num_features, hidden_channels)
        self.encoder = to_hetero(SAGEEncoder(hidden_channels, kge_dimension, dropout), metadata, aggr="sum")

    def forward(self, movie_x: Tensor, adj_dict: dict[tuple[str, str, str], Tensor]) -> dict[str, Tensor]:
        """Embeddings of every node: {"user": (num_users, kge_dimension), "movie": (num_movies, ...)}.

        movie_x: (num_movies, num_features) genre one-hots; adj_dict: sparse CSR adjacencies from
        `adjacency()`, one per relation.
        """
        x_dict = {
            self.user_type: self.user_emb.weight,
            self.movie_type: self.movie_lin(movie_x) + self.movie_emb.weight,
        }
        return self.encoder(x_dict, adj_dict)

    @staticmethod
    def decode(z_user: Tensor, z_movie: Tensor) -> Tensor:
        """Link logits of aligned pairs: z_user, z_movie (n, d) -> (n,)."""
        return (z_user * z_movie).sum(dim=-1)

    @staticmethod
    def decode_pairs(z_user: Tensor, z_movie: Tensor, src: Tensor, dst: Tensor, dense: bool = False) -> Tensor:
        """`decode(z_user[src], z_movie[dst])` for n index pairs, differentiable in both tables.

        The same logits, up to float rounding, and gradients that do not depend on the thread count,
        without the (n, d) gathers that autograd would keep for the backward pass (at ml-32m's 46 M
        train pairs, 12 GB each). On a CPU, a graph too large for its score matrix turns the pairs
        into a sparse pattern (`PairIndex`): one fused kernel scores them all, and the backward is
        two sparse matmuls. dense: where the users x movies score matrix fits
        (`_DensePairLogits.limit`), one matmul scores every pair and the pairs are read from it
        (training: ~5x faster at ml-100k's 150 k pairs per epoch).
        """
        num_users, num_movies = z_user.shape[0], z_movie.shape[0]
        if uses_pair_index(num_users, num_movies, z_user.device):
            movie_grad = torch.is_grad_enabled() and z_movie.requires_grad
            index = PairIndex.of(src, dst, num_users, num_movies, movie_grad=movie_grad)
            return LinkGNN.decode_index(z_user, z_movie, index)
        if dense and num_users * num_movies <= _DensePairLogits.limit:
            return _DensePairLogits.apply(z_user, z_movie, src, dst)
        return _PairLogits.apply(z_user, z_movie, src, dst)

    @staticmethod
    def decode_index(z_user: Tensor, z_movie: Tensor, *indices: PairIndex) -> Tensor:
        """`decode_pairs` of the pairs each `PairIndex` holds, (n,) logits in their order, index
        after index: for pairs scored again and again (the val pairs, LightGCN's edges), whose
        index is built once."""
        logits = [_SparsePairLogits.apply(z_user, z_movie, index) for index in indices]
        return logits[0] if len(logits) == 1 else torch.cat(logits)


def uses_pair_index(num_users: int, num_movies: int, device: torch.device) -> bool:
    """Whether `decode_pairs` scores through a `PairIndex`: on a CPU, where the users x movies
    score matrix does not fit (`_DensePairLogits.limit`). Smaller graphs keep the score matrix
    (training) and the gathers of `_PairLogits` (evaluation), which cost them nothing; a GPU keeps
    the gathers, which its runs were measured with (benchmarks/gpu_check.py)."""
    return device.type == "cpu" and num_users * num_movies > _DensePairLogits.limit


class LightGCNLink(nn.Module):
    """LightGCN node embeddings (the KGEs) for users and movies, scored like LinkGNN (`LinkGNN.decode_pairs`).

    One embedding table of users then movies, initialised as PyG's `LightGCN` does; layer k + 1 of a
    node is the sum of its neighbours' layer k, each scaled by 1/sqrt(deg(node) deg(neighbour)); the
    output is the mean of layers 0..num_layers. It equals `LightGCN.get_embedding` on the
    homogeneous graph of both directions (tests/gnn/test_model.py checks this).
    """

    def __init__(self, num_users: int, num_movies: int, metadata, kge_dimension: int = 64, num_layers: int = 2,
                 user_type: str = "user", movie_type: str = "movie"):  # fmt: skip
        super().__init__()
        self.user_type, self.movie_type = user_type, movie_type
        self.num_users, self.num_layers = num_users, num_layers
        self.to_movie = next(et for et in metadata[1] if et[0] == user_type)  # user→movie: rows are movies
        self.to_user = next(et for et in metadata[1] if et[0] == movie_type)
        self.embedding = nn.Embedding(num_users + num_movies, kge_dimension)
        nn.init.xavier_uniform_(self.embedding.weight)  # as torch_geometric.nn.models.LightGCN

    def forward(self, movie_x: Tensor, adj_dict: dict[tuple[str, str, str], Tensor]) -> dict[str, Tensor]:
        del movie_x  # LightGCN learns an embedding per node and uses no features
        to_movie, to_user = adj_dict[self.to_movie], adj_dict[self.to_user]
        scale_user, scale_movie = _inv_sqrt_degree(to_user), _inv_sqrt_degree(to_movie)
        user, movie = self.embedding.weight.split([self.num_users, self.embedding.num_embeddings - self.num_users])
        out_user, out_movie = user, movie
        for _ in range(self.num_layers):
            user, movie = (scale_user * _SpMM.apply(to_user, to_movie, scale_movie * movie),
                           scale_movie * _SpMM.apply(to_movie, to_user, scale_user * user))  # fmt: skip
            out_user, out_movie = out_user + user, out_movie + movie
        k = self.num_layers + 1
        return {self.user_type: out_user / k, self.movie_type: out_movie / k}


def _inv_sqrt_degree(adj_t: Tensor) -> Tensor:
    """(rows, 1) 1/sqrt(degree) of each row of a CSR adjacency; 0 for a node without edges."""
    degree = adj_t.crow_indices().diff().to(torch.float32).unsqueeze(-1)
    return degree.clamp(min=1).rsqrt() * (degree > 0)


class _SpMM(torch.autograd.Function):
    """adj @ x whose backward multiplies by the transpose given, `adj_t`: the other direction's CSR
    of a bipartite graph with all-one values. torch.sparse.mm's own backward transposes the CSR on
    every call, which made a LightGCN epoch on ml-100k 80 times slower than its forward pass."""

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(adj_t)
        return _spmm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (adj_t,) = ctx.saved_tensors
        return None, None, _spmm(adj_t, grad.contiguous())


def _spmm(adj: Tensor, x: Tensor) -> Tensor:
    """adj @ x for a sparse CSR `adj`. On a CPU, torch's own kernel (reduce="sum") multiplies
    ml-32m's message passing 1.3-1.6x faster than the MKL one that torch.sparse.mm calls otherwise
    (one thread; ml-100k's GNN trains to the same bits), and sums each row in column order on any
    number of threads."""
    return torch.sparse.mm(adj, x, "sum") if x.device.type == "cpu" else torch.sparse.mm(adj, x)


class _PairLogits(torch.autograd.Function):
    # Rows per chunk: the few (chunk, d) temporaries take 64 MB each at d = 64, and per-op overhead is nil.
    chunk = 1 << 18

    @staticmethod
    def forward(ctx, z_user: Tensor, z_movie: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(z_user, z_movie, src, dst)
        chunks = zip(src.split(_PairLogits.chunk), dst.split(_PairLogits.chunk), strict=True)
        return torch.cat([LinkGNN.decode(z_user[s], z_movie[d]) for s, d in chunks])

    @staticmethod
    def backward(ctx, grad: Tensor):
        z_user, z_movie, src, dst = ctx.saved_tensors
        want_user, want_movie = ctx.needs_input_grad[:2]
        grad_user = torch.zeros_like(z_user) if want_user else None
        grad_movie = torch.zeros_like(z_movie) if want_movie else None
        chunks = zip(grad.split(_PairLogits.chunk), src.split(_PairLogits.chunk), dst.split(_PairLogits.chunk),
                     strict=True)  # fmt: skip
        for g, s, d in chunks:
            g = g.unsqueeze(-1)
            # index_add_ sums in index order: the result of one thread on any number of threads, where
            # autograd's own backward of z[src] (index_put_ with accumulate) varies from run to run.
            if want_user:
                grad_user.index_add_(0, s, g * z_movie[d])
            if want_movie:
                grad_movie.index_add_(0, d, g * z_user[s])
        return grad_user, grad_movie, None, None


@dataclass(frozen=True)
class PairIndex:
    """n (user, movie) pairs as the sparse CSR patterns that torch's fused kernels read.

    by_user: (crow, col) of the (num_users, num_movies) pattern with one entry per pair, in
    (user, movie) order; user_pairs: (n,) the pair behind each entry, None where the pairs came in
    that order. by_movie, movie_pairs: the same for (num_movies, num_users); None when built
    without (no movie gradient wanted). Repeated pairs are repeated entries: sums stay right.
    """

    shape: tuple[int, int]
    by_user: tuple[Tensor, Tensor]
    user_pairs: Tensor | None
    by_movie: tuple[Tensor, Tensor] | None = None
    movie_pairs: Tensor | None = None

    @classmethod
    def of(cls, src: Tensor, dst: Tensor, num_users: int, num_movies: int, movie_grad: bool = True) -> PairIndex:
        """The index of pairs (src[i], dst[i]); src, dst: (n,) int64 node indices. movie_grad:
        whether it will serve gradients of the movie table (by_movie)."""
        # Column indices come out of the sorted keys: gathering them from src or dst instead would
        # be a random read per pair, slower at ml-32m than the sort itself.
        key = src * num_movies + dst
        if bool((key[1:] >= key[:-1]).all()):
            user_pairs, cols = None, dst.contiguous()
        else:
            key, user_pairs = torch.sort(key, stable=True)
            cols = key.remainder_(num_movies)
        del key
        by_user = (_crow(src, num_users), cols)
        if not movie_grad:
            return cls((num_users, num_movies), by_user, user_pairs)
        key, movie_pairs = torch.sort(dst * num_users + src, stable=True)
        by_movie = (_crow(dst, num_movies), key.remainder_(num_users))
        return cls((num_users, num_movies), by_user, user_pairs, by_movie, movie_pairs)


class _SparsePairLogits(torch.autograd.Function):
    """Pair logits by `torch.sparse.sampled_addmm` (z_user @ z_movie.T read at the pattern only);
    the backward writes the pairs' gradients into the pattern and multiplies back (two sparse mm):
    each node's gradient is summed in its CSR row's order, on any number of threads."""

    @staticmethod
    def forward(ctx, z_user: Tensor, z_movie: Tensor, index: PairIndex) -> Tensor:
        ctx.save_for_backward(z_user, z_movie)
        ctx.index = index
        crow, col = index.by_user
        pattern = _csr_tensor(crow, col, z_user.new_zeros(col.numel()), index.shape)
        scores = torch.sparse.sampled_addmm(pattern, z_user, z_movie.T, beta=0.0).values()
        if index.user_pairs is None:
            return scores
        return torch.empty_like(scores).index_copy_(0, index.user_pairs, scores)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z_user, z_movie = ctx.saved_tensors
        index: PairIndex = ctx.index
        grad_user = grad_movie = None
        if ctx.needs_input_grad[0]:
            values = grad.contiguous() if index.user_pairs is None else grad[index.user_pairs]
            grad_user = _spmm(_csr_tensor(*index.by_user, values, index.shape), z_movie)
        if ctx.needs_input_grad[1]:
            if index.by_movie is None:
                raise RuntimeError("this PairIndex was built without by_movie: no movie gradient")
            shape = (index.shape[1], index.shape[0])
            grad_movie = _spmm(_csr_tensor(*index.by_movie, grad[index.movie_pairs], shape), z_user)
        return grad_user, grad_movie, None


class _DensePairLogits(torch.autograd.Function):
    """Pair logits read from the full score matrix z_user @ z_movie.T; the backward scatters the
    pairs' gradients into a matrix of that shape and multiplies back (two matmuls)."""

    limit = 1 << 24  # score-matrix entries (64 MB in fp32): ml-100k has 1.6 M, ml-32m 17 G

    @staticmethod
    def forward(ctx, z_user: Tensor, z_movie: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        key = src * z_movie.shape[0] + dst
        ctx.save_for_backward(z_user, z_movie, key)
        return (z_user @ z_movie.T).view(-1)[key]

    @staticmethod
    def backward(ctx, grad: Tensor):
        z_user, z_movie, key = ctx.saved_tensors
        # index_add_ sums repeated pairs in index order, as _PairLogits does.
        scores = grad.new_zeros(z_user.shape[0] * z_movie.shape[0]).index_add_(0, key, grad)
        scores = scores.view(z_user.shape[0], z_movie.shape[0])
        want_user, want_movie = ctx.needs_input_grad[:2]
        return (scores @ z_movie if want_user else None, scores.T @ z_user if want_movie else None, None, None)


def adjacency(edge_index: Tensor, num_src: int, num_dst: int) -> tuple[Tensor, Tensor]:
    """Transposed sparse CSR adjacencies of a bipartite relation and its reverse.

    edge_index: (2, E) source→target indices, without duplicates. Returns the adj_t of src→dst,
    shape (num_dst, num_src), and of dst→src, shape (num_src, num_dst), as SAGEConv expects them.
    """
    src, dst = edge_index
    # Both directions share one all-ones values tensor: message passing only reads it.
    values = torch.ones(src.numel(), dtype=torch.float32, device=src.device)
    return _csr(dst, src, num_dst, num_src, values), _csr(src, dst, num_src, num_dst, values)


def _csr(rows: Tensor, cols: Tensor, num_rows: int, num_cols: int, values: Tensor) -> Tensor:
    key = rows * num_cols
    key += cols
    # Edges already in CSR order (the manager's are sorted by source) keep their column indices as a
    # view of edge_index: no argsort temporaries and no sorted copy.
    in_order = bool((key[1:] > key[:-1]).all())
    cols = cols.contiguous() if in_order else cols[torch.argsort(key)]
    del key
    return _csr_tensor(_crow(rows, num_rows), cols, values, (num_rows, num_cols))


def _crow(rows: Tensor, num_rows: int) -> Tensor:
    """CSR row pointers of entries whose row indices are `rows` (in any order)."""
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), dim=0)
    return crow


def _csr_tensor(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta": it is what we want
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
