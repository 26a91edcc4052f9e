"""The embedded MovieLens-100K from the recbole wheel (installed by `make install`)."""

import pytest

from linklm import MovieLensManager
from linklm.data.movielens import embedded_ml100k


@pytest.mark.skipif(embedded_ml100k() is None, reason="recbole wheel not installed (make install adds it)")
def test_embedded_ml100k_counts(tmp_path, capsys):
    ml = MovieLensManager(cache_dir=str(tmp_path / "cache"))
    s = ml.summary()
    assert (s["users"], s["movies"], s["ratings"]) == (943, 1682, 100_000)
    assert s["val"]["supervision_pos"] == s["val"]["supervision_neg"] == 10_000
    assert list(ml.llm_df.columns) == [
        "source_id", "target_id", "split", "labels", "prompt_feature_title", "prompt_feature_genres",
    ]  # fmt: skip
    toy = ml.llm_df[ml.llm_df["target_id"] == 1].iloc[0]
    assert toy["prompt_feature_title"] == "Toy Story (1995)"
    assert toy["prompt_feature_genres"] == "['Animation', \"Children's\", 'Comedy']"
    again = MovieLensManager(cache_dir=str(tmp_path / "cache"))
    assert again.from_cache
