"""The processed tables round-trip through the Parquet cache, keyed by data, split config and seed."""

import os
import time

import pytest

from linklm import MovieLensManager

from synthetic import write_layout


def test_cache_round_trip(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    second = MovieLensManager(path=folder, cache_dir="cache")
    assert not first.from_cache and second.from_cache
    assert first.folder == second.folder
    for name in ("source_df", "target_df", "edge_df", "neg_df"):
        assert getattr(first, name).equals(getattr(second, name)), name
    assert first.llm_df.equals(second.llm_df)
    assert (first.folder / "config.json").is_file()
    assert not [p for p in first.folder.parent.iterdir() if p.name.endswith(".tmp")]


def test_force_recompute_rebuilds(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    stamp = (first.folder / "edge_df.parquet").stat().st_mtime_ns
    time.sleep(0.01)
    again = MovieLensManager(path=folder, cache_dir="cache", force_recompute=True)
    assert not again.from_cache
    assert (again.folder / "edge_df.parquet").stat().st_mtime_ns != stamp
    assert again.edge_df.equals(first.edge_df)


def test_changed_input_gets_a_new_cache(tmp_path):
    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    with open(folder / "ratings.dat", "a") as fh:
        fh.write(f"99999::{first.target_df['target_id'].iloc[0]}::4::900000000\n")
    second = MovieLensManager(path=folder, cache_dir="cache")
    assert second.folder != first.folder and not second.from_cache
    assert len(second.edge_df) == len(first.edge_df) + 1


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, recwarn):
    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    target = first.folder / "edge_df.parquet"
    os.truncate(target, target.stat().st_size // 2)
    again = MovieLensManager(path=folder, cache_dir="cache")
    assert not again.from_cache
    assert again.edge_df.equals(first.edge_df)
    assert any("rebuilding" in str(w.message) for w in recwarn)


def test_a_flipped_byte_is_caught_by_the_hash_record(tmp_path, recwarn):
    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    target = first.folder / "neg_df.parquet"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size; Parquet might even still parse it
    target.write_bytes(bytes(blob))
    again = MovieLensManager(path=folder, cache_dir="cache")
    assert not again.from_cache and again.neg_df.equals(first.neg_df)
    assert any("neg_df.parquet" in str(w.message) for w in recwarn)


@pytest.mark.parametrize("shape", [[], {}, {"format": 2, "meta": {}}, {"format": 1, "meta": {}, "artifacts": {}}])
def test_a_manifest_of_the_wrong_shape_is_rebuilt(tmp_path, recwarn, shape):
    import json

    folder = write_layout(tmp_path / "ml-synth", "dat").folder
    first = MovieLensManager(path=folder, cache_dir="cache")
    (first.folder / "manifest.json").write_text(json.dumps(shape))  # e.g. written by an older linklm
    again = MovieLensManager(path=folder, cache_dir="cache")
    assert not again.from_cache and again.edge_df.equals(first.edge_df)
    assert any("not a linklm manifest" in str(w.message) for w in recwarn)
