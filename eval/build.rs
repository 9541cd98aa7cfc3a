//! Keeps libtorch_cuda linked into `eval`, as trainer/build.rs does for `train`: with
//! `--as-needed` (the default of Debian's linker) the linker drops `libtorch_cuda.so`,
//! as no symbol of it is referenced, and `eval --device cuda` would see no GPU. The
//! libtorch is the one torch-sys links (its `links = "tch"` metadata,
//! `DEP_TCH_LIBTORCH_LIB`); a CPU-only libtorch gets nothing added.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB): eval is CPU-only");
        return;
    };
    if !lib.join("libtorch_cuda.so").exists() {
        return;
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    // nvidia/<package>/lib beside torch in site-packages: libtorch_cuda's own dependencies.
    if let Some(nv) = lib.parent().and_then(|t| t.parent()).map(|s| s.join("nvidia")) {
        for e in std::fs::read_dir(nv).into_iter().flatten().flatten() {
            let l = e.path().join("lib");
            if l.is_dir() {
                println!("cargo:rustc-link-arg-bins=-Wl,-rpath-link={}", l.display());
            }
        }
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
    println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
}
