//! `train figure1`: the experiment of the paper's Figure 1 (section 3.1). A four-layer
//! convolutional net ([`net`]) is trained with ReLUs and with tanh units on a dataset's
//! training images scaled down to 32x32 ([`data`]), with no regularization (no dropout,
//! no weight decay, no augmentation), each at the learning rate of a small grid that
//! reaches the target training error (25%) soonest; the report says when each reached
//! it, in epochs measured several times per epoch (linearly interpolated between
//! measurements, so the ratio is not rounded to whole epochs), and the ratio (the
//! paper: six times faster with ReLUs on CIFAR-10). [`plot`] draws the figure.
//!
//! Every run starts from the same weights (libtorch seeded with `seed` before the net
//! is built) and sees the same batches (one seeded permutation per epoch). Training
//! error is the error of the net on a fixed sample of the training images
//! (`measure_images`), measured after the steps that end each `1 / evals_per_epoch`
//! of an epoch. A run stops when it reaches the target, or when it has run as long as
//! the fastest run of its activation so far (it can no longer be the fastest), or after
//! `epochs`.

pub mod data;
pub mod net;
pub mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::model::Activation;
use crate::sgd::Sgd;
use data::SmallImages;

/// The experiment's settings (`train figure1` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure1Config {
    /// The most epochs a run may take (the paper's tanh net took about 35 to reach 25%).
    pub epochs: f64,
    /// Images per SGD step (cuda-convnet's 128).
    pub batch: usize,
    /// SGD momentum (the paper's 0.9); no weight decay.
    pub momentum: f64,
    /// The learning-rate grid of each activation.
    pub lr_relu: Vec<f64>,
    pub lr_tanh: Vec<f64>,
    /// The training error the runs race to (the paper's 0.25).
    pub target: f64,
    /// Measurements of the training error per epoch.
    pub evals_per_epoch: usize,
    /// Training images the error is measured on (a fixed sample; all when fewer).
    pub measure_images: usize,
    /// Train images held (the first rows of the split; all: none).
    pub max_images: Option<usize>,
    /// Side the images are scaled to (the paper's CIFAR-10: 32).
    pub side: usize,
    pub seed: u64,
}

impl Default for Figure1Config {
    fn default() -> Self {
        Self {
            epochs: 40.0,
            batch: 128,
            momentum: 0.9,
            lr_relu: vec![0.01, 0.02, 0.05],
            lr_tanh: vec![0.01, 0.02, 0.05],
            target: 0.25,
            evals_per_epoch: 4,
            measure_images: 10_000,
            max_images: None,
            side: 32,
            seed: 0,
        }
    }
}

impl Figure1Config {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.epochs.is_finite() && self.epochs > 0.0 && self.epochs <= 10_000.0,
            "epochs must be in (0, 10000]"
        );
        ensure!(self.batch >= 1, "the batch must be at least 1");
        ensure!((0.0..1.0).contains(&self.momentum), "momentum must be in [0, 1)");
        ensure!(!self.lr_relu.is_empty() && !self.lr_tanh.is_empty(), "each activation needs a learning rate");
        for &lr in self.lr_relu.iter().chain(&self.lr_tanh) {
            ensure!(lr.is_finite() && lr > 0.0, "learning rates must be positive (got {lr})");
        }
        ensure!(self.target > 0.0 && self.target < 1.0, "the target error must be in (0, 1)");
        ensure!((1..=1000).contains(&self.evals_per_epoch), "evals per epoch must be in 1..=1000");
        ensure!(self.measure_images >= 1, "measure at least one image");
        ensure!((8..=512).contains(&self.side), "the side must be in 8..=512");
        Ok(())
    }
}

/// One measurement of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Epochs done (fractional).
    pub epoch: f64,
    /// Training error on the measured sample.
    pub error: f64,
    /// Mean training loss of the steps since the previous point (NaN at epoch 0).
    pub loss: f64,
}

/// One learning rate of one activation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridRun {
    pub activation: Activation,
    pub lr: f64,
    /// When the training error first reached the target (interpolated), if it did.
    pub epochs_to_target: Option<f64>,
    /// Epochs run (less than the budget when it reached the target or was outrun).
    pub epochs_run: f64,
    pub final_error: f64,
    /// The loss became NaN or infinite.
    pub diverged: bool,
    pub wall_s: f64,
    pub curve: Vec<Point>,
}

/// The chosen learning rate of one activation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Best {
    pub lr: f64,
    pub epochs_to_target: Option<f64>,
    /// Index in [`Figure1Report::runs`].
    pub run: usize,
}

/// What `train figure1` reports (`figure1.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure1Report {
    pub dataset: String,
    pub images: usize,
    pub measured_images: usize,
    pub classes: usize,
    pub side: usize,
    pub source_side: usize,
    /// The dataset's layout in words (`center-square 256x256`).
    pub source: String,
    pub parameters: u64,
    pub steps_per_epoch: usize,
    pub config: Figure1Config,
    pub runs: Vec<GridRun>,
    pub relu: Best,
    pub tanh: Best,
    /// tanh's epochs to the target over ReLU's, when both reached it.
    pub ratio: Option<f64>,
    /// When only ReLU reached it: tanh's epochs run over ReLU's (the ratio is larger).
    pub ratio_at_least: Option<f64>,
    pub wall_s: f64,
}

/// Where the error first reaches `target` along `curve`, linearly interpolated
/// between the measurement before and the one at or below it.
pub fn crossing(curve: &[Point], target: f64) -> Option<f64> {
    let first = curve.first()?;
    if first.error <= target {
        return Some(first.epoch);
    }
    curve.windows(2).find(|w| w[1].error <= target).map(|w| {
        let (a, b) = (w[0], w[1]);
        a.epoch + (a.error - target) / (a.error - b.error) * (b.epoch - a.epoch)
    })
}

/// The steps after which an epoch of `steps` measures the error: `round(k * steps /
/// evals)` for k = 1..=evals, without repeats.
pub fn measure_steps(steps: usize, evals: usize) -> Vec<usize> {
    let mut v: Vec<usize> =
        (1..=evals).map(|k| ((k * steps) as f64 / evals as f64).round().max(1.0) as usize).collect();
    v.dedup();
    v
}

/// The data and settings every run of the grid shares.
struct Bench<'a> {
    cfg: &'a Figure1Config,
    images: &'a SmallImages,
    device: Device,
    pixels: Tensor,
    labels: Tensor,
    mean: Tensor,
    std: Tensor,
    /// The rows the error is measured on.
    measure: Tensor,
    steps_per_epoch: usize,
}

impl Bench<'_> {
    fn batch(&self, rows: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.pixels.f_index_select(0, rows)?.f_to_kind(Kind::Float)?;
        Ok((x.f_sub(&self.mean)?.f_div(&self.std)?, self.labels.f_index_select(0, rows)?))
    }

    /// The error of `net` on the measured rows.
    fn error(&self, net: &net::SmallNet) -> Result<f64> {
        let n = self.measure.size()[0];
        let mut wrong = 0i64;
        tch::no_grad(|| -> Result<()> {
            let mut at = 0;
            while at < n {
                let len = (n - at).min(1000);
                let (x, y) = self.batch(&self.measure.f_narrow(0, at, len)?)?;
                let pred = net.f_forward(&x)?.f_argmax(-1, false)?;
                wrong += pred.f_ne_tensor(&y)?.f_sum(Kind::Int64)?.f_int64_value(&[])?; // sync point
                at += len;
            }
            Ok(())
        })?;
        Ok(wrong as f64 / n as f64)
    }

    /// Trains one net at `lr` for at most `limit` epochs.
    fn run(&self, activation: Activation, lr: f64, limit: f64, label: &str) -> Result<GridRun> {
        let start = Instant::now();
        tch::manual_seed(self.cfg.seed as i64);
        let vs = nn::VarStore::new(self.device);
        let net = net::SmallNet::new(&vs.root(), self.images.side, self.images.classes, activation)?;
        let mut sgd = Sgd::new(vs.trainable_variables(), self.cfg.momentum, 0.0);
        let spe = self.steps_per_epoch;
        let at = measure_steps(spe, self.cfg.evals_per_epoch);
        let mut curve = vec![Point { epoch: 0.0, error: self.error(&net)?, loss: f64::NAN }];
        let (mut diverged, mut reached) = (false, None);
        let n = self.images.len();
        'epochs: for epoch in 0.. {
            let mut order: Vec<i64> = (0..n as i64).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9)));
            let order = Tensor::from_slice(&order).to_device(self.device);
            let (mut loss_sum, mut loss_n) = (Tensor::zeros([], (Kind::Float, self.device)), 0);
            for step in 0..spe {
                let rows = order.f_narrow(0, (step * self.cfg.batch) as i64, self.cfg.batch as i64)?;
                let (x, y) = self.batch(&rows)?;
                let loss =
                    net.f_forward(&x)?.f_cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100, 0.0)?;
                sgd.zero_grad();
                loss.f_backward()?;
                sgd.step(lr);
                loss_sum = loss_sum.f_add(&loss.detach())?;
                loss_n += 1;
                if at.contains(&(step + 1)) {
                    let loss = loss_sum.f_double_value(&[])? / loss_n as f64; // sync point
                    let e = epoch as f64 + (step + 1) as f64 / spe as f64;
                    if !loss.is_finite() {
                        diverged = true;
                        alexnet_shared::err_line!("figure1: {label}: the loss is {loss} at epoch {e:.2}: diverged");
                        break 'epochs;
                    }
                    curve.push(Point { epoch: e, error: self.error(&net)?, loss });
                    (loss_sum, loss_n) = (Tensor::zeros([], (Kind::Float, self.device)), 0);
                    reached = crossing(&curve, self.cfg.target);
                    if reached.is_some() || e >= limit - 1e-9 {
                        break 'epochs;
                    }
                }
            }
            let p = curve.last().copied().unwrap_or(curve[0]);
            alexnet_shared::err_line!(
                "figure1: {label}: epoch {:.2}: training error {:.1}%, loss {:.3}",
                p.epoch,
                100.0 * p.error,
                p.loss
            );
        }
        let last = *curve.last().unwrap_or(&curve[0]);
        Ok(GridRun {
            activation,
            lr,
            epochs_to_target: reached,
            epochs_run: last.epoch,
            final_error: last.error,
            diverged,
            wall_s: start.elapsed().as_secs_f64(),
            curve,
        })
    }
}

/// The chosen run of one activation: the soonest to the target; when none reached it,
/// the lowest final error (a diverged run last).
fn best(runs: &[GridRun], activation: Activation) -> Option<Best> {
    let key = |r: &GridRun| (r.epochs_to_target.unwrap_or(f64::INFINITY), r.diverged, r.final_error);
    runs.iter()
        .enumerate()
        .filter(|(_, r)| r.activation == activation)
        .min_by(|a, b| key(a.1).partial_cmp(&key(b.1)).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(i, r)| Best { lr: r.lr, epochs_to_target: r.epochs_to_target, run: i })
}

/// Runs the experiment on the dataset in `dir`.
pub fn run(dir: &Path, cfg: &Figure1Config, device: Device, threads: usize) -> Result<Figure1Report> {
    cfg.validate()?;
    let start = Instant::now();
    let images = data::load(dir, cfg.side, cfg.max_images, threads)?;
    let n = images.len();
    if n < cfg.batch {
        bail!("{}: {n} train images, fewer than one batch of {}: lower the batch", dir.display(), cfg.batch);
    }
    alexnet_shared::err_line!(
        "figure1: {n} train images of {} classes ({}) -> {}x{}",
        images.classes,
        images.source,
        cfg.side,
        cfg.side
    );
    let mut sample: Vec<i64> = (0..n as i64).collect();
    sample.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    sample.truncate(cfg.measure_images.min(n));
    let bench = Bench {
        cfg,
        images: &images,
        device,
        pixels: images.pixels.to_device(device),
        labels: images.labels.to_device(device),
        mean: Tensor::from_slice(&images.mean).view([1, 3, 1, 1]).to_device(device),
        std: Tensor::from_slice(&images.std).view([1, 3, 1, 1]).to_device(device),
        measure: Tensor::from_slice(&sample).to_device(device),
        steps_per_epoch: n / cfg.batch,
    };
    let mut runs = Vec::new();
    for (activation, lrs) in [(Activation::Relu, &cfg.lr_relu), (Activation::Tanh, &cfg.lr_tanh)] {
        let mut limit = cfg.epochs;
        for &lr in lrs {
            let label = format!("{} lr {lr}", activation.name());
            let r = bench.run(activation, lr, limit, &label).with_context(|| format!("training {label}"))?;
            match r.epochs_to_target {
                Some(e) => {
                    alexnet_shared::err_line!(
                        "figure1: {label}: {:.0}% training error at epoch {e:.2}",
                        cfg.target * 100.0
                    );
                    limit = limit.min(r.epochs_run);
                }
                None => alexnet_shared::err_line!(
                    "figure1: {label}: not at {:.0}% after {:.2} epochs ({:.1}%)",
                    cfg.target * 100.0,
                    r.epochs_run,
                    100.0 * r.final_error
                ),
            }
            runs.push(r);
        }
    }
    let relu = best(&runs, Activation::Relu).context("no ReLU run")?;
    let tanh = best(&runs, Activation::Tanh).context("no tanh run")?;
    let (ratio, ratio_at_least) = match (relu.epochs_to_target, tanh.epochs_to_target) {
        (Some(r), Some(t)) if r > 0.0 => (Some(t / r), None),
        (Some(r), None) if r > 0.0 => (None, Some(runs[tanh.run].epochs_run / r)),
        _ => (None, None),
    };
    Ok(Figure1Report {
        dataset: dir.display().to_string(),
        images: n,
        measured_images: sample.len(),
        classes: images.classes,
        side: cfg.side,
        source_side: images.source_side,
        source: images.source.clone(),
        parameters: net::parameter_count(cfg.side, images.classes),
        steps_per_epoch: bench.steps_per_epoch,
        config: cfg.clone(),
        runs,
        relu,
        tanh,
        ratio,
        ratio_at_least,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

impl Figure1Report {
    /// The report as markdown: the setting, one row per grid run (the chosen ones in
    /// bold), and the ratio.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let pct = |x: f64| format!("{}%", format!("{:.1}", 100.0 * x).trim_end_matches(".0"));
        let mut s = format!(
            "Figure 1 (section 3.1): four-layer net ({} parameters), {} train images of {} classes ({} scaled to \
             {}x{}), batch {}, momentum {}, no regularization; training error on {} of them, {} times per epoch \
             ({} steps an epoch).\n\n",
            self.parameters,
            self.images,
            self.classes,
            self.source,
            self.side,
            self.side,
            c.batch,
            c.momentum,
            self.measured_images,
            c.evals_per_epoch,
            self.steps_per_epoch
        );
        s += &format!(
            "| activation | learning rate | epochs to {} training error | epochs run | last error | seconds |\n",
            pct(c.target)
        );
        s += "|---|---|---|---|---|---|\n";
        for (i, r) in self.runs.iter().enumerate() {
            let chosen = i == self.relu.run || i == self.tanh.run;
            let b = if chosen { "**" } else { "" };
            let to = match (r.epochs_to_target, r.diverged) {
                (Some(e), _) => format!("{e:.2}"),
                (None, true) => "diverged".into(),
                (None, false) => format!("> {:.2}", r.epochs_run),
            };
            s += &format!(
                "| {b}{}{b} | {b}{}{b} | {b}{to}{b} | {:.2} | {} | {:.0} |\n",
                r.activation.name(),
                r.lr,
                r.epochs_run,
                pct(r.final_error),
                r.wall_s
            );
        }
        s += "\n";
        s += &match (self.ratio, self.ratio_at_least, self.relu.epochs_to_target, self.tanh.epochs_to_target) {
            (Some(x), _, Some(r), Some(t)) => format!(
                "ReLU reached {} training error {x:.2}x sooner than tanh ({r:.2} against {t:.2} epochs; the paper: about 6x \
                 on CIFAR-10).",
                pct(c.target)
            ),
            (_, Some(x), Some(r), None) => format!(
                "ReLU reached {} training error at {r:.2} epochs; tanh had not after {:.2}: at least {x:.2}x sooner (the \
                 paper: about 6x on CIFAR-10).",
                pct(c.target),
                self.runs[self.tanh.run].epochs_run
            ),
            _ => format!(
                "ReLU did not reach {} training error within {} epochs: no ratio (raise the epochs or the learning rates).",
                pct(c.target),
                c.epochs
            ),
        };
        s
    }
}

/// Writes `figure1.json`, `figure1.md` and `figure1.png` into `out`: their paths.
pub fn write(report: &Figure1Report, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("figure1.json");
    alexnet_shared::atomic_write(&json, serde_json::to_string_pretty(report)?.as_bytes())?;
    let md = out.join("figure1.md");
    alexnet_shared::atomic_write(&md, format!("{}\n", report.markdown()).as_bytes())?;
    let png = out.join("figure1.png");
    plot::write_png(report, &png)?;
    Ok(vec![json, md, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(epoch: f64, error: f64) -> Point {
        Point { epoch, error, loss: 0.0 }
    }

    #[test]
    fn the_crossing_is_interpolated_between_measurements() {
        let c = [pt(0.0, 0.9), pt(0.5, 0.5), pt(1.0, 0.3), pt(1.5, 0.2)];
        // Between (1.0, 0.3) and (1.5, 0.2): 1.0 + 0.05 / 0.1 * 0.5.
        assert!((crossing(&c, 0.25).unwrap() - 1.25).abs() < 1e-12);
        assert_eq!(crossing(&c, 0.1), None);
        assert_eq!(crossing(&c, 0.95), Some(0.0));
        assert_eq!(crossing(&c, 0.2), Some(1.5));
    }

    #[test]
    fn measurement_steps_split_the_epoch_evenly() {
        assert_eq!(measure_steps(390, 4), vec![98, 195, 293, 390]);
        assert_eq!(measure_steps(3, 4), vec![1, 2, 3]);
        assert_eq!(measure_steps(1, 10), vec![1]);
    }
}
