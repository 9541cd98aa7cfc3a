#!/usr/bin/env bash
# Scoring speed: `eval score --crops ten` (release) against
# ../shared/anchors/torch_eval_tencrop.py on the same dataset, the same checkpoint and
# the same thread count, side by side (scripts/bench.py eval), for the full-size paper network (227, with
# metadata) and torchvision's owt network (224, an export without metadata). The
# checkpoints are made here with seeded random weights (speed does not depend on them).
# Usage: scripts/bench-eval.sh [DATASET_DIR] [THREADS] [IMAGES] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ds="${1:-data/demo/dataset}"; threads="${2:-$(nproc)}"; images="${3:-192}"; batch="${4:-16}"
[ -f "$ds/dataset.json" ] || { echo "bench-eval: no dataset in $ds (run scripts/demo.sh, or give one)" >&2; exit 1; }
cargo build --release --quiet -p eval
cargo build --release --quiet -p trainer --example make_checkpoint
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
# Seeded random weights written by the trainer's own checkpoint writer: the paper net
# with its metadata for this dataset, owt as an export without metadata.
target/release/examples/make_checkpoint --model paper --data "$ds" --out "$work/paper.safetensors" >/dev/null
target/release/examples/make_checkpoint --model owt --data "$ds" --out "$work/owt.safetensors" --no-metadata >/dev/null
echo "== $ds: $images val images, ten crops, batch $batch images, $threads intra-op thread(s), $(nproc) core(s)"
"$ALEXNET_PYTHON" scripts/bench.py eval "$ds" --checkpoint "paper=$work/paper.safetensors" \
    --checkpoint "owt=$work/owt.safetensors" --threads "$threads" --images "$images" --batch "$batch"
