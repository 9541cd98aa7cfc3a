//! `eval score`: top-1/top-5 of one checkpoint or an ensemble on a split, with the
//! center crop or the paper's ten crops (section 4.1: "averaging the predictions made
//! by the network's softmax layer on the ten patches"), through the trainer's loader.
//!
//! Checkpoints that want the same crop and normalization share one loader; those that
//! do not get one each, all stepped in lockstep over the same rows, so memory stays one
//! batch per loader however large the split. Per image, the probabilities are averaged
//! over the crops, then over the checkpoints (the paper's ensembles, Table 2).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{read_mean_image, Dataset, Manifest, Split, SplitReader};
use anyhow::{bail, ensure, Context, Result};
use tch::{Device, Kind, Tensor};
use trainer::data::{Crops, LoaderConfig, Normalization, Pipeline};
use trainer::topk::topk_classes;

use crate::checkpoint::{open, LoadedModel, Overrides};
use crate::predictions::{Prediction, PredictionWriter};
use alexnet_shared::progress::Progress;

#[derive(Debug, Clone)]
pub struct ScoreConfig {
    pub checkpoints: Vec<PathBuf>,
    pub data: PathBuf,
    pub split: Split,
    /// `Crops::Center` or `Crops::Ten`.
    pub crops: Crops,
    /// Images per batch (ten crops: 10x as many crops through the model).
    pub batch_size: usize,
    /// Loader worker threads per loader.
    pub workers: usize,
    pub device: Device,
    /// bf16 autocast for the forward passes (CUDA only).
    pub bf16: bool,
    pub overrides: Overrides,
    pub predictions: Option<PathBuf>,
    /// Score only the first N images of the split.
    pub limit: Option<usize>,
    pub progress: bool,
}

impl ScoreConfig {
    pub fn new(checkpoints: Vec<PathBuf>, data: PathBuf) -> Self {
        Self {
            checkpoints,
            data,
            split: Split::Val,
            crops: Crops::Ten,
            batch_size: 32,
            workers: 2,
            device: Device::Cpu,
            bf16: false,
            overrides: Overrides::default(),
            predictions: None,
            limit: None,
            progress: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(!self.checkpoints.is_empty(), "give at least one --checkpoint");
        ensure!(self.crops != Crops::Train, "score with center or ten crops");
        ensure!(self.batch_size > 0 && self.workers > 0, "--batch-size and --workers must be at least 1");
        if self.bf16 && self.device == Device::Cpu {
            bail!("--bf16 (bf16 autocast) is for CUDA; on the CPU eval runs in float32 (drop --bf16)");
        }
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        Ok(())
    }
}

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub index: usize,
    pub wnid: String,
    pub name: String,
    pub images: u64,
    pub top1: f64,
    pub top5: f64,
}

/// What `eval score` reports (and writes with `--json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreReport {
    /// Fractions in [0, 1].
    pub top1: f64,
    pub top5: f64,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images: u64,
    /// Crops per image: 1 (center) or 10.
    pub crops: usize,
    pub split: String,
    pub checkpoints: Vec<String>,
    pub models: Vec<String>,
    pub per_class: Vec<ClassScore>,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Checkpoints that share a loader: the same crop and normalization.
struct Group {
    crop: usize,
    normalization: Normalization,
    models: Vec<usize>,
    pipeline: Pipeline,
}

pub fn run(cfg: &ScoreConfig) -> Result<ScoreReport> {
    cfg.validate()?;
    let ds = Dataset::open(&cfg.data)?;
    let manifest = ds.manifest();
    let models = open_models(cfg, manifest)?;
    let split = Arc::new(ds.split(cfg.split)?);
    ensure!(!split.is_empty(), "{}: the {} split is empty", cfg.data.display(), cfg.split);
    let images = cfg.limit.map_or(split.len(), |l| l.min(split.len()));
    let mean = mean_image(cfg, manifest, &models)?;
    let mut groups = groups(&models, manifest, mean.as_deref(), &split, cfg)?;

    let classes = manifest.classes.len();
    let k = cfg.crops.per_image();
    let mut writer = match &cfg.predictions {
        Some(p) => Some(PredictionWriter::create(p, classes.min(5))?),
        None => None,
    };
    let mut tally = Tally::new(classes);
    let progress = Progress::new("score", images as u64, cfg.progress);
    let t0 = Instant::now();
    for g in &mut groups {
        g.pipeline.start(0);
    }
    tch::no_grad(|| -> Result<()> {
        while tally.images < images {
            let mut scored = score_batch(&mut groups, &models, k, classes)?;
            scored.truncate(images - tally.images)?;
            let n = tally.record(scored, &split, writer.as_mut())?;
            progress.inc(n as u64, false);
        }
        Ok(())
    })?;
    progress.finish();
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(tally.report(cfg, &models, manifest, k, t0.elapsed().as_secs_f64()))
}

/// The checkpoints of `cfg`, for the classes `wnids`; a note for each one trained on
/// another build of the data.
fn open_models(cfg: &ScoreConfig, manifest: &Manifest) -> Result<Vec<LoadedModel>> {
    let wnids = &manifest.wnids();
    let models: Vec<LoadedModel> =
        cfg.checkpoints.iter().map(|p| open(p, &cfg.overrides, wnids, cfg.device, cfg.bf16)).collect::<Result<_>>()?;
    let sha = alexnet_shared::sha256_file(&cfg.data.join(alexnet_shared::MANIFEST_FILE))?;
    let content = trainer::checkpoint::data_fingerprint(manifest);
    // The same images (same fingerprint) in another build of the manifest: no note.
    let other = |m: &LoadedModel| match &m.data_fingerprint {
        Some(f) => *f != content,
        None => m.manifest_sha256.as_ref().is_some_and(|h| *h != sha),
    };
    for m in models.iter().filter(|m| other(m)) {
        // Legitimate (another encoding or build of the same images), but the mean image
        // and the statistics come from this dataset, not the one it was trained on.
        let why = if m.data_fingerprint.is_some() { "its images differ" } else { "manifest sha256 differs" };
        alexnet_shared::err_line!("note: {} was trained on another build of the data ({why})", m.path.display());
    }
    Ok(models)
}

/// The dataset's mean image, when a model is normalized with it.
fn mean_image(cfg: &ScoreConfig, manifest: &Manifest, models: &[LoadedModel]) -> Result<Option<Vec<f32>>> {
    if !models.iter().any(|m| m.normalization == Normalization::MeanImage) {
        return Ok(None);
    }
    let Some(name) = &manifest.mean_image else {
        bail!(
            "{}: a model is normalized with the mean image, and a dataset of {} has none",
            cfg.data.display(),
            manifest.describe_layout()
        );
    };
    let p = cfg.data.join(name);
    Ok(Some(read_mean_image(&p).with_context(|| format!("reading the mean image {}", p.display()))?))
}

/// One pipeline per (crop, normalization) among `models`, with the models it feeds.
fn groups(
    models: &[LoadedModel],
    manifest: &Manifest,
    mean: Option<&[f32]>,
    split: &Arc<SplitReader>,
    cfg: &ScoreConfig,
) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let (crop, normalization) = (m.config().crop, m.normalization);
        if let Some(g) = groups.iter_mut().find(|g| g.crop == crop && g.normalization == normalization) {
            g.models.push(i);
            continue;
        }
        let mut lc = LoaderConfig::new(cfg.batch_size, crop, cfg.crops);
        lc.workers = cfg.workers;
        lc.prefetch = 2;
        lc.flip = false;
        lc.pca_noise = false;
        let pipeline = Pipeline::new(split.clone(), lc, manifest, mean, normalization, cfg.device)?;
        groups.push(Group { crop, normalization, models: vec![i], pipeline });
    }
    Ok(groups)
}

/// One lockstep batch of every group: the ensemble's probabilities of its images.
struct Scored {
    /// [B, C] float64 on the device: averaged over the crops, then over the models.
    probs: Tensor,
    rows: Vec<usize>,
    labels: Vec<i64>,
}

impl Scored {
    /// Keeps the first `n` images.
    fn truncate(&mut self, n: usize) -> Result<()> {
        if n < self.rows.len() {
            self.probs = self.probs.f_narrow(0, 0, n as i64)?;
            self.rows.truncate(n);
            self.labels.truncate(n);
        }
        Ok(())
    }
}

/// The next batch of every group (the same rows), through its models; `k` crops per
/// image.
fn score_batch(groups: &mut [Group], models: &[LoadedModel], k: usize, classes: usize) -> Result<Scored> {
    let mut sum: Option<Tensor> = None;
    let mut rows: Vec<usize> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    for g in groups.iter_mut() {
        let batch = g.pipeline.next_batch()?.context("the loader ended before the split")?;
        // One entry per image: the crops of an image are consecutive.
        let r: Vec<usize> = batch.rows().iter().step_by(k).copied().collect();
        if rows.is_empty() {
            rows = r;
            labels = Vec::<i64>::try_from(batch.labels())?.into_iter().step_by(k).collect();
        } else {
            ensure!(rows == r, "loaders out of step (a bug)");
        }
        let x = g.pipeline.input(&batch, false)?; // [B*K, 3, s, s] on the device
        for &i in &g.models {
            // Mean over the crops in float64: exact for equal values, so a tie stays a
            // tie whatever order the reduction takes (in float32 it does not:
            // libtorch's vectorized mean of ten 1/6 gives 0.16666666 in some columns and
            // 0.16666667 in others).
            let p = models[i].probabilities(&x)?; // [B*K, C]
            let p = p.f_to_kind(Kind::Double)?.f_view([-1, k as i64, classes as i64])?.f_mean_dim(
                1,
                false,
                Kind::Double,
            )?; // [B, C]
            sum = Some(match sum {
                None => p,
                Some(s) => s.f_add(&p)?,
            });
        }
        drop(batch);
    }
    let probs = sum.context("at least one model")?.f_div_scalar(models.len() as f64)?;
    Ok(Scored { probs, rows, labels })
}

/// Correct top-1 and top-5 counts, per class and in all.
struct Tally {
    /// (images, top-1 hits, top-5 hits) per class.
    per_class: Vec<(u64, u64, u64)>,
    images: usize,
    top1: u64,
    top5: u64,
}

impl Tally {
    fn new(classes: usize) -> Self {
        Self { per_class: vec![(0, 0, 0); classes], images: 0, top1: 0, top5: 0 }
    }

    /// Counts the images of `s` (and writes their top-5 to `writer`); returns how many.
    fn record(&mut self, s: Scored, split: &SplitReader, mut writer: Option<&mut PredictionWriter>) -> Result<usize> {
        // Device -> host: the only sync point of a step.
        let probs = s.probs.f_to_device(Device::Cpu)?;
        // NaN or infinite outputs are not scores (a NaN row "ties" every class and
        // counts as a top-5 hit): the first such image stops the run, by name.
        let finite: Vec<bool> = Vec::try_from(probs.f_isfinite()?.f_all_dim(1, false)?)?;
        if let Some(j) = finite.iter().position(|ok| !ok) {
            let key = split.get(s.rows[j]).map(|i| i.key.to_string()).unwrap_or_default();
            bail!(
                "the probabilities of image {key} (row {} of the split, image {} of the scoring) are NaN or infinite: \
                 the model's outputs overflow on it (weights too large, or a bad mean image); nothing was scored",
                s.rows[j],
                self.images + j
            );
        }
        let top = topk_classes(&probs, 5)?; // [B, min(5, C)], ties to the lower index
        let top_p = probs.f_gather(1, &top, false)?.f_to_kind(Kind::Float)?;
        let kk = top.size()[1] as usize;
        let top: Vec<i64> = Vec::try_from(top.f_flatten(0, -1)?)?;
        let top_p: Vec<f32> = Vec::try_from(top_p.f_flatten(0, -1)?)?;
        for (j, (&row, &label)) in s.rows.iter().zip(&s.labels).enumerate() {
            let t = &top[j * kk..(j + 1) * kk];
            let (h1, h5) = (t[0] == label, t.contains(&label));
            let pc = &mut self.per_class[label as usize];
            pc.0 += 1;
            pc.1 += h1 as u64;
            pc.2 += h5 as u64;
            self.top1 += h1 as u64;
            self.top5 += h5 as u64;
            if let Some(w) = writer.as_deref_mut() {
                let key = split.get(row)?.key;
                w.write(&Prediction { key, label, classes: t, probabilities: &top_p[j * kk..(j + 1) * kk] })?;
            }
        }
        self.images += s.rows.len();
        Ok(s.rows.len())
    }

    /// The report of `cfg`'s run: `crops` per image, `seconds` of scoring.
    fn report(
        &self,
        cfg: &ScoreConfig,
        models: &[LoadedModel],
        manifest: &Manifest,
        crops: usize,
        seconds: f64,
    ) -> ScoreReport {
        let n = self.images as f64;
        let (c1, c5) = (self.top1, self.top5);
        let frac = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        ScoreReport {
            top1: c1 as f64 / n,
            top5: c5 as f64 / n,
            top1_error: 1.0 - c1 as f64 / n,
            top5_error: 1.0 - c5 as f64 / n,
            images: self.images as u64,
            crops,
            split: cfg.split.to_string(),
            checkpoints: cfg.checkpoints.iter().map(|p| p.display().to_string()).collect(),
            models: models.iter().map(|m| m.describe()).collect(),
            per_class: manifest
                .classes
                .iter()
                .zip(&self.per_class)
                .map(|(c, &(n, a, b))| ClassScore {
                    index: c.index,
                    wnid: c.wnid.clone(),
                    name: c.name.clone(),
                    images: n,
                    top1: frac(a, n),
                    top5: frac(b, n),
                })
                .collect(),
            seconds,
            images_per_s: n / seconds.max(1e-9),
        }
    }
}

impl ScoreReport {
    /// The text `eval score` prints: the per-class table, then the summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s += &format!("{:>5}  {:<10}  {:>6}  {:>7}  {:>7}  name\n", "class", "wnid", "images", "top-1", "top-5");
        for c in &self.per_class {
            s += &format!(
                "{:>5}  {:<10}  {:>6}  {:>6.2}%  {:>6.2}%  {}\n",
                c.index,
                c.wnid,
                c.images,
                100.0 * c.top1,
                100.0 * c.top5,
                c.name
            );
        }
        for m in self.checkpoints.iter().zip(&self.models) {
            s += &format!("checkpoint {}: {}\n", m.0, m.1);
        }
        s += &format!(
            "{} images of {}, {} crop{}: top-1 {:.2}% top-5 {:.2}% (error {:.2}% / {:.2}%); {:.1} images/s\n",
            self.images,
            self.split,
            if self.crops == 10 { "ten" } else { "center" },
            if self.crops == 10 { "s" } else { "" },
            100.0 * self.top1,
            100.0 * self.top5,
            100.0 * self.top1_error,
            100.0 * self.top5_error,
            self.images_per_s
        );
        s
    }
}
