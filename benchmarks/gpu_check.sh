#!/usr/bin/env bash
# The device check (benchmarks/gpu_check.py; docs/benchmarks.md, "Device check"):
#   benchmarks/gpu_check.sh --out gpu_check/                     # one GPU, within 8 minutes
#   benchmarks/gpu_check.sh --device cpu --fast --out /tmp/gc    # any machine, under a minute
# Python: $PYTHON, else this checkout's .venv, else python3.
# Rows go to OUT/gpu_check.jsonl; the exit status is 1 when a row failed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
# This checkout's package, whatever is installed.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Idle OpenMP threads sleep rather than spin: the step shares the cores with loader workers
# (benchmarks/omp_wait.py; the motionmae command sets the same).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# One GPU: the first, unless the caller chose another.
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
export TQDM_DISABLE=1
exec "$PYTHON" "$ROOT/benchmarks/gpu_check.py" "$@"
