//! `eval neighbors`: the paper's retrieval (section 6.1, figure 4): for a few query
//! images, the training images whose last-hidden-layer activations (fc7 after its ReLU,
//! 4096-d at full size) are nearest in Euclidean distance.
//!
//! Memory stays bounded on the whole 1.28 M-image train split: the queries' features are
//! held (Q x 4096), the train split streams through the loader in batches, and each
//! query keeps a running list of its k nearest (distance, row), merged batch by batch;
//! no train feature is kept. Distances are computed directly (`cdist` without the
//! `|a|^2 + |b|^2 - 2ab` expansion, which loses the small distances to cancellation).
//! Queries and train images go through the same input pipeline: the center crop and the
//! checkpoint's normalization.

use std::path::PathBuf;
use std::sync::Arc;

use alexnet_shared::{Dataset, Split, SplitReader, IMAGE_SIDE};
use anyhow::{bail, ensure, Context, Result};
use image::{imageops::FilterType, RgbImage};
use tch::{Device, Kind, Tensor};
use trainer::data::{Crops, LoaderConfig, Normalization, Pipeline, Rows};

use crate::checkpoint::{open, LoadedModel, Overrides};
use alexnet_shared::progress::Progress;

#[derive(Debug, Clone)]
pub struct NeighborsConfig {
    pub checkpoint: PathBuf,
    pub data: PathBuf,
    /// Split the queries come from (val in the paper's figure; train for self-checks).
    pub query_split: Split,
    /// Rows of `query_split`.
    pub query_rows: Vec<usize>,
    /// Neighbours per query (figure 4 shows 6).
    pub k: usize,
    pub batch_size: usize,
    pub workers: usize,
    pub device: Device,
    pub overrides: Overrides,
    /// Search only the first N train images.
    pub limit: Option<usize>,
    pub progress: bool,
}

/// One neighbour of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor {
    pub row: usize,
    pub distance: f32,
}

#[derive(Debug, Clone)]
pub struct QueryResult {
    pub row: usize,
    pub neighbors: Vec<Neighbor>,
}

/// Evenly spread rows of a split: `n` queries over `len` rows.
pub fn spread_rows(n: usize, len: usize) -> Vec<usize> {
    (0..n.min(len)).map(|i| i * len / n.min(len).max(1)).collect()
}

/// The dataset's mean image, when `model` is normalized with it.
fn mean_image(model: &LoadedModel, ds: &Dataset) -> Result<Option<Vec<f32>>> {
    if model.normalization != Normalization::MeanImage {
        return Ok(None);
    }
    Ok(Some(ds.mean_image()?))
}

/// The center crops of `rows` of `split` (all of it: `Rows::All`), in order, normalized
/// for `model` and ready on the device.
fn pipeline(
    model: &LoadedModel,
    ds: &Dataset,
    split: Arc<SplitReader>,
    rows: Rows,
    cfg: &NeighborsConfig,
) -> Result<Pipeline> {
    let mut lc = LoaderConfig::new(cfg.batch_size, model.config().crop, Crops::Center);
    lc.workers = cfg.workers;
    lc.prefetch = 2;
    lc.flip = false;
    lc.pca_noise = false;
    lc.rows = rows;
    let mean = mean_image(model, ds)?;
    Ok(Pipeline::new(split, lc, ds.manifest(), mean.as_deref(), model.normalization, cfg.device)?)
}

/// fc7 features [N, D] (float32, on the CPU) of rows `rows` of `split` (center crops),
/// through the same pipeline as the searched train images.
pub fn features_of_rows(
    model: &LoadedModel,
    ds: &Dataset,
    split: Split,
    rows: &[usize],
    cfg: &NeighborsConfig,
) -> Result<Tensor> {
    let reader = Arc::new(ds.split(split)?);
    if let Some(&row) = rows.iter().find(|&&r| r >= reader.len()) {
        bail!("row {row} is outside the {split} split ({} rows)", reader.len());
    }
    let mut p = pipeline(model, ds, reader, Rows::Only(Arc::new(rows.to_vec())), cfg)?;
    p.start(0);
    let mut out = Vec::with_capacity(rows.len().div_ceil(cfg.batch_size.max(1)));
    while let Some(batch) = p.next_batch()? {
        let x = p.input(&batch, false)?;
        out.push(model.fc7(&x)?.f_to_device(Device::Cpu)?);
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

/// The 256x256x3 pixels of a row (raw shards: a slice of the map; JPEG: decoded).
fn pixels<'a>(reader: &'a SplitReader, row: usize, decoded: &'a mut [u8]) -> Result<&'a [u8]> {
    let (s, r) =
        reader.locate(row).with_context(|| format!("row {row} is outside the split ({} rows)", reader.len()))?;
    let shard = &reader.shards()[s];
    let bytes = shard.image(r)?; // checked (CRC-32C or the shard's sha256)
    if !shard.is_jpeg(r) {
        return Ok(bytes);
    }
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .with_context(|| format!("{}: row {r}: bad JPEG", shard.path().display()))?
        .to_rgb8();
    ensure!(
        img.dimensions() == (IMAGE_SIDE as u32, IMAGE_SIDE as u32),
        "{}: row {r}: not 256x256",
        shard.path().display()
    );
    decoded.copy_from_slice(img.as_raw());
    Ok(decoded)
}

/// Merges a batch's candidates into a query's sorted list of the k nearest (ties: the
/// lower row first).
fn merge(best: &mut Vec<Neighbor>, candidates: impl IntoIterator<Item = Neighbor>, k: usize) {
    best.extend(candidates);
    best.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    best.truncate(k);
}

pub fn run(cfg: &NeighborsConfig) -> Result<(Vec<QueryResult>, LoadedModel)> {
    ensure!(
        cfg.k >= 1 && cfg.batch_size >= 1 && cfg.workers >= 1,
        "--k, --batch-size and --workers must be at least 1"
    );
    ensure!(!cfg.query_rows.is_empty(), "no query images: give --queries N or --query-rows");
    let ds = Dataset::open(&cfg.data)?;
    let model = open(&cfg.checkpoint, &cfg.overrides, &ds.manifest().wnids(), cfg.device, false)?;
    let train = Arc::new(ds.split(Split::Train)?);
    ensure!(!train.is_empty(), "{}: the train split is empty", cfg.data.display());
    let qlen = ds.manifest().split(cfg.query_split).map_or(0, |s| s.rows as usize);
    if let Some(&r) = cfg.query_rows.iter().find(|&&r| r >= qlen) {
        bail!("query row {r} is outside the {} split ({qlen} rows)", cfg.query_split);
    }
    let search = cfg.limit.map_or(train.len(), |l| l.min(train.len()));
    let queries = tch::no_grad(|| features_of_rows(&model, &ds, cfg.query_split, &cfg.query_rows, cfg))?;
    let queries = queries.f_to_device(cfg.device)?.f_to_kind(Kind::Float)?; // [Q, D]
    let mut best: Vec<Vec<Neighbor>> = vec![Vec::with_capacity(2 * cfg.k); cfg.query_rows.len()];
    let mut train = pipeline(&model, &ds, train, Rows::All, cfg)?;
    train.start(0);
    let progress = Progress::new("neighbors", search as u64, cfg.progress);
    let mut seen = 0usize;
    tch::no_grad(|| -> Result<()> {
        while seen < search {
            let Some(batch) = train.next_batch()? else { break };
            let rows: Vec<usize> = batch.rows().to_vec();
            let x = train.input(&batch, false)?;
            let f = model.fc7(&x)?; // [B, D]
            drop(batch);
            let take = rows.len().min(search - seen);
            let f = f.f_narrow(0, 0, take as i64)?;
            // [Q, B] exact pairwise distances (compute mode 2: no matrix-product form)
            let d = Tensor::f_cdist(&queries, &f, 2.0, 2)?;
            let kk = cfg.k.min(take) as i64;
            let (vals, idx) = d.f_topk(kk, 1, false, true)?;
            // Device -> host: one sync per batch.
            let vals: Vec<f32> = Vec::try_from(vals.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
            let idx: Vec<i64> = Vec::try_from(idx.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
            for (q, list) in best.iter_mut().enumerate() {
                let r = q * kk as usize..(q + 1) * kk as usize;
                let cands = vals[r.clone()]
                    .iter()
                    .zip(&idx[r])
                    .map(|(&distance, &i)| Neighbor { row: rows[i as usize], distance });
                merge(list, cands, cfg.k);
            }
            seen += take;
            progress.inc(take as u64, false);
        }
        Ok(())
    })?;
    progress.finish();
    let results = cfg.query_rows.iter().zip(best).map(|(&row, neighbors)| QueryResult { row, neighbors }).collect();
    Ok((results, model))
}

/// `query_split,query_row,query_key,query_label,rank,train_row,train_key,train_label,distance`
pub fn write_list(path: &std::path::Path, data: &std::path::Path, split: Split, results: &[QueryResult]) -> Result<()> {
    let ds = Dataset::open(data)?;
    let (qs, train) = (ds.split(split)?, ds.split(Split::Train)?);
    let mut text =
        String::from("query_split,query_row,query_key,query_label,rank,train_row,train_key,train_label,distance\n");
    for q in results {
        let qi = qs.get(q.row)?;
        for (rank, n) in q.neighbors.iter().enumerate() {
            let t = train.get(n.row)?;
            text += &format!(
                "{split},{},{},{},{},{},{},{},{}\n",
                q.row,
                crate::predictions::csv_field(qi.key),
                qi.label,
                rank + 1,
                n.row,
                crate::predictions::csv_field(t.key),
                t.label,
                n.distance
            );
        }
    }
    alexnet_shared::atomic_write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

const GRID_PAD: u32 = 4;
/// The band above the grid (column titles) and under each image (class, distance).
const HEADER: u32 = 24;
const LABEL: u32 = 32;
const TEXT: u32 = 12;

/// Width and height in pixels of the [`grid`] of `queries` rows of `k` neighbours.
pub fn grid_size(queries: usize, k: usize, thumb: u32) -> (u32, u32) {
    let (pad, gap) = (GRID_PAD as u64, 4 * GRID_PAD as u64);
    let w = pad + (thumb as u64 + pad) * (k as u64 + 1) + gap;
    let h = HEADER as u64 + pad + (thumb as u64 + LABEL as u64 + pad) * queries as u64;
    (w.min(u32::MAX as u64) as u32, h.min(u32::MAX as u64) as u32)
}

/// The picture: one row per query, the query image, a gap, then its neighbours nearest
/// first (the stored 256x256 images, scaled to `thumb` pixels). Under each image its
/// class name, and under a neighbour its distance; a neighbour of another class than
/// its query has a red frame and a red name. Column titles on top.
pub fn grid(data: &std::path::Path, split: Split, results: &[QueryResult], k: usize, thumb: u32) -> Result<RgbImage> {
    use crate::text::{fit, frame, Label};
    let ds = Dataset::open(data)?;
    let names: Vec<String> = ds.manifest().classes.iter().map(|c| c.name.clone()).collect();
    let name = |label: i64| names.get(label as usize).cloned().unwrap_or_else(|| format!("class {label}"));
    let (qs, train) = (ds.split(split)?, ds.split(Split::Train)?);
    let (width, height) = grid_size(results.len(), k, thumb);
    let (pad, gap) = (GRID_PAD, 4 * GRID_PAD);
    let mut img = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut decoded = vec![0u8; alexnet_shared::IMAGE_BYTES];
    let side = IMAGE_SIDE as u32;
    let mut draw = |reader: &SplitReader, row: usize, x: u32, y: u32, img: &mut RgbImage| -> Result<i64> {
        let label = reader.get(row)?.label as i64;
        let px = pixels(reader, row, &mut decoded)?;
        let full = RgbImage::from_raw(side, side, px.to_vec()).expect("256x256x3 bytes");
        let small =
            if thumb == side { full } else { image::imageops::resize(&full, thumb, thumb, FilterType::Triangle) };
        image::imageops::replace(img, &small, x as i64, y as i64);
        Ok(label)
    };
    let (black, red, grey) = (image::Rgb([0, 0, 0]), image::Rgb([200, 0, 0]), image::Rgb([90, 90, 90]));
    let first = pad + thumb + pad + gap;
    let mut labels = vec![
        Label { x: pad as i32, y: 5, text: fit(&format!("{split} query"), thumb, TEXT), size: TEXT, color: black },
        Label {
            x: first as i32,
            y: 5,
            text: fit(
                "train images nearest by fc7 distance, nearest first (red: another class than the query)",
                width.saturating_sub(first + pad),
                TEXT,
            ),
            size: TEXT,
            color: black,
        },
    ];
    for (i, q) in results.iter().enumerate() {
        let y = HEADER + pad + i as u32 * (thumb + LABEL + pad);
        // Two lines under the image at column x: its class name, then a grey detail.
        let text_y = (y + thumb + 3) as i32;
        let mut under = |x: u32, name: String, color, detail: String| {
            labels.push(Label { x: x as i32, y: text_y, text: fit(&name, thumb, TEXT), size: TEXT, color });
            let y = text_y + TEXT as i32 + 2;
            labels.push(Label { x: x as i32, y, text: fit(&detail, thumb, TEXT), size: TEXT, color: grey });
        };
        let ql = draw(&qs, q.row, pad, y, &mut img)?;
        under(pad, name(ql), black, format!("row {}", q.row));
        for (j, n) in q.neighbors.iter().enumerate() {
            let x = pad + (j as u32 + 1) * (thumb + pad) + gap;
            let nl = draw(&train, n.row, x, y, &mut img)?;
            let other = nl != ql;
            if other {
                frame(&mut img, (x, y, thumb, thumb), (thumb / 32).max(2), red);
            }
            under(x, name(nl), if other { red } else { black }, format!("distance {:.2}", n.distance));
        }
    }
    crate::text::draw(&mut img, &labels)?;
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_k_nearest_with_ties_to_the_lower_row() {
        let n = |row, distance| Neighbor { row, distance };
        let mut best = vec![];
        merge(&mut best, [n(5, 2.0), n(3, 1.0), n(9, 4.0)], 2);
        assert_eq!(best, [n(3, 1.0), n(5, 2.0)]);
        merge(&mut best, [n(1, 2.0), n(0, 7.0)], 2);
        assert_eq!(best, [n(3, 1.0), n(1, 2.0)]);
        assert_eq!(spread_rows(3, 10), [0, 3, 6]);
        assert_eq!(spread_rows(5, 2), [0, 1]);
    }
}
