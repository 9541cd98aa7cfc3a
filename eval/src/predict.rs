//! `eval predict`: the top classes of image files (a photo, a folder of them) by one
//! checkpoint or an ensemble, with the build's own recipe for the input: decode (EXIF
//! orientation applied, RGB, within the build's decode limits), shorter side to 256,
//! the centre 256x256 (`preprocess build`'s `imageproc::process`), then the centre crop
//! or the paper's ten crops, normalized as the checkpoint was trained. Probabilities
//! are averaged over the crops, then over the checkpoints, as `eval score` does.
//!
//! Checkpoints written by the trainer carry the class names and the normalization data
//! (mean RGB, and the mean image for `mean-image`; see
//! [`trainer::checkpoint::InputsMeta`]), so no dataset is needed. For older checkpoints
//! and PyTorch files `data` (the dataset it was trained on) supplies them. An image that
//! cannot be read is a [`Failure`] naming it; the others are still classified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alexnet_shared::{Dataset, IMAGE_BYTES};
use anyhow::{bail, ensure, Context, Result};
use fast_image_resize::Resizer;
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use trainer::checkpoint::read_meta;
use trainer::data::augment::{center_crop, ten_crops, CropSpec};
use trainer::data::{Crops, Normalization, PixelTransform};
use trainer::topk::topk_classes;

use crate::checkpoint::{open, LoadedModel, Overrides};

/// Files read at most: a larger one is refused unread.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The extensions a folder's image files have (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

#[derive(Debug, Clone)]
pub struct PredictConfig {
    /// Image files, and folders searched (recursively, in name order) for them.
    pub inputs: Vec<PathBuf>,
    pub checkpoints: Vec<PathBuf>,
    /// A dataset for checkpoints without class names or normalization data.
    pub data: Option<PathBuf>,
    /// `Crops::Center` or `Crops::Ten`.
    pub crops: Crops,
    /// Classes per image (at most the classes there are).
    pub top: usize,
    pub batch_size: usize,
    pub device: Device,
    pub bf16: bool,
    pub overrides: Overrides,
}

impl PredictConfig {
    pub fn new(inputs: Vec<PathBuf>, checkpoints: Vec<PathBuf>) -> Self {
        Self {
            inputs,
            checkpoints,
            data: None,
            crops: Crops::Center,
            top: 5,
            batch_size: 16,
            device: Device::Cpu,
            bf16: false,
            overrides: Overrides::default(),
        }
    }
}

/// One of an image's top classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guess {
    /// 1 for the most probable.
    pub rank: usize,
    /// Class index (the dataset's, or the first checkpoint's order).
    pub index: usize,
    pub wnid: String,
    pub name: String,
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePrediction {
    /// As given, or the folder given joined with the file's path in it.
    pub path: String,
    pub top: Vec<Guess>,
}

/// An input that could not be classified, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictReport {
    pub checkpoints: Vec<String>,
    /// Crops per image: 1 (center) or 10.
    pub crops: usize,
    pub images: Vec<ImagePrediction>,
    pub failed: Vec<Failure>,
}

impl PredictReport {
    /// The table: per image its path, then one line per class.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for p in &self.images {
            s += &format!("{}\n", p.path);
            for g in &p.top {
                s += &format!("  {:>2}  {:>7.3}%  {}  {}\n", g.rank, 100.0 * g.probability, g.wnid, g.name);
            }
        }
        s
    }

    /// CSV: `path,rank,index,wnid,name,probability`, one line per class of each image.
    pub fn csv(&self) -> String {
        let mut s = String::from("path,rank,index,wnid,name,probability\n");
        for p in &self.images {
            for g in &p.top {
                s += &format!(
                    "{},{},{},{},{},{}\n",
                    csv_field(&p.path),
                    g.rank,
                    g.index,
                    csv_field(&g.wnid),
                    csv_field(&g.name),
                    g.probability
                );
            }
        }
        s
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The classes the outputs are reported in: wnids and names in index order.
struct Classes {
    wnids: Vec<String>,
    names: Vec<String>,
}

/// A dataset's classes and normalization data, read when `--data` is given.
struct DataInputs {
    classes: Classes,
    mean_rgb: [f64; 3],
    mean_image: Option<Arc<Vec<f32>>>,
}

fn data_inputs(dir: &Path) -> Result<DataInputs> {
    let ds = Dataset::open(dir)?;
    let m = ds.manifest();
    // A whole-image dataset has no mean image (its models use the mean RGB).
    let mean = match &m.mean_image {
        Some(_) => Some(Arc::new(ds.mean_image()?)),
        None => None,
    };
    Ok(DataInputs {
        classes: Classes { wnids: m.wnids(), names: m.classes.iter().map(|c| c.name.clone()).collect() },
        mean_rgb: m.stats.mean_rgb,
        mean_image: mean,
    })
}

/// Why a checkpoint cannot be used without a dataset.
fn needs_data(path: &Path) -> String {
    format!(
        "{}: carries no class names and normalization data (a checkpoint written before checkpoints recorded them, \
         or a PyTorch file): give --data DATASET, the dataset it was trained on",
        path.display()
    )
}

/// A model and how its crops are normalized.
struct Member {
    model: LoadedModel,
    transform: PixelTransform,
}

pub fn run(cfg: &PredictConfig) -> Result<PredictReport> {
    ensure!(!cfg.checkpoints.is_empty(), "give at least one --checkpoint");
    ensure!(!cfg.inputs.is_empty(), "give at least one image file or folder");
    ensure!(cfg.crops != Crops::Train, "predict with center or ten crops");
    ensure!(cfg.top >= 1, "--top must be at least 1");
    ensure!((1..=4096).contains(&cfg.batch_size), "--batch-size must be in 1..=4096");
    if cfg.bf16 && cfg.device == Device::Cpu {
        bail!("--bf16 (bf16 autocast) is for CUDA; on the CPU eval runs in float32 (drop --bf16)");
    }
    let data = cfg.data.as_deref().map(data_inputs).transpose()?;
    let classes = match &data {
        Some(d) => Classes { wnids: d.classes.wnids.clone(), names: d.classes.names.clone() },
        None => {
            let first = &cfg.checkpoints[0];
            let meta = read_meta(first)?;
            match meta.and_then(|m| m.inputs.map(|i| (m.wnids, i.class_names))) {
                Some((wnids, names)) => Classes { wnids, names },
                None => bail!(needs_data(first)),
            }
        }
    };
    let members =
        cfg.checkpoints.iter().map(|p| member(p, cfg, &classes, data.as_ref())).collect::<Result<Vec<_>>>()?;
    let entries = collect_images(&cfg.inputs);
    let k = cfg.crops.per_image();
    let (mut images, mut failed) = (Vec::new(), Vec::new());
    let mut resizer = Resizer::new();
    for chunk in entries.chunks(cfg.batch_size) {
        let mut pixels = Vec::with_capacity(chunk.len());
        let mut shown = Vec::with_capacity(chunk.len());
        for entry in chunk {
            let (path, label) = match entry {
                Entry::File(path, label) => (path, label),
                Entry::Failed(f) => {
                    failed.push(f.clone());
                    continue;
                }
            };
            let mut out = vec![0u8; IMAGE_BYTES];
            match read_image(path, &mut resizer, &mut out) {
                Ok(()) => {
                    pixels.push(out);
                    shown.push(label.clone());
                }
                Err(e) => failed.push(Failure { path: label.clone(), error: e }),
            }
        }
        if pixels.is_empty() {
            continue;
        }
        let probs = tch::no_grad(|| ensemble(&members, &pixels, cfg.crops))?; // [N, C] float64
        let top = topk_classes(&probs, cfg.top)?;
        for (i, path) in shown.into_iter().enumerate() {
            let idx: Vec<i64> = Vec::<i64>::try_from(top.get(i as i64))?;
            let p: Vec<f64> = Vec::<f64>::try_from(probs.get(i as i64))?;
            let guesses = idx
                .iter()
                .enumerate()
                .map(|(r, &c)| Guess {
                    rank: r + 1,
                    index: c as usize,
                    wnid: classes.wnids[c as usize].clone(),
                    name: classes.names[c as usize].clone(),
                    probability: p[c as usize],
                })
                .collect();
            images.push(ImagePrediction { path, top: guesses });
        }
    }
    Ok(PredictReport {
        checkpoints: cfg.checkpoints.iter().map(|p| p.display().to_string()).collect(),
        crops: k,
        images,
        failed,
    })
}

/// Opens checkpoint `path` for the classes `classes`, with its normalization data: its
/// own (written by the trainer), else the dataset's.
fn member(path: &Path, cfg: &PredictConfig, classes: &Classes, data: Option<&DataInputs>) -> Result<Member> {
    let model = open(path, &cfg.overrides, &classes.wnids, cfg.device, cfg.bf16)?;
    let norm = model.normalization;
    let own = model.inputs.as_ref();
    let (mean_rgb, mean_image) = match (own, data) {
        (Some(i), _) if norm != Normalization::MeanImage || i.mean_image.is_some() => {
            (i.mean_rgb, i.mean_image.clone())
        }
        (_, Some(d)) => (d.mean_rgb, d.mean_image.clone()),
        (Some(_), None) => bail!(
            "{}: normalized by a mean image it does not carry (--normalization mean-image over a checkpoint trained \
             otherwise): give --data DATASET",
            path.display()
        ),
        (None, None) => bail!(needs_data(path)),
    };
    let transform = PixelTransform::for_eval(norm, mean_rgb, mean_image).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Member { model, transform })
}

/// An input as found: an image file (with the path it is shown under), or why an input
/// gives none.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    File(PathBuf, String),
    Failed(Failure),
}

/// The image files of `inputs`, in order: files as given, folders searched recursively
/// in name order for files with an image extension. Inputs that are neither, and
/// folders without images, are failures in their place.
pub fn collect_images(inputs: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for input in inputs {
        let shown = input.display().to_string();
        match std::fs::metadata(input) {
            Err(e) => out.push(Entry::Failed(Failure { path: shown, error: io_reason(&e) })),
            Ok(m) if m.is_dir() => {
                let mut found = Vec::new();
                if let Err(e) = walk(input, &mut found, 0) {
                    found.push(Entry::Failed(Failure { path: shown.clone(), error: io_reason(&e) }));
                }
                if !found.iter().any(|e| matches!(e, Entry::File(..))) {
                    found.push(Entry::Failed(Failure {
                        path: shown,
                        error: format!("no image files in the folder (extensions {})", IMAGE_EXTENSIONS.join(", ")),
                    }));
                }
                out.extend(found);
            }
            Ok(_) => out.push(Entry::File(input.clone(), shown)),
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<Entry>, depth: usize) -> std::io::Result<()> {
    let fail = |p: &Path, error: String| Entry::Failed(Failure { path: p.display().to_string(), error });
    if depth > 32 {
        out.push(fail(dir, "folders nested over 32 deep: not searched".into()));
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = walk(&p, out, depth + 1) {
                    out.push(fail(&p, io_reason(&e)));
                }
            }
            Ok(_) if has_image_extension(&p) => out.push(Entry::File(p.clone(), p.display().to_string())),
            Ok(_) => {}
            // A dangling symlink with an image's name: said, not skipped silently.
            Err(e) if has_image_extension(&p) => out.push(fail(&p, io_reason(&e))),
            Err(_) => {}
        }
    }
    Ok(())
}

fn has_image_extension(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Reads and prepares one image as the build does: 256x256x3 RGB into `out`.
fn read_image(path: &Path, resizer: &mut Resizer, out: &mut [u8]) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if !m.is_file() {
        return Err("not a regular file".into());
    }
    if m.len() > MAX_FILE_BYTES {
        return Err(format!("{} MB, over the {} MB read at most", m.len() >> 20, MAX_FILE_BYTES >> 20));
    }
    let bytes = std::fs::read(path).map_err(|e| io_reason(&e))?;
    preprocess::imageproc::process(resizer, &bytes, out)
}

/// The crops of the 256x256 images `pixels` for a model of crop side `crop`.
fn specs(crops: Crops, crop: usize) -> Vec<CropSpec> {
    match crops {
        Crops::Ten => ten_crops(crop).to_vec(),
        _ => vec![center_crop(crop)],
    }
}

/// Probabilities [N, classes] (float64): per model the mean over the crops, then the
/// mean over the models.
fn ensemble(members: &[Member], pixels: &[Vec<u8>], crops: Crops) -> Result<Tensor> {
    let n = pixels.len();
    let mut sum: Option<Tensor> = None;
    for m in members {
        let crop = m.model.config().crop;
        let specs = specs(crops, crop);
        let per = 3 * crop * crop;
        let mut x = vec![0f32; n * specs.len() * per];
        for (i, img) in pixels.iter().enumerate() {
            for (j, &s) in specs.iter().enumerate() {
                let at = (i * specs.len() + j) * per;
                m.transform.crop_float(img, s, crop, [0.0; 3], &mut x[at..at + per]);
            }
        }
        let x = Tensor::from_slice(&x)
            .view([(n * specs.len()) as i64, 3, crop as i64, crop as i64])
            .to_device(m.model.vs.device());
        let p = m.model.probabilities(&x)?.to_kind(Kind::Double).to_device(Device::Cpu);
        let classes = p.size()[1];
        let p = p.view([n as i64, specs.len() as i64, classes]).mean_dim(1, false, Kind::Double);
        sum = Some(match sum {
            Some(s) => s + p,
            None => p,
        });
    }
    let sum = sum.context("no checkpoint")?;
    Ok(sum / members.len() as f64)
}
