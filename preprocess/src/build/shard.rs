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
use crate::imageproc::{
    encode_jpeg, encode_jpeg_sized, process, process_image, process_whole, process_whole_image, WholeImage,
};
use crate::inputs::{Inputs, Source};

/// A decoded shard on its way to the writer.
pub(super) struct ShardOutput {
    split: Split,
    file: String,
    /// Raw pixels of the kept rows (centre squares).
    pixels: Vec<u8>,
    /// One value per kept row: JPEGs, or the raw pixels of whole images.
    per_row: Option<Vec<Vec<u8>>>,
    /// (height, width) of each kept row: whole images only.
    sizes: Vec<(u16, u16)>,
    /// Mixed shards: whether each kept row is stored raw (its `per_row` value is then
    /// the pixels), else JPEG. Empty for other encodings.
    raw: Vec<bool>,
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
    if cfg.whole.is_some() {
        return make_whole_shard(p, cfg, inputs, progress, count_only);
    }
    let n = p.items.len();
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    let results: Vec<Result<(), String>> = pixels
        .par_chunks_mut(IMAGE_BYTES)
        .zip(p.items.par_iter())
        .map_init(fast_image_resize::Resizer::new, |rz, (slot, item)| {
            // Straight out of the archive's map, or read from the file.
            let r = match inputs.pixels(item) {
                Some(img) => process_image(rz, &img, slot),
                None => inputs.read(item).and_then(|bytes| process(rz, &bytes, slot)),
            };
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
    let mut per_row: Option<Vec<Vec<u8>>> = cfg.encoding.has_jpeg().then(|| {
        pixels
            .par_chunks(IMAGE_BYTES)
            .map(|img| encode_jpeg(img, cfg.quality, cfg.chroma()).expect("encoding a 256x256 RGB image cannot fail"))
            .collect()
    });
    drop(counted);
    let mut raw = Vec::new();
    if let (Encoding::Mixed, Some(jpegs)) = (cfg.encoding, &mut per_row) {
        let lens: Vec<(u64, u64)> = jpegs.iter().map(|j| (j.len() as u64, IMAGE_BYTES as u64)).collect();
        raw = raw_rows(&lens, cfg.raw_fraction);
        for (i, _) in raw.iter().enumerate().filter(|(_, &r)| r) {
            jpegs[i] = pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES].to_vec();
        }
    }
    let sizes = Vec::new();
    ShardOutput {
        split: p.split,
        file: p.file.clone(),
        pixels,
        per_row,
        sizes,
        raw,
        labels,
        keys,
        rejects,
        rejected_files,
        stats,
    }
}

/// [`make_shard`] for whole images: each kept at its own rescaled size; statistics are
/// the moments of every stored pixel (no mean image).
fn make_whole_shard(
    p: &PlannedShard,
    cfg: &BuildConfig,
    inputs: &Inputs,
    progress: &Progress,
    count_only: Option<&HashSet<String>>,
) -> ShardOutput {
    let (resize, size) = cfg.whole.expect("a whole-image build");
    let results: Vec<Result<WholeImage, String>> = p
        .items
        .par_iter()
        .map_init(fast_image_resize::Resizer::new, |rz, item| {
            let r = match inputs.pixels(item) {
                Some(img) => process_whole_image(rz, &img, resize, size),
                None => inputs.read(item).and_then(|bytes| process_whole(rz, &bytes, resize, size)),
            };
            progress.inc(1, r.is_err());
            r
        })
        .collect();
    let mut images = Vec::with_capacity(results.len());
    let mut sizes = Vec::with_capacity(results.len());
    let mut labels = Vec::with_capacity(results.len());
    let mut keys = Vec::with_capacity(results.len());
    let mut rejects = Vec::new();
    let mut rejected_files = Vec::new();
    for (item, r) in p.items.iter().zip(results) {
        match r {
            Ok(img) => {
                sizes.push((img.height, img.width));
                images.push(img.pixels);
                labels.push(item.label);
                keys.push(item.key.clone());
            }
            Err(reason) => {
                if let Source::File(path) = &item.source {
                    rejected_files.push(RejectedFile { key: item.key.clone(), path: path.clone(), stamp: stamp(path) });
                }
                rejects.push((inputs.describe(item), reason))
            }
        }
    }
    let stats = (p.split == Split::Train).then(|| {
        let counted: Vec<&Vec<u8>> = images
            .iter()
            .zip(&keys)
            .filter(|(_, k)| count_only.is_none_or(|c| c.contains(*k)))
            .map(|(i, _)| i)
            .collect();
        let m = counted.par_iter().map(|px| Moments::of_pixels(px)).reduce(Moments::default, Moments::merge);
        let mut s = PixelStats::without_mean_image();
        s.add_counted(counted.len(), m);
        s
    });
    let encode = |images: &[Vec<u8>]| -> Vec<Vec<u8>> {
        images
            .par_iter()
            .zip(&sizes)
            .map(|(px, &(h, w))| {
                encode_jpeg_sized(px, w, h, cfg.quality, cfg.chroma()).expect("encoding an RGB image cannot fail")
            })
            .collect()
    };
    let mut raw = Vec::new();
    let per_row = match cfg.encoding {
        Encoding::Raw => images,
        Encoding::Jpeg => encode(&images),
        Encoding::Mixed => {
            let mut jpegs = encode(&images);
            let lens: Vec<(u64, u64)> =
                jpegs.iter().zip(&images).map(|(j, px)| (j.len() as u64, px.len() as u64)).collect();
            raw = raw_rows(&lens, cfg.raw_fraction);
            for ((j, px), &r) in jpegs.iter_mut().zip(images).zip(&raw) {
                if r {
                    *j = px;
                }
            }
            jpegs
        }
    };
    ShardOutput {
        split: p.split,
        file: p.file.clone(),
        pixels: Vec::new(),
        per_row: Some(per_row),
        sizes,
        raw,
        labels,
        keys,
        rejects,
        rejected_files,
        stats,
    }
}

pub(super) fn write_shard(
    dir: &Path,
    writer: &ShardWriter,
    state: &mut State,
    shard: ShardOutput,
    already_counted: &HashSet<String>,
) -> Result<()> {
    let images = match &shard.per_row {
        Some(j) if writer.encoding() == Encoding::Mixed => ShardImages::Mixed { images: j, raw: &shard.raw },
        Some(j) => ShardImages::PerRow(j),
        None => ShardImages::Raw(&shard.pixels),
    };
    let rows = ShardRows { images, labels: &shard.labels, keys: &shard.keys, sizes: &shard.sizes };
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

/// Which rows of a mixed shard are kept raw: the `round(fraction * n)` rows whose JPEG
/// is largest for its raw size (`lens[i]` = (JPEG bytes, raw bytes)), ties to the lower
/// row. Those cost the least extra disk per row kept raw, and are the slowest to decode
/// (a JPEG's decode time grows with its bytes). Deterministic: the same rows give the
/// same choice, so a rebuilt shard has the same bytes.
pub(crate) fn raw_rows(lens: &[(u64, u64)], fraction: f64) -> Vec<bool> {
    let n = lens.len();
    let k = ((fraction * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    // Descending jpeg/raw, compared exactly: a.j * b.r against b.j * a.r.
    order.sort_by(|&a, &b| {
        let (ja, ra) = (lens[a].0 as u128, lens[a].1.max(1) as u128);
        let (jb, rb) = (lens[b].0 as u128, lens[b].1.max(1) as u128);
        (jb * ra).cmp(&(ja * rb)).then(a.cmp(&b))
    });
    let mut raw = vec![false; n];
    for &i in &order[..k] {
        raw[i] = true;
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::raw_rows;

    #[test]
    fn raw_rows_are_the_largest_jpegs_for_their_size() {
        // Centre squares (same raw size): the two largest JPEGs of five (0.4 * 5 = 2).
        let sq = |j| (j, 196_608);
        assert_eq!(raw_rows(&[sq(30), sq(50), sq(10), sq(50), sq(20)], 0.4), [false, true, false, true, false]);
        // Ties go to the lower row; 0.25 of 5 rounds to 1.
        assert_eq!(raw_rows(&[sq(50), sq(50), sq(10), sq(9), sq(8)], 0.25), [true, false, false, false, false]);
        // Whole images: the ratio decides (9/100 beats 20/1000 though its JPEG is smaller).
        assert_eq!(raw_rows(&[(20, 1000), (9, 100), (1, 100)], 0.34), [false, true, false]);
        assert_eq!(raw_rows(&[], 0.5), Vec::<bool>::new());
        assert_eq!(raw_rows(&[sq(1)], 0.4), [false]);
        assert_eq!(raw_rows(&[sq(1)], 0.6), [true]);
    }
}
