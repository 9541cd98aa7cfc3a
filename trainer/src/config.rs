//! The training configuration: TOML presets in `configs/`, every key known
//! (`deny_unknown_fields`), defaults from the paper (sections 3-5). Every run saves
//! the resolved configuration as `RUN_DIR/config.toml` before it starts.

use serde::{Deserialize, Serialize};

use crate::data::{Normalization, Shuffle};
use crate::model::ModelConfig;
use crate::schedule::Schedule;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    pub optim: OptimSection,
    #[serde(default)]
    pub run: RunSection,
    /// Data-parallel settings (several ranks); defaults suit one process.
    #[serde(default)]
    pub dist: DistSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub arch: crate::model::Arch,
    #[serde(default = "one")]
    pub width: f64,
    pub crop: usize,
    #[serde(default = "lrn_alpha")]
    pub lrn_alpha: f64,
    #[serde(default = "two")]
    pub lrn_towers: usize,
    /// Dropout probability on fc6 and fc7 (paper section 4.2: 0.5); 0 turns it off.
    #[serde(default = "half")]
    pub dropout: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub normalization: Normalization,
    pub workers: usize,
    pub prefetch: usize,
    pub shuffle: Shuffle,
    pub flip: bool,
    pub pca_noise: bool,
    /// Train images held out of training and scored (center crop) after every epoch;
    /// when more than 0 their error drives the plateau schedule instead of val's, so
    /// val stays untouched by any training decision. Drawn once from the seed.
    #[serde(default)]
    pub holdout: usize,
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
            holdout: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default = "momentum")]
    pub momentum: f64,
    pub weight_decay: f64,
    pub epochs: usize,
    pub schedule: Schedule,
    /// Paper section 5: N(0, 0.01) weights and the bias ones; otherwise PyTorch's.
    #[serde(default = "yes")]
    pub paper_init: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub seed: u64,
    /// Write a checkpoint every N minutes as well as every epoch (preemptible clusters).
    pub checkpoint_minutes: f64,
    /// Epoch checkpoints kept besides the best one.
    pub keep_last: usize,
    pub log_every_steps: usize,
    /// Conv weights and activations in channels-last (NHWC) memory layout: faster
    /// convolutions on GPUs with tensor cores. Checkpoints stay NCHW.
    #[serde(default)]
    pub channels_last: bool,
    /// `fp32`, or `bf16`: the forward pass and the loss under autocast in bfloat16
    /// (convolutions and matrix products in bf16, the loss and reductions in float32;
    /// weights, gradients and SGD stay float32). Validation runs in float32.
    #[serde(default)]
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
#[serde(deny_unknown_fields)]
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
    #[serde(default = "yes")]
    pub overlap: bool,
    /// Resolved at start and saved in `RUN_DIR/config.toml`: the number of ranks. A
    /// preset that sets it is checked against the launch; a resumed run must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// Resolved at start: `optim.batch_size * world_size` (checked when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    /// Resolved at start: the learning rate after scaling, before the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn two() -> usize {
    2
}
fn lrn_alpha() -> f64 {
    1e-4
}
/// The longest collective timeout accepted (30 days): "never" in practice.
pub const MAX_TIMEOUT_S: f64 = 30.0 * 24.0 * 3600.0;

fn momentum() -> f64 {
    0.9
}
fn yes() -> bool {
    true
}

impl TrainConfig {
    /// Parses TOML; an unknown key or a bad value is a one-line error naming it.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let c: TrainConfig = toml::from_str(text).map_err(|e| e.to_string().lines().collect::<Vec<_>>().join(" "))?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    pub fn model_config(&self, num_classes: usize) -> ModelConfig {
        ModelConfig {
            arch: self.model.arch,
            num_classes,
            crop: self.model.crop,
            width: self.model.width,
            lrn_alpha: self.model.lrn_alpha,
            lrn_towers: if self.model.arch == crate::model::Arch::Owt { 1 } else { self.model.lrn_towers },
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.model_config(1).validate()?;
        let o = &self.optim;
        if o.batch_size == 0 || o.epochs == 0 {
            return Err("optim.batch_size and optim.epochs must be at least 1".into());
        }
        if o.lr.is_nan() || o.lr <= 0.0 || o.weight_decay < 0.0 || !(0.0..1.0).contains(&o.momentum) {
            return Err("optim: lr must be > 0, weight_decay >= 0, momentum in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return Err(format!("model.dropout {} must be in [0, 1)", self.model.dropout));
        }
        let d = &self.dist;
        if !(d.timeout_s.is_finite() && (1.0..=MAX_TIMEOUT_S).contains(&d.timeout_s)) {
            return Err(format!("dist.timeout_s must be between 1 and {MAX_TIMEOUT_S} (seconds; 30 days)"));
        }
        if !(d.warmup_epochs.is_finite() && d.warmup_epochs >= 0.0 && d.bucket_mb.is_finite() && d.bucket_mb > 0.0) {
            return Err("dist.warmup_epochs must be >= 0 and dist.bucket_mb > 0".into());
        }
        if d.world_size == Some(0) {
            return Err("dist.world_size must be at least 1".into());
        }
        if self.data.workers == 0 {
            return Err("data.workers must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = TrainConfig::from_toml(&text.replace("timeout_s = 60.0", "timeout_s = 1e20")).unwrap_err();
        assert!(e.contains("dist.timeout_s must be between 1 and"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_a_one_line_error_naming_it() {
        let text = preset("demo").replace("[optim]", "[optim]\nlearning_rate = 0.1");
        let e = TrainConfig::from_toml(&text).unwrap_err();
        assert!(e.contains("learning_rate") && !e.contains('\n'), "{e}");
        let e = TrainConfig::from_toml(&preset("demo").replace("crop = ", "crop = 1 #")).unwrap_err();
        assert!(e.contains("crop"), "{e}");
    }
}
