#!/usr/bin/env bash
# The JPEG input path (issue 16): the decoders on the same shard bytes (decode_bench:
# zune-jpeg, libjpeg-turbo whole, libjpeg-turbo region), then the loader with and
# without the region decode and torch_loader.py beside it (scripts/bench.py loader), on
# each JPEG dataset given (e.g. one built with --chroma 444 and one with --chroma 420).
#
#   scripts/bench-jpeg.sh DATASET_DIR... [-- WORKERS [BATCHES]]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
sets=(); while [ $# -gt 0 ] && [ "$1" != -- ]; do sets+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
workers="${1:-1}"; batches="${2:-20}"
[ ${#sets[@]} -gt 0 ] || { echo "usage: $0 DATASET_DIR... [-- WORKERS [BATCHES]]" >&2; exit 2; }
cargo build --release --quiet -p trainer --example decode_bench --example loader_bench
for ds in "${sets[@]}"; do
    echo "== $ds ($(grep -o '"chroma": "[^"]*"' "$ds/dataset.json" || echo 'chroma not recorded'))"
    target/release/examples/decode_bench "$ds" --rows 2000 --reps 3
    for f in "" --no-decode-region; do
        target/release/examples/loader_bench "$ds" --workers "$workers" --batches "$batches" $f | sed -n 1,4p
    done
    "$ALEXNET_PYTHON" scripts/bench.py loader "$ds" --workers "$workers" --batches "$batches"
done
