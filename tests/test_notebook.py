"""The notebook retracing the seed runs top to bottom on a tiny configuration."""

import json
from pathlib import Path

from synthetic import write_layout

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "training_and_evaluation.ipynb"


def test_notebook_runs_on_a_tiny_config(tmp_path, monkeypatch):
    syn = write_layout(tmp_path / "ml-synth", "csv")
    monkeypatch.setenv("LINKLM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("LINKLM_NOTEBOOK_DATA", str(syn.folder))
    monkeypatch.setenv("LINKLM_NOTEBOOK_ROOT", str(tmp_path / "nb"))
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)  # noqa: S102
    table = namespace["comparison"]
    assert list(table.index) == ["vanilla", "prompt", "embedding"]
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
    assert "[SEP]" in namespace["dataset_prompt"]["train"][0]["prompt"]
