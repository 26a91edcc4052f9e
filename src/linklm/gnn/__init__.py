"""The GNN stage: a heterogeneous GraphSAGE link predictor whose node embeddings are the KGEs.

model.py is the component (tensors in, embeddings out), train.py the training recipe, and
generator.py the seed's `GraphRepresentationGenerator` over both, with the cache and the look-ups.
"""

from linklm.gnn.generator import GraphRepresentationGenerator
from linklm.gnn.model import LinkGNN

__all__ = ["GraphRepresentationGenerator", "LinkGNN"]
