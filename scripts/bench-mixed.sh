#!/usr/bin/env bash
# Mixed shards (issue 16): from one folder of images in ImageNet's layout, JPEG datasets
# (quality 90) at raw fraction 0 (plain JPEG) and at each fraction given, with their size
# on disk; then, one after the other in one run, loader_bench on each and
# torch_loader.py on the plain JPEG one (same work: random 227 crops, flips, PCA noise, float batches
# of 128), images/s and the ratio to torch_loader.py.
#
#   scripts/bench-mixed.sh IMAGES OUT_DIR CHROMA WORKERS BATCHES FRACTION...
#   e.g. scripts/bench-mixed.sh data/bench/images data/bench/mixed 444 1 20 0.1 0.25 0.5
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 6 ] || { echo "usage: $0 IMAGES OUT_DIR CHROMA WORKERS BATCHES FRACTION..." >&2; exit 2; }
images="$1" out="$2" chroma="$3" workers="$4" batches="$5"; shift 5
source scripts/setup.sh
cargo build --release --quiet -p preprocess -p trainer --example loader_bench
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
build() { # DIR [--raw-fraction F]
    target/release/preprocess build --input "$images" --output "$1" --encoding jpeg --quality 90 \
        --chroma "$chroma" --threads 2 --quiet "${@:2}" >/dev/null
}
build "$out/jpeg$chroma"
for f in "$@"; do build "$out/mixed$chroma-$f" --raw-fraction "$f"; done
mb() { du -sm --apparent-size "$1" | cut -f1; }
# The loader runs first and the anchor last: run right after torch_loader.py, whose
# worker processes take a while to go, the first loader run measured up to 1.5x slow.
# A warm-up run first (discarded): the first run after the builds measured up to 1.5x
# slow in every stage, the crop included.
target/release/examples/loader_bench "$out/jpeg$chroma" --workers "$workers" --batches "$batches" --json >/dev/null
results=()
for ds in "$out/jpeg$chroma" "${@/#/$out/mixed$chroma-}"; do
    results+=("$(target/release/examples/loader_bench "$ds" --workers "$workers" --batches "$batches" --json)")
done
an="$("$ALEXNET_PYTHON" "$anchors/torch_loader.py" "$out/jpeg$chroma" --workers "$workers" --batches "$batches" \
    | grep -o '[0-9.]* images/s' | head -1 | cut -d' ' -f1)"
echo "torch_loader.py on jpeg$chroma ($(mb "$out/jpeg$chroma") MB): $an images/s, $workers worker(s)"
i=0
for ds in "$out/jpeg$chroma" "${@/#/$out/mixed$chroma-}"; do
    "$ALEXNET_PYTHON" -c '
import json, sys
r, an, name, mb = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
s, rate = r["stages_us_per_image"], r["images_per_s"]
dec, crop = s["decode"], s["crop_flip_colour_normalize"]
print(f"{name} ({mb} MB): {rate:.0f} images/s, {rate / an:.2f}x torch_loader.py; per image: "
      f"decode {dec:.0f} us, crop/colour/normalize {crop:.0f} us")
' "${results[$i]}" "$an" "$(basename "$ds")" "$(mb "$ds")"
    i=$((i + 1))
done
