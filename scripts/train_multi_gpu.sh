#!/usr/bin/env bash
# Data-parallel training on one machine: one rank per GPU, started by torchrun (README,
# "Data-parallel training"). Rerun the same command after an interruption: it resumes
# (with the same number of GPUs).
#
#   scripts/train_multi_gpu.sh DATASET_DIR RUN_DIR [NGPUS [CONFIG]] [TRAIN_RUN_FLAGS...]
#
# NGPUS: every visible GPU by default. optim.batch_size is per GPU (global batch =
# batch_size x NGPUS); see [dist] in the config for learning-rate scaling and warm-up.
# Other flags go to `train run`. Paths are taken as the caller gives them. The output
# also goes to RUN_DIR/train.log. Where cargo is installed the binary is built first;
# on a machine with only torch, target/release/train must have been built elsewhere and
# copied here. torchrun turns any non-zero exit of a worker into its own exit code 1
# (README, "Exit codes").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: $0 DATASET_DIR RUN_DIR [NGPUS [CONFIG]] [TRAIN_RUN_FLAGS...]"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
data="$1"; run="$2"; shift 2
ngpus=""; config="$root/configs/alexnet-paper.toml"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then ngpus="$1"; shift; fi
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then config="$1"; shift; fi
source "$root/scripts/run_common.sh"
alexnet_env "$root"
command -v torchrun >/dev/null || PATH="$(dirname "$(command -v "${ALEXNET_PYTHON:-python3}")"):$PATH"
if [ -z "$ngpus" ]; then
    ngpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    [ "$ngpus" -ge 1 ] || { echo "$0: no GPU visible (nvidia-smi -L): give NGPUS" >&2; exit 1; }
fi
alexnet_start "$run" "$config" "$@"
alexnet_log "$run"
echo "$0: $(date -u +%FT%TZ): torchrun --nproc-per-node $ngpus $ALEXNET_TRAIN run --data $data --run-dir $run ${DEVICE_ARGS[*]} ${START[*]} $*"
exec torchrun --standalone --nproc-per-node "$ngpus" --no-python \
    "$ALEXNET_TRAIN" run --data "$data" --run-dir "$run" "${DEVICE_ARGS[@]}" "${START[@]}" "$@"
