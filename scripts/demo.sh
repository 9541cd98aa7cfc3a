#!/usr/bin/env bash
# The demo, end to end on the built-in procedural data: make it, build it into shards,
# verify them. Output in ${DEMO_DIR:-data/demo}. Safe to rerun (the build resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet -p preprocess
bin=target/release
dir="${DEMO_DIR:-data/demo}"
"$bin/preprocess" synth --output "$dir/images"
"$bin/preprocess" build --input "$dir/images" --output "$dir/dataset" --shard-rows 256
"$bin/preprocess" verify "$dir/dataset"
