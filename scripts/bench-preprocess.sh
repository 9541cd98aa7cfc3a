#!/usr/bin/env bash
# Dataset build speed: `preprocess build` against ../shared/anchors/pillow_preprocess.py
# on the same images with the same number of cores, side by side; then the shard
# reader's random access. Usage: scripts/bench-preprocess.sh [THREADS] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
threads="${1:-$(nproc)}"
images="${2:-2000}"
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
dir="${BENCH_DIR:-data/bench}"
cargo build --release --quiet -p preprocess
cargo build --release --quiet -p alexnet-shared --example read_bench
bin=target/release
# ImageNet-like inputs: JPEG q90, sides 300..500 (ImageNet averages about 400x350).
"$bin/preprocess" synth --output "$dir/images" --classes 10 --train-per-class $((images / 10)) \
    --val-per-class 0 --corrupt 0 --sides 300:500 >/dev/null
echo "== $images images, $threads thread(s), $(nproc) core(s): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
sync
echo "-- anchor: pillow_preprocess.py --procs $threads"
"$ALEXNET_PYTHON" "$anchors/pillow_preprocess.py" "$dir/images" "$dir/anchor.parquet" --procs "$threads" | tee "$dir/anchor.txt"
echo "-- preprocess build --threads $threads"
"$bin/preprocess" build --input "$dir/images" --output "$dir/ours" --threads "$threads" --overwrite --quiet | tee "$dir/ours.txt"
a=$(grep -o '[0-9.]* images/s' "$dir/anchor.txt" | cut -d' ' -f1)
o=$(grep -o '([0-9.]* images/s' "$dir/ours.txt" | tr -d '(' | cut -d' ' -f1)
echo "== build: preprocess $o images/s, anchor $a images/s: ratio $(echo "scale=2; $o / $a" | bc)"
echo "-- shard reader (random order)"
"$bin/examples/read_bench" "$dir/ours" 3
