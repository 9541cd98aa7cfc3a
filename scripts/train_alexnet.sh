#!/usr/bin/env bash
# The paper's run on real ImageNet, one process (README, "Training"). Rerun the same
# command after an interruption: it resumes (RUN_DIR/config.toml exists).
#
#   scripts/train_alexnet.sh DATASET_DIR RUN_DIR [DEVICE [CONFIG]] [TRAIN_RUN_FLAGS...]
#
# DEVICE: cuda (default), cuda:N or cpu. CONFIG: configs/alexnet-paper.toml by default.
# Other flags go to `train run` (--set optim.epochs=120, --threads 8, --max-steps N,
# --deterministic). Paths are taken as the caller gives them. The output also goes to
# RUN_DIR/train.log. Where cargo is installed the binary is built first; elsewhere
# target/release/train must have been built on another machine and copied here.
# Exit code: train run's (README, "Exit codes").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: $0 DATASET_DIR RUN_DIR [cuda|cuda:N|cpu [CONFIG]] [TRAIN_RUN_FLAGS...]"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
data="$1"; run="$2"; shift 2
device=""; config="$root/configs/alexnet-paper.toml"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then device="$1"; shift; fi
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then config="$1"; shift; fi
source "$root/scripts/run_common.sh"
alexnet_env "$root"
ALEXNET_DEVICE="${device:-cuda}" alexnet_start "$run" "$config" "$@"
alexnet_log "$run"
echo "$0: $(date -u +%FT%TZ): $ALEXNET_TRAIN run --data $data --run-dir $run ${DEVICE_ARGS[*]} ${START[*]} $*"
exec "$ALEXNET_TRAIN" run --data "$data" --run-dir "$run" "${DEVICE_ARGS[@]}" "${START[@]}" "$@"
