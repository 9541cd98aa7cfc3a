//! The training input pipeline: memory-mapped shards -> worker threads -> a ring of
//! batch buffers -> float batches on the training device.
//!
//! ```no_run
//! use std::sync::Arc;
//! use alexnet_shared::{read_mean_image, Dataset, Split};
//! use trainer::data::{Crops, Loader, LoaderConfig, Normalization, Normalizer};
//! # fn main() -> anyhow::Result<()> {
//! let ds = Dataset::open("data/imagenet".as_ref())?;
//! let mean = read_mean_image(&ds.dir().join(&ds.manifest().mean_image))?;
//! let norm = Normalizer::new(ds.manifest(), Some(&mean), Normalization::MeanImage, tch::Device::Cpu)?;
//! let mut loader = Loader::new(Arc::new(ds.split(Split::Train)?), LoaderConfig::new(128, 227, Crops::Train))?;
//! for epoch in 0..90 {
//!     loader.start(epoch);
//!     while let Some(batch) = loader.next_batch()? {
//!         let x = norm.apply(&batch, true)?; // float [128, 3, 227, 227]
//!         let y = batch.labels();
//!         drop(batch); // the buffer goes back to the ring
//!         # let _ = (x, y);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod augment;
pub mod loader;
pub mod normalize;
pub mod pipeline;
pub mod sampler;

pub use loader::{Batch, Crops, Loader, LoaderConfig, LoaderError, LoaderStats, Rows};
pub use normalize::{Normalization, Normalizer, PixelTransform};
pub use pipeline::Pipeline;
pub use sampler::Shuffle;
