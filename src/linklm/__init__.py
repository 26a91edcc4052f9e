"""linklm: does a language model decide links better when it is given the graph's KGEs?

    from linklm import MovieLensManager, GraphRepresentationGenerator, VanillaClassifier

The seed notebook's names are importable from here; each is loaded on first use, so `import linklm`
(and `linklm --help`) imports neither torch nor PyG.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from linklm.errors import UserError

__version__ = "0.1.0"

_LAZY = {
    "BipartiteGraphManager": "linklm.data.graph",
    "MovieLensManager": "linklm.data.movielens",
    "GraphRepresentationGenerator": "linklm.gnn.generator",
    "LinkClassifier": "linklm.llm.classifier",
    "VanillaClassifier": "linklm.llm.classifier",
    "PromptClassifier": "linklm.llm.classifier",
    "EmbeddingClassifier": "linklm.llm.classifier",
    "FusedClassifier": "linklm.llm.fused",
    "evaluate_scores": "linklm.evaluate",
    "load_config": "linklm.config",
}
__all__ = [
    "BipartiteGraphManager",
    "EmbeddingClassifier",
    "FusedClassifier",
    "GraphRepresentationGenerator",
    "LinkClassifier",
    "MovieLensManager",
    "PromptClassifier",
    "UserError",
    "VanillaClassifier",
    "evaluate_scores",
    "load_config",
]

if TYPE_CHECKING:
    from linklm.config import load_config
    from linklm.data.graph import BipartiteGraphManager
    from linklm.data.movielens import MovieLensManager
    from linklm.evaluate import evaluate_scores
    from linklm.gnn.generator import GraphRepresentationGenerator
    from linklm.llm.classifier import EmbeddingClassifier, LinkClassifier, PromptClassifier, VanillaClassifier
    from linklm.llm.fused import FusedClassifier


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'linklm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
