#!/usr/bin/env bash
# Whole-image input pipeline speed: torchvision's ImageFolder + RandomResizedCrop(224)
# pipeline on a folder of source JPEGs (../shared/anchors/torchvision_folder_loader.py)
# against the loader on a whole-image JPEG dataset built from the same folder
# (preprocess build --keep whole --encoding jpeg, shorter side 256), same workers,
# batch 128, side by side (scripts/bench.py whole-loader).
# Usage: scripts/bench-whole-loader.sh FOLDER [WORKERS] [BATCHES]
#   FOLDER holds train/<wnid>/*.JPEG and val/ (scripts/demo.sh's synth folder layout, or
#   ImageNet unpacked); the dataset is built once into FOLDER.whole-jpeg and kept.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
[ $# -ge 1 ] || { echo "usage: scripts/bench-whole-loader.sh FOLDER [WORKERS] [BATCHES]" >&2; exit 2; }
folder="$1"; workers="${2:-$(nproc)}"; batches="${3:-20}"
cargo build --release --quiet -p preprocess --bin preprocess -p trainer --example loader_bench
ds="${folder%/}.whole-jpeg"
target/release/preprocess build --input "$folder" --output "$ds" --keep whole --encoding jpeg --quality 90 --quiet
echo "== $folder ($ds), $workers worker(s), $(nproc) core(s)"
exec "$ALEXNET_PYTHON" scripts/bench.py whole-loader "$folder" "$ds" --workers "$workers" --batches "$batches"
