//! What a loader reads and what it makes of it: the crops per image ([`Crops`]), the
//! rows of the split it covers ([`Rows`]), how train rows are shuffled ([`Shuffle`]),
//! and the rest of [`LoaderConfig`]. Plain data; [`LoaderConfig::check`] says whether
//! a loader can be built from it.

use std::sync::Arc;

use alexnet_shared::IMAGE_SIDE;
use tch::Device;

use super::error::DataError;
use super::pixels::PixelTransform;

/// What a pass over a split produces per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Crops {
    /// Random crop, optional flip, PCA noise coefficients (training).
    #[value(skip)]
    Train,
    /// One center crop per image.
    Center,
    /// The paper's ten crops (corners and center, and their mirror images), softmax
    /// averaged; torchvision's order, consecutive in the batch.
    Ten,
}

impl Crops {
    pub fn per_image(self) -> usize {
        if self == Crops::Ten {
            10
        } else {
            1
        }
    }
}

/// How the train rows of an epoch are shuffled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Shuffle {
    /// A permutation of all rows: uniform, touches shards at random (data in RAM or on
    /// a fast local SSD).
    #[default]
    Full,
    /// Shards in a random order, rows shuffled within each shard: reads one shard at a
    /// time, for data larger than RAM on slower disks. Train shards already mix classes.
    ShardThenRow,
}

/// Which rows of a split a loader covers: all of them, all but a held-out set (train),
/// or only that set (scoring the held-out slice, or a list of query rows). `Except`
/// holds sorted row indices; `Only` is read in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Rows {
    #[default]
    All,
    Except(Arc<Vec<usize>>),
    Only(Arc<Vec<usize>>),
}

/// What a loader does with a row whose bytes fail their check (the shard's per-row
/// CRC-32C, or a format 1 shard's sha256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnDamaged {
    /// Stop with an error naming the shard and row (the default).
    #[default]
    Stop,
    /// Leave the row out of its batch, print a warning naming it and count it in
    /// [`super::LoaderStats::skipped`].
    Skip,
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Images per batch (a ten-crop batch holds 10x as many crops).
    pub batch_size: usize,
    /// Side of the crops: 227 (paper), 224 (OWT), smaller for demos.
    pub crop: usize,
    pub crops: Crops,
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    pub shuffle: Shuffle,
    /// Random horizontal flips (training).
    pub flip: bool,
    /// PCA colour noise coefficients (training); zero when off.
    pub pca_noise: bool,
    /// Page-locked host buffers for asynchronous copies to this CUDA device. Set by
    /// [`super::Pipeline`]; tests set it by hand.
    pub pin_memory: Option<Device>,
    /// Make normalized float crops in the workers (CHW, PCA noise on train crops)
    /// instead of uint8 crops for [`super::Normalizer`] to convert on the device. Set by
    /// [`super::Pipeline`]; tests set it by hand.
    pub transform: Option<PixelTransform>,
    /// The rows of the split this loader covers.
    pub rows: Rows,
    /// Check every row's bytes when a worker reads it (default on; off only to measure
    /// what the check costs).
    pub check_rows: bool,
    /// What to do with a row that fails the check.
    pub on_damaged: OnDamaged,
}

impl LoaderConfig {
    pub fn new(batch_size: usize, crop: usize, crops: Crops) -> Self {
        Self {
            batch_size,
            crop,
            crops,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            prefetch: 4,
            seed: 0,
            rank: 0,
            world: 1,
            shuffle: Shuffle::Full,
            flip: true,
            pca_noise: true,
            pin_memory: None,
            transform: None,
            rows: Rows::All,
            check_rows: true,
            on_damaged: OnDamaged::Stop,
        }
    }

    /// Whether a loader can run with this configuration.
    pub fn check(&self) -> Result<(), DataError> {
        if self.batch_size == 0 || self.workers == 0 {
            return Err(DataError::Config("batch size and workers must be at least 1".into()));
        }
        if self.crop == 0 || self.crop > IMAGE_SIDE {
            return Err(DataError::Config(format!("crop {} must be in 1..=256", self.crop)));
        }
        if self.world == 0 || self.rank >= self.world {
            return Err(DataError::Config(format!("rank {} of world size {}", self.rank, self.world)));
        }
        Ok(())
    }

    /// Crops in one batch buffer.
    pub fn capacity(&self) -> usize {
        self.batch_size * self.crops.per_image()
    }
}
