#!/usr/bin/env bash
# Data-parallel step time with the gradient all-reduce overlapped with the backward pass
# (c10d's Reducer, `dist.overlap = true`) and after it (`dist.overlap = false`): two
# ranks under torchrun on this machine, the paper model at full size, alternating
# (scripts/bench.py ddp; the run's settings are `train run --set` overrides).
# Usage: scripts/bench-ddp.sh DATASET [BATCH_PER_RANK] [STEPS] [ROUNDS] [DEVICE]
# DATASET: a built dataset with 227-pixel crops possible (scripts/demo.sh makes one).
# Prints seconds per step (median over steps 3..STEPS) for each mode and round.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
data="${1:?usage: scripts/bench-ddp.sh DATASET [BATCH_PER_RANK] [STEPS] [ROUNDS] [DEVICE]}"
batch="${2:-16}"; steps="${3:-8}"; rounds="${4:-2}"; device="${5:-cpu}"
[ -x target/release/train ] && [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet -p trainer --bin train
echo "== $(nproc) core(s), 2 ranks x $(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )) thread(s), device $device, paper model, batch $batch per rank, steps 3..$steps"
exec "$ALEXNET_PYTHON" scripts/bench.py ddp "$data" --batch "$batch" --steps "$steps" --rounds "$rounds" --device "$device"
