//! The build state (`.build-state.json`): the identity, the finished shards with their
//! sha256 and rejects, and the exact statistics sums so far, saved atomically after
//! every shard; and the output folder's files (what is ours, what --overwrite removes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alexnet_shared::{PixelStats, ShardEntry, Split, MANIFEST_FILE, MEAN_IMAGE_FILE, REJECTS_FILE};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::plan::Identity;
use super::STATE_FILE;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ShardRecord {
    pub(super) split: Split,
    pub(super) entry: ShardEntry,
    /// (source path, reason) of the inputs of this shard that could not be used.
    pub(super) rejects: Vec<(String, String)>,
    /// The rejected input files as they were (size, modification time): one that
    /// changed since is retried by a rerun (its shard is rebuilt).
    #[serde(default)]
    pub(super) rejected_files: Vec<RejectedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RejectedFile {
    pub(super) key: String,
    pub(super) path: PathBuf,
    pub(super) stamp: Option<(u64, i128)>,
}

/// A file's size and modification time (ns), or None when it cannot be read.
pub(super) fn stamp(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?;
    let ns = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some((m.len(), ns))
}

impl ShardRecord {
    /// The keys of the rejected inputs whose files changed since the shard was made.
    pub(super) fn changed_rejects(&self) -> Vec<String> {
        self.rejected_files.iter().filter(|r| stamp(&r.path) != r.stamp).map(|r| r.key.clone()).collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) identity: Identity,
    /// Finished shards by file name. Their train statistics are in `train_stats`.
    pub(super) shards: BTreeMap<String, ShardRecord>,
    pub(super) train_stats: PixelStats,
}

impl State {
    pub(super) fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("state serializes");
        alexnet_shared::atomic_write(&dir.join(STATE_FILE), &bytes).context("saving the build state")
    }
}

/// Loads the state of a build of the same identity, or starts a new one. A folder that
/// holds a different build is refused unless `overwrite`.
pub(super) fn open_state(out: &Path, identity: Identity, overwrite: bool) -> Result<State> {
    let path = out.join(STATE_FILE);
    let fresh = |identity: Identity| {
        let train_stats = if identity.whole.is_some() { PixelStats::without_mean_image() } else { PixelStats::new() };
        State { identity, shards: BTreeMap::new(), train_stats }
    };
    let ours = build_files(out)?;
    if overwrite {
        for f in &ours {
            std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        }
        return Ok(fresh(identity));
    }
    if path.exists() {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        match serde_json::from_slice::<State>(&text) {
            Ok(s) if s.identity == identity => return Ok(s),
            Ok(s) => bail!(
                "{} holds a different build ({}). Use another --output, or --overwrite to replace it",
                out.display(),
                identity_diff(&s.identity, &identity)
            ),
            Err(e) => {
                bail!("{}: unreadable build state ({e}); use --overwrite to rebuild from scratch", path.display())
            }
        }
    }
    // Temporaries alone are what a build killed while writing its first state leaves;
    // they are removed once the state is saved. Finished files without a state are not ours.
    let finished: Vec<_> = ours.iter().filter(|p| !is_temporary(p)).collect();
    if !finished.is_empty() {
        bail!(
            "{} holds dataset files ({}) that this build did not start; use another --output, or --overwrite to replace them",
            out.display(),
            finished.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).take(3).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(fresh(identity))
}

fn identity_diff(old: &Identity, new: &Identity) -> String {
    let mut d = Vec::new();
    macro_rules! cmp {
        ($f:ident) => {
            if old.$f != new.$f {
                d.push(format!("{}: {:?} there, {:?} now", stringify!($f), old.$f, new.$f));
            }
        };
    }
    cmp!(format_version);
    cmp!(program_version);
    cmp!(encoding);
    cmp!(quality);
    cmp!(chroma);
    cmp!(raw_fraction);
    cmp!(whole);
    cmp!(shard_rows);
    cmp!(seed);
    cmp!(limit_per_class);
    if old.inputs_sha256 != new.inputs_sha256 {
        d.push("the input images or their labels differ".into());
    }
    d.join("; ")
}

/// The files of a build in `out` (what --overwrite removes; nothing else is touched).
fn build_files(out: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if (is_build_file(&name) || is_temporary(&p)) && p.is_file() {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Whether `name` is one of the files a build writes.
fn is_build_file(name: &str) -> bool {
    let shard = (name.starts_with("train-") || name.starts_with("val-")) && name.ends_with(".parquet");
    shard || [MANIFEST_FILE, MEAN_IMAGE_FILE, REJECTS_FILE, STATE_FILE].contains(&name)
}

/// A half-written build file (`.NAME.tmp`) left by an interrupted atomic write; other
/// people's temporaries are not ours to remove.
fn is_temporary(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).is_some_and(is_build_file)
}

pub(super) fn remove_temporaries(out: &Path) -> Result<()> {
    for p in build_files(out)?.into_iter().filter(|p| is_temporary(p)) {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}
