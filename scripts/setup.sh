#!/usr/bin/env bash
# Sets up the toolchain, idempotently, and exports what the build and the binaries need.
#
#   source scripts/setup.sh      # in a shell or another script: exports the variables
#   bash scripts/setup.sh        # prints them (eval "$(bash scripts/setup.sh)")
#
# Finds a Python whose torch is 2.11.0 (ALEXNET_PYTHON, then .venv, then python3 on
# PATH); without one it creates .venv and installs torch==2.11.0 there. The GPU
# machines have torch 2.11.0 preinstalled and no package index: nothing is installed
# there. The test extras (numpy, pillow, pyarrow, safetensors, torchvision) are
# installed where missing and an index is reachable; without them only the Python
# cross-checks are skipped. Where cargo builds, gloo's headers (Debian's libgloo-dev),
# cmake and nasm (to build libjpeg-turbo) are installed when missing: the trainer's
# build needs them (root, or sudo without a password; otherwise a message says what to
# install).
_alexnet_setup() {
    local root want py v
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    want="2.11.0"
    py=""
    for cand in "${ALEXNET_PYTHON:-}" "$root/.venv/bin/python" "$(command -v python3 || true)"; do
        [ -n "$cand" ] && [ -x "$cand" ] || continue
        v="$("$cand" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)"
        if [[ "$v" == "$want"* ]]; then py="$cand"; break; fi
    done
    if [ -z "$py" ]; then
        echo "setup: no Python with torch $want; installing it into $root/.venv (about 5 GB, a few minutes)" >&2
        if [ ! -x "$root/.venv/bin/python" ]; then
            python3 -m venv "$root/.venv" || { echo "setup: python3 -m venv failed (install python3-venv)" >&2; return 1; }
        fi
        "$root/.venv/bin/python" -m pip install --quiet --upgrade pip >&2 || true
        "$root/.venv/bin/python" -m pip install --quiet "torch==$want" >&2 || { echo "setup: pip install torch==$want failed" >&2; return 1; }
        py="$root/.venv/bin/python"
    fi
    if [ "${ALEXNET_SKIP_EXTRAS:-0}" != 1 ] && ! "$py" -c 'import numpy, PIL, pyarrow, safetensors, torchvision' 2>/dev/null; then
        if [ -w "$("$py" -c 'import sys; print(sys.prefix)')" ]; then
            echo "setup: installing numpy, pillow, pyarrow, safetensors, torchvision 0.26.0 (test extras)" >&2
            "$py" -m pip install --quiet numpy pillow pyarrow safetensors >&2 \
                && "$py" -m pip install --quiet --no-deps torchvision==0.26.0 >&2 \
                || echo "setup: could not install the test extras; the Python cross-checks will be skipped" >&2
        fi
    fi
    # A CUDA torch: the CUDA runtime's crt/ and cccl/ headers, which ProcessGroupNCCL.hpp
    # needs and torch's wheel does not pull in (header use only: trainer/build.rs then
    # compiles NCCL data parallel into train). Without them train is built without NCCL.
    local cuda
    cuda="$("$py" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null || true)"
    if [ -n "$cuda" ] && [ "${ALEXNET_NCCL:-}" != 0 ] && ! "$py" -c '
import os, sys, torch
inc = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia", "cu" + sys.argv[1], "include")
sys.exit(0 if os.path.exists(os.path.join(inc, "crt", "host_config.h")) and os.path.isdir(os.path.join(inc, "cccl")) else 1)
' "${cuda%%.*}" 2>/dev/null; then
        if [ -w "$("$py" -c 'import sys; print(sys.prefix)')" ]; then
            echo "setup: installing nvidia-cuda-crt and nvidia-cuda-cccl $cuda (CUDA headers, for NCCL data parallel)" >&2
            "$py" -m pip install --quiet --no-deps "nvidia-cuda-crt==$cuda.*" "nvidia-cuda-cccl==$cuda.*" >&2 \
                || echo "setup: could not install them: train will be built without NCCL (CPU data parallel only)" >&2
        fi
    fi
    local torch_lib
    torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export ALEXNET_PYTHON="$py"
    export LIBTORCH_USE_PYTORCH=1
    case ":${LD_LIBRARY_PATH:-}:" in
        *":$torch_lib:"*) ;;
        *) export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
    # First on PATH: torch-sys's build script runs `python3` (`python` under a
    # VIRTUAL_ENV) to find libtorch, and torchrun comes from the same place.
    case "$PATH:" in
        "$(dirname "$py"):"*) ;;
        *) export PATH="$(dirname "$py"):$PATH" ;;
    esac
    command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup)" >&2; return 1; }
    # cmake and nasm: turbojpeg-sys builds libjpeg-turbo 3 (the loader's JPEG decoder)
    # from its bundled source, statically, so the binaries need no shared library.
    if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
        echo "setup: installing cmake and nasm (to build libjpeg-turbo for the loader)" >&2
        local sudo_=""
        [ "$(id -u)" = 0 ] || sudo_="sudo -n"
        if ! command -v apt-get >/dev/null \
            || ! { DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q cmake nasm >&2 \
                || { $sudo_ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q cmake nasm >&2; }; }; then
            echo "setup: could not install cmake and nasm: install them as root (apt-get install cmake nasm)" >&2
            return 1
        fi
    fi
    # gloo's headers: the trainer's c10d shim includes ProcessGroupGloo.hpp, which needs
    # them at compile time only (gloo's code is inside libtorch; see trainer/build.rs).
    if [ -z "${GLOO_INCLUDE_DIR:-}" ] && [ ! -f /usr/include/gloo/config.h ]; then
        echo "setup: installing libgloo-dev (gloo's headers, for the trainer's c10d shim)" >&2
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo -n"
        if ! command -v apt-get >/dev/null \
            || ! { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q libgloo-dev >&2 \
                || { $sudo apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q libgloo-dev >&2; }; }; then
            echo "setup: could not install libgloo-dev: install it as root (apt-get install libgloo-dev), or set GLOO_INCLUDE_DIR to a folder holding gloo/config.h" >&2
            return 1
        fi
    fi
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
    set -euo pipefail
    _alexnet_setup
    echo "export ALEXNET_PYTHON='$ALEXNET_PYTHON' LIBTORCH_USE_PYTORCH=1 LD_LIBRARY_PATH='$LD_LIBRARY_PATH' PATH='$PATH'"
else
    _alexnet_setup || return 1
fi
