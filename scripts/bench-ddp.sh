#!/usr/bin/env bash
# Data-parallel step time with the gradient all-reduce overlapped with the backward pass
# (c10d's Reducer, `dist.overlap = true`) and after it (`dist.overlap = false`): two
# ranks under torchrun on this machine, the paper model at full size, alternating.
# Usage: scripts/bench-ddp.sh DATASET [BATCH_PER_RANK] [STEPS] [ROUNDS] [DEVICE]
# DATASET: a built dataset with 227-pixel crops possible (scripts/demo.sh makes one).
# Prints seconds per step (median over steps 3..STEPS) for each mode and round.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
data="${1:?usage: scripts/bench-ddp.sh DATASET [BATCH_PER_RANK] [STEPS] [ROUNDS] [DEVICE]}"
batch="${2:-16}"; steps="${3:-8}"; rounds="${4:-2}"; device="${5:-cpu}"
[ -x target/release/train ] && [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet -p trainer --bin train
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
for overlap in true false; do
    sed -e "s/^batch_size = .*/batch_size = $batch/" -e 's/^workers = .*/workers = 1/' \
        -e 's/^prefetch = .*/prefetch = 2/' -e 's/^log_every_steps = .*/log_every_steps = 1/' \
        -e 's/^checkpoint_minutes = .*/checkpoint_minutes = 600.0/' configs/alexnet-paper.toml > "$work/$overlap.toml"
    printf '\n[dist]\nlr_scaling = "none"\nwarmup_epochs = 0.0\ntimeout_s = 120.0\nbucket_mb = 25.0\noverlap = %s\n' \
        "$overlap" >> "$work/$overlap.toml"
done
threads=$(( $(nproc) / 2 )); [ "$threads" -ge 1 ] || threads=1
echo "== $(nproc) core(s), 2 ranks x $threads thread(s), device $device, paper model, batch $batch per rank, steps 3..$steps"
for round in $(seq "$rounds"); do
    for overlap in true false; do
        run="$work/run-$overlap-$round"
        torchrun --standalone --nproc-per-node 2 --no-python target/release/train run \
            --config "$work/$overlap.toml" --data "$data" --run-dir "$run" --device "$device" \
            --threads "$threads" --max-steps "$steps" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
        "$ALEXNET_PYTHON" - "$run/metrics.jsonl" "$overlap" "$round" <<'PY'
import json, statistics, sys
t = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
dt = [b["time"] - a["time"] for a, b in zip(t, t[1:])][1:]  # from step 3 on
print(f"round {sys.argv[3]} overlap={sys.argv[2]}: {statistics.median(dt):.3f} s/step (median of {len(dt)})")
PY
    done
done
