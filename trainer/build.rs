//! Builds the C++ shims against libtorch's headers: `csrc/ext.cpp` (bf16 autocast and
//! the deterministic mode; always: the runtime uses it) and, with the `train` feature,
//! the c10d shim `csrc/dist_shim.cpp` (data parallel; needs gloo's headers). Keeps
//! libtorch_cuda linked into the binaries, examples and tests
//! (`build_support/link_torch_cuda.rs`, shared with eval's build script).
//!
//! libtorch: the one torch-sys links, found from torch-sys's `links = "tch"` metadata
//! (`DEP_TCH_LIBTORCH_LIB`, its `lib/` folder; the headers are beside it in
//! `include/`). Asking torch-sys rather than Python again guarantees the shim is
//! compiled against the very libtorch the binary loads, whatever LIBTORCH or
//! LIBTORCH_USE_PYTORCH said.
//!
//! gloo (the `train` feature only): torch's wheel ships c10d's headers but not gloo's. `ProcessGroupGloo.hpp`
//! needs them at compile time only (gloo's code is inside libtorch_cpu): from
//! `GLOO_INCLUDE_DIR`, else `/usr/include` (Debian's `libgloo-dev`, which
//! `scripts/setup.sh` installs). Nothing links a gloo library.
//!
//! NCCL (`ProcessGroupNCCL`, CUDA training): compiled when the CUDA runtime headers
//! (`nvidia/cu13/include` with `crt/`, and `cccl/`) and `nccl.h` are found in the
//! site-packages beside torch (the `nvidia-cuda-runtime`, `nvidia-cuda-crt`,
//! `nvidia-cuda-cccl` and `nvidia-nccl` wheels); `ALEXNET_NCCL=0` turns it off,
//! `ALEXNET_NCCL=1` makes their absence an error. Without it `--device cuda` with
//! several ranks is refused at run time with a message saying so.
//!
//! libtorch_cuda: with `--as-needed` (the default of Debian's linker) the linker drops
//! `libtorch_cuda.so`, as no symbol of it is referenced, and `train --device cuda`
//! sees no GPU. The binaries get `--no-as-needed -ltorch_cuda`, with `-rpath-link` to
//! the nvidia library folders so that the linker finds its own dependencies.

use std::path::{Path, PathBuf};

include!("build_support/link_torch_cuda.rs");

fn main() {
    println!("cargo:rerun-if-changed=csrc/dist_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/ext.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_support/link_torch_cuda.rs");
    for v in ["DEP_TCH_LIBTORCH_LIB", "GLOO_INCLUDE_DIR", "ALEXNET_NCCL", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        fail("torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB): is torch-sys a dependency?");
    };
    let torch_root = lib.parent().unwrap_or(&lib).to_path_buf();
    let include = torch_root.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut b = cc::Build::new();
    b.cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_some() {
        dist_shim(&mut b, &include, &torch_root);
    }
    // ext.cpp: autocast in bf16 and the deterministic mode (src/ext.rs).
    b.file("csrc/ext.cpp").compile("alexnet_trainer_shim");
    // Binaries, and the examples (step_bench, loader_bench: run with --device cuda on
    // a GPU machine) and tests, which would otherwise see no GPU either.
    keep_torch_cuda(&lib, &["bins", "examples", "tests"]);
}

/// Adds the c10d shim (Gloo, and NCCL where its headers are found) to `b`.
fn dist_shim(b: &mut cc::Build, include: &Path, torch_root: &Path) {
    if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").exists() {
        fail(&format!("{}: no c10d headers in this libtorch (torch/csrc/distributed/c10d)", include.display()));
    }
    let gloo = std::env::var_os("GLOO_INCLUDE_DIR").map(PathBuf::from).unwrap_or_else(|| "/usr/include".into());
    if !gloo.join("gloo/config.h").exists() {
        fail(&format!(
            "gloo headers not found in {} (gloo/config.h): run `source scripts/setup.sh` (it installs Debian's \
             libgloo-dev), or `apt-get install libgloo-dev`, or set GLOO_INCLUDE_DIR",
            gloo.display()
        ));
    }
    println!("cargo:rerun-if-changed={}", gloo.join("gloo/config.h").display());
    b.include(&gloo).define("USE_DISTRIBUTED", None).define("USE_C10D_GLOO", None);
    // site-packages: torch's lib/ is site-packages/torch/lib in a wheel.
    let nvidia = torch_root.parent().map(|s| s.join("nvidia")).filter(|p| p.is_dir());
    if let Some(nv) = &nvidia {
        // Headers installed later (scripts/setup.sh) must turn NCCL on: watch the folders.
        for d in ["cu13/include", "nccl/include"] {
            if nv.join(d).is_dir() {
                println!("cargo:rerun-if-changed={}", nv.join(d).display());
            }
        }
    }
    let nccl_wanted = std::env::var("ALEXNET_NCCL").ok();
    if nccl_wanted.as_deref() != Some("0") {
        match nvidia.as_deref().map(nccl_includes) {
            Some(Ok(dirs)) => {
                for d in dirs {
                    b.include(d);
                }
                b.define("ALEXNET_NCCL", None).define("USE_C10D_NCCL", None).define("USE_CUDA", None);
                // c10::cuda::set_device; ProcessGroupNCCL itself is in libtorch_cuda,
                // which torch-sys already names.
                println!("cargo:rustc-link-lib=dylib=c10_cuda");
            }
            Some(Err(why)) if nccl_wanted.as_deref() == Some("1") => fail(&format!("ALEXNET_NCCL=1: {why}")),
            None if nccl_wanted.as_deref() == Some("1") => fail("ALEXNET_NCCL=1: no nvidia/ beside torch"),
            _ => {}
        }
    }
    b.file("csrc/dist_shim.cpp");
}

/// Include folders for ProcessGroupNCCL.hpp, or why they are missing.
fn nccl_includes(nvidia: &Path) -> Result<Vec<PathBuf>, String> {
    let cuda = nvidia.join("cu13/include");
    let nccl = nvidia.join("nccl/include");
    for (f, pkg) in [
        (cuda.join("cuda_runtime.h"), "nvidia-cuda-runtime"),
        (cuda.join("crt/host_config.h"), "nvidia-cuda-crt"),
        (cuda.join("cccl/cuda/std/version"), "nvidia-cuda-cccl"),
        (nccl.join("nccl.h"), "nvidia-nccl-cu13"),
    ] {
        if !f.exists() {
            return Err(format!("{} missing (the {pkg} wheel)", f.display()));
        }
    }
    Ok(vec![cuda.clone(), cuda.join("cccl"), nccl])
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={msg}");
    std::process::exit(1);
}
