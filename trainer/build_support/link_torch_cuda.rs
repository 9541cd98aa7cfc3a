// Shared by trainer/build.rs and eval/build.rs (`include!`): keeps libtorch_cuda linked
// into the binaries. With `--as-needed` (the default of Debian's linker) the linker
// drops `libtorch_cuda.so`, as no symbol of it is referenced, and `--device cuda` sees
// no GPU. The targets of `kinds` get `--no-as-needed -ltorch_cuda`, with `-rpath-link`
// to the nvidia library folders beside torch (site-packages/nvidia/<package>/lib) so
// that the linker finds libtorch_cuda's own dependencies. A CPU-only libtorch (no
// libtorch_cuda.so in `lib`) gets nothing added.

fn keep_torch_cuda(lib: &std::path::Path, kinds: &[&str]) {
    if !lib.join("libtorch_cuda.so").exists() {
        return;
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    if let Some(nv) = lib.parent().and_then(|t| t.parent()).map(|s| s.join("nvidia")) {
        for e in std::fs::read_dir(nv).into_iter().flatten().flatten() {
            let l = e.path().join("lib");
            if l.is_dir() {
                for t in kinds {
                    println!("cargo:rustc-link-arg-{t}=-Wl,-rpath-link={}", l.display());
                }
            }
        }
    }
    for t in kinds {
        println!("cargo:rustc-link-arg-{t}=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-{t}=-ltorch_cuda");
        println!("cargo:rustc-link-arg-{t}=-Wl,--as-needed");
    }
}
