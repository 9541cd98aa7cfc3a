//! `preprocess build`: ImageNet (the downloaded archives read in place, Kaggle's zip,
//! or unpacked folders; see [`crate::inputs`]) -> dataset format v1.
//!
//! The work is cut into shards up front (train rows in a seeded shuffled order, so
//! every shard mixes classes; val rows in sorted order). Each pending shard is decoded
//! and resized by a pool of worker threads into one preallocated buffer, its pixel
//! statistics are added up exactly (integers), and a writer thread writes it (temporary
//! name, fsync, rename) while the workers go on with the next shard. After every shard,
//! the build state (`.build-state.json`: parameters, finished shards with their sha256
//! and rejects, and the exact statistics sums so far) is saved atomically, so a build
//! stopped at any point (Ctrl-C, kill, crash) resumes with the shards it finished,
//! verified, and statistics that count every train pixel exactly once.
//!
//! The concerns, one file each: [`plan`] (shards and the build's identity), [`state`]
//! (the saved state and the output folder's files), [`space`] (the disk check),
//! [`shard`] (decode, statistics, encode, write) and [`finish`] (rejects, manifest).

mod finish;
mod plan;
mod shard;
mod space;
mod state;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use alexnet_shared::progress::Progress;
use alexnet_shared::{Chroma, Encoding, Manifest, ShardKind, ShardWriter, WholeResize};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::inputs::{discover, InputOptions};
use plan::{inputs_fingerprint, plan_shards, Identity, PlannedShard};
use shard::{make_shard, write_shard, ShardOutput};
use state::{open_state, remove_temporaries, State};

pub const STATE_FILE: &str = ".build-state.json";
/// The lock a running build holds on its output folder (`flock`, released when the
/// process ends, however it ends).
pub const LOCK_FILE: &str = ".build.lock";

/// Everything `build` needs, validated by the CLI.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub input: InputOptions,
    pub output: PathBuf,
    pub encoding: Encoding,
    /// JPEG quality (1..=100), used with `Encoding::Jpeg`.
    pub quality: u8,
    /// The JPEGs' chroma subsampling (None: [`Chroma::default_for`] the quality).
    pub chroma: Option<Chroma>,
    /// `Encoding::Mixed`: the fraction of each shard's rows kept raw (0 < f < 1): those
    /// whose JPEG is largest for their raw size ([`shard::raw_rows`]).
    pub raw_fraction: f64,
    /// Whole images rescaled as said (`--keep whole`), instead of the paper's centre
    /// 256x256 squares (None).
    pub whole: Option<(WholeResize, u32)>,
    pub shard_rows: usize,
    pub threads: usize,
    pub seed: u64,
    /// Fail the build when more than this fraction of the inputs is rejected.
    pub max_reject_rate: f64,
    /// Replace a different build found in `output`.
    pub overwrite: bool,
    pub progress: bool,
    /// Free bytes to assume instead of asking the file system (tests).
    pub assume_free_bytes: Option<u64>,
}

impl BuildConfig {
    /// The chroma subsampling the JPEGs get.
    pub fn chroma(&self) -> Chroma {
        self.chroma.unwrap_or(Chroma::default_for(self.quality))
    }

    pub fn new(input: InputOptions, output: PathBuf) -> Self {
        Self {
            input,
            output,
            encoding: Encoding::Raw,
            quality: 90,
            chroma: None,
            raw_fraction: 0.0,
            whole: None,
            shard_rows: 1024,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            seed: 0,
            max_reject_rate: 0.01,
            overwrite: false,
            progress: true,
            assume_free_bytes: None,
        }
    }
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub output: PathBuf,
    pub encoding: Encoding,
    pub train_rows: u64,
    pub val_rows: u64,
    pub train_shards: usize,
    pub val_shards: usize,
    pub rejected: u64,
    pub inputs: u64,
    /// Rejections by kind (the reason up to its first ':').
    pub reject_kinds: BTreeMap<String, u64>,
    pub shards_kept: usize,
    pub shards_built: usize,
    pub images_processed: u64,
    pub seconds: f64,
    pub bytes: u64,
    pub val_layout: String,
    /// Checks of the official archives' counts (empty for other inputs).
    pub notes: Vec<String>,
    /// Archive members indexed, and the seconds the index pass took (0 for folders).
    pub indexed: u64,
    pub index_seconds: f64,
    pub manifest: Manifest,
}

pub fn run(cfg: &BuildConfig) -> Result<BuildSummary> {
    if cfg.shard_rows == 0 {
        bail!("--shard-rows must be at least 1");
    }
    if !(1..=100).contains(&cfg.quality) {
        bail!("--quality must be in 1..=100");
    }
    if (cfg.encoding == Encoding::Mixed) != (cfg.raw_fraction > 0.0 && cfg.raw_fraction < 1.0) {
        bail!("a mixed build needs a raw fraction strictly between 0 and 1 (--raw-fraction), and only it has one");
    }
    let t0 = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .thread_name(|i| format!("preprocess-{i}"))
        .build()
        .context("starting worker threads")?;
    let inputs = pool.install(|| discover(&cfg.input))?;
    if inputs.val.is_empty() {
        bail!(
            "{}: no val images ({}): a dataset needs a val split (training checks the error on it after every \
             epoch); give the val folder or archive",
            cfg.input.root.display(),
            inputs.val_layout
        );
    }
    let plan = plan_shards(&inputs, cfg);
    if let Some((_, size)) = cfg.whole {
        if !(8..=4096).contains(&size) {
            bail!("the whole-image size must be in 8..=4096 (got {size})");
        }
    }
    let identity = Identity {
        format_version: alexnet_shared::needed_version(cfg.encoding, cfg.whole.is_some()),
        whole: cfg.whole,
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        encoding: cfg.encoding,
        quality: cfg.encoding.has_jpeg().then_some(cfg.quality),
        // Recorded only when it is not the quality's default, so that builds started
        // before the option resume.
        chroma: (cfg.encoding.has_jpeg() && cfg.chroma() != Chroma::default_for(cfg.quality)).then_some(cfg.chroma()),
        raw_fraction: (cfg.encoding == Encoding::Mixed).then_some(cfg.raw_fraction),
        shard_rows: cfg.shard_rows,
        seed: cfg.seed,
        limit_per_class: cfg.input.limit_per_class,
        inputs_sha256: inputs_fingerprint(&inputs),
    };
    let out = &cfg.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = lock_output(out)?;

    let mut state = open_state(out, identity, cfg.overwrite)?;
    // Claim the folder before the first shard lands, so that a build killed at any point
    // is recognised as this build by the rerun.
    state.save(out)?;
    remove_temporaries(out)?;

    // Finished shards are kept only if their bytes are still what was recorded.
    let recorded: Vec<(String, String)> =
        state.shards.iter().map(|(f, r)| (f.clone(), r.entry.sha256.clone())).collect();
    let intact: Vec<bool> = pool.install(|| {
        recorded
            .par_iter()
            .map(|(f, sha)| alexnet_shared::sha256_file(&out.join(f)).map(|s| &s == sha).unwrap_or(false))
            .collect()
    });
    let mut counted = HashSet::new();
    let mut damaged = Vec::new();
    // Shards with a rejected input file that changed since (fixed by the user): rebuilt,
    // counting in the statistics only the rows of those inputs (the rest are counted).
    let mut retry: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for ((file, _), ok) in recorded.iter().zip(intact) {
        let changed = state.shards[file].changed_rejects();
        if !changed.is_empty() {
            retry.insert(file.clone(), changed.into_iter().collect());
        } else if !ok {
            damaged.push(file.clone());
        } else {
            counted.insert(file.clone());
        }
    }
    if !retry.is_empty() {
        let mut names: Vec<&String> = retry.keys().collect();
        names.sort();
        alexnet_shared::err_line!(
            "preprocess: {} rejected input(s) changed since the last run and are retried: rebuilding {}",
            retry.values().map(HashSet::len).sum::<usize>(),
            names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if !damaged.is_empty() {
        alexnet_shared::err_line!(
            "preprocess: {} finished shard(s) are missing or damaged and will be rebuilt: {}",
            damaged.len(),
            damaged.join(", ")
        );
    }
    let pending: Vec<&PlannedShard> = plan.iter().filter(|p| !counted.contains(&p.file)).collect();
    let shards_kept = plan.len() - pending.len();
    let pending_rows: u64 = pending.iter().map(|p| p.items.len() as u64).sum();
    if shards_kept > 0 {
        alexnet_shared::err_line!(
            "preprocess: resuming: {shards_kept} finished shard(s) verified and kept, {} to build",
            pending.len()
        );
    }

    space::check_space(cfg, &inputs, &pending, &pool)?;

    let writer = ShardWriter::for_kind(ShardKind { encoding: cfg.encoding, whole: cfg.whole.map(|w| w.1) });
    let progress = Progress::new("build", pending_rows, cfg.progress);
    let (tx, rx) = crossbeam_channel::bounded::<ShardOutput>(1);
    let dir = out.clone();
    let already_counted: HashSet<String> = damaged.into_iter().collect();
    let write_thread = std::thread::Builder::new()
        .name("preprocess-writer".into())
        .spawn(move || -> Result<State> {
            for shard in rx {
                write_shard(&dir, &writer, &mut state, shard, &already_counted)?;
            }
            Ok(state)
        })
        .context("starting the writer thread")?;

    let mut send_failed = false;
    for (i, p) in pending.iter().enumerate() {
        let output = std::thread::scope(|s| {
            // The next shard's archive members are read from disk while this one decodes
            // (a hint that can block on a busy disk, so not on this thread).
            if let Some(next) = pending.get(i + 1).filter(|_| !inputs.archives.is_empty()) {
                let inputs = &inputs;
                let _ = std::thread::Builder::new()
                    .name("preprocess-prefetch".into())
                    .spawn_scoped(s, move || inputs.prefetch(&next.items));
            }
            pool.install(|| make_shard(p, cfg, &inputs, &progress, retry.get(&p.file)))
        });
        if tx.send(output).is_err() {
            send_failed = true;
            break;
        }
    }
    drop(tx);
    let state = match write_thread.join() {
        Ok(r) => r?,
        Err(p) => bail!("the shard writer thread panicked: {}", alexnet_shared::guard::panic_message(p.as_ref())),
    };
    if send_failed {
        bail!("the shard writer stopped early");
    }
    progress.finish();
    finish::finish(cfg, &inputs, &plan, state, shards_kept, pending.len(), pending_rows, t0)
}

/// Takes the output folder's lock, or says which build holds it.
fn lock_output(out: &std::path::Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = out.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match fs4::FileExt::try_lock(&f) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            bail!(
                "{} is being built by another preprocess build ({}, holding the lock {}); wait for it to finish, \
                 or stop it, or use another --output",
                out.display(),
                holder.trim().strip_prefix("pid ").map(|p| format!("pid {p}")).unwrap_or_else(|| "pid unknown".into()),
                path.display()
            )
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    f.set_len(0).and_then(|_| f.rewind()).and_then(|_| writeln!(f, "pid {}", std::process::id())).ok();
    Ok(f)
}
