#!/usr/bin/env bash
# The paper's run on real ImageNet (one process; see the README for the numbers to
# expect). Rerun the same command after an interruption: it resumes.
#   scripts/train_alexnet.sh DATASET_DIR RUN_DIR [cuda|cpu] [configs/alexnet-paper.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
data="$1"; run="$2"; device="${3:-cuda}"; config="${4:-configs/alexnet-paper.toml}"
cargo build --release --quiet -p trainer
resume=()
[ -d "$run/checkpoints" ] && resume=(--resume)
exec target/release/train run --config "$config" --data "$data" --run-dir "$run" --device "$device" "${resume[@]}"
