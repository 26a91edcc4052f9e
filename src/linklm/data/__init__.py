"""The data layer: MovieLens readers, downloads, any user–item tables, and the split bipartite graph."""

from linklm.data.graph import BipartiteGraphManager
from linklm.data.interactions import InteractionsManager, dataset_name, open_dataset
from linklm.data.movielens import MovieLensManager

__all__ = ["BipartiteGraphManager", "InteractionsManager", "MovieLensManager", "dataset_name", "open_dataset"]
