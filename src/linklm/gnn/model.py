"""The link-prediction GNNs (`gnn.model`) and their dot-product decoder.

- sage: the seed's heterogeneous two-layer GraphSAGE, as in PyG's MovieLens tutorial: users get a
  learned embedding, movies their genre features plus a learned embedding; `to_hetero` turns the
  homogeneous encoder into one with a SAGEConv per relation.
- lightgcn: LightGCN (He et al., 2020), the propagation of PyG's `LGConv` on the bipartite graph:
  learned embeddings only, no weights or non-linearities between layers, the layers averaged.

Both take (movie_x, adjacencies) and return {"user": (U, d), "movie": (M, d)}, so every classifier
works with either. Message passing runs on sparse CSR adjacencies (`adjacency()`), so memory grows
with nodes × channels, not edges × channels: torch.sparse.mm replaces PyG's gather/scatter.
"""

from __future__ import annotations

import warnings

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

        The same logits, and the gradients autograd computes on one thread, without the (n, d) gathers
        that autograd would keep for the backward pass: at ml-32m's 15 M train pairs, 4 GB each.
        dense: where the users × movies score matrix fits (`_DensePairLogits.limit`), one matmul
        scores every pair and the pairs are read from it (training: ~5x faster at ml-100k's 150 k pairs
        per epoch); the logits then differ from `decode`'s by float rounding only.
        """
        if dense and z_user.shape[0] * z_movie.shape[0] <= _DensePairLogits.limit:
            return _DensePairLogits.apply(z_user, z_movie, src, dst)
        return _PairLogits.apply(z_user, z_movie, src, dst)


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
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (adj_t,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(adj_t, grad.contiguous())


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
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), dim=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta": it is what we want
        return torch.sparse_csr_tensor(crow, cols, values, (num_rows, num_cols), check_invariants=False)
