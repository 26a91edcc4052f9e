"""When a classifier saves a resumable checkpoint: every llm.checkpoint_every steps, or, with 0,
once llm.checkpoint_minutes of training passed since the last one (0 minutes: none)."""

import pytest
from transformers import TrainerCallback

from linklm.llm import VanillaClassifier

from .conftest import TINY


class SavedAt(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []
        self.last = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.last = state.global_step

    def on_save(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.parametrize(
    "every, minutes, expected",
    [(2, 5.0, lambda last: sorted({*range(2, last + 1, 2), last})),  # (the Trainer also saves the last step)
     (0, 0.0, lambda last: []), (0, 60.0, lambda last: []), (0, 1e-9, lambda last: list(range(1, last + 1)))],
    ids=["by steps", "none", "not yet due", "due at every step"],
)  # fmt: skip
def test_checkpoints_by_steps_or_by_time(tiny, tmp_path, every, minutes, expected):
    ml, _ = tiny
    clf = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path, TINY, max_train_pairs=64, batch_size=16,
                            evals_per_epoch=1, checkpoint_every=every, checkpoint_minutes=minutes)  # fmt: skip
    clf.progress = False
    saved = SavedAt()
    clf.train_model_on_data(None, callbacks=[saved])
    assert saved.last >= 4 and saved.steps == expected(saved.last)
