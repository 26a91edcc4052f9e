"""The language-model stage.

Components: tokens.py (per-node tokens, prompt assembly), collator.py (negatives on the fly),
models.py (the BERT classifiers, the end-to-end model). Recipe: training.py (the HF Trainer loop).
Facades: classifier.py (the seed's VanillaClassifier, PromptClassifier, EmbeddingClassifier); fused.py
(FusedClassifier and its two ablations); controls.py (the controls and kge_mlp, which carry the KGE
arms' information minus the graph or minus the text). Selection on val: selection.py.
"""

from linklm.llm.classifier import EmbeddingClassifier, LinkClassifier, PromptClassifier, VanillaClassifier
from linklm.llm.fused import FusedClassifier

__all__ = ["EmbeddingClassifier", "FusedClassifier", "LinkClassifier", "PromptClassifier", "VanillaClassifier"]
