//! The float side of the input pipeline, above the loader, as a few batched tensor ops
//! on the training device: uint8 HWC crops -> float, PCA colour noise (paper section
//! 4.1, [`pca_shift_batch`]), normalization, NCHW. Doing this on the device keeps the
//! workers' per-image work to byte copies, and on a GPU the conversion is nearly free.
//! Batches whose workers already made float crops ([`PixelTransform`]) are only moved to
//! the device.

use alexnet_shared::{Manifest, IMAGE_SIDE};
use tch::{Device, Kind, Tensor};

use super::batch::Batch;
use super::error::DataError;
use super::pixels::{pca_shift_batch, Normalization, PixelTransform, TORCHVISION_MEAN, TORCHVISION_STD};

/// The device side: uint8 crops -> float batch with a few tensor ops on the device.
pub struct Normalizer {
    norm: Normalization,
    device: Device,
    /// lambda_i / 255, [3]
    eig: Tensor,
    /// eigenvectors as rows, [3, 3]
    vecs: Tensor,
    /// [256, 256, 3] float, for `MeanImage`
    mean_image: Option<Tensor>,
    mean: Tensor,
    std: Option<Tensor>,
}

impl Normalizer {
    /// `mean_image` (256x256x3 HWC, 0..255) is needed for `Normalization::MeanImage`.
    pub fn new(
        manifest: &Manifest,
        mean_image: Option<&[f32]>,
        norm: Normalization,
        device: Device,
    ) -> Result<Self, DataError> {
        Ok(Self::from_transform(&PixelTransform::new(manifest, mean_image, norm)?, device))
    }

    /// The same arithmetic as `t`, as tensors on `device`.
    pub fn from_transform(t: &PixelTransform, device: Device) -> Self {
        let eig = Tensor::from_slice(&t.eig).to_device(device);
        let flat: Vec<f32> = t.vecs.iter().flatten().copied().collect();
        let vecs = Tensor::from_slice(&flat).view([3, 3]).to_device(device);
        let mean_image = t
            .mean_image
            .as_ref()
            .map(|m| Tensor::from_slice(m).view([IMAGE_SIDE as i64, IMAGE_SIDE as i64, 3]).to_device(device));
        let (mean, std) = match t.norm {
            Normalization::Torchvision => (
                Tensor::from_slice(&TORCHVISION_MEAN).to_device(device),
                Some(Tensor::from_slice(&TORCHVISION_STD).to_device(device)),
            ),
            _ => (Tensor::from_slice(&t.mean_rgb).to_device(device), None),
        };
        Self { norm: t.norm, device, eig, vecs, mean_image, mean, std }
    }

    pub fn normalization(&self) -> Normalization {
        self.norm
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// float [N, 3, crop, crop] on the device, ready for the model. `pca`: add the
    /// colour noise (training).
    ///
    /// When the loader's workers already made float crops (`LoaderConfig::transform`),
    /// this is those crops moved to the device: on the CPU a view of the batch's buffer,
    /// to be used before the batch is dropped. Otherwise a new tensor.
    pub fn apply(&self, batch: &Batch, pca: bool) -> Result<Tensor, DataError> {
        if let Some(f) = batch.floats() {
            return Ok(f.f_to_device(self.device)?);
        }
        let n = batch.len() as i64;
        let c = batch.crop() as i64;
        // Host -> device copy of the uint8 crops. Synchronous: the buffer goes back to
        // the ring when the batch is dropped, which must not happen before the copy ends.
        let images = batch.images().expect("a batch holds uint8 or float crops");
        let x = images.f_to_device(self.device)?.f_to_kind(Kind::Float)?; // [N, c, c, 3]
        let mut x = if pca {
            let alphas = batch.alphas().f_to_device(self.device)?;
            let shift = pca_shift_batch(&alphas, &self.eig, &self.vecs)?; // [N, 3]
            x.f_add(&shift.f_view([n, 1, 1, 3])?)?
        } else {
            x
        };
        x = match self.norm {
            Normalization::MeanImage => {
                let mean = self.mean_image.as_ref().expect("checked in new");
                let (ys, xs) = index_grids(batch, self.device)?;
                let m = mean.f_index(&[Some(ys.f_view([n, c, 1])?), Some(xs.f_view([n, 1, c])?)])?; // [N, c, c, 3]
                x.f_sub(&m)?
            }
            Normalization::MeanRgb => x.f_sub(&self.mean)?,
            Normalization::Torchvision => {
                x.f_div_scalar(255.0)?.f_sub(&self.mean)?.f_div(self.std.as_ref().expect("torchvision has std"))?
            }
        };
        Ok(x.f_permute([0, 3, 1, 2])?.f_contiguous()?)
    }
}

/// Source rows [N, c] and columns [N, c] of each crop (columns reversed when flipped).
fn index_grids(batch: &Batch, device: Device) -> Result<(Tensor, Tensor), DataError> {
    let c = batch.crop();
    let mut ys = Vec::with_capacity(batch.len() * c);
    let mut xs = Vec::with_capacity(batch.len() * c);
    for s in batch.specs() {
        ys.extend((0..c).map(|i| (s.y + i) as i64));
        if s.flip {
            xs.extend((0..c).map(|i| (s.x + c - 1 - i) as i64));
        } else {
            xs.extend((0..c).map(|i| (s.x + i) as i64));
        }
    }
    let shape = [batch.len() as i64, c as i64];
    Ok((
        Tensor::from_slice(&ys).f_view(shape)?.f_to_device(device)?,
        Tensor::from_slice(&xs).f_view(shape)?.f_to_device(device)?,
    ))
}
