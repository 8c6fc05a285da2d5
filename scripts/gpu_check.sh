#!/usr/bin/env bash
# The GPU check of issue #29 (scripts/gpu_check.py): DIN and LCN trained with AMP on CUDA and on
# the CPU (samples/s, validation AUC parity within 0.002), a DIN arm served on CUDA (candidates/s).
# Run from the repository root on a machine with one GPU: under 5 minutes.
#   scripts/gpu_check.sh [--device cuda] [--users 2000] [--epochs 1] [--json F]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/gpu_check.py "$@"
