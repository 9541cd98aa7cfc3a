//! Making a shard: decode and resize its images in parallel into one buffer, add up
//! the statistics, encode (JPEG); and writing it (temporary name, fsync, rename) and
//! recording it in the state.

use std::collections::HashSet;
use std::path::Path;

use alexnet_shared::progress::Progress;
use alexnet_shared::{
    accumulate_region, Encoding, Moments, PixelStats, ShardImages, ShardRows, ShardWriter, Split, IMAGE_BYTES,
};
use anyhow::{Context, Result};
use rayon::prelude::*;

use super::plan::PlannedShard;
use super::state::{stamp, RejectedFile, ShardRecord, State};
use super::BuildConfig;
use crate::imageproc::{encode_jpeg, process};
use crate::inputs::{Inputs, Source};

/// A decoded shard on its way to the writer.
pub(super) struct ShardOutput {
    split: Split,
    file: String,
    /// Raw pixels of the kept rows.
    pixels: Vec<u8>,
    jpeg: Option<Vec<Vec<u8>>>,
    labels: Vec<i16>,
    keys: Vec<String>,
    rejects: Vec<(String, String)>,
    rejected_files: Vec<RejectedFile>,
    stats: Option<PixelStats>,
}

/// Decodes and resizes one shard's images in parallel into one buffer, drops rejects,
/// adds up the statistics (train) and encodes (JPEG). Runs inside the worker pool.
/// `count_only`: the statistics cover only the rows of these keys (a shard rebuilt to
/// retry its changed rejects: the other rows are already counted).
pub(super) fn make_shard(
    p: &PlannedShard,
    cfg: &BuildConfig,
    inputs: &Inputs,
    progress: &Progress,
    count_only: Option<&HashSet<String>>,
) -> ShardOutput {
    let n = p.items.len();
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    let results: Vec<Result<(), String>> = pixels
        .par_chunks_mut(IMAGE_BYTES)
        .zip(p.items.par_iter())
        .map_init(fast_image_resize::Resizer::new, |rz, (slot, item)| {
            // Straight out of the archive's map, or read from the file.
            let r = inputs.read(item).and_then(|bytes| process(rz, &bytes, slot));
            progress.inc(1, r.is_err());
            r
        })
        .collect();
    let mut labels = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut rejects = Vec::new();
    let mut rejected_files = Vec::new();
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
            Err(reason) => {
                if let Source::File(path) = &item.source {
                    rejected_files.push(RejectedFile { key: item.key.clone(), path: path.clone(), stamp: stamp(path) });
                }
                rejects.push((inputs.describe(item), reason))
            }
        }
    }
    pixels.truncate(kept * IMAGE_BYTES);
    let counted: std::borrow::Cow<[u8]> = match count_only {
        None => std::borrow::Cow::Borrowed(&pixels),
        Some(count_only_keys) => std::borrow::Cow::Owned(
            pixels
                .chunks_exact(IMAGE_BYTES)
                .zip(&keys)
                .filter(|(_, k)| count_only_keys.contains(*k))
                .flat_map(|(px, _)| px.iter().copied())
                .collect(),
        ),
    };

    let stats = (p.split == Split::Train).then(|| {
        const REGION: usize = 3 * 2048;
        let mut s = PixelStats::new();
        let m = s
            .pixel_sum
            .par_chunks_mut(REGION)
            .enumerate()
            .map(|(k, sums)| accumulate_region(&counted, k * REGION, sums))
            .reduce(Moments::default, Moments::merge);
        s.add_counted(counted.len() / IMAGE_BYTES, m);
        s
    });
    let jpeg = (cfg.encoding == Encoding::Jpeg).then(|| {
        pixels
            .par_chunks(IMAGE_BYTES)
            .map(|img| encode_jpeg(img, cfg.quality).expect("encoding a 256x256 RGB image cannot fail"))
            .collect()
    });
    drop(counted);
    ShardOutput { split: p.split, file: p.file.clone(), pixels, jpeg, labels, keys, rejects, rejected_files, stats }
}

pub(super) fn write_shard(
    dir: &Path,
    writer: &ShardWriter,
    state: &mut State,
    shard: ShardOutput,
    already_counted: &HashSet<String>,
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
    state.shards.insert(
        shard.file.clone(),
        ShardRecord { split: shard.split, entry, rejects: shard.rejects, rejected_files: shard.rejected_files },
    );
    state.save(dir)
}
