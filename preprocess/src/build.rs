//! `preprocess build`: ImageNet folders -> dataset format v1.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use alexnet_shared::{
    accumulate_region, shard_file_name, write_mean_image, BuildInfo, Encoding, Manifest, Moments, PixelStats,
    ShardEntry, ShardImages, ShardRows, ShardWriter, Split, SplitEntry, FORMAT_VERSION, IMAGE_BYTES, IMAGE_SIDE,
    MANIFEST_FILE, MEAN_IMAGE_FILE, REJECTS_FILE,
};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::imageproc::{encode_jpeg, process, RESIZE_FILTER};
use crate::inputs::{discover, InputOptions, Inputs, Item};
use alexnet_shared::progress::Progress;

pub const STATE_FILE: &str = ".build-state.json";

/// Everything `build` needs, validated by the CLI.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub input: InputOptions,
    pub output: PathBuf,
    pub encoding: Encoding,
    /// JPEG quality (1..=100), used with `Encoding::Jpeg`.
    pub quality: u8,
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
    pub fn new(input: InputOptions, output: PathBuf) -> Self {
        Self {
            input,
            output,
            encoding: Encoding::Raw,
            quality: 90,
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
    pub manifest: Manifest,
}

/// The parameters that decide a build's bytes: a rerun with the same identity resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    format_version: u32,
    program_version: String,
    encoding: Encoding,
    quality: Option<u8>,
    shard_rows: usize,
    seed: u64,
    limit_per_class: Option<usize>,
    /// sha256 of the class list and of every (split, key, label) in order.
    inputs_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardRecord {
    split: Split,
    entry: ShardEntry,
    /// (source path, reason) of the inputs of this shard that could not be used.
    rejects: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    identity: Identity,
    /// Finished shards by file name. Their train statistics are in `train_stats`.
    shards: BTreeMap<String, ShardRecord>,
    train_stats: PixelStats,
}

impl State {
    fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("state serializes");
        alexnet_shared::atomic_write(&dir.join(STATE_FILE), &bytes).context("saving the build state")
    }
}

struct PlannedShard {
    split: Split,
    file: String,
    items: Vec<Item>,
}

/// A decoded shard on its way to the writer.
struct ShardOutput {
    split: Split,
    file: String,
    /// Raw pixels of the kept rows.
    pixels: Vec<u8>,
    jpeg: Option<Vec<Vec<u8>>>,
    labels: Vec<i16>,
    keys: Vec<String>,
    rejects: Vec<(String, String)>,
    stats: Option<PixelStats>,
}

pub fn run(cfg: &BuildConfig) -> Result<BuildSummary> {
    if cfg.shard_rows == 0 {
        bail!("--shard-rows must be at least 1");
    }
    if !(1..=100).contains(&cfg.quality) {
        bail!("--quality must be in 1..=100");
    }
    let t0 = Instant::now();
    let inputs = discover(&cfg.input)?;
    let plan = plan_shards(&inputs, cfg);
    let identity = Identity {
        format_version: FORMAT_VERSION,
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        encoding: cfg.encoding,
        quality: (cfg.encoding == Encoding::Jpeg).then_some(cfg.quality),
        shard_rows: cfg.shard_rows,
        seed: cfg.seed,
        limit_per_class: cfg.input.limit_per_class,
        inputs_sha256: inputs_fingerprint(&inputs),
    };
    let out = &cfg.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .thread_name(|i| format!("preprocess-{i}"))
        .build()
        .context("starting worker threads")?;

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
    let mut counted = std::collections::HashSet::new();
    let mut damaged = Vec::new();
    for ((file, _), ok) in recorded.iter().zip(intact) {
        if ok {
            counted.insert(file.clone());
        } else {
            damaged.push(file.clone());
        }
    }
    if !damaged.is_empty() {
        eprintln!(
            "preprocess: {} finished shard(s) are missing or damaged and will be rebuilt: {}",
            damaged.len(),
            damaged.join(", ")
        );
    }
    let pending: Vec<&PlannedShard> = plan.iter().filter(|p| !counted.contains(&p.file)).collect();
    let shards_kept = plan.len() - pending.len();
    let pending_rows: u64 = pending.iter().map(|p| p.items.len() as u64).sum();
    if shards_kept > 0 {
        eprintln!(
            "preprocess: resuming: {shards_kept} finished shard(s) verified and kept, {} to build",
            pending.len()
        );
    }

    check_space(cfg, &pending, &pool)?;

    let writer = ShardWriter::new(cfg.encoding);
    let progress = Progress::new("build", pending_rows, cfg.progress);
    let (tx, rx) = crossbeam_channel::bounded::<ShardOutput>(1);
    let dir = out.clone();
    let already_counted: std::collections::HashSet<String> = damaged.into_iter().collect();
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
    for p in &pending {
        let output = pool.install(|| make_shard(p, cfg, &progress));
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
    finish(cfg, &inputs, &plan, state, shards_kept, pending.len(), pending_rows, t0)
}

/// Train: a seeded shuffle of every train item; val: listing order (sorted).
fn plan_shards(inputs: &Inputs, cfg: &BuildConfig) -> Vec<PlannedShard> {
    let mut train = inputs.train.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    train.shuffle(&mut rng);
    let mut plan = Vec::new();
    for (split, items) in [(Split::Train, train), (Split::Val, inputs.val.clone())] {
        for (i, chunk) in items.chunks(cfg.shard_rows).enumerate() {
            plan.push(PlannedShard { split, file: shard_file_name(split, i), items: chunk.to_vec() });
        }
    }
    plan
}

fn inputs_fingerprint(inputs: &Inputs) -> String {
    let mut h = Sha256::new();
    for w in inputs.classes.wnids() {
        h.update(w.as_bytes());
        h.update(b"\n");
    }
    for (split, items) in [("train", &inputs.train), ("val", &inputs.val)] {
        for it in items {
            h.update(format!("{split}\t{}\t{}\n", it.key, it.label).as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Loads the state of a build of the same identity, or starts a new one. A folder that
/// holds a different build is refused unless `overwrite`.
fn open_state(out: &Path, identity: Identity, overwrite: bool) -> Result<State> {
    let path = out.join(STATE_FILE);
    let fresh = |identity| State { identity, shards: BTreeMap::new(), train_stats: PixelStats::new() };
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

fn remove_temporaries(out: &Path) -> Result<()> {
    for p in build_files(out)?.into_iter().filter(|p| is_temporary(p)) {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Estimates the bytes the pending shards need and refuses to start when the disk is short.
fn check_space(cfg: &BuildConfig, pending: &[&PlannedShard], pool: &rayon::ThreadPool) -> Result<()> {
    let rows: u64 = pending.iter().map(|p| p.items.len() as u64).sum();
    if rows == 0 {
        return Ok(());
    }
    let per_row = match cfg.encoding {
        Encoding::Raw => IMAGE_BYTES as u64 + 128,
        Encoding::Jpeg => {
            // Encode a sample spread over the pending work.
            let sample: Vec<&Item> =
                pending.iter().flat_map(|p| p.items.iter()).step_by((rows as usize / 24).max(1)).take(24).collect();
            let sizes: Vec<u64> = pool.install(|| {
                sample
                    .par_iter()
                    .map_init(fast_image_resize::Resizer::new, |rz, it| {
                        let bytes = std::fs::read(&it.path).ok()?;
                        let mut px = vec![0u8; IMAGE_BYTES];
                        process(rz, &bytes, &mut px).ok()?;
                        encode_jpeg(&px, cfg.quality).ok().map(|j| j.len() as u64)
                    })
                    .flatten()
                    .collect()
            });
            let mean = if sizes.is_empty() { 48 << 10 } else { sizes.iter().sum::<u64>() / sizes.len() as u64 };
            mean * 5 / 4 + 128
        }
    };
    let needed = rows * per_row + (4 << 20);
    let free = match cfg.assume_free_bytes {
        Some(b) => b,
        None => fs4::available_space(&cfg.output)
            .with_context(|| format!("asking the free space of {}", cfg.output.display()))?,
    };
    if needed > free {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "not enough disk space in {}: the build needs about {:.2} GiB for {rows} images ({}), {:.2} GiB are free. \
             Free some space, choose another --output{}",
            cfg.output.display(),
            gib(needed),
            cfg.encoding.name(),
            gib(free),
            if cfg.encoding == Encoding::Raw {
                ", or use --encoding jpeg (about 8x smaller)"
            } else {
                ", or lower --quality"
            }
        );
    }
    Ok(())
}

/// Decodes and resizes one shard's images in parallel into one buffer, drops rejects,
/// adds up the statistics (train) and encodes (JPEG). Runs inside the worker pool.
fn make_shard(p: &PlannedShard, cfg: &BuildConfig, progress: &Progress) -> ShardOutput {
    let n = p.items.len();
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    let results: Vec<Result<(), String>> = pixels
        .par_chunks_mut(IMAGE_BYTES)
        .zip(p.items.par_iter())
        .map_init(fast_image_resize::Resizer::new, |rz, (slot, item)| {
            let r = std::fs::read(&item.path)
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(|bytes| process(rz, &bytes, slot));
            progress.inc(1, r.is_err());
            r
        })
        .collect();
    let mut labels = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut rejects = Vec::new();
    let mut kept = 0;
    for (i, (item, r)) in p.items.iter().zip(results).enumerate() {
        match r {
            Ok(()) => {
                if kept != i {
                    pixels.copy_within(i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES, kept * IMAGE_BYTES);
                }
                labels.push(item.label);
                keys.push(item.key.clone());
                kept += 1;
            }
            Err(reason) => rejects.push((item.path.display().to_string(), reason)),
        }
    }
    pixels.truncate(kept * IMAGE_BYTES);

    let stats = (p.split == Split::Train).then(|| {
        const REGION: usize = 3 * 2048;
        let mut s = PixelStats::new();
        let m = s
            .pixel_sum
            .par_chunks_mut(REGION)
            .enumerate()
            .map(|(k, sums)| accumulate_region(&pixels, k * REGION, sums))
            .reduce(Moments::default, Moments::merge);
        s.add_counted(kept, m);
        s
    });
    let jpeg = (cfg.encoding == Encoding::Jpeg).then(|| {
        pixels
            .par_chunks(IMAGE_BYTES)
            .map(|img| encode_jpeg(img, cfg.quality).expect("encoding a 256x256 RGB image cannot fail"))
            .collect()
    });
    ShardOutput { split: p.split, file: p.file.clone(), pixels, jpeg, labels, keys, rejects, stats }
}

fn write_shard(
    dir: &Path,
    writer: &ShardWriter,
    state: &mut State,
    shard: ShardOutput,
    already_counted: &std::collections::HashSet<String>,
) -> Result<()> {
    let images = match &shard.jpeg {
        Some(j) => ShardImages::Jpeg(j),
        None => ShardImages::Raw(&shard.pixels),
    };
    let rows = ShardRows { images, labels: &shard.labels, keys: &shard.keys };
    let entry = writer.write(&dir.join(&shard.file), &rows).with_context(|| format!("writing shard {}", shard.file))?;
    // A damaged shard that is rebuilt was counted before: the same inputs give the same
    // pixels, so its statistics are already in the sums.
    if let Some(stats) = &shard.stats {
        if !already_counted.contains(&shard.file) {
            state.train_stats.merge(stats);
        }
    }
    state.shards.insert(shard.file.clone(), ShardRecord { split: shard.split, entry, rejects: shard.rejects });
    state.save(dir)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &BuildConfig,
    inputs: &Inputs,
    plan: &[PlannedShard],
    state: State,
    shards_kept: usize,
    shards_built: usize,
    images_processed: u64,
    t0: Instant,
) -> Result<BuildSummary> {
    let out = &cfg.output;
    let mut splits: BTreeMap<String, SplitEntry> = BTreeMap::new();
    let mut rejects: Vec<(String, String)> = Vec::new();
    for p in plan {
        let rec = state.shards.get(&p.file).with_context(|| format!("shard {} was not written", p.file))?;
        let e = splits.entry(p.split.name().to_string()).or_default();
        e.rows += rec.entry.rows;
        e.shards.push(rec.entry.clone());
        rejects.extend(rec.rejects.iter().cloned());
    }
    if let Some(val_dir) = &inputs.val_dir {
        splits.entry("val".into()).or_default();
        rejects
            .extend(inputs.val_rejects.iter().map(|r| (val_dir.join(&r.key).display().to_string(), r.reason.clone())));
    }
    rejects.sort();
    let mut tsv = String::from("path\treason\n");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (path, reason) in &rejects {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        tsv.push_str(&format!("{}\t{}\n", clean(path), clean(reason)));
        *kinds.entry(reason.split(':').next().unwrap_or(reason).trim().to_string()).or_default() += 1;
    }
    alexnet_shared::atomic_write(&out.join(REJECTS_FILE), tsv.as_bytes())?;

    let inputs_total = (inputs.train.len() + inputs.val.len() + inputs.val_rejects.len()) as u64;
    let rejected = rejects.len() as u64;
    let rate = rejected as f64 / inputs_total.max(1) as f64;
    if rate > cfg.max_reject_rate {
        let why: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        bail!(
            "{rejected} of {inputs_total} inputs ({:.2}%) could not be used, more than --max-reject-rate {:.2}% ({}); \
             see {}. The finished shards are kept: fix the inputs or raise the threshold and rerun",
            100.0 * rate,
            100.0 * cfg.max_reject_rate,
            why.join(", "),
            out.join(REJECTS_FILE).display()
        );
    }
    let train_rows = splits.get("train").map_or(0, |s| s.rows);
    if train_rows == 0 {
        bail!("no train image could be used; see {}", out.join(REJECTS_FILE).display());
    }
    let stats = state.train_stats.summary()?;
    if state.train_stats.images != train_rows {
        bail!(
            "internal error: statistics cover {} train images, the shards hold {train_rows}; rerun with --overwrite",
            state.train_stats.images
        );
    }
    write_mean_image(&out.join(MEAN_IMAGE_FILE), &state.train_stats.mean_image())?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        image_size: IMAGE_SIDE as u32,
        encoding: cfg.encoding,
        classes: inputs.classes.entries(&inputs.names),
        splits,
        stats,
        mean_image: MEAN_IMAGE_FILE.into(),
        rejected,
        build: BuildInfo {
            program: "preprocess".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            seed: cfg.seed,
            shard_rows: cfg.shard_rows,
            quality: (cfg.encoding == Encoding::Jpeg).then_some(cfg.quality),
            limit_per_class: cfg.input.limit_per_class,
            resize_filter: RESIZE_FILTER.into(),
            source: cfg.input.root.display().to_string(),
        },
    };
    manifest.save(out)?;
    let bytes =
        state.shards.values().map(|r| std::fs::metadata(out.join(&r.entry.file)).map(|m| m.len()).unwrap_or(0)).sum();
    let count = |s: &str| manifest.splits.get(s).map_or(0, |e| e.shards.len());
    Ok(BuildSummary {
        output: out.clone(),
        encoding: cfg.encoding,
        train_rows,
        val_rows: manifest.splits.get("val").map_or(0, |s| s.rows),
        train_shards: count("train"),
        val_shards: count("val"),
        rejected,
        inputs: inputs_total,
        reject_kinds: kinds,
        shards_kept,
        shards_built,
        images_processed,
        seconds: t0.elapsed().as_secs_f64(),
        bytes,
        val_layout: inputs.val_layout.clone(),
        manifest,
    })
}
