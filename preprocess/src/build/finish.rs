//! Finishing a build: rejects.tsv, the reject-rate check, the mean image and the
//! manifest.

use std::collections::BTreeMap;
use std::time::Instant;

use alexnet_shared::{
    write_mean_image, BuildInfo, Encoding, Layout, Manifest, SplitEntry, IMAGE_SIDE, MEAN_IMAGE_FILE, REJECTS_FILE,
};
use anyhow::{bail, Context, Result};

use super::plan::PlannedShard;
use super::state::State;
use super::{BuildConfig, BuildSummary};
use crate::imageproc::{RESIZE_FILTER, RESIZE_FILTER_WHOLE};
use crate::inputs::Inputs;

#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
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
    if inputs.has_val {
        splits.entry("val".into()).or_default();
    }
    rejects.extend(inputs.list_rejects.iter().map(|r| (r.path.clone(), r.reason.clone())));
    rejects.sort();
    let mut tsv = String::from("path\treason\n");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (path, reason) in &rejects {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        tsv.push_str(&format!("{}\t{}\n", clean(path), clean(reason)));
        *kinds.entry(reason.split(':').next().unwrap_or(reason).trim().to_string()).or_default() += 1;
    }
    alexnet_shared::atomic_write(&out.join(REJECTS_FILE), tsv.as_bytes())?;

    let inputs_total = (inputs.train.len() + inputs.val.len() + inputs.list_rejects.len()) as u64;
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
    let (layout, image_size, mean_image) = match cfg.whole {
        None => {
            write_mean_image(&out.join(MEAN_IMAGE_FILE), &state.train_stats.mean_image())?;
            (Layout::CenterSquare, IMAGE_SIDE as u32, Some(MEAN_IMAGE_FILE.to_string()))
        }
        Some((resize, size)) => (Layout::Whole { resize }, size, None),
    };
    let mut manifest = Manifest {
        format_version: 0,
        image_size,
        layout,
        encoding: cfg.encoding,
        classes: inputs.classes.entries(&inputs.names),
        splits,
        stats,
        mean_image,
        rejected,
        build: BuildInfo {
            program: "preprocess".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            seed: cfg.seed,
            shard_rows: cfg.shard_rows,
            quality: cfg.encoding.has_jpeg().then_some(cfg.quality),
            chroma: cfg.encoding.has_jpeg().then_some(cfg.chroma()),
            raw_fraction: (cfg.encoding == Encoding::Mixed).then_some(cfg.raw_fraction),
            limit_per_class: cfg.input.limit_per_class,
            resize_filter: if cfg.whole.is_some() { RESIZE_FILTER_WHOLE } else { RESIZE_FILTER }.into(),
            source: inputs.source.clone(),
            archives: inputs.archive_info.clone(),
        },
    };
    manifest.format_version = manifest.needed_version();
    manifest.check().map_err(|m| anyhow::anyhow!("the dataset cannot be used: {m}"))?;
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
        notes: inputs.notes.clone(),
        indexed: inputs.indexed,
        index_seconds: inputs.index_seconds,
        manifest,
    })
}
