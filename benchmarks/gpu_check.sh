#!/usr/bin/env bash
# The GPU check: paper-preset generation and training figures (JSON) and the CUDA test subset, in <= 8 minutes on
# one GPU. Needs a CUDA build of torch in .venv (see README: GPU machines). Prints JSON, then the pytest summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
timeout 420 "$PY" benchmarks/gpu_check.py
timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda.py
