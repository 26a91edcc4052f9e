"""linklm: does a language model decide links better when it is given the graph's KGEs?"""

from linklm.data import BipartiteGraphManager, MovieLensManager
from linklm.errors import UserError

__all__ = ["BipartiteGraphManager", "MovieLensManager", "UserError"]
__version__ = "0.1.0"
