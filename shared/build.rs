//! Records the git commit the workspace is built from, as `ALEXNET_GIT_COMMIT` for
//! [`crate::build_info`]: `ALEXNET_GIT_COMMIT` from the environment when set (a
//! packager's build), else `git rev-parse HEAD` of the checkout this crate is in, else
//! "unknown" (a source tarball without `.git`, or no git). The build script reruns when
//! HEAD moves (a commit, a checkout), not on every edit: a build from a tree with
//! uncommitted changes records the commit it started from.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ALEXNET_GIT_COMMIT");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).parent().unwrap_or(Path::new(&manifest)).to_path_buf();
    let commit = std::env::var("ALEXNET_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // Only this checkout's own repository: a tarball unpacked inside another
        // repository is not that repository's commit.
        let top = git(&root, &["rev-parse", "--show-toplevel"])?;
        if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
            return None;
        }
        let head = git(&root, &["rev-parse", "HEAD"])?;
        let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
        if let Some(r) = git(&root, &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/")) {
            watch.push(r);
        }
        for w in watch {
            if let Some(p) = git(&root, &["rev-parse", "--path-format=absolute", "--git-path", &w]) {
                if Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
        Some(head)
    });
    println!("cargo:rustc-env=ALEXNET_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
