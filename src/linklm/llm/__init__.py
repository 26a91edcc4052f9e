"""The language-model stage.

Components: tokens.py (per-node tokens, prompt assembly), collator.py (negatives on the fly),
models.py (the BERT classifiers, the end-to-end model). Recipe: training.py (the HF Trainer loop).
Facades: classifier.py (the seed's VanillaClassifier, PromptClassifier, EmbeddingClassifier, and
FusedClassifier); controls.py (the controls and kge_mlp, which carry the KGE arms' information minus
the graph or minus the text). Selection on val: selection.py.
"""

from linklm.llm.classifier import (
    EmbeddingClassifier,
    FusedClassifier,
    LinkClassifier,
    PromptClassifier,
    VanillaClassifier,
)

__all__ = ["EmbeddingClassifier", "FusedClassifier", "LinkClassifier", "PromptClassifier", "VanillaClassifier"]
