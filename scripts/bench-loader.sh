#!/usr/bin/env bash
# Input pipeline speed: trainer's loader (loader_bench) against
# ../shared/anchors/torch_loader.py on the same dataset with the same workers, side by
# side: random 227 crop, flip, PCA noise, mean-RGB subtraction, float batch of 128 on
# the CPU (scripts/bench.py loader). Usage: scripts/bench-loader.sh DATASET_DIR [WORKERS] [BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ds="$1"; workers="${2:-$(nproc)}"; batches="${3:-30}"
cargo build --release --quiet -p trainer --example loader_bench
echo "== $ds, $workers worker(s), $(nproc) core(s)"
# What checking every row's bytes costs (CRC-32C, on by default): the loader with and without it.
for checks in "" --no-row-checks; do
    target/release/examples/loader_bench "$ds" --workers "$workers" --batches "$batches" $checks | sed -n 1,4p
done
exec "$ALEXNET_PYTHON" scripts/bench.py loader "$ds" --workers "$workers" --batches "$batches"
