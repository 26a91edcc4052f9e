"""Any user–item dataset from an interactions file and an items file (linklm.data.interactions)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linklm.cli import main
from linklm.config import data_config, load_config
from linklm.data import InteractionsManager, open_dataset
from linklm.llm.models import load_tokenizer
from linklm.llm.tokens import NodeTokens, PromptBuilder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOOKCLUB = EXAMPLES / "bookclub"
COLUMNS = {"user_column": "reader", "item_column": "book", "text_columns": ["title", "author", "genres"]}


def small_tables(folder: Path, suffix: str = ".csv", **frames: pd.DataFrame) -> tuple[Path, Path]:
    """A small dataset with text ids, an item that is never read and a repeated read, as `suffix` files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"book": [f"b{i:02d}" for i in range(30)],
                          "title": [f"Title {i}, vol. {i % 3}" for i in range(30)],
                          "author": [f"Author {i % 7}" for i in range(30)],
                          "genres": ["fantasy|poetry" if i % 2 else "history" for i in range(30)]})  # fmt: skip
    reads = pd.DataFrame({"reader": [f"u{i % 40}" for i in range(600)],
                          "book": [f"b{int(i):02d}" for i in rng.integers(0, 29, 600)]})  # fmt: skip
    reads = pd.concat([reads, reads.iloc[:1]], ignore_index=True)
    frames = {"interactions": reads, "items": items, **frames}
    paths = []
    for name in ("interactions", "items"):
        path = folder / f"{name}{suffix}"
        if suffix == ".parquet":
            frames[name].to_parquet(path, index=False)
        else:
            frames[name].to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
        paths.append(path)
    return paths[0], paths[1]


def config(interactions, items, **kw):
    return data_config(interactions=str(interactions), items=str(items), cache_dir="cache", **{**COLUMNS, **kw})


def test_the_example_files_are_what_the_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_bookclub", EXAMPLES / "make_bookclub.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path / "out")
    for name in ("interactions.csv", "items.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (BOOKCLUB / name).read_bytes(), name


def test_the_example_config_opens_with_its_command_and_names_the_files():
    path = EXAMPLES / "bookclub.yaml"
    assert path.read_text(encoding="utf-8").startswith("# linklm run --config examples/bookclub.yaml")
    cfg = load_config(path).data
    assert (EXAMPLES.parent / cfg.interactions).is_file() and (EXAMPLES.parent / cfg.items).is_file()
    assert {key: getattr(cfg, key) for key in COLUMNS} == COLUMNS


def test_the_example_reads_as_its_files_say():
    ml = open_dataset(config(BOOKCLUB / "interactions.csv", BOOKCLUB / "items.csv"))
    reads, books = pd.read_csv(BOOKCLUB / "interactions.csv"), pd.read_csv(BOOKCLUB / "items.csv")
    s = ml.summary()
    assert (s["users"], s["movies"], s["ratings"]) == (reads["reader"].nunique(), len(books), len(reads))
    # The item text is the chosen columns in order, after the ids: the seed's llm_df, generalised.
    assert [c for c in ml.llm_df.columns if c.startswith("prompt_feature_")] == [
        "prompt_feature_title", "prompt_feature_author", "prompt_feature_genres"]  # fmt: skip
    row = ml.llm_df.iloc[0]
    book = books.set_index("book").loc[row["target_id"]]
    assert row["prompt_feature_title"] == book["title"] and row["prompt_feature_genres"] == book["genres"]
    # A `genres` column also gives the GNN one-hot item features: one per shelf.
    shelves = {g for cell in books["genres"] for g in cell.split("|")}
    x = ml.target_features()
    assert x.shape == (len(books), len(shelves)) and (x.sum(1) >= 1).all()


def test_prompt_ids_equal_full_string_tokenisation(tmp_path):
    ml = InteractionsManager(config(*small_tables(tmp_path / "books")))
    tokenizer = load_tokenizer("random:L2-H32")
    builder = PromptBuilder(NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df), "vanilla")
    src, dst = ml.llm_index["source_idx"].to_numpy()[:50], ml.llm_index["target_idx"].to_numpy()[:50]
    texts = builder.text(src, dst, "train")
    row = ml.llm_df.iloc[0]
    assert texts[0] == "[SEP]".join([row["source_id"], row["target_id"], row["prompt_feature_title"],
                                     row["prompt_feature_author"], row["prompt_feature_genres"]])  # fmt: skip
    batch = builder.batch(src, dst, "train")
    lengths = batch["attention_mask"].sum(1).tolist()
    for i, ids in enumerate(tokenizer(texts)["input_ids"]):
        assert batch["input_ids"][i, : lengths[i]].tolist() == ids
    dataset = ml.generate_dataset()  # the seed's DatasetDict: the same prompt text
    assert dataset["train"][0]["prompt"] == texts[0]


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_every_format_gives_the_same_tables(tmp_path, suffix):
    csv = InteractionsManager(config(*small_tables(tmp_path / "csv")))
    other = InteractionsManager(config(*small_tables(tmp_path / "other", suffix)))
    for name in ("source_df", "target_df", "edge_df", "neg_df"):
        assert getattr(csv, name).equals(getattr(other, name)), name
    reads = pd.read_csv(tmp_path / "csv" / "interactions.csv")
    assert csv.summary()["ratings"] == len(reads.drop_duplicates()) < len(reads)  # a repeated read is one link
    assert csv.llm_df.equals(other.llm_df)


def test_ids_are_integers_only_when_every_one_is(tmp_path):
    items = pd.DataFrame({"item_id": ["7", "12", "30"], "title": ["a", "b", "c"]})
    reads = pd.DataFrame({"user_id": ["1", "2", "3", "1"], "item_id": ["7", "12", "30", "30"]})
    ml = InteractionsManager(data_config(**_written(tmp_path / "ints", reads, items), cache_dir="cache"))
    assert ml.target_df["target_id"].tolist() == [7, 12, 30] and ml.source_df["source_id"].dtype == np.int64
    assert ml.target_features().shape == (3, 1) and not ml.target_features().any()  # no genres: no features
    items["item_id"] = ["007", "12", "30"]  # "007" is text as written: every item id stays text
    reads["item_id"] = ["007", "12", "30", "30"]
    ml = InteractionsManager(data_config(**_written(tmp_path / "text", reads, items), cache_dir="cache"))
    assert sorted(ml.target_df["target_id"]) == ["007", "12", "30"]


def _written(folder: Path, reads: pd.DataFrame, items: pd.DataFrame) -> dict[str, str]:
    folder.mkdir(parents=True)
    reads.to_csv(folder / "reads.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    return {"interactions": str(folder / "reads.csv"), "items": str(folder / "items.csv"), "val_ratio": 0.25,
            "test_ratio": 0.25}  # fmt: skip


def test_cache_key_follows_the_files_and_the_columns(tmp_path):
    inter, items = small_tables(tmp_path / "books")
    first = InteractionsManager(config(inter, items))
    assert InteractionsManager(config(inter, items)).from_cache
    assert InteractionsManager(config(inter, items, text_columns=["title"])).key != first.key
    with open(inter, "a") as fh:
        fh.write("u99,b29\n")
    changed = InteractionsManager(config(inter, items))
    assert not changed.from_cache and changed.key != first.key and changed.summary()["users"] == 41


def test_default_text_columns_are_all_but_the_id(tmp_path, capsys):
    inter, items = small_tables(tmp_path / "books")
    assert main(["data", "--interactions", str(inter), "--items", str(items), "--user-column", "reader",
                 "--item-column", "book"]) == 0  # fmt: skip
    assert "dataset books (built" in capsys.readouterr().out
    folder = next(Path("data").glob("books-*/manifest.json")).parent
    target = pd.read_parquet(folder / "target_df.parquet")
    assert [c for c in target.columns if c.startswith("prompt_feature_")] == [
        "prompt_feature_title", "prompt_feature_author", "prompt_feature_genres"]  # fmt: skip
    assert json.loads((folder / "manifest.json").read_text())["meta"]["layout"] == "tables"


def _append(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line)


def _broken(tmp_path: Path, case: str) -> tuple[list[str], str, str]:
    """CLI arguments for a broken dataset, the file the error must name and the column (or word)."""
    inter, items = small_tables(tmp_path / "books")
    columns = ["--user-column", "reader", "--item-column", "book"]
    named = "interactions.csv"
    if case == "missing file":
        items.unlink()
        named, word = "items.csv", "not found"
    elif case == "unknown extension":
        inter = inter.rename(inter.with_suffix(".xlsx"))
        named, word = "interactions.xlsx", ".xlsx"
    elif case == "unreadable parquet":
        inter = inter.with_suffix(".parquet")
        inter.write_text("not parquet at all")
        named, word = "interactions.parquet", "Parquet"
    elif case == "ragged csv":
        _append(inter, "u1,b01,extra,cells\n")
        word = "CSV"
    elif case in ("missing user column", "missing item column"):
        columns = columns[2:] if case == "missing user column" else columns[:2]
        word = "user_id" if case == "missing user column" else "item_id"
    elif case == "missing text column":
        columns += ["--text-columns", "title,blurb"]
        named, word = "items.csv", "'blurb'"
    elif case == "empty interactions":
        inter.write_text("reader,book\n")
        word = "no interactions"
    elif case == "empty file":
        items.write_text("")
        named, word = "items.csv", "empty"
    elif case == "absent item":
        _append(inter, "u1,b77\n")
        word = "'b77'"
    elif case == "repeated item":
        _append(items, "b03,Again,Someone,history\n")
        named, word = "items.csv", "'b03'"
    elif case == "missing id":
        _append(inter, ",b01\n")
        word = "'reader'"
    else:
        raise AssertionError(case)
    return ["--interactions", str(inter), "--items", str(items), *columns], named, word


CASES = ["missing file", "unknown extension", "unreadable parquet", "ragged csv", "missing user column",
         "missing item column", "missing text column", "empty interactions", "empty file", "absent item",
         "repeated item", "missing id"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_tables_are_one_line_and_write_nothing(tmp_path, capsys, case):
    args, file, word = _broken(tmp_path, case)
    assert main(["data", *args, "data.cache_dir=cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("linklm: error: "), err
    assert file in err and word in err, err
    assert not Path("cache").exists()


@pytest.mark.parametrize(
    "overrides,key",
    [(["data.interactions=a.csv"], "data.items"), (["data.interactions=a.csv", "data.items=b.csv", "data.path=x"],
     "data.path"), (["data.user_column=item_id"], "data.item_column"), (["data.text_columns=[item_id]"],
     "data.text_columns")],
)  # fmt: skip
def test_bad_table_config_names_the_key(capsys, overrides, key):
    assert main(["data", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err
