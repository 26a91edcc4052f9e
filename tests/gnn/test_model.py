"""The GNN's hand-written pieces against the stock ones: the pair decoders (`_PairLogits`, the
sparse `PairIndex` path, the dense score matrix) against autograd, CSR message passing against
PyG's edge_index path."""

import pytest
import torch

from linklm.gnn.model import LinkGNN, PairIndex, _PairLogits, adjacency, uses_pair_index

METADATA = (["user", "movie"], [("user", "rates", "movie"), ("movie", "rev_rates", "user")])


# --- decode_pairs: the custom autograd function --------------------------------------------------


def _tables(seed=0, num_users=5, num_movies=4, dim=3, n=11):
    """Small float64 tables and index pairs in which every user and movie recurs several times."""
    gen = torch.Generator().manual_seed(seed)
    z_user = torch.randn(num_users, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    z_movie = torch.randn(num_movies, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    src = torch.randint(num_users, (n,), generator=gen)
    dst = torch.randint(num_movies, (n,), generator=gen)
    # Pin a few repeats, so index_add_ accumulates whatever the random draw gives.
    src[:3], dst[:3] = 1, 2
    assert src.unique().numel() < n and dst.unique().numel() < n
    return z_user, z_movie, src, dst


def _gather(chunk):
    """`_PairLogits`, the decoder of GPUs, in chunks of `chunk` pairs."""

    def decode(z_user, z_movie, src, dst):
        return _PairLogits.apply(z_user, z_movie, src, dst)

    return decode, chunk


def _sparse(z_user, z_movie, src, dst):
    """The decoder of large graphs on a CPU: through a `PairIndex`."""
    index = PairIndex.of(src, dst, z_user.shape[0], z_movie.shape[0])
    return LinkGNN.decode_index(z_user, z_movie, index)


DECODERS = {
    "gather, one chunk": _gather(None),
    "gather, chunks of 3": _gather(3),
    "gather, chunks of 4 (ragged last)": _gather(4),
    "sparse pattern": (_sparse, None),
    "dense score matrix": (lambda u, m, s, d: LinkGNN.decode_pairs(u, m, s, d, dense=True), None),
}


@pytest.mark.parametrize("name", list(DECODERS))
def test_pair_logits_gradcheck(monkeypatch, name):
    decode, chunk = DECODERS[name]
    if chunk is not None:
        monkeypatch.setattr(_PairLogits, "chunk", chunk)
    z_user, z_movie, src, dst = _tables()
    assert torch.autograd.gradcheck(lambda u, m: decode(u, m, src, dst), (z_user, z_movie))
    # One table frozen: backward must still return the other's gradient (and None for the frozen one).
    frozen = z_movie.detach()
    assert torch.autograd.gradcheck(lambda u: decode(u, frozen, src, dst), (z_user,))
    frozen = z_user.detach()
    assert torch.autograd.gradcheck(lambda m: decode(frozen, m, src, dst), (z_movie,))


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize("order", ["drawn", "sorted"])
def test_pair_logits_match_plain_autograd(monkeypatch, name, order):
    decode, chunk = DECODERS[name]
    if chunk is not None:
        monkeypatch.setattr(_PairLogits, "chunk", chunk)
    z_user, z_movie, src, dst = _tables(seed=1, num_users=6, num_movies=5, dim=4, n=13)
    if order == "sorted":  # pairs in CSR order: the sparse index keeps them as they come
        perm = torch.argsort(src * 5 + dst, stable=True)
        src, dst = src[perm], dst[perm]
    upstream = torch.randn(src.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(7))

    ours = decode(z_user, z_movie, src, dst)
    grads = torch.autograd.grad(ours, (z_user, z_movie), upstream)

    plain = (z_user[src] * z_movie[dst]).sum(-1)
    expected = torch.autograd.grad(plain, (z_user, z_movie), upstream)

    assert ours.shape == (src.numel(),)
    torch.testing.assert_close(ours, plain)
    torch.testing.assert_close(grads[0], expected[0])
    torch.testing.assert_close(grads[1], expected[1])
    # Rows never indexed get exactly zero gradient.
    unused = torch.ones(z_user.shape[0], dtype=torch.bool)
    unused[src] = False
    assert unused.any() and (grads[0][unused] == 0).all()


def test_pair_index_holds_each_pair_once_in_both_directions():
    z_user, z_movie, src, dst = _tables(seed=2, num_users=6, num_movies=5, n=17)  # drawn: repeats, any order
    index = PairIndex.of(src, dst, 6, 5)
    assert index.user_pairs is not None and sorted(index.user_pairs.tolist()) == list(range(17))
    assert sorted(index.movie_pairs.tolist()) == list(range(17))
    for (crow, col), pairs, rows, cols in ((index.by_user, index.user_pairs, src, dst),
                                           (index.by_movie, index.movie_pairs, dst, src)):  # fmt: skip
        entry_rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow.diff())
        assert torch.equal(entry_rows, rows[pairs]) and torch.equal(col, cols[pairs])
        keys = entry_rows * 100 + col
        assert bool((keys[1:] >= keys[:-1]).all())  # CSR order: rows, then columns within a row


def test_pair_index_of_sorted_pairs_keeps_their_order():
    _, _, src, dst = _tables(seed=3, num_users=6, num_movies=5, n=12)
    perm = torch.argsort(src * 5 + dst, stable=True)
    index = PairIndex.of(src[perm], dst[perm], 6, 5, movie_grad=False)
    assert index.user_pairs is None and index.by_movie is None
    assert torch.equal(index.by_user[1], dst[perm])


def test_decode_index_scores_block_after_block():
    z_user, z_movie, src, dst = _tables(seed=4, num_users=6, num_movies=5, dim=4, n=15)
    blocks = [PairIndex.of(src[:6], dst[:6], 6, 5), PairIndex.of(src[6:], dst[6:], 6, 5)]
    upstream = torch.randn(15, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ours = LinkGNN.decode_index(z_user, z_movie, *blocks)
    whole = _sparse(z_user, z_movie, src, dst)
    torch.testing.assert_close(ours, whole)
    for a, b in zip(torch.autograd.grad(ours, (z_user, z_movie), upstream),
                    torch.autograd.grad(whole, (z_user, z_movie), upstream), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b)


def test_pair_index_without_movies_refuses_a_movie_gradient():
    z_user, z_movie, src, dst = _tables(seed=5)
    index = PairIndex.of(src, dst, z_user.shape[0], z_movie.shape[0], movie_grad=False)
    with pytest.raises(RuntimeError, match="by_movie"):
        LinkGNN.decode_index(z_user, z_movie, index).sum().backward()
    z_frozen = z_movie.detach()  # user gradients alone need no movie pattern
    LinkGNN.decode_index(z_user, z_frozen, index).sum().backward()
    assert z_user.grad is not None


def test_which_decoder_scores_the_pairs(monkeypatch):
    from linklm.gnn import model

    assert not uses_pair_index(64, 64, torch.device("cpu"))  # the score matrix fits
    assert uses_pair_index(1 << 13, 1 << 12, torch.device("cpu"))  # it does not
    assert not uses_pair_index(1 << 13, 1 << 12, torch.device("cuda"))
    z_user, z_movie, src, dst = _tables()

    def decoder(dense):
        return type(LinkGNN.decode_pairs(z_user, z_movie, src, dst, dense=dense).grad_fn).__name__

    assert (decoder(False), decoder(True)) == ("_PairLogitsBackward", "_DensePairLogitsBackward")
    monkeypatch.setattr(model._DensePairLogits, "limit", 0)  # as large as ml-32m
    assert decoder(False) == decoder(True) == "_SparsePairLogitsBackward"


# --- CSR message passing against PyG's edge_index path -------------------------------------------


def _graph(seed=0, num_users=7, num_movies=9, num_edges=30):
    """Distinct (user, movie) edges sorted by source, as the manager emits them; the last user and
    movie have no edge at all."""
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.randperm((num_users - 1) * (num_movies - 1), generator=gen)[:num_edges].sort().values
    edge_index = torch.stack([pairs // (num_movies - 1), pairs % (num_movies - 1)])
    assert torch.unique(edge_index, dim=1).shape[1] == num_edges  # no duplicates
    return edge_index, num_users, num_movies


def _dense(edge_index, num_rows, num_cols):
    """A[row, col] = 1 for each (row, col) pair, written by hand."""
    dense = torch.zeros(num_rows, num_cols)
    for row, col in edge_index.t().tolist():
        dense[row, col] = 1.0
    return dense


@pytest.mark.parametrize("shuffled", [False, True], ids=["csr order", "shuffled"])
def test_adjacency_is_the_transposed_relation(shuffled):
    edge_index, num_users, num_movies = _graph()
    if shuffled:
        edge_index = edge_index[:, torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(3))]
        assert not bool((edge_index[0, 1:] >= edge_index[0, :-1]).all())  # really out of order
    src, dst = edge_index.clone()
    adj_t, rev_adj_t = adjacency(edge_index, num_users, num_movies)

    assert adj_t.layout == torch.sparse_csr and rev_adj_t.layout == torch.sparse_csr
    assert adj_t.shape == (num_movies, num_users) and rev_adj_t.shape == (num_users, num_movies)
    torch.testing.assert_close(adj_t.to_dense(), _dense(torch.stack([dst, src]), num_movies, num_users))
    torch.testing.assert_close(rev_adj_t.to_dense(), _dense(torch.stack([src, dst]), num_users, num_movies))
    assert torch.equal(edge_index, torch.stack([src, dst]))  # the caller's edges are left as they were
    for adj in (adj_t, rev_adj_t):  # valid CSR: column indices sorted within each row
        crow, col = adj.crow_indices(), adj.col_indices()
        for row in range(adj.shape[0]):
            cols = col[crow[row] : crow[row + 1]]
            assert bool((cols[1:] > cols[:-1]).all())


@pytest.mark.parametrize("shuffled", [False, True], ids=["csr order", "shuffled"])
def test_csr_message_passing_equals_edge_index(shuffled):
    torch.manual_seed(0)
    edge_index, num_users, num_movies = _graph(seed=1)
    num_features = 4
    model = LinkGNN(num_users, num_movies, num_features, METADATA, hidden_channels=8, kge_dimension=5).eval()
    movie_x = (torch.rand(num_movies, num_features, generator=torch.Generator().manual_seed(2)) < 0.4).float()

    csr_edges = edge_index
    if shuffled:
        csr_edges = edge_index[:, torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(5))]
    adj_t, rev_adj_t = adjacency(csr_edges, num_users, num_movies)
    with torch.no_grad():
        ours = model(movie_x, {METADATA[1][0]: adj_t, METADATA[1][1]: rev_adj_t})

        x_dict = {"user": model.user_emb.weight, "movie": model.movie_lin(movie_x) + model.movie_emb.weight}
        reference = model.encoder(x_dict, {METADATA[1][0]: edge_index, METADATA[1][1]: edge_index.flip(0)})

    assert set(ours) == {"user", "movie"}
    assert ours["user"].shape == (num_users, 5) and ours["movie"].shape == (num_movies, 5)
    torch.testing.assert_close(ours["user"], reference["user"])
    torch.testing.assert_close(ours["movie"], reference["movie"])
    # The graph matters: an edgeless node and a connected one differ in how their embeddings were built,
    # so the comparison above is not between two outputs that ignore the edges.
    no_edges = {METADATA[1][0]: edge_index[:, :0], METADATA[1][1]: edge_index[:, :0]}
    with torch.no_grad():
        isolated = model.encoder(x_dict, no_edges)
    assert not torch.allclose(isolated["user"][:-1], reference["user"][:-1])
    torch.testing.assert_close(isolated["user"][-1], reference["user"][-1])  # the last user has no edge


# --- LightGCN: CSR propagation against PyG's LightGCN ------------------------------------------------


def _bipartite(num_users=7, num_movies=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_movies, generator=gen)[:14].sort().values
    keys = keys[keys // num_movies != num_users - 1]  # the last user keeps no edge: an isolated node
    return torch.stack([keys // num_movies, keys % num_movies]), num_users, num_movies


def test_lightgcn_equals_pyg_lightgcn():
    from torch_geometric.nn.models import LightGCN

    from linklm.gnn.model import LightGCNLink

    edge_index, num_users, num_movies = _bipartite()
    ours = LightGCNLink(num_users, num_movies, METADATA, kge_dimension=6, num_layers=3)
    forward, reverse = adjacency(edge_index, num_users, num_movies)
    z = ours(None, {METADATA[1][0]: forward, METADATA[1][1]: reverse})

    pyg = LightGCN(num_users + num_movies, 6, 3)
    pyg.embedding.weight.data.copy_(ours.embedding.weight.data)
    src, dst = edge_index[0], edge_index[1] + num_users
    expected = pyg.get_embedding(torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1))
    torch.testing.assert_close(z["user"], expected[:num_users])
    torch.testing.assert_close(z["movie"], expected[num_users:])
    torch.testing.assert_close(z["user"][-1], ours.embedding.weight[num_users - 1] / 4)  # isolated: layer 0 only


def test_lightgcn_sparse_backward_matches_sparse_mm():
    from linklm.gnn.model import _SpMM

    edge_index, num_users, num_movies = _bipartite(seed=3)
    forward, reverse = adjacency(edge_index, num_users, num_movies)
    x = torch.randn(num_users, 4, requires_grad=True)
    upstream = torch.randn(num_movies, 4)
    ours = torch.autograd.grad(_SpMM.apply(forward, reverse, x), x, upstream)[0]
    stock = torch.autograd.grad(torch.sparse.mm(forward, x), x, upstream)[0]
    torch.testing.assert_close(ours, stock)
