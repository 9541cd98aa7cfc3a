//! The training input pipeline: memory-mapped shards -> worker threads -> a ring of
//! batch buffers -> float batches on the training device. One file per stage, each
//! using only the ones listed before it:
//!
//! | File | Stage |
//! |---|---|
//! | [`error`] | [`DataError`] (alias [`LoaderError`]), the one error of this module |
//! | [`seed`] | seeds derived from (seed, epoch, ...) tuples |
//! | [`augment`] | crop positions, flips and the per-image random draws (section 4.1) |
//! | [`pixels`] | host pixel arithmetic: [`Normalization`], the PCA shift, [`PixelTransform`] |
//! | [`config`] | what a loader reads and makes: [`LoaderConfig`], [`Crops`], [`Rows`], [`Shuffle`] |
//! | [`sampler`] | which rows, in which order, per rank and epoch: [`EpochPlan`] |
//! | [`resized_crop`] | whole images: torchvision's RandomResizedCrop boxes, eval boxes, the resized crop |
//! | [`jpeg`] | the JPEG decoder (libjpeg-turbo 3): only the region the crops read |
//! | [`batch`] | the ring's preallocated buffers and the [`Batch`] that lends one out |
//! | `worker` | a worker thread: decode, crop, write in place into a buffer; [`StageTimes`] |
//! | [`loader`] | [`Loader`]: dispatch of a pass to the workers, delivery in order, stats |
//! | [`normalize`] | [`Normalizer`]: uint8 crops -> float batch as tensor ops on the device |
//! | [`pipeline`] | [`Pipeline`]: a loader and its normalizer, with the CPU / CUDA choice |
//!
//! Clients build their loaders through [`Pipeline::new`], which decides where pixels
//! become floats: in the workers on the CPU, on the device from page-locked uint8
//! buffers on CUDA (see [`pipeline`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use alexnet_shared::{Dataset, Split};
//! use trainer::data::{Crops, LoaderConfig, Normalization, Pipeline};
//! # fn main() -> anyhow::Result<()> {
//! let ds = Dataset::open("data/imagenet".as_ref())?;
//! let mean = ds.mean_image()?;
//! let split = Arc::new(ds.split(Split::Train)?);
//! let cfg = LoaderConfig::new(128, 227, Crops::Train);
//! let device = tch::Device::Cpu;
//! let mut train = Pipeline::new(split, cfg, ds.manifest(), Some(&mean), Normalization::MeanImage, device)?;
//! for epoch in 0..90 {
//!     train.start(epoch);
//!     while let Some(batch) = train.next_batch()? {
//!         let x = train.input(&batch, true)?; // float [128, 3, 227, 227] on the device
//!         let y = batch.labels();
//!         drop(batch); // the buffer goes back to the ring
//!         # let _ = (x, y);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod augment;
pub mod batch;
pub mod config;
pub mod error;
pub mod jpeg;
pub mod loader;
pub mod normalize;
pub mod pipeline;
pub mod pixels;
pub mod resized_crop;
pub mod sampler;
pub mod seed;
mod worker;

pub use batch::Batch;
pub use config::{Crops, LoaderConfig, OnDamaged, Rows, Shuffle, MAX_BATCH, MAX_PREFETCH, MAX_WORKERS};
pub use error::{DataError, LoaderError};
pub use loader::{Loader, LoaderStats};
pub use normalize::Normalizer;
pub use pipeline::{FloatIn, Pipeline};
pub use pixels::{Normalization, PixelTransform};
pub use sampler::EpochPlan;
pub use worker::StageTimes;
