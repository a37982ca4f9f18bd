#!/usr/bin/env bash
# The GPU session's one prepared check: CUDA-marked tests, then the benchmark on CUDA.
# Usage (repository root, on a machine with a CUDA GPU): bash scripts/device_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -m pytest -q -m cuda tests 2>&1 | tail -n 15
python scripts/benchmark.py --device cuda --repeats 1 \
    --tasks single,pack,seed-grid,seed-random,random-1000
