"""The language-model stage.

Components: tokens.py (per-node tokens, prompt assembly), collator.py (negatives on the fly),
models.py (the BERT classifiers, the end-to-end model). Recipe: training.py (the HF Trainer loop).
Facades: classifier.py (the seed's VanillaClassifier, PromptClassifier, EmbeddingClassifier, and
FusedClassifier).
"""

from linklm.llm.classifier import (
    EmbeddingClassifier,
    FusedClassifier,
    LinkClassifier,
    PromptClassifier,
    VanillaClassifier,
)

__all__ = ["EmbeddingClassifier", "FusedClassifier", "LinkClassifier", "PromptClassifier", "VanillaClassifier"]
