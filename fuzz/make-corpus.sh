#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ with valid inputs made by the project's own tools: a tiny
# dataset (manifest dataset.json, mean image, a JPEG and a raw shard), the synthetic archives (a tar,
# Kaggle's zip, the devkit's meta.mat) and the scipy-written meta.mat fixtures.
#
#   bash fuzz/make-corpus.sh      # from anywhere; uses the workspace's preprocess
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/setup.sh >/dev/null
cargo build --quiet -p preprocess
bin="$root/target/debug/preprocess"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
c="$root/fuzz/corpus"
mkdir -p "$c"/{manifest,npy,shard_jpeg,shard_mixed,shard_raw,tar_index,zip_index,meta_mat}
"$bin" synth --output "$work/img" --classes 3 --train-per-class 4 --val-per-class 2 --corrupt 0 --sides 40:90 >/dev/null
"$bin" build --input "$work/img" --output "$work/raw" --shard-rows 2 --quiet >/dev/null
"$bin" build --input "$work/img" --output "$work/jpeg" --shard-rows 4 --encoding jpeg --quiet >/dev/null
"$bin" build --input "$work/img" --output "$work/mixed" --shard-rows 4 --encoding jpeg --raw-fraction 0.5 --quiet >/dev/null
cp "$work/jpeg/dataset.json" "$c/manifest/jpeg.json"
cp "$work/raw/dataset.json" "$c/manifest/raw.json"
cp "$work"/raw/*.npy "$c/npy/"
find "$work/jpeg" -name '*.parquet' | head -3 | while read -r f; do cp "$f" "$c/shard_jpeg/$(basename "$f")"; done
find "$work/mixed" -name '*.parquet' | head -2 | while read -r f; do cp "$f" "$c/shard_mixed/$(basename "$f")"; done
find "$work/raw" -name '*.parquet' | head -2 | while read -r f; do cp "$f" "$c/shard_raw/$(basename "$f")"; done
"$bin" synth --output "$work/arch" --layout archives --classes 2 --train-per-class 2 --val-per-class 1 --corrupt 0 \
    --sides 40:60 >/dev/null
find "$work/arch" -name '*.tar' -exec cp {} "$c/tar_index/" \;
find "$work/arch" -name '*.zip' -exec cp {} "$c/zip_index/" \;
for t in "$work"/arch/*devkit*.tar.gz; do
    tar -xzf "$t" -C "$work" --wildcards '*meta.mat' && find "$work" -name meta.mat -exec cp {} "$c/meta_mat/synth.mat" \;
done
cp preprocess/tests/data/*.mat "$c/meta_mat/"
for d in "$c"/*; do echo "$(basename "$d"): $(ls "$d" | wc -l) file(s)"; done
