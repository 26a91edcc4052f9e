"""The data layer: MovieLens readers, downloads, and the split bipartite graph."""

from linklm.data.graph import BipartiteGraphManager
from linklm.data.movielens import MovieLensManager

__all__ = ["BipartiteGraphManager", "MovieLensManager"]
