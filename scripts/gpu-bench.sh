#!/usr/bin/env bash
# Every GPU measurement the project reports, in one run, on a machine with torch 2.11.0
# (CUDA) and no cargo: the binaries and anchors come from gpu-kit/ (scripts/gpu-kit.sh,
# run where cargo builds). Each part has a time limit; a part that fails is reported and
# the others still run.
#
# Usage (repo root): scripts/gpu-bench.sh [RESULTS_DIR]       (default gpu-results/)
# Writes RESULTS_DIR/summary.txt (one line per figure) and RESULTS_DIR/log.txt (all
# output). Environment: DEVICE (cuda), PY (python3 with torch), and the sizes below
# (defaults for an H200). A dry run of the plumbing on a CPU machine, about 3 minutes:
#   DEVICE=cpu CLASSES=3 PER_CLASS=100 VAL_PER_CLASS=4 BATCH=8 STEPS=1 WARMUP=1 \
#   E2E_STEPS=30 EVAL_IMAGES=12 LOADER_BATCHES=5 PY=.venv/bin/python scripts/gpu-bench.sh
#
# Parts: the training step of both models in fp32, bf16 autocast and channels-last,
# against torch_alexnet_step.py; training end to end (loader, shards on disk) against
# the synthetic-input step; the NCCL path at one rank (check-dist, all-reduce of 233
# MiB, a training run under torchrun against the plain one); ten-crop scoring (fp32 and
# bf16) against torch_eval_tencrop.py; the loader against torch_loader.py; the dataset
# build's rate.
set -uo pipefail
cd "$(dirname "$0")/.."
R="${1:-gpu-results}"
mkdir -p "$R"
R="$(cd "$R" && pwd)"
K="$(pwd)/gpu-kit"
B="$K/bin"
A="$K/anchors"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python3}"
CORES="$(nproc)"
CLASSES="${CLASSES:-20}"             # synthetic dataset: classes
PER_CLASS="${PER_CLASS:-600}"        # train images per class (one epoch > E2E_STEPS steps)
VAL_PER_CLASS="${VAL_PER_CLASS:-250}"   # 5,000 val images: scoring is timed over all of them
BATCH="${BATCH:-128}"                # the paper's batch
STEPS="${STEPS:-30}"                 # timed steps of the step benchmark (after WARMUP)
WARMUP="${WARMUP:-5}"
E2E_STEPS="${E2E_STEPS:-80}"         # steps of each end-to-end training run (rate from step 20 on)
EVAL_IMAGES="${EVAL_IMAGES:-5000}"     # enough that eval's ring allocation (pinned) is not the figure
LOADER_BATCHES="${LOADER_BATCHES:-40}"
PART_LIMIT="${PART_LIMIT:-240}"      # seconds, per part
WORKERS="${WORKERS:-$(( CORES > 4 ? CORES - 2 : 2 ))}"
SUMMARY="$R/summary.txt"
LOG="$R/log.txt"
: > "$SUMMARY"
: > "$LOG"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT

say() { echo "$*" | tee -a "$SUMMARY"; }
log() { tee -a "$LOG"; }
# run LIMIT CMD...: the command's output to the log; its status back.
run() {
    local limit="$1"; shift
    echo "\$ $*" >> "$LOG"
    timeout "$limit" "$@" > "$W/out" 2>&1
    local rc=$?
    cat "$W/out" >> "$LOG"
    [ $rc = 0 ] || echo "(exit $rc)" >> "$LOG"
    return $rc
}
num() { grep -o "$1" "$W/out" | tail -1 | grep -o '[0-9.]*' | head -1; }
ratio() { "$PY" -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.3f}')" "$1" "$2" 2>/dev/null || echo "?"; }

[ -x "$B/train" ] || { echo "gpu-bench: no binaries in $B: run scripts/gpu-kit.sh where cargo builds, and carry gpu-kit" >&2; exit 2; }
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
    echo "gpu-bench: $PY has no torch" >&2; exit 2; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$(dirname "$(command -v "$PY")"):$PATH"   # torchrun beside that python
export PYTHONUNBUFFERED=1

say "== gpu-bench $(date -u +%FT%TZ): device $DEVICE, $CORES cores, torch $("$PY" -c 'import torch; print(torch.__version__)')"
command -v nvidia-smi > /dev/null && say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
if [ "$DEVICE" != cpu ]; then
    run 60 "$B/train" check-device --device "$DEVICE" && say "check-device: $(tail -1 "$W/out")" \
        || say "check-device FAILED: $(tail -1 "$W/out")"
fi

# --- data -------------------------------------------------------------------------
t0=$(date +%s.%N)
if run "$PART_LIMIT" "$B/preprocess" synth --output "$W/raw" --classes "$CLASSES" --train-per-class "$PER_CLASS" \
        --val-per-class "$VAL_PER_CLASS" --corrupt 0 \
    && t1=$(date +%s.%N) \
    && run "$PART_LIMIT" "$B/preprocess" build --input "$W/raw" --output "$W/ds" --threads "$CORES" --quiet; then
    t2=$(date +%s.%N)
    n=$(( CLASSES * (PER_CLASS + VAL_PER_CLASS) ))
    say "build: $n images (synthetic JPEG, $CLASSES classes) -> raw 256x256 shards in $("$PY" -c "print(f'{$t2 - $t1:.1f}')") s with $CORES threads: $("$PY" -c "print(f'{$n / ($t2 - $t1):.0f}')") images/s"
else
    say "build FAILED (see log.txt); the parts that need the dataset are skipped"
fi
DS="$W/ds"

# --- training step: Rust vs PyTorch eager, synthetic input ------------------------
declare -A STEP_RATE
for model in paper owt; do
    for mode in fp32 --amp --channels-last; do
        flags=(); [ "$mode" = fp32 ] || flags=("$mode")
        common=(--model "$model" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --device "$DEVICE")
        [ "$DEVICE" = cpu ] && common+=(--threads "$CORES")
        run "$PART_LIMIT" "$PY" "$A/torch_alexnet_step.py" "${common[@]}" "${flags[@]}"; am=$(num '[0-9.]* ms/step')
        run "$PART_LIMIT" "$B/step_bench" "${common[@]}" "${flags[@]}"; rm_=$(num '[0-9.]* ms/step')
        ri=$(num '[0-9.]* images/s')
        STEP_RATE["$model$mode"]="$ri"
        say "step $model ${mode#--} batch $BATCH: anchor ${am:-?} ms, rust ${rm_:-?} ms (${ri:-?} images/s): time ratio $(ratio "${rm_:-0}" "${am:-1}")"
    done
done

# --- end to end: train run on the shards vs the synthetic-input step --------------
# metrics.jsonl rate between the log line at step 20 and the last one.
rate_of() {
    "$PY" - "$1" "$BATCH" <<'PY'
import json, sys
t = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
late = [x for x in t if x["step"] >= 20]
t = late if len(late) >= 2 else t
a, b = t[0], t[-1]
print(f"{(b['step'] - a['step']) * int(sys.argv[2]) / max(b['time'] - a['time'], 1e-9):.1f}")
PY
}
# The paper preset at BATCH per step, as `train run --set` overrides; lr 0.001 so that
# a small dry-run batch does not diverge (the rate does not change the step's cost).
# cfg NAME PRECISION CHANNELS_LAST OVERLAP: fills the array SETS_NAME.
cfg() {
    local -n out="SETS_${1//-/_}"
    out=(--config configs/alexnet-paper.toml)
    for kv in "optim.batch_size=$BATCH" "data.workers=$WORKERS" optim.lr=0.001 run.log_every_steps=10 \
        run.checkpoint_minutes=600.0 "run.channels_last=$3" "run.precision=$2" dist.timeout_s=120.0 "dist.overlap=$4"; do
        out+=(--set "$kv")
    done
}
if [ -f "$DS/dataset.json" ]; then
    for p in fp32 bf16; do
        cfg "e2e-$p" "$p" false true
        sets="SETS_e2e_$p[@]"
        if run "$PART_LIMIT" "$B/train" run "${!sets}" --data "$DS" --run-dir "$W/run-$p" \
                --device "$DEVICE" --max-steps "$E2E_STEPS"; then
            e=$(rate_of "$W/run-$p/metrics.jsonl")
            key=paperfp32; [ $p = bf16 ] && key=paper--amp
            say "end to end paper $p batch $BATCH, $WORKERS loader workers: $e images/s; synthetic-input step ${STEP_RATE[$key]:-?} images/s: $(ratio "$e" "${STEP_RATE[$key]:-0}") of it"
        else
            say "end to end paper $p FAILED: $(tail -1 "$W/out")"
        fi
    done
fi

# --- data parallel at one rank: NCCL (CUDA) or Gloo (CPU) ----------------------------
run "$PART_LIMIT" torchrun --standalone --nproc-per-node 1 --no-python "$B/train" check-dist --device "$DEVICE" \
    --bench-mb 233 --bench-iters 10 \
    && say "check-dist 1 rank: values right; $(grep -o 'all-reduce of .*' "$W/out" | tail -1)" \
    || say "check-dist FAILED: $(grep -i error "$W/out" | head -1)"
if [ -f "$W/run-fp32/metrics.jsonl" ]; then
    for ov in true false; do
        cfg "ddp-$ov" fp32 false "$ov"
        sets="SETS_ddp_$ov[@]"
        if run "$PART_LIMIT" torchrun --standalone --nproc-per-node 1 --no-python "$B/train" run "${!sets}" \
                --data "$DS" --run-dir "$W/ddp-$ov" --device "$DEVICE" --max-steps "$E2E_STEPS" --threads "$CORES"; then
            d=$(rate_of "$W/ddp-$ov/metrics.jsonl")
            say "training under torchrun, 1 rank, overlap=$ov: $d images/s vs plain $(rate_of "$W/run-fp32/metrics.jsonl"): $(ratio "$d" "$(rate_of "$W/run-fp32/metrics.jsonl")")"
        else
            say "training under torchrun overlap=$ov FAILED: $(grep -i error "$W/out" | head -1)"
        fi
    done
fi

# --- ten-crop scoring of the end-to-end checkpoint -----------------------------------
ck="$(ls "$W"/run-fp32/checkpoints/*.safetensors 2>/dev/null | grep -v optim | tail -1)"
if [ -n "$ck" ]; then
    run "$PART_LIMIT" "$PY" "$A/torch_eval_tencrop.py" "$ck" "$DS" --crops ten --batch 128 --limit "$EVAL_IMAGES" \
        --device "$DEVICE"; ae=$(num '; [0-9.]* images/s')
    for bf in "" --bf16; do
        [ "$DEVICE" = cpu ] && [ -n "$bf" ] && continue
        run "$PART_LIMIT" "$B/eval" score --checkpoint "$ck" --data "$DS" --crops ten --batch-size 128 \
            --limit "$EVAL_IMAGES" --device "$DEVICE" --workers "$WORKERS" --quiet $bf; ee=$(num '; [0-9.]* images/s')
        say "eval ten-crop ${bf:-fp32} $EVAL_IMAGES images: eval ${ee:-?} images/s, anchor (fp32) ${ae:-?} images/s: $(ratio "${ee:-0}" "${ae:-1}")x"
    done
fi

# --- loader alone (CPU side of the machine) ------------------------------------------
if [ -f "$DS/dataset.json" ]; then
    run "$PART_LIMIT" "$PY" "$A/torch_loader.py" "$DS" --workers "$WORKERS" --batches "$LOADER_BATCHES"; al=$(num '[0-9.]* images/s with')
    run "$PART_LIMIT" "$B/loader_bench" "$DS" --workers "$WORKERS" --batches "$LOADER_BATCHES"; rl=$(num '^[0-9.]* images/s with')
    say "loader $WORKERS workers (raw shards, float crops): rust ${rl:-?} images/s, torch_loader.py ${al:-?} images/s: $(ratio "${rl:-0}" "${al:-1}")x"
fi
say "== done $(date -u +%FT%TZ)"
