//! INTERIM (replaced by the pipeline branch): one builder of a split's loader and the
//! normalizer of its batches, making the CPU-float / GPU-uint8-pinned choice.

use std::sync::Arc;

use alexnet_shared::{Manifest, SplitReader};
use tch::{Device, Tensor};

use super::{Batch, Loader, LoaderConfig, LoaderError, Normalization, Normalizer, PixelTransform};

pub struct Pipeline {
    pub loader: Loader,
    pub norm: Normalizer,
}

impl Pipeline {
    pub fn new(
        split: Arc<SplitReader>,
        mut cfg: LoaderConfig,
        manifest: &Manifest,
        mean_image: Option<&[f32]>,
        normalization: Normalization,
        device: Device,
    ) -> Result<Self, LoaderError> {
        let transform = PixelTransform::new(manifest, mean_image, normalization)?;
        if device == Device::Cpu {
            cfg.transform = Some(transform.clone());
        } else {
            cfg.pin_memory = Some(device);
        }
        Ok(Self { loader: Loader::new(split, cfg)?, norm: Normalizer::from_transform(&transform, device) })
    }

    pub fn start(&mut self, epoch: u64) -> usize {
        self.loader.start(epoch)
    }

    pub fn next_batch(&mut self) -> Result<Option<Batch>, LoaderError> {
        self.loader.next_batch()
    }

    pub fn input(&self, batch: &Batch, pca: bool) -> Result<Tensor, LoaderError> {
        self.norm.apply(batch, pca)
    }
}
