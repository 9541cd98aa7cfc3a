//! What a binary says about its own build: the git commit it was built from (see
//! `build.rs`: "unknown" for a build without `.git`) and the workspace version.

/// The full commit hash of the build, or "unknown".
pub const GIT_COMMIT: &str = env!("ALEXNET_GIT_COMMIT");

/// The workspace version (every crate shares it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit shortened to 12 characters for display (as `git log --abbrev=12`).
pub fn short_commit() -> &'static str {
    match GIT_COMMIT.get(..12) {
        Some(s) if GIT_COMMIT.chars().all(|c| c.is_ascii_hexdigit()) => s,
        _ => GIT_COMMIT,
    }
}
