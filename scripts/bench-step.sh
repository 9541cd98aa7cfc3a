#!/usr/bin/env bash
# The training step alone: trainer's step_bench against
# ../shared/anchors/torch_alexnet_step.py, same model, batch, threads and device, side
# by side, in float32, bf16 autocast (--amp) and channels-last, both models.
# Usage: scripts/bench-step.sh [DEVICE] [BATCH] [STEPS] [THREADS]
# The anchor and the Rust step alternate, so a busy machine slows both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
device="${1:-cpu}"; batch="${2:-128}"; steps="${3:-5}"; threads="${4:-$(nproc)}"
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
[ -x target/release/examples/step_bench ] && [ "${BUILD:-1}" = 0 ] || cargo build --release --quiet -p trainer --example step_bench
echo "== $(nproc) core(s), $threads thread(s), device $device, batch $batch, $steps timed steps after 2"
for model in paper owt; do
    for mode in "" "--amp" "--channels-last"; do
        common=(--model "$model" --batch "$batch" --steps "$steps" --warmup 2 --threads "$threads" --device "$device")
        # shellcheck disable=SC2086
        a=$("$ALEXNET_PYTHON" "$anchors/torch_alexnet_step.py" "${common[@]}" $mode)
        # shellcheck disable=SC2086
        r=$(target/release/examples/step_bench "${common[@]}" $mode)
        am=$(grep -o '[0-9.]* ms/step' <<<"$a" | cut -d' ' -f1)
        rm=$(grep -o '[0-9.]* ms/step' <<<"$r" | cut -d' ' -f1)
        echo "$model ${mode:-fp32}: anchor $am ms/step, rust $rm ms/step, ratio $(echo "scale=3; $rm / $am" | bc)"
    done
done
