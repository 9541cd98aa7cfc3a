#!/usr/bin/env bash
# Dataset build from the downloaded archives, read in place (tar index + memory map),
# against the same images unpacked into folders, side by side with the same threads;
# then the index pass alone on an archive of 100,000 members.
# Usage: scripts/bench-archives.sh [THREADS] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
images="${2:-4000}"
dir="${BENCH_DIR:-data/bench-archives}"
cargo build --release --quiet -p preprocess
bin=target/release/preprocess
per=$((images / 10))
# The same ImageNet-like images (JPEG q90, sides 300..500) in both layouts, byte for byte.
rm -rf "$dir/folders" "$dir/archives"
for layout in folders archives; do
    "$bin" synth --layout "$layout" --output "$dir/$layout" --classes 10 --train-per-class "$per" \
        --val-per-class 10 --corrupt 0 --sides 300:500 >/dev/null
done
echo "== $images train + 100 val images, $threads thread(s), $(nproc) core(s):$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "   folders: $(du -sh "$dir/folders" | cut -f1), archives: $(du -ch "$dir"/archives/*.tar "$dir"/archives/*.tar.gz | tail -1 | cut -f1) (inputs in the page cache on both sides)"
warm() { find "$1" -type f -exec cat {} + >/dev/null; }
rate() { grep -o '([0-9.]* images/s' "$1" | tr -d '(' | cut -d' ' -f1; }
# CPU seconds (user + system) of a build: on a shared machine, steadier than the wall clock.
cpu() { awk '{ printf "%.2f", $1 + $2 }' "$1"; }
n=$((per * 10 + 100))
# Three rounds, alternating the two sides (on a busy machine the load moves); the
# median of each side is reported.
rf=(); ra=(); cf=(); ca=()
for round in 1 2 3; do
    for layout in folders archives; do
        warm "$dir/$layout"
        /usr/bin/time -f "%U %S" -o "$dir/$layout.time" "$bin" build --input "$dir/$layout" \
            --output "$dir/out-$layout" --threads "$threads" --overwrite --quiet >"$dir/$layout.txt"
    done
    rf+=("$(rate "$dir/folders.txt")"); ra+=("$(rate "$dir/archives.txt")")
    cf+=("$(echo "scale=0; $n / $(cpu "$dir/folders.time")" | bc)"); ca+=("$(echo "scale=0; $n / $(cpu "$dir/archives.time")" | bc)")
    echo "   round $round: folders ${rf[-1]} images/s (${cf[-1]} per CPU-second), archives ${ra[-1]} images/s" \
        "(${ca[-1]} per CPU-second); load average $(cut -d' ' -f1 /proc/loadavg)"
done
same=yes
for f in "$dir"/out-folders/*.parquet "$dir"/out-folders/mean_image.npy; do
    cmp -s "$f" "$dir/out-archives/$(basename "$f")" || same=no
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
f=$(median "${rf[@]}"); a=$(median "${ra[@]}")
fc=$(median "${cf[@]}"); ac=$(median "${ca[@]}")
echo "-- preprocess build --input $dir/folders --threads $threads (last round)"
cat "$dir/folders.txt"
echo "-- preprocess build --input $dir/archives --threads $threads (last round)"
cat "$dir/archives.txt"
echo "== build (median of 3): archives $a images/s, folders $f images/s: ratio $(echo "scale=2; $a / $f" | bc)"
echo "== per CPU-second (median of 3): archives $ac, folders $fc: ratio $(echo "scale=2; $ac / $fc" | bc); shards byte-identical: $same"

# What the folder build needs first when ImageNet comes as archives: unpacking them (the
# usual recipe: the outer tar, then each class tar into its folder; val flat).
rm -rf "$dir/unpacked"
mkdir -p "$dir/unpacked/train" "$dir/unpacked/val"
warm "$dir/archives"
t0=$(date +%s.%N)
tar -xf "$dir/archives/synth_img_train.tar" -C "$dir/unpacked/train"
for t in "$dir"/unpacked/train/*.tar; do
    mkdir -p "${t%.tar}" && tar -xf "$t" -C "${t%.tar}" && rm "$t"
done
tar -xf "$dir/archives/synth_img_val.tar" -C "$dir/unpacked/val"
sync
t1=$(date +%s.%N)
echo "== unpacking the archives for the folder build (tar -xf, then sync): $(echo "scale=2; ($t1 - $t0) / 1" | bc) s" \
    "for $n images: $(echo "scale=0; $n / ($t1 - $t0)" | bc) images/s"
rm -rf "$dir/unpacked"

# The index pass on 100 class tars of 1000 small images each (the build then decodes
# one image per class): the walk over 100,100 tar headers, outer and inner.
rm -rf "$dir/index"
"$bin" synth --layout archives --output "$dir/index" --classes 100 --train-per-class 1000 --val-per-class 0 \
    --corrupt 0 --sides 16:24 >/dev/null
warm "$dir/index"
"$bin" build --input "$dir/index" --output "$dir/out-index" --threads "$threads" --limit-per-class 1 \
    --overwrite --quiet | tee "$dir/index.txt" | grep 'members indexed'
