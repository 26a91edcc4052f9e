"""The seed's HF `datasets.DatasetDict` of `llm_df`, with the vanilla prompt text.

    dataset = ml.generate_vanilla_dataset(clf.tokenize_function)   # MovieLensManager's seed API

The classifiers do not need it (they read pairs straight from `llm_df`); it is the seed notebook's
way in, kept so its code runs unchanged.
"""

from __future__ import annotations

import pandas as pd

from linklm.config import SPLITS
from linklm.data.tables import TEXT_PREFIX
from linklm.llm.tokens import vanilla_prompt


def dataset_dict(llm_df: pd.DataFrame, tokenize_function=None):
    """train/val/test `Dataset`s of `llm_df`'s rows with a `prompt` column, each mapped through
    `tokenize_function` (batched) when one is given."""
    from datasets import Dataset, DatasetDict

    llm = llm_df.copy()
    # MovieLens: prompt_feature_title, prompt_feature_genres; another dataset: its item text columns.
    fields = [c for c in llm.columns if c.startswith(TEXT_PREFIX)]
    for col in ("split", *fields):
        llm[col] = llm[col].astype(str)
    columns = ("source_id", "target_id", *fields)
    llm["prompt"] = [vanilla_prompt(*row) for row in zip(*(llm[c] for c in columns), strict=True)]
    parts = {}
    for split in SPLITS:
        part = Dataset.from_pandas(llm[llm["split"] == split].reset_index(drop=True), preserve_index=False)
        if tokenize_function is not None:
            part = part.map(tokenize_function, batched=True, batch_size=4096, desc=f"tokenize {split}")
        parts[split] = part
    return DatasetDict(parts)
