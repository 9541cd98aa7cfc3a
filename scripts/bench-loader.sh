#!/usr/bin/env bash
# Input pipeline speed: trainer's loader (loader_bench) against
# ../shared/anchors/torch_loader.py on the same dataset with the same workers, side by
# side: random 227 crop, flip, PCA noise, mean-RGB subtraction, float batch of 128 on
# the CPU. Usage: scripts/bench-loader.sh DATASET_DIR [WORKERS] [BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ds="$1"; workers="${2:-$(nproc)}"; batches="${3:-30}"
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
cargo build --release --quiet -p trainer --example loader_bench
echo "== $ds ($(grep -o '"encoding": "[a-z]*"' "$ds/dataset.json")), $workers worker(s), $(nproc) core(s)"
echo "-- anchor: torch_loader.py --workers $workers"
"$ALEXNET_PYTHON" "$anchors/torch_loader.py" "$ds" --workers "$workers" --batches "$batches" | tee /tmp/bench-loader-anchor.txt
for where in workers device; do
    echo "-- loader_bench --float-in $where"
    target/release/examples/loader_bench "$ds" --workers "$workers" --batches "$batches" --float-in "$where" | tee "/tmp/bench-loader-$where.txt"
done
a=$(tail -1 /tmp/bench-loader-anchor.txt | grep -o '[0-9.]* images/s' | cut -d' ' -f1)
o=$(tail -1 /tmp/bench-loader-workers.txt | grep -o '^[0-9.]*')
echo "== loader (float in workers) $o images/s, anchor $a images/s: ratio $(echo "scale=1; $o / $a" | bc)"
