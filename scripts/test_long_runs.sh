#!/usr/bin/env bash
# The long-run entry points without a cluster (scripts/test.sh runs this):
# - scripts/slurm/train.sbatch under stub `sbatch`, `srun` and `scontrol` on PATH with
#   the Slurm variables set by hand: two tasks (gloo on the CPU), SIGUSR1 as Slurm sends
#   it before the time limit -> checkpoint -> exit code 75 -> `scontrol requeue JOB`;
#   the requeued start resumes, stopped by --max-steps (3, not requeued); a preemption
#   (SIGTERM) stops and requeues too.
# - scripts/train_alexnet.sh: usage line, the caller's relative paths, RUN/train.log,
#   flags passed through, --resume on a rerun.
# Needs target/debug/{train,preprocess} (built by test.sh).
#   bash scripts/test_long_runs.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
train="$root/target/debug/train" pre="$root/target/debug/preprocess"
[ -x "$train" ] && [ -x "$pre" ] || { echo "test_long_runs: build target/debug/{train,preprocess} first" >&2; exit 1; }
work="$(mktemp -d)"
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$work"' EXIT
fail() { echo "test_long_runs: FAIL: $*" >&2; exit 1; }
"$pre" synth --output "$work/images" --classes 3 --train-per-class 24 --val-per-class 4 --seed 7 --corrupt 0 >/dev/null
"$pre" build --input "$work/images" --output "$work/ds" --shard-rows 64 --quiet >/dev/null

# --- Slurm, with stubs -------------------------------------------------------------
stub="$work/stub"; mkdir -p "$stub/bin"
cat > "$stub/bin/sbatch" <<'STUB'
#!/usr/bin/env bash
# stub sbatch: runs the batch script here, in the foreground, as job $STUB_JOB_ID.
echo "sbatch $*" >> "$STUB_DIR/calls"
export SLURM_JOB_ID="$STUB_JOB_ID" SLURM_SUBMIT_DIR="$PWD"
exec bash "$@"
STUB
cat > "$stub/bin/srun" <<'STUB'
#!/usr/bin/env bash
# stub srun: SLURM_NTASKS tasks of the command on this machine (SLURM_PROCID and
# SLURM_LOCALID set), USR1 and TERM forwarded to them, the highest exit code returned.
echo "srun $*" >> "$STUB_DIR/calls"
echo $$ > "$STUB_DIR/srun.pid"
while [[ "${1:-}" == -* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i "$@" &
    pids+=($!)
done
trap 'kill -USR1 "${pids[@]}" 2>/dev/null' USR1
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM
rc=0
for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null; do wait "$p"; done
    wait "$p"; c=$?
    [ "$c" -gt "$rc" ] && rc=$c
done
exit "$rc"
STUB
cat > "$stub/bin/scontrol" <<'STUB'
#!/usr/bin/env bash
echo "scontrol $*" >> "$STUB_DIR/calls"
STUB
chmod +x "$stub/bin/"*
grep -q '^#SBATCH --signal=USR1@' "$root/scripts/slurm/train.sbatch" || fail "train.sbatch asks for no signal before the time limit"
grep -q '^#SBATCH --requeue' "$root/scripts/slurm/train.sbatch" || fail "train.sbatch is not requeueable"
port="$("${ALEXNET_PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
slurm_env=(env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u MASTER_ADDR -u RUST_BACKTRACE
    PATH="$stub/bin:$PATH" STUB_DIR="$stub" STUB_JOB_ID=4242 ALEXNET_TRAIN="$train" ALEXNET_ROOT="$root"
    SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2 SLURM_LAUNCH_NODE_IPADDR=127.0.0.1 MASTER_PORT="$port")
run="$work/slurm-run"
sub=(sbatch "$root/scripts/slurm/train.sbatch" "$work/ds" "$run" "$root/configs/smoke-tiny.toml" --device cpu --threads 1)
# Until the time limit's signal: 72 train images, 2 tasks of batch 8, 4 steps an epoch.
(cd "$work" && "${slurm_env[@]}" "${sub[@]}" --set optim.epochs=500 > "$work/job1.out" 2>&1) &
job=$!
for _ in $(seq 240); do
    grep -q 'train: epoch .*\[2/4\]' "$run/train.log" 2>/dev/null && break
    sleep 0.5
done
grep -q 'train: epoch .*\[2/4\]' "$run/train.log" || fail "the job did not start training: $(cat "$work/job1.out")"
kill -USR1 "$(cat "$stub/srun.pid")"
rc=0; wait "$job" || rc=$?
[ "$rc" = 75 ] || fail "SIGUSR1: sbatch script exit code $rc, expected 75: $(tail -n 5 "$work/job1.out")"
grep -qx 'scontrol requeue 4242' "$stub/calls" || fail "no scontrol requeue 4242: $(cat "$stub/calls")"
grep -q 'stopped by a signal' "$run/train.log" || fail "no stop line in train.log"
ck="$(sed -n 's/.*checkpoint \(.*\.safetensors\) (stopped by a signal.*/\1/p' "$run/train.log")"
[ -n "$ck" ] && [ -f "$ck" ] || fail "the stop's checkpoint ($ck) is missing"
# The requeued start (Slurm sets SLURM_RESTART_COUNT) resumes; --max-steps: 3, no requeue.
(cd "$work" && "${slurm_env[@]}" SLURM_RESTART_COUNT=1 "${sub[@]}" --max-steps 2 > "$work/job2.out" 2>&1) || rc=$?
[ "$rc" = 3 ] || fail "--max-steps: exit code $rc, expected 3: $(tail -n 5 "$work/job2.out")"
grep -q 'train: resuming from' "$run/train.log" || fail "the requeued start did not resume"
[ "$(grep -c 'scontrol requeue' "$stub/calls")" = 1 ] || fail "a --max-steps stop was requeued"
# Preemption: SIGTERM to the tasks; requeued again.
n="$(grep -c 'train: epoch .*\[2/4\]' "$run/train.log")"
(cd "$work" && "${slurm_env[@]}" SLURM_RESTART_COUNT=2 "${sub[@]}" > "$work/job3.out" 2>&1) &
job=$!
for _ in $(seq 240); do
    [ "$(grep -c 'train: epoch .*\[2/4\]' "$run/train.log")" -gt "$n" ] && break
    sleep 0.5
done
kill -TERM "$(cat "$stub/srun.pid")"
rc=0; wait "$job" || rc=$?
[ "$rc" = 75 ] || fail "SIGTERM: exit code $rc, expected 75: $(tail -n 5 "$work/job3.out")"
[ "$(grep -c 'scontrol requeue 4242' "$stub/calls")" = 2 ] || fail "the preempted job was not requeued"
[ "$(grep -c '"start":"resume"' "$run/provenance.jsonl")" = 2 ] || fail "provenance.jsonl: $(cat "$run/provenance.jsonl")"
echo "test_long_runs: train.sbatch: SIGUSR1 -> checkpoint -> 75 -> requeue; resume; --max-steps -> 3; SIGTERM -> 75 -> requeue"

# --- scripts/train_alexnet.sh -------------------------------------------------------
s="$root/scripts/train_alexnet.sh"
rc=0; out="$(env -u RUST_BACKTRACE bash "$s" 2>&1)" || rc=$?
[ "$rc" = 2 ] && [[ "$out" == usage:* ]] || fail "no arguments: exit code $rc, $out"
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"
ln -s ../ds data
local_env=(env -u RANK -u WORLD_SIZE -u SLURM_PROCID -u RUST_BACKTRACE ALEXNET_TRAIN="$train")
rc=0; "${local_env[@]}" bash "$s" data runs/one cpu "$root/configs/smoke-tiny.toml" --threads 1 --max-steps 2 >/dev/null 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "train_alexnet.sh --max-steps 2: exit code $rc"
[ -f runs/one/config.toml ] && [ -f runs/one/checkpoints/step-000000002.safetensors ] || fail "the run is not in the caller's runs/one"
grep -q 'stopped by --max-steps' runs/one/train.log || fail "no train.log in the run folder"
rc=0; "${local_env[@]}" bash "$s" data runs/one cpu --threads 1 --max-steps 1 >/dev/null 2>&1 || rc=$?
[ "$rc" = 3 ] && grep -q 'resuming from .*step-000000002' runs/one/train.log || fail "the rerun did not resume (exit code $rc)"
echo "test_long_runs: train_alexnet.sh: usage, caller's paths, train.log, flags passed through, resume"

# --- scripts/train_multi_gpu.sh: two CPU ranks under torchrun -----------------------
m="$root/scripts/train_multi_gpu.sh"
rc=0; out="$(bash "$m" only-one 2>&1)" || rc=$?
[ "$rc" = 2 ] && [[ "$out" == usage:* ]] || fail "train_multi_gpu.sh with one argument: exit code $rc, $out"
if command -v torchrun >/dev/null; then
    rc=0; "${local_env[@]}" bash "$m" data runs/two 2 "$root/configs/smoke-tiny.toml" --device cpu --threads 1 --max-steps 2 \
        >/dev/null 2>&1 || rc=$?
    # Under torchrun's agent a --max-steps stop exits 0 (torchrun restarts failed workers).
    [ "$rc" = 0 ] && grep -q 'exit code 0 under torchrun' runs/two/train.log || fail "train_multi_gpu.sh: exit code $rc"
    [ -f runs/two/checkpoints/step-000000002.safetensors ] || fail "train_multi_gpu.sh: no checkpoint in runs/two"
    echo "test_long_runs: train_multi_gpu.sh: usage, two ranks under torchrun, --max-steps -> 0"
else
    echo "test_long_runs: no torchrun: train_multi_gpu.sh under torchrun SKIPPED" >&2
fi
echo "test_long_runs: all passed"
