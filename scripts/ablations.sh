#!/usr/bin/env bash
# The paper's experiment switches, one at a time, against the baseline (README,
# "Ablations"): the baseline config, then activation tanh (3.1), LRN off (3.3),
# non-overlapping pooling (3.4), the one-tower net (3.2), PCA colour noise off (4.1)
# and dropout 0 (4.2), each with SEEDS seeds; then `train compare --by-seed` (mean and
# spread per variant, the difference from the baseline, the paper's claim) into
# OUT/ablations.md, every run side by side into OUT/runs.md and their curves into
# OUT/ablations.png.
#
#   scripts/ablations.sh DATASET_DIR [EPOCHS [SEEDS]] [TRAIN_RUN_FLAGS...]
#
# EPOCHS: the config's when absent or 0; SEEDS: 3. CONFIG (environment): the preset,
# configs/demo.toml by default; OUT: DATASET_DIR/../ablations. Other flags go to every
# `train run` (--set model.width=0.125, --device cuda, --threads N). A run that
# finished is kept on a rerun; an unfinished one starts again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: $0 DATASET_DIR [EPOCHS [SEEDS]] [TRAIN_RUN_FLAGS...]"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
data="$1"; shift
epochs=0; seeds=3
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then epochs="$1"; shift; fi
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then seeds="$1"; shift; fi
config="${CONFIG:-$root/configs/demo.toml}"
out="${OUT:-$(dirname "$data")/ablations}"
source "$root/scripts/run_common.sh"
alexnet_env "$root"
extra=("$@")
[ "$epochs" = 0 ] || extra+=(--set "optim.epochs=$epochs")
alexnet_has_flag --threads "$@" || extra+=(--threads "$(nproc)")
variants=(
    "baseline:"
    "tanh:model.activation=tanh"
    "nolrn:model.lrn=false"
    "pool2:model.pooling=non-overlapping"
    "1tower:model.towers=1"
    "nopca:data.pca_noise=false"
    "nodropout:model.dropout=0.0"
)
mkdir -p "$out"
runs=()
start=$SECONDS
for v in "${variants[@]}"; do
    name="${v%%:*}"; set_kv="${v#*:}"
    for seed in $(seq 1 "$seeds"); do
        dir="$out/$name-seed$seed"
        runs+=("$dir")
        [ -f "$dir/finished" ] && continue
        rm -rf "$dir"
        sets=(--set "run.seed=$seed")
        [ -z "$set_kv" ] || sets+=(--set "$set_kv")
        echo "$0: $name seed $seed ($((SECONDS - start)) s so far)" >&2
        "$ALEXNET_TRAIN" run --config "$config" --data "$data" --run-dir "$dir" "${sets[@]}" "${extra[@]}" \
            >"$dir.log" 2>&1 || { echo "$0: $dir failed: see $dir.log" >&2; tail -3 "$dir.log" >&2; exit 1; }
        touch "$dir/finished"
    done
done
"$ALEXNET_TRAIN" compare "${runs[@]}" --by-seed >"$out/ablations.md"
"$ALEXNET_TRAIN" compare "${runs[@]}" --plot "$out/ablations.png" >"$out/runs.md"
echo "$0: ${#runs[@]} runs in $((SECONDS - start)) s; $out/ablations.md:" >&2
cat "$out/ablations.md"
