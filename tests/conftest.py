import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so caches and runs never leak between tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINKLM_GROUPLENS_URL", raising=False)
