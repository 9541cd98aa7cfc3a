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
    /// averaged; torchvision's order, consecutive in the batch. On a whole-image dataset:
    /// of the image's central square (the same crops as on a centre-square dataset).
    Ten,
    /// torchvision's `TenCrop(crop)` of the whole `Resize(256)` image: its corners are
    /// the whole image's (on a centre-square dataset, the same as `ten`).
    TenWhole,
}

impl Crops {
    pub fn per_image(self) -> usize {
        match self {
            Crops::Ten | Crops::TenWhole => 10,
            Crops::Train | Crops::Center => 1,
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

/// The largest batch (images per rank and step) a loader accepts.
pub const MAX_BATCH: usize = 65_536;
/// The most loader worker threads.
pub const MAX_WORKERS: usize = 1024;
/// The most batches prepared ahead of the consumer.
pub const MAX_PREFETCH: usize = 256;

const GIB: f64 = (1u64 << 30) as f64;

/// `MemAvailable` of /proc/meminfo, in bytes (None where there is no such file).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
    /// Train crops of whole images: torchvision's `RandomResizedCrop` (a whole-image
    /// dataset needs it). `None`: the paper's random crops of the 256x256 squares.
    pub resized_crop: Option<super::resized_crop::RandomResizedCrop>,
    /// Eval crops of whole images: the shorter side of torchvision's `Resize` before
    /// `CenterCrop(crop)` (the dataset's shorter side; 256 for capped longer sides). Set
    /// by [`super::Pipeline`] from the manifest.
    pub eval_resize: usize,
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
    /// JPEG rows: decode only the rows and iMCU columns the crops read (default on; the
    /// same pixels as a full decode, see [`super::jpeg`]); off to measure what it saves.
    pub decode_region: bool,
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
            resized_crop: None,
            eval_resize: IMAGE_SIDE,
            pin_memory: None,
            transform: None,
            rows: Rows::All,
            check_rows: true,
            on_damaged: OnDamaged::Stop,
            decode_region: true,
        }
    }

    /// Whether a loader can run with this configuration: every count in range, and its
    /// ring of batch buffers ([`Self::ring_bytes`]) within the memory the machine has
    /// available, so that nothing is allocated that cannot be.
    pub fn check(&self) -> Result<(), DataError> {
        if self.batch_size == 0 || self.workers == 0 {
            return Err(DataError::Config("batch size and workers must be at least 1".into()));
        }
        if self.batch_size > MAX_BATCH || self.workers > MAX_WORKERS || self.prefetch > MAX_PREFETCH {
            return Err(DataError::Config(format!(
                "batch size {} (at most {MAX_BATCH}), workers {} (at most {MAX_WORKERS}), prefetch {} (at most \
                 {MAX_PREFETCH}): out of range",
                self.batch_size, self.workers, self.prefetch
            )));
        }
        if let Some(avail) = available_memory() {
            let need = self.ring_bytes();
            if need > avail {
                return Err(DataError::Config(format!(
                    "the loader's {} batch buffers (workers + prefetch) of {} images need {:.1} GiB, and this machine \
                     has {:.1} GiB available: lower the workers, the prefetch or the batch size",
                    self.workers + self.prefetch.max(1),
                    self.batch_size,
                    need as f64 / GIB,
                    avail as f64 / GIB
                )));
            }
        }
        if self.crop == 0 || self.crop > IMAGE_SIDE {
            return Err(DataError::Config(format!("crop {} must be in 1..=256", self.crop)));
        }
        if self.world == 0 || self.rank >= self.world {
            return Err(DataError::Config(format!("rank {} of world size {}", self.rank, self.world)));
        }
        Ok(())
    }

    /// Bytes of the ring of batch buffers a loader allocates: `workers + prefetch`
    /// buffers of [`Self::capacity`] crops, float (CHW) when the workers normalize, else
    /// uint8.
    pub fn ring_bytes(&self) -> u64 {
        let per_crop = (self.crop * self.crop * 3) as u64 * if self.transform.is_some() { 4 } else { 1 };
        (self.workers + self.prefetch.max(1)) as u64 * self.capacity() as u64 * per_crop
    }

    /// Crops in one batch buffer.
    pub fn capacity(&self) -> usize {
        self.batch_size * self.crops.per_image()
    }
}
