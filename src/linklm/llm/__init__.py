"""The language-model stage: per-node tokens, the collator, the models and the classifiers."""

from linklm.llm.classifier import EmbeddingClassifier, LinkClassifier, PromptClassifier, VanillaClassifier

__all__ = ["EmbeddingClassifier", "LinkClassifier", "PromptClassifier", "VanillaClassifier"]
