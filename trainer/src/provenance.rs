//! Where a run or a checkpoint comes from: the program's version and git commit, the
//! libtorch, CUDA and cuDNN it runs on, the command line, host, world size, the
//! dataset's manifest sha256 and the start time ([`Provenance`]). A training run appends
//! one JSON line per start (a new run, each resume) to `RUN_DIR/provenance.jsonl` and
//! stores its start's record in every checkpoint it writes (metadata key `provenance`,
//! see `checkpoint::meta`). [`version_line`] is what `--version` prints.
//!
//! Every field has a default, so a record written by an older or newer trainer (fewer
//! or more fields) still reads.

use std::ffi::{c_char, c_long, CStr};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

extern "C" {
    fn alexnet_torch_version() -> *const c_char;
    fn alexnet_cuda_runtime_version() -> c_long;
    fn alexnet_cudnn_version() -> c_long;
}

/// The run folder's file of [`Provenance`] records, one JSON object a line.
pub const PROVENANCE_FILE: &str = "provenance.jsonl";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// The binary (`train`).
    pub program: String,
    /// The workspace version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The full commit hash it was built from, or "unknown".
    pub git_commit: String,
    pub libtorch: String,
    /// The CUDA runtime of libtorch's build ("13.0"); None: a CPU-only libtorch.
    pub cuda: Option<String>,
    /// The cuDNN loaded ("9.19.0"); None without cuDNN.
    pub cudnn: Option<String>,
    /// The arguments, the program first.
    pub command_line: Vec<String>,
    pub host: String,
    pub world_size: usize,
    /// sha256 of the `dataset.json` trained on.
    pub manifest_sha256: String,
    /// UTC, RFC 3339 (`2026-12-02T03:40:00Z`).
    pub started: String,
    /// "new" or "resume".
    pub start: String,
    /// On a resume: the global step it continues from.
    pub resumed_at_step: Option<u64>,
}

impl Provenance {
    /// The record of this process, started now: a new run, or `--resume` (from the
    /// checkpoint at `resumed_at_step`; None: a run folder stopped before its first
    /// checkpoint, resumed from the start).
    pub fn now(
        program: &str,
        world_size: usize,
        manifest_sha256: &str,
        resume: bool,
        resumed_at_step: Option<u64>,
    ) -> Self {
        let (cuda, cudnn) = cuda_versions();
        Self {
            program: program.into(),
            version: alexnet_shared::build_info::VERSION.into(),
            git_commit: alexnet_shared::build_info::GIT_COMMIT.into(),
            libtorch: libtorch_version().into(),
            cuda,
            cudnn,
            command_line: std::env::args().collect(),
            host: host_name(),
            world_size,
            manifest_sha256: manifest_sha256.into(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            start: if resume { "resume" } else { "new" }.into(),
            resumed_at_step,
        }
    }

    /// Appends this record as one line to `RUN_DIR/provenance.jsonl` (created if
    /// missing; earlier starts' lines are kept).
    pub fn append_to(&self, run_dir: &Path) -> std::io::Result<()> {
        let line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join(PROVENANCE_FILE))?;
        writeln!(f, "{line}")?;
        f.sync_all()
    }

    /// Every record of `RUN_DIR/provenance.jsonl` that parses.
    pub fn read_all(run_dir: &Path) -> std::io::Result<Vec<Self>> {
        let text = std::fs::read_to_string(run_dir.join(PROVENANCE_FILE))?;
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

/// The libtorch version the binary is built against and loads ("2.11.0").
pub fn libtorch_version() -> &'static str {
    // SAFETY: returns a pointer to a NUL-terminated string literal of the shim.
    unsafe { CStr::from_ptr(alexnet_torch_version()) }.to_str().unwrap_or("?")
}

/// libtorch's CUDA runtime and the cuDNN loaded, as versions ("13.0", "9.19.0"); None
/// for each that this libtorch lacks.
pub fn cuda_versions() -> (Option<String>, Option<String>) {
    // SAFETY: plain calls; the shim catches libtorch's exceptions and returns 0.
    let (rt, dnn) = unsafe { (alexnet_cuda_runtime_version(), alexnet_cudnn_version()) };
    let cuda = (rt > 0).then(|| format!("{}.{}", rt / 1000, (rt % 1000) / 10));
    // cuDNN 9 and later: MAJOR * 10000 + MINOR * 100 + PATCH; before: MAJOR * 1000 + ...
    let cudnn = (dnn > 0).then(|| {
        let (major, rest) = if dnn >= 10000 { (dnn / 10000, dnn % 10000) } else { (dnn / 1000, dnn % 1000) };
        format!("{major}.{}.{}", rest / 100, rest % 100)
    });
    (cuda, cudnn)
}

/// What `--version` prints after the program name: `0.1.0 (commit 0123456789ab,
/// libtorch 2.11.0)`.
pub fn version_line() -> String {
    format!(
        "{} (commit {}, libtorch {})",
        alexnet_shared::build_info::VERSION,
        alexnet_shared::build_info::short_commit(),
        libtorch_version()
    )
}

/// This machine's host name ("unknown" when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if r == 0 && !s.is_empty() => s.to_string(),
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_names_this_build_and_appends_one_line_per_start() {
        assert!(libtorch_version().starts_with("2.11."), "{}", libtorch_version());
        let t = tempfile::tempdir().unwrap();
        let a = Provenance::now("train", 2, "ab", false, None);
        assert_eq!((a.start.as_str(), a.world_size), ("new", 2));
        assert_eq!(a.git_commit, alexnet_shared::build_info::GIT_COMMIT);
        assert!(!a.host.is_empty() && a.started.ends_with('Z'));
        a.append_to(t.path()).unwrap();
        let b = Provenance::now("train", 1, "ab", true, Some(40));
        b.append_to(t.path()).unwrap();
        assert_eq!(Provenance::read_all(t.path()).unwrap(), [a, b]);
        // A record of a later trainer with a field this one does not know, and one
        // missing fields, still read.
        let r: Provenance = serde_json::from_str(r#"{"program": "train", "gpu_names": ["H200"]}"#).unwrap();
        assert_eq!(r.program, "train");
        assert!(version_line().contains(libtorch_version()));
    }
}
