"""The language-model stage.

Components: tokens.py (per-node tokens, prompt assembly), collator.py (negatives on the fly),
models.py (the BERT classifiers, the end-to-end model). Recipe: training.py (the HF Trainer loop).
Facades: classifier.py (the seed's VanillaClassifier, PromptClassifier, EmbeddingClassifier).
"""

from linklm.llm.classifier import EmbeddingClassifier, LinkClassifier, PromptClassifier, VanillaClassifier

__all__ = ["EmbeddingClassifier", "LinkClassifier", "PromptClassifier", "VanillaClassifier"]
