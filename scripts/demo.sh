#!/usr/bin/env bash
# The demo, end to end on the built-in procedural data: make it, build it into shards,
# verify them, train the quarter-width paper network on them (configs/demo.toml), print
# the validation top-1/top-5, score the last checkpoint with the paper's ten crops and
# draw its conv1 kernels. Output in ${DEMO_DIR:-data/demo}. Safe to rerun (the build
# resumes; the training run starts afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet -p preprocess -p trainer -p eval
bin=target/release
dir="${DEMO_DIR:-data/demo}"
"$bin/preprocess" synth --output "$dir/images"
"$bin/preprocess" build --input "$dir/images" --output "$dir/dataset" --shard-rows 256
"$bin/preprocess" verify "$dir/dataset"
rm -rf "$dir/run"
"$bin/train" run --config configs/demo.toml --data "$dir/dataset" --run-dir "$dir/run" --threads "$(nproc)"
ckpt="$(ls "$dir"/run/checkpoints/epoch-*.safetensors | grep -v '\.optim\.' | tail -1)"
"$bin/eval" score --checkpoint "$ckpt" --data "$dir/dataset" --crops ten --threads "$(nproc)" --json "$dir/scores.json"
"$bin/eval" kernels --checkpoint "$ckpt" --out "$dir/kernels.png"
