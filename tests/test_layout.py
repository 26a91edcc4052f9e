"""The package's shape: a lazy top-level import, the seed's names at the top, and size limits."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "linklm"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
# A function kept longer says why on the line before its `def` with this marker.
LONG_MARKER = "# long:"


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_and_help_load_neither_torch_nor_pyg():
    code = (
        "import sys, contextlib, io\n"
        "import linklm\n"
        "assert 'torch' not in sys.modules and 'torch_geometric' not in sys.modules, 'import linklm'\n"
        "from linklm.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'torch_geometric', 'transformers', 'sklearn') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr


def test_importing_and_plotting_change_no_global_setting(tmp_path):
    proc = _fresh_python(
        "import matplotlib, pandas, torch\n"
        "matplotlib.use('svg')\n"
        "pandas.set_option('display.max_columns', 0)\n"
        "state = torch.random.get_rng_state()\n"
        "from linklm import MovieLensManager, VanillaClassifier\n"
        "import linklm.explain.run\n"
        "from linklm.report import plots\n"
        "from linklm.llm.models import build_model\n"
        "build_model('random:L2-H32', 'vanilla', seed=3)\n"
        f"plots.accuracy_bars(['a', 'b'], [0.6, 0.7], None, __import__('pathlib').Path(r'{tmp_path}') / 'a.png')\n"
        "assert pandas.get_option('display.max_columns') == 0\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert torch.equal(torch.random.get_rng_state(), state), 'build_model reseeded the global RNG'\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_the_seed_names_import_from_the_top():
    proc = _fresh_python(
        "from linklm import MovieLensManager, GraphRepresentationGenerator, VanillaClassifier, "
        "PromptClassifier, EmbeddingClassifier, UserError\n"
        "from linklm.llm import VanillaClassifier as V\n"
        "assert V is VanillaClassifier\n"
        "import linklm\n"
        "assert set(linklm.__all__) <= set(dir(linklm))\n"
        "try:\n"
        "    linklm.NoSuchThing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('unknown names must raise AttributeError')\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_files_and_functions_stay_small():
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) > MAX_FILE_LINES:
            too_long.append(f"{path.name}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            explained = first >= 2 and LONG_MARKER in lines[first - 2]
            if length > MAX_FUNCTION_LINES and not explained:
                too_long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
