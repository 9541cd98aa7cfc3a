//! The training configuration: TOML presets in `configs/`, every key known
//! (`deny_unknown_fields`), every key with a default, and the defaults are the paper's
//! (DESIGN.md, "Training defaults": sections 3-5): an empty file is the paper's run, and
//! a preset holds only what it changes. `train run --set optim.lr=0.02` overrides any
//! key ([`apply_sets`]). Every run saves the resolved configuration as
//! `RUN_DIR/config.toml` before it starts; a resumed run keeps it, and a change on
//! `--resume` is refused unless it is in [`RESUME_SAFE`] ([`for_run`]).

mod overrides;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{Normalization, OnDamaged, Shuffle, MAX_BATCH, MAX_PREFETCH, MAX_WORKERS};
use crate::model::ModelConfig;
use crate::schedule::Schedule;
use overrides::list;
pub use overrides::{apply_sets, for_run, Change, DERIVED, RESUME_SAFE};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub run: RunSection,
    /// Data-parallel settings (several ranks); defaults suit one process.
    #[serde(default)]
    pub dist: DistSection,
    /// The warning for a run that has not left chance.
    #[serde(default)]
    pub stall: StallSection,
}

/// `[stall]`: a run whose training loss stays at ln(classes) (uniform predictions) says
/// so, naming the known causes (the paper's N(0, 0.01) init with biases of 1 is known to
/// stall) and remedies; see `trainer::train::stall`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StallSection {
    /// Consecutive steps within `tolerance` of ln(classes) that fire the warning; 0 (the
    /// default): the larger of one epoch and 1,000 steps.
    pub steps: usize,
    /// How close to ln(classes) counts as chance, as a fraction of it (0.01: 1%).
    pub tolerance: f64,
    /// Stop the run with an error when it fires (default: warn and go on).
    pub stop: bool,
}

impl Default for StallSection {
    fn default() -> Self {
        Self { steps: 0, tolerance: 0.01, stop: false }
    }
}

/// `[model]`; defaults: the paper's network (section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// `paper` (two towers, section 3) or `owt` (torchvision's single tower).
    pub arch: crate::model::Arch,
    /// Width multiplier of every layer (paper model; 1.0 is the paper).
    pub width: f64,
    /// Input side: 227 (the paper writes 224; the layer arithmetic needs 227); 224 for
    /// torchvision's owt recipe.
    pub crop: usize,
    /// LRN alpha, cuda-convnet/PyTorch convention (alpha / n): 1e-4; the paper's
    /// literal formula is 5e-4 in that convention (section 3.3).
    pub lrn_alpha: f64,
    /// LRN within each tower (2, the paper's two GPUs) or over all maps (1).
    pub lrn_towers: usize,
    /// Dropout probability on fc6 and fc7 in training (section 4.2: 0.5; without it
    /// the paper's net "exhibits substantial overfitting"); 0 turns it off.
    pub dropout: f64,
    /// `relu` (the paper) or `tanh` after every convolution and hidden fully connected
    /// layer (section 3.1, Figure 1: ReLU nets reach 25% training error six times
    /// faster than tanh nets). Paper model only.
    pub activation: crate::model::Activation,
    /// Local response normalization after conv1 and conv2 (section 3.3: without it
    /// top-1 / top-5 error is 1.4 / 1.2 points higher); `false` puts an identity in its
    /// place. Paper model only.
    pub lrn: bool,
    /// `overlapping` max pooling, 3x3 windows at stride 2 (the paper), or
    /// `non-overlapping`, 2x2 at stride 2 (section 3.4: 0.4 / 0.3 points more top-1 /
    /// top-5 error, same output sizes). Paper model only.
    pub pooling: crate::model::Pooling,
    /// 2: the paper's two-GPU net (two towers, conv2, conv4 and conv5 see only their
    /// tower's maps); 1: its one-GPU baseline (section 3.2: one tower with half the
    /// kernels of every convolution but the last, the fully connected layers as they
    /// are; 1.7 / 1.2 points more top-1 / top-5 error than two towers). LRN then runs
    /// over all maps. Paper model only.
    pub towers: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            arch: crate::model::Arch::Paper,
            width: 1.0,
            crop: 227,
            lrn_alpha: 1e-4,
            lrn_towers: 2,
            dropout: 0.5,
            activation: crate::model::Activation::Relu,
            lrn: true,
            pooling: crate::model::Pooling::Overlapping,
            towers: 2,
        }
    }
}

/// `[data]`; defaults: the paper's augmentation (section 4.1) and input (section 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// `mean-image` (the paper, section 2), `mean-rgb` or `torchvision`.
    pub normalization: Normalization,
    /// Loader worker threads (each loader: train, val).
    pub workers: usize,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// `full` (a permutation of all rows) or `shard-then-row` (one shard at a time).
    pub shuffle: Shuffle,
    /// Random horizontal flips (section 4.1).
    pub flip: bool,
    /// PCA colour noise (section 4.1: it "reduces the top-1 error rate by over 1%").
    pub pca_noise: bool,
    /// How train crops are made: `paper` (a random `model.crop` square of the 256x256
    /// centre squares, section 4.1; a centre-square dataset) or `random-resized-crop`
    /// (torchvision's `RandomResizedCrop(model.crop)` of the whole image; a whole-image
    /// dataset, `preprocess build --keep whole`). Recorded in checkpoints: eval's
    /// default crops follow it (the paper's ten crops, or torchvision's centre crop).
    pub train_crop: TrainCrop,
    /// `RandomResizedCrop`'s range of the box's area as a fraction of the image's.
    pub rrc_scale: [f64; 2],
    /// `RandomResizedCrop`'s range of the box's aspect ratio (width / height).
    pub rrc_ratio: [f64; 2],
    /// Train images held out of training and scored (center crop) after every epoch;
    /// when more than 0 their error drives the plateau schedule instead of val's, so
    /// val stays untouched by any training decision. Drawn once from the seed.
    pub holdout: usize,
    /// A row whose bytes fail their check when read (format 2's per-row CRC-32C, a
    /// format 1 shard's sha256): `stop` (an error naming the shard and row) or `skip`
    /// (left out of its batch, with a warning line naming it).
    pub on_damaged: OnDamaged,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            normalization: Normalization::MeanImage,
            workers: 4,
            prefetch: 4,
            shuffle: Shuffle::Full,
            flip: true,
            pca_noise: true,
            train_crop: TrainCrop::Paper,
            rrc_scale: [0.08, 1.0],
            rrc_ratio: [3.0 / 4.0, 4.0 / 3.0],
            holdout: 0,
            on_damaged: OnDamaged::Stop,
        }
    }
}

/// How train crops are made (`data.train_crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrainCrop {
    /// Random crops of the 256x256 centre squares (the paper, section 4.1).
    #[default]
    Paper,
    /// torchvision's `RandomResizedCrop` of the whole image.
    RandomResizedCrop,
}

impl TrainCrop {
    pub fn name(self) -> &'static str {
        match self {
            TrainCrop::Paper => "paper",
            TrainCrop::RandomResizedCrop => "random-resized-crop",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [TrainCrop::Paper, TrainCrop::RandomResizedCrop].into_iter().find(|t| t.name() == name)
    }
}

impl DataSection {
    /// The loader's `RandomResizedCrop`, for `random-resized-crop`.
    pub fn resized_crop(&self) -> Option<crate::data::resized_crop::RandomResizedCrop> {
        (self.train_crop == TrainCrop::RandomResizedCrop).then(|| crate::data::resized_crop::RandomResizedCrop {
            scale: (self.rrc_scale[0], self.rrc_scale[1]),
            ratio: (self.rrc_ratio[0], self.rrc_ratio[1]),
        })
    }
}

/// `[optim]`; defaults: the paper's SGD (section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSection {
    /// Images per step (of one rank under data parallel).
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    /// On every parameter (the paper's update rule).
    pub weight_decay: f64,
    pub epochs: usize,
    /// Default: divide by 10 when the validation error stops improving, at most three
    /// times (the paper did it three times in about 90 epochs).
    pub schedule: Schedule,
    /// Paper section 5: N(0, 0.01) weights and the bias ones; otherwise PyTorch's.
    pub paper_init: bool,
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            batch_size: 128,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            epochs: 90,
            schedule: Schedule::Plateau { patience: 3, threshold: 0.002, factor: 10.0, max_drops: 3 },
            paper_init: true,
        }
    }
}

/// `[run]`; defaults suit a long run on a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    pub seed: u64,
    /// Write a checkpoint every N minutes as well as every epoch (preemptible clusters).
    pub checkpoint_minutes: f64,
    /// Epoch checkpoints kept besides the best one.
    pub keep_last: usize,
    /// A metrics line (and a log line) every N steps.
    pub log_every_steps: usize,
    /// Conv weights and activations in channels-last (NHWC) memory layout: faster
    /// convolutions on GPUs with tensor cores. Checkpoints stay NCHW.
    pub channels_last: bool,
    /// `fp32`, or `bf16`: the forward pass and the loss under autocast in bfloat16
    /// (convolutions and matrix products in bf16, the loss and reductions in float32;
    /// weights, gradients and SGD stay float32). Validation runs in float32.
    pub precision: Precision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            seed: 0,
            checkpoint_minutes: 30.0,
            keep_last: 3,
            log_every_steps: 50,
            channels_last: false,
            precision: Precision::Fp32,
        }
    }
}

/// Data parallel (DESIGN.md, "Distributed data parallel"). `optim.batch_size` is the
/// batch of one rank; the global batch is `optim.batch_size * world_size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistSection {
    /// How `optim.lr` scales with the ranks: `none` (it is the rate of the global
    /// batch) or `linear` (it is the rate of one rank's batch, multiplied by the world
    /// size: Goyal et al. 2017, "Accurate, Large Minibatch SGD").
    pub lr_scaling: LrScaling,
    /// Linear warm-up, in epochs, from `optim.lr` to the scaled rate (Goyal et al.
    /// used 5 for large global batches); 0: none. Has no effect without scaling.
    pub warmup_epochs: f64,
    /// Seconds the rendezvous or a collective may wait for the other ranks before the
    /// run fails (a dead or hung rank).
    pub timeout_s: f64,
    /// Gradient bucket size in MiB (PyTorch DDP's default: 25).
    pub bucket_mb: f64,
    /// All-reduce each bucket of gradients while the backward pass is still running
    /// (c10d's Reducer, as PyTorch's DDP; the default), or all of them after it
    /// (`false`). The two give the same weights up to float rounding (bit-identical at
    /// two ranks).
    pub overlap: bool,
    /// Resolved at start and saved in `RUN_DIR/config.toml`: the number of ranks. A
    /// preset that sets it is checked against the launch; a resumed run must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// Resolved at start: `optim.batch_size * world_size` (checked when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    /// Resolved at start: the learning rate after scaling, before the schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaled_lr: Option<f64>,
}

impl Default for DistSection {
    fn default() -> Self {
        Self {
            lr_scaling: LrScaling::None,
            warmup_epochs: 0.0,
            timeout_s: 600.0,
            bucket_mb: 25.0,
            overlap: true,
            world_size: None,
            global_batch: None,
            scaled_lr: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    None,
    Linear,
}

impl DistSection {
    /// The factor `optim.lr` is multiplied by with `world` ranks.
    pub fn lr_factor(&self, world: usize) -> f64 {
        match self.lr_scaling {
            LrScaling::None => 1.0,
            LrScaling::Linear => world as f64,
        }
    }
}

/// The longest collective timeout accepted (30 days): "never" in practice.
pub const MAX_TIMEOUT_S: f64 = 30.0 * 24.0 * 3600.0;

/// A configuration that cannot be used: one line naming the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or text that does not parse, or a value out of range.
    #[error("{0}")]
    Invalid(String),
    /// A `--set key=value` that names no key or gives a bad value.
    #[error("--set {set}: {message}")]
    Set { set: String, message: String },
    /// `--resume` with a configuration that changes the run.
    #[error(
        "--resume: the configuration differs from the run's saved config.toml in {}: these change the run \
         (start a new run folder for them); on resume only {} may change",
        list(.0),
        RESUME_SAFE.join(", ")
    )]
    ChangedOnResume(Vec<Change>),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
}

pub(crate) fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

impl TrainConfig {
    /// Parses TOML; an unknown key or a bad value is a one-line error naming it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid(one_line(e)))?;
        Self::from_table(table)
    }

    /// Parses TOML with `key=value` overrides applied ([`apply_sets`]).
    pub fn parse(text: &str, sets: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid(one_line(e)))?;
        apply_sets(&mut table, sets)?;
        Self::from_table(table)
    }

    /// Reads a preset or a run's `config.toml`, naming the file in any error.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        Self::from_table(read_table(path)?).map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))
    }

    pub(crate) fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let c: TrainConfig = table.try_into().map_err(|e| ConfigError::Invalid(one_line(e)))?;
        c.validate().map_err(ConfigError::Invalid)?;
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    pub(crate) fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("config serializes")
    }

    /// The model this configuration trains. owt is torchvision's net: one tower, no
    /// LRN (`model.lrn`, `model.towers` and `model.lrn_towers` do not apply to it); the
    /// one-GPU paper net (`model.towers = 1`) normalizes over all its maps.
    pub fn model_config(&self, num_classes: usize) -> ModelConfig {
        let m = &self.model;
        let owt = m.arch == crate::model::Arch::Owt;
        ModelConfig {
            arch: m.arch,
            num_classes,
            crop: m.crop,
            width: m.width,
            lrn_alpha: m.lrn_alpha,
            lrn_towers: if owt || m.towers == 1 { 1 } else { m.lrn_towers },
            activation: m.activation,
            lrn: m.lrn && !owt,
            pooling: m.pooling,
            towers: if owt { 1 } else { m.towers },
            dropout: m.dropout,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.model.dropout) {
            return Err(format!("model.dropout {} must be in [0, 1)", self.model.dropout));
        }
        self.model_config(1).validate().map_err(|e| e.0)?;
        let (sc, ra) = (self.data.rrc_scale, self.data.rrc_ratio);
        if !(sc[0] > 0.0 && sc[0] <= sc[1] && sc[1] <= 1.0 && ra[0] > 0.0 && ra[0] <= ra[1] && ra[1].is_finite()) {
            return Err(format!(
                "data.rrc_scale = {sc:?} must be 0 < lo <= hi <= 1 and data.rrc_ratio = {ra:?} 0 < lo <= hi (finite)"
            ));
        }
        let o = &self.optim;
        if o.batch_size == 0 || o.batch_size > MAX_BATCH || o.epochs == 0 {
            return Err(format!("optim.batch_size must be in 1..={MAX_BATCH} and optim.epochs at least 1"));
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(format!("optim.lr = {} must be a finite number > 0", o.lr));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(format!("optim.weight_decay = {} must be a finite number >= 0", o.weight_decay));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(format!("optim.momentum = {} must be in [0, 1)", o.momentum));
        }
        o.schedule.validate().map_err(|e| format!("optim.schedule: {e}"))?;
        let r = &self.run;
        if !(r.checkpoint_minutes.is_finite() && r.checkpoint_minutes > 0.0) {
            return Err(format!(
                "run.checkpoint_minutes = {} must be a finite number of minutes > 0 (epoch ends always checkpoint; \
                 a large value means only those)",
                r.checkpoint_minutes
            ));
        }
        if r.log_every_steps == 0 {
            return Err("run.log_every_steps must be at least 1".into());
        }
        let d = &self.dist;
        if !(d.timeout_s.is_finite() && (1.0..=MAX_TIMEOUT_S).contains(&d.timeout_s)) {
            return Err(format!("dist.timeout_s must be between 1 and {MAX_TIMEOUT_S} (seconds; 30 days)"));
        }
        if !(d.warmup_epochs.is_finite() && d.warmup_epochs >= 0.0 && d.bucket_mb.is_finite() && d.bucket_mb > 0.0) {
            return Err("dist.warmup_epochs must be >= 0 and dist.bucket_mb > 0".into());
        }
        if d.bucket_mb > 65536.0 {
            return Err(format!("dist.bucket_mb = {} must be at most 65536 (MiB)", d.bucket_mb));
        }
        if d.world_size == Some(0) {
            return Err("dist.world_size must be at least 1".into());
        }
        if !(self.stall.tolerance.is_finite() && self.stall.tolerance > 0.0 && self.stall.tolerance < 1.0) {
            return Err(format!(
                "stall.tolerance = {} must be in (0, 1) (a fraction of ln(classes))",
                self.stall.tolerance
            ));
        }
        let data = &self.data;
        if data.workers == 0 || data.workers > MAX_WORKERS {
            return Err(format!("data.workers = {} must be in 1..={MAX_WORKERS}", data.workers));
        }
        if data.prefetch > MAX_PREFETCH {
            return Err(format!("data.prefetch = {} must be at most {MAX_PREFETCH}", data.prefetch));
        }
        Ok(())
    }

    /// [`Self::resolve`] for a resumed run, which may continue at another world size
    /// than the one its config records (a node lost or added): the saved world size,
    /// global batch and scaled learning rate are then re-derived for `world` (the
    /// per-rank batch stays, so the global batch follows the world size and the rate
    /// `dist.lr_scaling`), and the change is returned for the log and the metrics.
    pub fn resolve_resumed(&self, world: usize) -> Result<(TrainConfig, Option<WorldChange>), ConfigError> {
        let Some(from) = self.dist.world_size.filter(|&w| w != world) else {
            return Ok((self.resolve(world)?, None));
        };
        let before = self.resolve(from)?;
        let mut fresh = self.clone();
        (fresh.dist.world_size, fresh.dist.global_batch, fresh.dist.scaled_lr) = (None, None, None);
        let after = fresh.resolve(world)?;
        let change = WorldChange {
            from,
            to: world,
            global_batch: (before.dist.global_batch.unwrap_or(0), after.dist.global_batch.unwrap_or(0)),
            lr: (before.dist.scaled_lr.unwrap_or(0.0), after.dist.scaled_lr.unwrap_or(0.0)),
        };
        Ok((after, Some(change)))
    }

    /// The configuration with `dist.world_size`, `dist.global_batch` and
    /// `dist.scaled_lr` filled in for `world` ranks (saved as the run's config). Values
    /// already there (a preset that states them, or a resumed run's saved config) must
    /// agree: a run resumes with the world size it started with.
    pub fn resolve(&self, world: usize) -> Result<TrainConfig, ConfigError> {
        let d = &self.dist;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(w) = d.world_size {
            if w != world {
                return bad(format!(
                    "the config says dist.world_size = {w} but {world} process(es) were launched: launch {w}, or \
                     leave dist.world_size out of the config (it is derived; a resumed run may change it)"
                ));
            }
        }
        let global = self.optim.batch_size * world;
        if let Some(g) = d.global_batch {
            if g != global {
                return bad(format!(
                    "dist.global_batch = {g}, but optim.batch_size {} (per rank) x {world} rank(s) = {global}",
                    self.optim.batch_size
                ));
            }
        }
        let lr = self.optim.lr * d.lr_factor(world);
        if let Some(s) = d.scaled_lr {
            if (s - lr).abs() > 1e-12 * lr.abs() {
                return bad(format!(
                    "dist.scaled_lr = {s}, but optim.lr {} with {:?} scaling over {world} rank(s) gives {lr}",
                    self.optim.lr, d.lr_scaling
                ));
            }
        }
        let mut out = self.clone();
        out.dist.world_size = Some(world);
        out.dist.global_batch = Some(global);
        out.dist.scaled_lr = Some(lr);
        Ok(out)
    }
}

/// A resumed run continuing at another world size ([`TrainConfig::resolve_resumed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WorldChange {
    pub from: usize,
    pub to: usize,
    /// (before, after): images per step over all ranks.
    pub global_batch: (usize, usize),
    /// (before, after): the scaled learning rate.
    pub lr: (f64, f64),
}

pub(crate) fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid(format!("{}: {}", path.display(), one_line(e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability review B18/B12: values that would train garbage, run forever or
    /// allocate what no machine has are refused, naming the key. (Before: accepted.)
    #[test]
    fn non_finite_negative_and_unbounded_values_are_refused_naming_the_key() {
        let refused = [
            ("optim.lr=inf", "optim.lr"),
            ("optim.lr=nan", "optim.lr"),
            ("optim.weight_decay=nan", "optim.weight_decay"),
            ("optim.weight_decay=inf", "optim.weight_decay"),
            ("optim.batch_size=10000000", "optim.batch_size"),
            ("run.checkpoint_minutes=-1.0", "run.checkpoint_minutes"),
            ("run.checkpoint_minutes=nan", "run.checkpoint_minutes"),
            ("run.log_every_steps=0", "run.log_every_steps"),
            ("model.lrn_alpha=nan", "lrn_alpha"),
            ("model.lrn_alpha=-1e-4", "lrn_alpha"),
            ("data.prefetch=1000000000", "data.prefetch"),
            ("data.workers=2000", "data.workers"),
            ("dist.bucket_mb=1e12", "dist.bucket_mb"),
            ("optim.schedule={kind=\"step\", step_epochs=0, gamma=0.1}", "step_epochs"),
            ("optim.schedule={kind=\"step\", step_epochs=30, gamma=nan}", "gamma"),
            ("optim.schedule={kind=\"step\", step_epochs=30, gamma=-0.5}", "gamma"),
            ("optim.schedule={kind=\"epochs\", at=[30], gamma=2.0}", "gamma"),
            ("optim.schedule={kind=\"plateau\", patience=3, threshold=0.002, factor=0.0, max_drops=3}", "factor"),
            ("optim.schedule={kind=\"plateau\", patience=3, threshold=nan, factor=10.0, max_drops=3}", "threshold"),
        ];
        for (set, key) in refused {
            let e = TrainConfig::parse("", &[set.to_string()]).expect_err(set).to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{set}: {e}");
        }
        // The bounds themselves are accepted.
        let ok = ["optim.lr=1e3", "run.checkpoint_minutes=1e9", "data.prefetch=256", "data.workers=1024"];
        TrainConfig::parse("", &ok.map(String::from)).unwrap();
    }
    use crate::config::LrScaling;

    fn preset(name: &str) -> String {
        std::fs::read_to_string(format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_presets_parse_and_hold_the_papers_numbers() {
        let p = TrainConfig::from_toml(&preset("alexnet-paper")).unwrap();
        assert_eq!((p.optim.batch_size, p.optim.lr, p.optim.momentum, p.optim.weight_decay), (128, 0.01, 0.9, 5e-4));
        assert_eq!((p.model.crop, p.model.lrn_alpha, p.model.lrn_towers), (227, 1e-4, 2));
        let o = TrainConfig::from_toml(&preset("alexnet-owt")).unwrap();
        assert_eq!(o.optim.schedule, Schedule::Step { step_epochs: 30, gamma: 0.1 });
        assert_eq!((o.optim.batch_size, o.optim.weight_decay, o.optim.epochs), (256, 1e-4, 90));
        let d = TrainConfig::from_toml(&preset("demo")).unwrap();
        assert_eq!(TrainConfig::from_toml(&d.to_toml()).unwrap(), d);
    }

    #[test]
    fn an_empty_file_is_the_papers_run() {
        // DESIGN.md, "Training defaults": batch 128, SGD momentum 0.9, weight decay 5e-4 on
        // every parameter, lr 0.01 divided by 10 on plateaus, dropout 0.5, LRN(5, 1e-4,
        // 0.75, 2) per tower, N(0, 0.01) init, 227 crops, flips, PCA noise, mean image.
        let e = TrainConfig::from_toml("").unwrap();
        assert_eq!(e, TrainConfig::default());
        assert_eq!(e.model.arch, crate::model::Arch::Paper);
        assert_eq!(
            (e.model.crop, e.model.width, e.model.lrn_alpha, e.model.lrn_towers, e.model.dropout),
            (227, 1.0, 1e-4, 2, 0.5)
        );
        assert_eq!((e.optim.batch_size, e.optim.lr, e.optim.momentum, e.optim.weight_decay), (128, 0.01, 0.9, 5e-4));
        assert!(matches!(e.optim.schedule, Schedule::Plateau { factor, max_drops: 3, .. } if factor == 10.0));
        assert!(e.optim.paper_init && e.data.flip && e.data.pca_noise);
        assert_eq!(e.data.normalization, Normalization::MeanImage);
        // The paper preset states nothing the defaults do not already say.
        assert_eq!(TrainConfig::from_toml(&preset("alexnet-paper")).unwrap().model, e.model);
    }

    #[test]
    fn a_saved_dist_section_without_overlap_overlaps_and_the_choice_is_saved() {
        // Run folders written before `dist.overlap` existed resume with the default.
        let old =
            "[dist]\nlr_scaling = \"none\"\nwarmup_epochs = 0.0\ntimeout_s = 60.0\nbucket_mb = 25.0\nworld_size = 2\n";
        let c = TrainConfig::from_toml(&format!("{}\n{old}", preset("demo"))).unwrap();
        assert!(c.dist.overlap);
        let text =
            format!("{}\n{}", preset("demo"), old.replace("bucket_mb = 25.0", "bucket_mb = 25.0\noverlap = false"));
        let c = TrainConfig::from_toml(&text).unwrap();
        assert!(!c.dist.overlap);
        assert!(!TrainConfig::from_toml(&c.to_toml()).unwrap().dist.overlap);
        // "Never time out" is spelled as a large number; past 30 days it is refused.
        let e = TrainConfig::from_toml(&text.replace("timeout_s = 60.0", "timeout_s = 1e20")).unwrap_err().to_string();
        assert!(e.contains("dist.timeout_s must be between 1 and"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_a_one_line_error_naming_it() {
        let text = preset("demo").replace("[optim]", "[optim]\nlearning_rate = 0.1");
        let e = TrainConfig::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("learning_rate") && !e.contains('\n'), "{e}");
        let e = TrainConfig::from_toml(&preset("demo").replace("[model]\n", "[model]\ncrop = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("crop"), "{e}");
    }

    #[test]
    fn the_resolved_config_records_world_global_batch_and_rate() {
        let mut c = TrainConfig::from_toml(&preset("demo")).unwrap();
        c.optim.lr = 0.01;
        let base = c.clone();
        c.dist.lr_scaling = LrScaling::Linear;
        let r = c.resolve(4).unwrap();
        assert_eq!((r.dist.world_size, r.dist.global_batch), (Some(4), Some(128)));
        assert!((r.dist.scaled_lr.unwrap() - 0.04).abs() < 1e-15);
        // The saved config round-trips and resolves again to itself (a resume).
        let saved = TrainConfig::from_toml(&r.to_toml()).unwrap();
        assert_eq!(saved.resolve(4).unwrap(), r);
        // Another world size is refused for a new run, naming both...
        let e = saved.resolve(2).unwrap_err().to_string();
        assert!(e.contains("dist.world_size = 4") && e.contains("2 process"), "{e}");
        // ...and re-derived for a resumed one: the per-rank batch stays, the global
        // batch and the linearly scaled rate follow the world size.
        let (at2, change) = saved.resolve_resumed(2).unwrap();
        assert_eq!((at2.dist.world_size, at2.dist.global_batch, at2.optim.batch_size), (Some(2), Some(64), 32));
        assert!((at2.dist.scaled_lr.unwrap() - 0.02).abs() < 1e-15);
        let change = change.unwrap();
        assert_eq!((change.from, change.to, change.global_batch), (4, 2, (128, 64)));
        assert!((change.lr.0 - 0.04).abs() < 1e-15 && (change.lr.1 - 0.02).abs() < 1e-15);
        assert_eq!(saved.resolve_resumed(4).unwrap(), (r.clone(), None));
        c.dist.global_batch = Some(100);
        let e = c.resolve(4).unwrap_err().to_string();
        assert!(e.contains("global_batch = 100"), "{e}");
        // No scaling: the rate is optim.lr whatever the world.
        assert_eq!(base.resolve(8).unwrap().dist.scaled_lr, Some(0.01));
    }

    /// The paper-experiment switches (issue 13): keys of [model], the paper by default,
    /// set from a file or `--set`, and a combination that cannot be built is one line.
    #[test]
    fn the_experiment_switches_are_model_keys_with_the_paper_as_default() {
        use crate::model::{Activation, Arch, Pooling};
        let paper = TrainConfig::default().model_config(1000);
        assert_eq!(paper, crate::model::ModelConfig::paper(1000));
        let sets = ["model.activation=tanh", "model.lrn=false", "model.pooling=non-overlapping", "model.towers=1"];
        let c = TrainConfig::parse(&preset("demo"), &sets.map(String::from)).unwrap();
        let m = c.model_config(10);
        assert_eq!((m.activation, m.lrn, m.pooling, m.towers), (Activation::Tanh, false, Pooling::NonOverlapping, 1));
        assert_eq!(m.lrn_towers, 1, "the one-GPU net normalizes over its one tower");
        assert_eq!(TrainConfig::from_toml(&c.to_toml()).unwrap(), c);
        let c = TrainConfig::parse("", &["model.dropout=0.0".into(), "data.pca_noise=false".into()]).unwrap();
        assert_eq!((c.model_config(10).dropout, c.data.pca_noise), (0.0, false));
        for (set, want) in [
            ("model.activation=sigmoid", "unknown variant `sigmoid`"),
            ("model.pooling=2x2", "unknown variant `2x2`"),
            ("model.towers=4", "towers 4 must be 2"),
            ("model.lrn=1", "invalid type"),
        ] {
            let e = TrainConfig::parse("", &[set.to_string()]).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains('\n'), "{set}: {e}");
        }
        let owt = preset("alexnet-owt");
        let e = TrainConfig::parse(&owt, &["model.activation=tanh".into()]).unwrap_err().to_string();
        assert!(e.contains("activation is a switch of the paper model") && !e.contains('\n'), "{e}");
        // owt has one tower and no LRN whatever the paper's keys say.
        let o = TrainConfig::from_toml(&owt).unwrap().model_config(10);
        assert_eq!((o.arch, o.lrn, o.towers, o.lrn_towers), (Arch::Owt, false, 1, 1));
    }
}
