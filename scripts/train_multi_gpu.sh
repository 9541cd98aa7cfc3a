#!/usr/bin/env bash
# Data-parallel training on one machine: one rank per GPU, started by torchrun (README,
# "Data-parallel training"). Rerun the same command after an interruption: it resumes
# (with the same number of GPUs).
#   scripts/train_multi_gpu.sh DATASET_DIR RUN_DIR [NGPUS] [configs/alexnet-paper.toml]
# NGPUS: every visible GPU by default. optim.batch_size is per GPU (global batch =
# batch_size x NGPUS); see [dist] in the config for learning-rate scaling and warm-up.
# Where cargo is installed the binary is built first; on a machine with only torch,
# target/release/train must have been built elsewhere and copied here.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 DATASET_DIR RUN_DIR [NGPUS] [CONFIG]" >&2; exit 2; }
data="$1"; run="$2"; ngpus="${3:-}"; config="${4:-configs/alexnet-paper.toml}"
if command -v cargo >/dev/null; then
    source scripts/setup.sh
    cargo build --release --quiet -p trainer
else
    py="${ALEXNET_PYTHON:-python3}"
    torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" \
        || { echo "$0: no cargo and no Python with torch ($py): set ALEXNET_PYTHON" >&2; exit 1; }
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PATH="$(dirname "$(command -v "$py")"):$PATH" # torchrun
fi
[ -x target/release/train ] || { echo "$0: no target/release/train: build it with cargo build --release -p trainer" >&2; exit 1; }
if [ -z "$ngpus" ]; then
    ngpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    [ "$ngpus" -ge 1 ] || { echo "$0: no GPU visible (nvidia-smi -L): give NGPUS" >&2; exit 1; }
fi
# A fresh start takes the preset; a rerun resumes with the run's saved config.toml
# (which keeps any change made on an earlier resume, e.g. --set optim.epochs=120).
# Extra arguments go to `train run` (e.g. --set optim.epochs=120).
start=(--config "$config")
[ -d "$run/checkpoints" ] && start=(--resume)
exec torchrun --standalone --nproc-per-node "$ngpus" --no-python \
    target/release/train run --data "$data" --run-dir "$run" --device cuda "${start[@]}" "${@:5}"
