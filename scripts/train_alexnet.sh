#!/usr/bin/env bash
# The paper's run on real ImageNet (one process; see the README for the numbers to
# expect). Rerun the same command after an interruption: it resumes.
#   scripts/train_alexnet.sh DATASET_DIR RUN_DIR [cuda|cpu] [configs/alexnet-paper.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
data="$1"; run="$2"; device="${3:-cuda}"; config="${4:-configs/alexnet-paper.toml}"
cargo build --release --quiet -p trainer
# A fresh start takes the preset; a rerun resumes with the run's saved config.toml
# (which keeps any change made on an earlier resume, e.g. --set optim.epochs=120).
# Extra arguments go to `train run` (e.g. --set optim.epochs=120).
start=(--config "$config")
[ -d "$run/checkpoints" ] && start=(--resume)
exec target/release/train run --data "$data" --run-dir "$run" --device "$device" "${start[@]}" "${@:5}"
