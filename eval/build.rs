//! Keeps libtorch_cuda linked into `eval`, as trainer/build.rs does for `train` (the
//! shared `trainer/build_support/link_torch_cuda.rs`): without it `eval --device cuda`
//! would see no GPU. The libtorch is the one torch-sys links (its `links = "tch"`
//! metadata, `DEP_TCH_LIBTORCH_LIB`).

include!("../trainer/build_support/link_torch_cuda.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../trainer/build_support/link_torch_cuda.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(std::path::PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB): eval is CPU-only");
        return;
    };
    keep_torch_cuda(&lib, &["bins"]);
}
