#!/usr/bin/env bash
# The GPU check: the CUDA test subset, then paper-preset generation and training figures (JSON), in <= 8 minutes on
# one GPU. Needs a CUDA build of torch (PYTHON, default .venv/bin/python; see README: GPU machines). Each figure is
# printed as it is measured; GPU_CHECK_JSON (optional) names a file that holds the JSON so far.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 1
timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="" tests/model/test_cuda.py
tests=$?
timeout 420 "$PY" benchmarks/gpu_check.py
check=$?
exit $(( tests != 0 ? tests : check ))
