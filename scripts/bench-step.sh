#!/usr/bin/env bash
# The training step alone: trainer's step_bench (the trainer's own step) against
# ../shared/anchors/torch_alexnet_step.py, same model, batch, threads and device, side
# by side, in float32, bf16 autocast (--amp) and channels-last, both models; the two
# alternate, so a busy machine slows both alike (scripts/bench.py step).
# Usage: scripts/bench-step.sh [DEVICE] [BATCH] [STEPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
device="${1:-cpu}"; batch="${2:-128}"; steps="${3:-5}"; threads="${4:-$(nproc)}"
[ -x target/release/examples/step_bench ] && [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet -p trainer --example step_bench
echo "== $(nproc) core(s), $threads thread(s), device $device, batch $batch, $steps timed steps after 2"
exec "$ALEXNET_PYTHON" scripts/bench.py step --device "$device" --batch "$batch" --steps "$steps" --threads "$threads"
