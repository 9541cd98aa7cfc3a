#!/usr/bin/env bash
# Every GPU measurement the project reports, in one run, on a machine with torch 2.11.0
# (CUDA) and no cargo: the binaries and anchors come from gpu-kit/ (scripts/gpu-kit.sh,
# run where cargo builds). The parts are `scripts/bench.py gpu`: each has a time limit;
# a part that fails is reported and the others still run.
#
# Usage (repo root): scripts/gpu-bench.sh [RESULTS_DIR] [bench.py gpu flags...]
# Writes RESULTS_DIR (default gpu-results/): summary.txt (one line per figure),
# results.json (every figure) and log.txt (every command and its output). PY: the python
# with torch (python3). Sizes default to an H200's; a dry run of the plumbing on a CPU
# machine, about 3 minutes:
#   PY=.venv/bin/python scripts/gpu-bench.sh /tmp/gpu-dry --device cpu --classes 3 --per-class 100 \
#     --val-per-class 4 --batch 8 --steps 1 --warmup 1 --e2e-steps 30 --eval-images 12 --loader-batches 5
#
# Parts: the dataset build's rate; the training step of both models in fp32, bf16
# autocast and channels-last, against torch_alexnet_step.py; training end to end
# (loader, shards on disk) against the synthetic-input step; the NCCL path at one rank
# (check-dist, all-reduce of 233 MiB, a training run under torchrun against the plain
# one); ten-crop scoring (fp32 and bf16) against torch_eval_tencrop.py; the loader
# against torch_loader.py, on raw shards and on JPEG shards (4:4:4 and 4:2:0).
set -euo pipefail
cd "$(dirname "$0")/.."
R="${1:-gpu-results}"; shift || true
K="$(pwd)/gpu-kit"
PY="${PY:-python3}"
[ -x "$K/bin/train" ] || { echo "gpu-bench: no binaries in $K/bin: run scripts/gpu-kit.sh where cargo builds, and carry gpu-kit" >&2; exit 2; }
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
    echo "gpu-bench: $PY has no torch" >&2; exit 2; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$(dirname "$(command -v "$PY")"):$PATH"   # torchrun beside that python
export PYTHONUNBUFFERED=1 BENCH_BIN="$K/bin" ANCHORS="$K/anchors" ALEXNET_PYTHON="$PY"
mkdir -p "$R"
exec "$PY" scripts/bench.py --json "$R/results.json" gpu --out "$R" "$@"
