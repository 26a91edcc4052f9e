import pytest

from linklm import GraphRepresentationGenerator, MovieLensManager
from linklm.llm.models import load_tokenizer

from synthetic import write_layout

TINY = "random:L2-H32"  # a randomly initialised 2-layer BERT with the MiniLM tokenizer: no downloads


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(TINY)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A synthetic MovieLens (quoted commas, non-ASCII titles) and a GNN trained on it."""
    root = tmp_path_factory.mktemp("tiny")
    syn = write_layout(root / "ml-synth", "csv", n_users=40, n_movies=30, n_ratings=500)
    ml = MovieLensManager(path=syn.folder, cache_dir=str(root / "cache"))
    gen = GraphRepresentationGenerator(
        ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=4, hidden_channels=8, epochs=5,
        cache_dir=root / "gnn",
    )  # fmt: skip
    gen.train_model(progress=False, log=lambda _: None)
    return ml, gen
