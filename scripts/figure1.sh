#!/usr/bin/env bash
# The paper's Figure 1 (section 3.1): a four-layer convolutional net trained with ReLUs
# and with tanh units on a built dataset's train images scaled down to 32x32, no
# regularization, each at the fastest learning rate of a small grid; prints when each
# reached 25% training error and their ratio (the paper: about 6x on CIFAR-10), and
# writes OUT/figure1.{json,md,png} (README, "Figure 1").
#
#   scripts/figure1.sh DATASET_DIR [OUT_DIR] [TRAIN_FIGURE1_FLAGS...]
#
# OUT_DIR: DATASET_DIR/../figure1 by default. Other flags go to `train figure1`
# (--device cuda, --epochs 40, --lr-relu 0.01,0.02,0.05, --lr-tanh ..., --max-images N,
# --threads N). Where cargo is installed the binary is built first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: $0 DATASET_DIR [OUT_DIR] [TRAIN_FIGURE1_FLAGS...]"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
data="$1"; shift
out="$(dirname "$data")/figure1"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then out="$1"; shift; fi
source "$root/scripts/run_common.sh"
alexnet_env "$root"
threads=()
alexnet_has_flag --threads "$@" || threads=(--threads "$(nproc)")
exec "$ALEXNET_TRAIN" figure1 --data "$data" --out "$out" "${threads[@]}" "$@"
