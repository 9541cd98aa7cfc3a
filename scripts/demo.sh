#!/usr/bin/env bash
# The demo, end to end on the built-in procedural data: make it in the layout ImageNet
# is downloaded in (a tar of class tars, a val tar, a devkit .tar.gz with meta.mat), build
# it into shards straight from those archives, verify them, train the quarter-width
# paper network on them (configs/demo.toml), print the validation top-1/top-5, score the
# last checkpoint with the paper's ten crops, draw its conv1 kernels and the nearest
# train images of 4 val images by fc7. Output in ${DEMO_DIR:-data/demo}. Safe to rerun
# (the build resumes; the training run starts afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet -p preprocess -p trainer -p eval
bin=target/release
dir="${DEMO_DIR:-data/demo}"
"$bin/preprocess" synth --layout archives --output "$dir/downloads"
"$bin/preprocess" build --input "$dir/downloads" --output "$dir/dataset" --shard-rows 256
"$bin/preprocess" verify "$dir/dataset"
rm -rf "$dir/run"
"$bin/train" run --config configs/demo.toml --data "$dir/dataset" --run-dir "$dir/run" --threads "$(nproc)"
ckpt="$(ls "$dir"/run/checkpoints/epoch-*.safetensors | grep -v '\.optim\.' | tail -1)"
"$bin/eval" score --checkpoint "$ckpt" --data "$dir/dataset" --crops ten --threads "$(nproc)" --json "$dir/scores.json"
"$bin/eval" kernels --checkpoint "$ckpt" --out "$dir/kernels.png"
"$bin/eval" neighbors --checkpoint "$ckpt" --data "$dir/dataset" --queries 4 --k 6 --threads "$(nproc)" \
    --out "$dir/neighbors.png" --list "$dir/neighbors.csv"
