//! The input pipeline of one split for one device: [`Pipeline::new`] builds the
//! [`Loader`] and the [`Normalizer`] of its batches, and makes the one choice that
//! differs between devices, where uint8 pixels become float ([`FloatIn`]). Every client
//! (training, `eval score`, `eval neighbors`, `loader_bench`) builds its loaders here,
//! so the choice is written once.
//!
//! The choice, per device:
//! - **CPU: float crops made in the workers.** The crop, the PCA shift and the
//!   normalization are one pass over the pixels ([`PixelTransform::crop_float`]), spread
//!   over the worker threads; [`Normalizer::apply`] then hands the buffer on as a view.
//!   The tensor-op conversion would be a second pass, over 4x the bytes, on the same
//!   cores (BENCHMARKS.md: the fastest path on a CPU).
//! - **CUDA: uint8 crops in page-locked buffers, converted on the device.** uint8 crosses
//!   PCIe in a quarter of float's bytes, and the conversion is a few tensor ops that a
//!   GPU does nearly for free. The ring's buffers are page-locked (pinned) so that the
//!   copy is a DMA straight from the buffer, without the staging copy that pageable
//!   memory needs. Before this builder eval pinned and training did not, for no
//!   recorded reason; now both do. The cost is page-locked host memory for the ring:
//!   `workers + prefetch` buffers of `batch x crop x crop x 3` bytes (19.8 MB each at
//!   batch 128, crop 227).

use std::sync::Arc;

use alexnet_shared::{Manifest, SplitReader};
use tch::{Device, Tensor};

use super::batch::Batch;
use super::config::LoaderConfig;
use super::error::DataError;
use super::loader::{Loader, LoaderStats};
use super::normalize::Normalizer;
use super::pixels::{Normalization, PixelTransform};

/// Where uint8 pixels become normalized floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloatIn {
    /// In the loader's workers, fused with the crop ([`PixelTransform`]).
    Workers,
    /// After the loader, as tensor ops on the device ([`Normalizer`]).
    Device,
}

impl FloatIn {
    /// The pipeline's choice for `device` (see the module docs).
    pub fn for_device(device: Device) -> Self {
        if device == Device::Cpu {
            FloatIn::Workers
        } else {
            FloatIn::Device
        }
    }
}

/// The shorter side eval crops of whole images are taken at (torchvision's
/// `Resize(side)` before `CenterCrop`): the dataset's own for `--shorter-side`, 256
/// otherwise.
pub fn eval_resize(manifest: &Manifest) -> usize {
    match manifest.layout {
        alexnet_shared::Layout::Whole { resize: alexnet_shared::WholeResize::ShorterSide } => {
            manifest.image_size as usize
        }
        _ => alexnet_shared::IMAGE_SIDE,
    }
}

/// A loader of one split and the normalizer of its batches, for one device.
pub struct Pipeline {
    pub loader: Loader,
    pub norm: Normalizer,
}

impl Pipeline {
    /// `cfg` says what to read and crop (batch, crop, crops, workers, prefetch, seed,
    /// rank, world, shuffle, flip, pca_noise, rows); the builder sets `transform` (CPU:
    /// float crops made in the workers) or `pin_memory` (CUDA: uint8 crops in page-locked
    /// buffers, converted on the device) itself. `mean_image` (256x256x3 HWC, 0..255) is
    /// needed for `Normalization::MeanImage`.
    pub fn new(
        split: Arc<SplitReader>,
        cfg: LoaderConfig,
        manifest: &Manifest,
        mean_image: Option<&[f32]>,
        normalization: Normalization,
        device: Device,
    ) -> Result<Self, DataError> {
        let transform = PixelTransform::new(manifest, mean_image, normalization)?;
        let cfg = LoaderConfig { eval_resize: eval_resize(manifest), ..cfg };
        Self::with_float_in(split, cfg, &transform, device, FloatIn::for_device(device))
    }

    /// [`Self::new`] with the float conversion placed by the caller, for benches and
    /// tests that compare the two paths on one device.
    pub fn with_float_in(
        split: Arc<SplitReader>,
        cfg: LoaderConfig,
        transform: &PixelTransform,
        device: Device,
        float_in: FloatIn,
    ) -> Result<Self, DataError> {
        let cfg = configure(cfg, transform, device, float_in);
        Ok(Self { loader: Loader::new(split, cfg)?, norm: Normalizer::from_transform(transform, device) })
    }

    /// Starts pass `epoch` ([`Loader::start`]); returns its number of batches.
    pub fn start(&mut self, epoch: u64) -> usize {
        self.loader.start(epoch)
    }

    /// Starts the rest of train epoch `epoch` after the parts `trained`
    /// ([`Loader::start_after`]); returns its number of batches.
    pub fn start_after(&mut self, epoch: u64, trained: &[super::sampler::Trained]) -> usize {
        self.loader.start_after(epoch, trained)
    }

    /// The next batch of the pass, in order ([`Loader::next_batch`]); `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, DataError> {
        self.loader.next_batch()
    }

    /// The model's input for `batch`: float [N, 3, crop, crop] on the device
    /// ([`Normalizer::apply`]); `pca` adds the colour noise (training).
    pub fn input(&self, batch: &Batch, pca: bool) -> Result<Tensor, DataError> {
        self.norm.apply(batch, pca)
    }

    pub fn stats(&self) -> &LoaderStats {
        self.loader.stats()
    }

    /// See [`Loader::stage_times`].
    pub fn stage_times(&self) -> super::StageTimes {
        self.loader.stage_times()
    }

    /// The loader's configuration, with the builder's choices filled in.
    pub fn config(&self) -> &LoaderConfig {
        self.loader.config()
    }

    /// Where this pipeline makes its floats.
    pub fn float_in(&self) -> FloatIn {
        if self.config().transform.is_some() {
            FloatIn::Workers
        } else {
            FloatIn::Device
        }
    }
}

/// `cfg` with the fields the builder owns set for `float_in` on `device`: the workers'
/// `transform`, and page-locked buffers for a CUDA device.
fn configure(mut cfg: LoaderConfig, transform: &PixelTransform, device: Device, float_in: FloatIn) -> LoaderConfig {
    cfg.transform = (float_in == FloatIn::Workers).then(|| transform.clone());
    cfg.pin_memory = device.is_cuda().then_some(device);
    cfg
}

#[cfg(test)]
mod tests {
    use super::super::config::Crops;
    use super::*;

    fn transform() -> PixelTransform {
        PixelTransform {
            norm: Normalization::MeanRgb,
            eig: [1.0; 3],
            vecs: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            mean_rgb: [120.0; 3],
            mean_image: None,
        }
    }

    #[test]
    fn the_cpu_gets_float_crops_and_cuda_pinned_uint8_crops() {
        let t = transform();
        let mut given = LoaderConfig::new(8, 64, Crops::Train);
        given.pin_memory = Some(Device::Cuda(3)); // the builder's fields are its own
        let cpu = configure(given.clone(), &t, Device::Cpu, FloatIn::for_device(Device::Cpu));
        assert!(cpu.transform.is_some() && cpu.pin_memory.is_none());
        let gpu = Device::Cuda(1);
        let cuda = configure(given.clone(), &t, gpu, FloatIn::for_device(gpu));
        assert!(cuda.transform.is_none());
        assert_eq!(cuda.pin_memory, Some(gpu));
        // The bench's override: uint8 on the CPU, not pinned.
        let dev = configure(given, &t, Device::Cpu, FloatIn::Device);
        assert!(dev.transform.is_none() && dev.pin_memory.is_none());
        assert_eq!((dev.batch_size, dev.crop, dev.crops), (8, 64, Crops::Train));
    }
}
