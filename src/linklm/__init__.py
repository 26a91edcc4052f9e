"""linklm: does a language model decide links better when it is given the graph's KGEs?"""

import pandas as _pd

from linklm.data import BipartiteGraphManager, MovieLensManager
from linklm.errors import UserError
from linklm.gnn import GraphRepresentationGenerator

__all__ = ["BipartiteGraphManager", "GraphRepresentationGenerator", "MovieLensManager", "UserError"]
__version__ = "0.1.0"

# Show the seed's six llm_df columns in a terminal instead of eliding them ("..."), unless the user
# chose a setting of their own.
if _pd.get_option("display.max_columns") == 0:
    _pd.set_option("display.max_columns", 20)
