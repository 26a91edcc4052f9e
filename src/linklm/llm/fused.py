"""The fused classifiers: the GNN's logit plus a correction learned from the text (`models.FusedKGEClassifier`).

    fused        the correction reads the mean-pooled text state and u ⊙ m
    fused_text   ... the text state only (ablation)
    fused_kge    ... u ⊙ m only (ablation: BERT runs, its output is not read)

Before its first step each one ranks every pair as the GNN does, and val sees that step 0, so
selection keeps the GNN's ranking unless training beats it by more than llm.selection_margin. The
last step's test AUC is also scored (`last_step` in metrics.json): a pre-declared secondary figure
that shows what training reached where val kept step 0.
"""

from __future__ import annotations

from typing import Any

from linklm.evaluate import evaluate_scores
from linklm.io import write_parquet
from linklm.llm.classifier import LinkClassifier
from linklm.llm.optimizers import fused_optimizer
from linklm.runtime import Runtime

LAST_STEP_PREDICTIONS = "last_step_test_predictions.parquet"


class FusedClassifier(LinkClassifier):
    """The embedding prompt, and a score that is the GNN's logit plus a learned correction from the
    mean-pooled text state and u ⊙ m: before training it ranks every pair as the GNN does. New
    modules learn at llm.head_lr, the pretrained ones at llm.lr."""

    prompt_format, architecture, name, kge_input = "embedding", "fused", "fused", "tables"
    starts_as_gnn = True  # so selection on val keeps the GNN's own ranking unless training beats it

    def _optimizer(self):
        cfg = self.config
        return fused_optimizer(self.model, cfg.lr, cfg.head_lr, cfg.weight_decay)

    def _at_last_step(self, model, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Test AUC of the last step's weights (on the pairs `evaluate_model` scores), its val AUC
        from the last evaluation, and its test predictions written beside the selected model's."""
        import pandas as pd

        pairs = self.pairs(None, "test").subsample(self.config.test_pairs, [0, 11])
        labels, scores = self.predict(None, "test", pairs=pairs)
        frame = pd.DataFrame({"source_idx": pairs.source_idx, "target_idx": pairs.target_idx, "label": labels,
                              "score": scores})  # fmt: skip
        if Runtime.current().main:
            write_parquet(self.root / LAST_STEP_PREDICTIONS, frame)
        evals = [row for row in history if "eval_auc" in row]
        return {"step": evals[-1]["step"] if evals else None, "val_auc": evals[-1]["eval_auc"] if evals else None,
                "test_auc": evaluate_scores(labels, scores)["auc"]}  # fmt: skip


class FusedTextClassifier(FusedClassifier):
    """fused whose correction reads the text state alone: what the text adds to the GNN."""

    architecture = name = "fused_text"


class FusedKGEClassifier(FusedClassifier):
    """fused whose correction reads u ⊙ m alone: what a reweighting of the GNN's own product adds."""

    architecture = name = "fused_kge"


FUSED = {cls.name: cls for cls in (FusedClassifier, FusedTextClassifier, FusedKGEClassifier)}
