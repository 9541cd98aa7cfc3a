#!/usr/bin/env bash
# Every test: the Rust tests of the workspace, the long-run scripts under stub Slurm
# commands (test_long_runs.sh), then the Python cross-checks: a built dataset against
# pyarrow, Pillow/torchvision and numpy; the bridge's Dataset and crops against the Rust
# loader's, on every format version; every model variant against the project's PyTorch
# definitions in python/alexnet_bridge (same weights, same logits, both ways); `eval
# score` against the bridge's PyTorch scoring on a trained checkpoint; the bridge's
# export (torch.export, ONNX with onnxruntime) and conversion of torchvision weights for
# `train run --init`. The reference programs in ../shared/anchors (or $ANCHORS) are an
# extra, independent check where they exist; a bare clone passes without them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --workspace --quiet
cargo build --quiet -p preprocess -p trainer -p eval --bins --example parity --example crops
# Slurm (stub sbatch/srun/scontrol), the run scripts, exit codes and requeue.
bash scripts/test_long_runs.sh
anchors="${ANCHORS:-$(cd .. && pwd)/shared/anchors}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin=target/debug/preprocess
"$bin" synth --output "$work/images" --classes 4 --train-per-class 70 --val-per-class 10 --seed 3 >/dev/null
"$bin" build --input "$work/images" --output "$work/raw" --shard-rows 64 --quiet >/dev/null
"$bin" build --input "$work/images" --output "$work/jpeg" --shard-rows 64 --encoding jpeg --quality 95 --quiet >/dev/null
if "$ALEXNET_PYTHON" -c 'import numpy, PIL, pyarrow, torchvision' 2>/dev/null; then
    "$ALEXNET_PYTHON" preprocess/tests/check_dataset.py "$work/raw" "$work/images"
    "$ALEXNET_PYTHON" preprocess/tests/check_dataset.py "$work/jpeg" "$work/images"
    # Mixed shards (format 4): a quarter of each shard raw, the rest JPEG.
    "$bin" build --input "$work/images" --output "$work/mixed" --shard-rows 64 --encoding jpeg --quality 95 \
        --raw-fraction 0.25 --quiet >/dev/null
    "$ALEXNET_PYTHON" preprocess/tests/check_dataset.py "$work/mixed" "$work/images"
    # The bridge's shard reader, Dataset and crops vs the Rust loader and pyarrow, on
    # formats 1, 2, 3 (whole images: raw at shorter side 96, JPEG at longer side 120)
    # and 4 (the mixed build above).
    "$bin" build --input "$work/images" --output "$work/whole-raw" --shard-rows 64 --keep whole --shorter-side 96 \
        --limit-per-class 20 --quiet >/dev/null
    "$bin" build --input "$work/images" --output "$work/whole-jpeg" --shard-rows 64 --keep whole --max-side 120 \
        --encoding jpeg --limit-per-class 20 --quiet >/dev/null
    "$ALEXNET_PYTHON" python/tests/check_bridge_data.py target/debug/examples/crops "$work/raw" "$work/jpeg" \
        "$work/whole-raw" "$work/whole-jpeg" "$work/bridge-data" "$work/mixed"
    target/debug/examples/parity dump "$work/parity" >/dev/null
    "$ALEXNET_PYTHON" trainer/tests/check_parity.py "$work/parity" "$anchors"
    target/debug/examples/parity check "$work/parity"
    # eval score vs the bridge's PyTorch scoring (and torch_eval_tencrop.py of the
    # anchors where they exist): a checkpoint trained for 45 steps on
    # non-square procedural images, ten and center crops; an owt export without metadata.
    "$bin" synth --output "$work/agree-images" --classes 6 --train-per-class 40 --val-per-class 25 --seed 5 --corrupt 0 >/dev/null
    "$bin" build --input "$work/agree-images" --output "$work/agree" --shard-rows 64 --quiet >/dev/null
    # The tests' preset at 99x99 crops, batch 16 (also `train run --set` end to end).
    target/debug/train run --config configs/smoke-tiny.toml --set model.crop=99 --set optim.batch_size=16 \
        --set run.seed=1 --set run.keep_last=1 --set run.log_every_steps=100 \
        --data "$work/agree" --run-dir "$work/agree-run" --threads 2 >/dev/null 2>&1
    mkdir -p "$work/agree-out"
    "$ALEXNET_PYTHON" eval/tests/check_agreement.py target/debug/eval "$work/agree" \
        "$work/agree-run/checkpoints/epoch-003.safetensors" "$work/agree-out" "$anchors"
    # Export (torch.export; ONNX with onnxruntime when it installs) and torchvision's
    # weights converted for --init.
    if ! "$ALEXNET_PYTHON" -c 'import onnx, onnxruntime, onnxscript' 2>/dev/null; then
        echo "test.sh: installing onnx, onnxruntime, onnxscript (to check the ONNX export)" >&2
        "$ALEXNET_PYTHON" -m pip install --quiet onnx onnxruntime onnxscript >&2 || true
    fi
    "$ALEXNET_PYTHON" -c 'import onnx, onnxruntime, onnxscript' 2>/dev/null ||
        echo "test.sh: onnx/onnxruntime/onnxscript could not be installed: the ONNX export check is SKIPPED" >&2
    "$ALEXNET_PYTHON" python/tests/check_export.py target/debug/train \
        "$work/agree-run/checkpoints/epoch-003.safetensors" "$work/agree" "$work/export"
    # TensorBoard: the event files read back with the tensorboard package, equal to
    # metrics.jsonl; then a run stopped with records past its last checkpoint, resumed
    # from the checkpoint before: no step twice across its two event files.
    if ! "$ALEXNET_PYTHON" -c 'import tensorboard' 2>/dev/null; then
        echo "test.sh: installing tensorboard (to read the event files back)" >&2
        "$ALEXNET_PYTHON" -m pip install --quiet tensorboard >&2 || true
    fi
    if "$ALEXNET_PYTHON" -c 'import tensorboard' 2>/dev/null; then
        "$ALEXNET_PYTHON" trainer/tests/check_tensorboard.py "$work/agree-run" --starts 1
        tb=(target/debug/train run --data "$work/agree" --run-dir "$work/tb-run" --threads 2)
        "${tb[@]}" --config configs/smoke-tiny.toml --max-steps 34 >/dev/null 2>&1 || [ $? = 3 ]
        rm "$work"/tb-run/checkpoints/step-000000034.*
        "${tb[@]}" --resume --max-steps 6 >/dev/null 2>&1 || [ $? = 3 ]
        "$ALEXNET_PYTHON" trainer/tests/check_tensorboard.py "$work/tb-run" --starts 2
    else
        echo "test.sh: tensorboard could not be installed: the TensorBoard read-back is SKIPPED" >&2
    fi
    # Whole images (format 3): the stored images against torchvision's Resize(256), raw
    # and JPEG shards; then a checkpoint trained with RandomResizedCrop, scored by `eval
    # score` (its default crop: the centre) against torchvision's Resize + CenterCrop
    # pipeline on the source files (S = 113 so that 99 / 113 is torchvision's 224 / 256).
    "$bin" build --input "$work/images" --output "$work/whole256-raw" --keep whole --shard-rows 64 --quiet >/dev/null
    "$bin" build --input "$work/images" --output "$work/whole256-jpeg" --keep whole --encoding jpeg --quality 95 \
        --shard-rows 64 --quiet >/dev/null
    "$ALEXNET_PYTHON" preprocess/tests/check_dataset.py "$work/whole256-raw" "$work/images"
    "$ALEXNET_PYTHON" preprocess/tests/check_dataset.py "$work/whole256-jpeg" "$work/images"
    "$bin" build --input "$work/agree-images" --output "$work/agree-whole" --keep whole --shorter-side 113 \
        --shard-rows 64 --quiet >/dev/null
    target/debug/train run --config configs/smoke-tiny.toml --set model.crop=99 --set optim.batch_size=16 \
        --set data.train_crop=random-resized-crop --set data.normalization=mean-rgb --set data.pca_noise=false \
        --set run.seed=1 --set run.keep_last=1 --set run.log_every_steps=100 \
        --data "$work/agree-whole" --run-dir "$work/whole-run" --threads 2 >/dev/null 2>&1
    "$ALEXNET_PYTHON" eval/tests/check_whole_agreement.py target/debug/eval "$work/agree-whole" \
        "$work/whole-run/checkpoints/epoch-003.safetensors" "$work/agree-images" "$work/agree-out"
else
    echo "test.sh: numpy/pillow/pyarrow/torchvision missing: Python cross-checks skipped" >&2
    exit 1
fi
echo "test.sh: all tests passed"
