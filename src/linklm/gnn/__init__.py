"""The GNN stage: a heterogeneous GraphSAGE link predictor whose node embeddings are the KGEs."""

from linklm.gnn.generator import GraphRepresentationGenerator
from linklm.gnn.model import LinkGNN

__all__ = ["GraphRepresentationGenerator", "LinkGNN"]
