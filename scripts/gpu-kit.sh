#!/usr/bin/env bash
# Stages what scripts/gpu-bench.sh needs on a GPU machine that has torch but no cargo
# and no network: release binaries (stripped) and the anchors, in gpu-kit/ (ignored by
# git; carry it along with the working tree). Run here, where cargo builds.
# Usage: scripts/gpu-kit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
cargo build --release --quiet -p preprocess -p trainer -p eval --bins
cargo build --release --quiet -p trainer --example step_bench --example loader_bench
# The layout of target/release (examples/ under it), so bench.py finds both with BENCH_BIN.
rm -rf gpu-kit && mkdir -p gpu-kit/bin/examples gpu-kit/anchors
for b in preprocess train eval examples/step_bench examples/loader_bench; do
    cp "target/release/$b" "gpu-kit/bin/$b"
    strip "gpu-kit/bin/$b" 2>/dev/null || true
done
cp "$anchors"/*.py gpu-kit/anchors/
echo "gpu-kit: $(du -sh gpu-kit | cut -f1) in gpu-kit/ ($(cd gpu-kit/bin && ls preprocess train eval examples/* | tr '\n' ' '))"
