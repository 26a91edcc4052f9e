"""One reader test per layout, on synthetic files with quoted commas and non-ASCII titles."""

import pytest

from linklm import MovieLensManager
from linklm.data.readers import read_folder

from synthetic import LAYOUTS, SPECIAL_TITLES, write_layout, zip_folder


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reader_reads_every_layout(tmp_path, layout):
    syn = write_layout(tmp_path / "ml-synth", layout)
    raw = read_folder(syn.folder)
    assert raw.movies["movie_id"].nunique() == syn.movies
    # one duplicate row is in the file; readers keep it, the manager collapses it
    assert len(raw.ratings) == syn.ratings + 1
    titles = dict(zip(raw.movies["movie_id"], raw.movies["title"], strict=True))
    assert titles == syn.titles
    for title in SPECIAL_TITLES:
        assert title in titles.values()
    genres = dict(zip(raw.movies["movie_id"], raw.movies["genres"], strict=True))
    assert {k: sorted(v) for k, v in genres.items()} == syn.genres


@pytest.mark.parametrize("layout", LAYOUTS)
def test_manager_counts_from_zip(tmp_path, layout):
    syn = write_layout(tmp_path / "ml-synth", layout)
    archive = zip_folder(syn.folder, tmp_path / "ml-synth.zip")
    ml = MovieLensManager(path=archive, cache_dir=str(tmp_path / "cache"))
    summary = ml.summary()
    assert (summary["users"], summary["movies"], summary["ratings"]) == (syn.users, syn.movies, syn.ratings)
    # the seed's prompt features, with the dataset's own ids
    row = ml.llm_df.iloc[0]
    assert row["prompt_feature_title"] == syn.titles[row["target_id"]]
    assert row["prompt_feature_genres"] == str(syn.genres[row["target_id"]])


def test_duplicate_rating_keeps_the_latest(tmp_path):
    syn = write_layout(tmp_path / "ml-synth", "csv")
    ml = MovieLensManager(path=syn.folder, cache_dir=str(tmp_path / "cache"))
    first = ml.edge_df.sort_values(["source_id", "target_id"]).iloc[0]
    assert first["rating"] == 5.0
