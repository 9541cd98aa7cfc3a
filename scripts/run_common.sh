# Sourced by the long-run scripts (train_alexnet.sh, train_multi_gpu.sh,
# slurm/train.sbatch): the environment and the `train run` arguments they share.
# Nothing here changes directory: the caller's relative paths keep their meaning.
#
#   alexnet_env ROOT    sets ALEXNET_TRAIN, the binary: when given, that one; else
#                       where cargo is installed, setup.sh and a build of
#                       target/release/train; without cargo, the prebuilt one (copied
#                       from a build machine). When it cannot find libtorch, the torch
#                       of ALEXNET_PYTHON or python3 is used (its lib/ on
#                       LD_LIBRARY_PATH, its bin/ on PATH for torchrun).
#   alexnet_start RUN_DIR CONFIG ARGS...
#                       sets START to `--resume` when RUN_DIR/config.toml exists (a run
#                       to continue, also one stopped before its first checkpoint), else
#                       `--config CONFIG`; nothing when ARGS already has --config or
#                       --resume. DEVICE_ARGS: `--device $ALEXNET_DEVICE` unless ARGS has
#                       --device.
#   alexnet_log RUN_DIR sends this shell's stdout and stderr to the terminal and to
#                       RUN_DIR/train.log (appended; tee ignores SIGINT/SIGTERM, so the
#                       trainer's last lines after a Ctrl-C still reach the file).

alexnet_env() {
    local root="$1"
    if [ -z "${ALEXNET_TRAIN:-}" ] && command -v cargo >/dev/null; then
        # shellcheck source=setup.sh
        source "$root/scripts/setup.sh" || return 1
        cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p trainer || return 1
    fi
    ALEXNET_TRAIN="${ALEXNET_TRAIN:-$root/target/release/train}"
    [ -x "$ALEXNET_TRAIN" ] || { echo "$0: no $ALEXNET_TRAIN: build it with cargo build --release -p trainer (where cargo is) and copy it here" >&2; return 1; }
    if ! "$ALEXNET_TRAIN" --version >/dev/null 2>&1; then
        # libtorch is not on the library path yet: torch's lib/ from its Python.
        local py="${ALEXNET_PYTHON:-python3}" torch_lib
        torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" \
            || { echo "$0: no Python with torch ($py) for libtorch: set ALEXNET_PYTHON" >&2; return 1; }
        export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        PATH="$(dirname "$(command -v "$py")"):$PATH"
        export PATH
        "$ALEXNET_TRAIN" --version >/dev/null || { echo "$0: $ALEXNET_TRAIN does not start (above)" >&2; return 1; }
    fi
}

alexnet_has_flag() {
    local want="$1" a
    shift
    for a in "$@"; do
        case "$a" in "$want" | "$want"=*) return 0 ;; esac
    done
    return 1
}

alexnet_start() {
    local run="$1" config="$2"
    shift 2
    START=()
    if ! alexnet_has_flag --config "$@" && ! alexnet_has_flag --resume "$@"; then
        if [ -f "$run/config.toml" ]; then START=(--resume); else START=(--config "$config"); fi
    fi
    DEVICE_ARGS=()
    alexnet_has_flag --device "$@" || DEVICE_ARGS=(--device "${ALEXNET_DEVICE:-cuda}")
}

alexnet_log() {
    mkdir -p "$1"
    exec > >(trap '' INT TERM; exec tee -a "$1/train.log") 2>&1
}
