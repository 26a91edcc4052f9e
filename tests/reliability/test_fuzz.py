"""Property-based tests: for any bytes in a data file, any `key=value` override and any JSON value in
a metadata file, linklm returns a result or raises a `UserError` (or, for its own caches, `Damaged`)
whose message names the file or key. Nothing else may escape: the CLI turns those two into one
line and exit code 2 (or one warning and a rebuild).

The examples are derandomized and bounded, so the suite is deterministic and takes seconds.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linklm.artifacts import (
    CLASSIFIER_METRICS,
    GNN_METRICS,
    MANIFEST_SHAPE,
    RESULTS_SHAPE,
    Damaged,
    read_json,
    seal,
    unseal,
)
from linklm.config import load_config
from linklm.data.download import RECORD_SHAPE
from linklm.data.readers import read_folder
from linklm.errors import UserError

from synthetic import write_layout

FUZZ = settings(max_examples=40, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip

# Bytes that look like the files they replace more often than uniform noise would: numbers,
# separators, quotes, newlines, a BOM, invalid UTF-8 and a NUL.
PIECES = st.sampled_from([b"1", b"42", b"-7", b"3.5", b"1e400", b"99999999999999999999", b"nan", b"abc", b",",
                          b"\t", b"::", b"|", b'"', b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b" ",
                          b"userId,movieId,rating,timestamp\n", b"movieId,title,genres\n",
                          b"user_id:token\titem_id:token\n", b"item_id:token\tmovie_title:token_seq\n",
                          b"item_id:token\t", b"userId,", b"movieId", b"title", b"0|", b"1|"])  # fmt: skip
NOISE = st.one_of(st.binary(max_size=300), st.lists(PIECES, max_size=60).map(b"".join))
# Edits of the real file (at a position, drop some bytes, insert a piece): they get past the header
# checks that noise rarely passes.
EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 12), PIECES), min_size=1, max_size=4)


def _edited(blob: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for at, drop, piece in edits:
        at %= len(blob) + 1
        blob = blob[:at] + piece + blob[at + drop :]
    return blob


# (layout, the file replaced): every file each reader opens.
TARGETS = [("csv", "ratings.csv"), ("csv", "movies.csv"), ("dat", "ratings.dat"), ("dat", "movies.dat"),
           ("ml-100k", "u.data"), ("ml-100k", "u.item"), ("recbole", "ml-synth.inter"),
           ("recbole", "ml-synth.item")]  # fmt: skip


@pytest.mark.parametrize("layout,name", TARGETS)
@FUZZ
@given(change=st.one_of(NOISE, EDITS))
def test_readers_return_tables_or_name_the_file(tmp_path, layout, name, change):
    folder = tmp_path / "ml-synth"
    if not folder.exists():
        write_layout(folder, layout, n_users=5, n_movies=4, n_ratings=12)
        (tmp_path / "original").write_bytes((folder / name).read_bytes())
    original = (tmp_path / "original").read_bytes()
    (folder / name).write_bytes(change if isinstance(change, bytes) else _edited(original, change))
    try:
        raw = read_folder(folder)
    except UserError as exc:
        assert name in str(exc) and "\n" not in str(exc), str(exc)
        return
    assert len(raw.ratings) > 0 and len(raw.movies) > 0
    assert raw.ratings["movie_id"].isin(raw.movies["movie_id"]).all()


KEYS = ["name", "runs_dir", "progress", "tracking", "data.dataset", "data.path", "data.val_ratio", "data.seed",
        "data.neg_ratio", "gnn.kge_dim", "gnn.device", "gnn.lr", "gnn.seed", "llm.models", "llm.device",
        "llm.model", "llm.batch_size", "llm.warmup_ratio", "data", "gnn", "nope", "data.nope"]  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["-1", "0", "1e-3", ".nan", "-.inf", "1e999", "4294967296", "[1, 2]", "{a: 1}", "null", "true",
                     "'x'", "[", "a\x00b", "cpu", "cuda:0", "cuda:x", "~/none", "./x", "10000"]),
)  # fmt: skip


@FUZZ
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), value=VALUES)
def test_config_overrides_give_a_config_or_name_the_key(tmp_path, key, value):
    override = f"{key}={value}"
    try:
        load_config(None, [override])
    except UserError as exc:
        message = str(exc)
        # The override, or the part of its key that is wrong (an unknown section names the section).
        parts = [override, *override.partition("=")[0].split(".")]
        named = any(part in message or repr(part)[1:-1] in message for part in parts)
        assert named and "\n" not in message, message


@FUZZ
@given(text=st.text(max_size=200))
def test_a_config_file_gives_a_config_or_names_the_file_or_key(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except UserError as exc:
        message = str(exc)
        assert ("fuzz.yaml" in message or "config key" in message) and "\n" not in message, message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Values shaped like what each file holds, some keys missing or of the wrong type: closer misses.
NEAR = st.fixed_dictionaries(
    {},
    optional={"format": st.sampled_from([2, "2", 2.5]), "meta": JSON, "artifacts": JSON, "val_auc": JSON,
              "test_auc": st.floats(), "models": JSON, "files": JSON, "archive": JSON, "gnn": JSON},
)  # fmt: skip
SHAPES = {"manifest": MANIFEST_SHAPE, "gnn metrics": GNN_METRICS, "classifier metrics": CLASSIFIER_METRICS,
          "results": RESULTS_SHAPE, "extraction record": RECORD_SHAPE}  # fmt: skip


@pytest.mark.parametrize("what", list(SHAPES))
@FUZZ
@given(value=st.one_of(JSON, NEAR), cut=st.integers(min_value=0, max_value=3))
def test_metadata_loaders_return_the_value_or_name_the_file(tmp_path, what, value, cut):
    path = tmp_path / "meta.json"
    text = json.dumps(value)
    path.write_text(text[: len(text) - cut])  # cut > 0: often truncated
    for user, expected in ((False, Damaged), (True, UserError)):  # a cache of ours, a file the user gave
        try:
            read_json(path, SHAPES[what], user=user)
        except expected as exc:
            assert "meta.json" in str(exc) and "\n" not in str(exc), str(exc)


@FUZZ
@given(value=st.one_of(JSON, NEAR))
def test_a_damaged_manifest_is_reported_not_raised(tmp_path, value):
    folder = tmp_path / "sealed"
    folder.mkdir(exist_ok=True)
    (folder / "table.bin").write_bytes(b"abc")
    seal(folder, ["table.bin"], {"key": "k"})
    assert unseal(folder) == {"key": "k"}
    (folder / "manifest.json").write_text(json.dumps(value))
    try:
        unseal(folder)
    except Damaged as exc:
        assert "sealed" in str(exc) and "\n" not in str(exc), str(exc)
