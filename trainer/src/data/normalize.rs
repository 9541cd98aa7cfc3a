//! The float side of the input pipeline, as a few batched tensor ops on the training
//! device: uint8 HWC crops -> float, PCA colour noise (paper section 4.1), normalization,
//! NCHW. Doing this on the device keeps the workers' per-image work to byte copies, and
//! on a GPU the conversion is nearly free.

use alexnet_shared::{Manifest, IMAGE_SIDE};
use tch::{Device, Kind, Tensor};

use super::loader::{Batch, LoaderError};

/// How pixels are normalized; recorded in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// The paper: subtract the per-pixel train mean image, cropped and flipped like the
    /// image (0..255 scale).
    MeanImage,
    /// Subtract the train mean R, G, B (0..255 scale).
    MeanRgb,
    /// torchvision's: 0..1 scale, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].
    Torchvision,
}

impl Normalization {
    pub fn name(self) -> &'static str {
        match self {
            Normalization::MeanImage => "mean-image",
            Normalization::MeanRgb => "mean-rgb",
            Normalization::Torchvision => "torchvision",
        }
    }
}

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
    pub fn new(manifest: &Manifest, mean_image: Option<&[f32]>, norm: Normalization, device: Device) -> Result<Self, LoaderError> {
        let pca = &manifest.stats.pca;
        let eig = Tensor::from_slice(&pca.eigenvalues.map(|l| (l / 255.0) as f32)).to_device(device);
        let flat: Vec<f32> = pca.eigenvectors.iter().flatten().map(|&v| v as f32).collect();
        let vecs = Tensor::from_slice(&flat).view([3, 3]).to_device(device);
        let mean_image = match (norm, mean_image) {
            (Normalization::MeanImage, Some(m)) => {
                Some(Tensor::from_slice(m).view([IMAGE_SIDE as i64, IMAGE_SIDE as i64, 3]).to_device(device))
            }
            (Normalization::MeanImage, None) => {
                return Err(LoaderError::Config("mean-image normalization needs the dataset's mean image".into()))
            }
            _ => None,
        };
        let (mean, std) = match norm {
            Normalization::Torchvision => (
                Tensor::from_slice(&[0.485f32, 0.456, 0.406]).to_device(device),
                Some(Tensor::from_slice(&[0.229f32, 0.224, 0.225]).to_device(device)),
            ),
            _ => (Tensor::from_slice(&manifest.stats.mean_rgb.map(|v| v as f32)).to_device(device), None),
        };
        Ok(Self { norm, device, eig, vecs, mean_image, mean, std })
    }

    pub fn normalization(&self) -> Normalization {
        self.norm
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// float [N, 3, crop, crop] on the device, ready for the model. `pca`: add the
    /// colour noise (training). The batch's buffer may be reused once this returns.
    pub fn apply(&self, batch: &Batch, pca: bool) -> Result<Tensor, LoaderError> {
        let n = batch.len() as i64;
        let c = batch.crop() as i64;
        // Host -> device copy of the uint8 crops. Synchronous: the buffer goes back to
        // the ring when the batch is dropped, which must not happen before the copy ends.
        let x = batch.images().f_to_device(self.device)?.f_to_kind(Kind::Float)?; // [N, c, c, 3]
        let mut x = if pca {
            // shift[n] = sum_i alpha[n, i] * (lambda_i / 255) * p_i   (0..255 scale)
            let alphas = batch.alphas().f_to_device(self.device)?;
            let shift = alphas.f_mul(&self.eig)?.f_matmul(&self.vecs)?; // [N, 3]
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
fn index_grids(batch: &Batch, device: Device) -> Result<(Tensor, Tensor), LoaderError> {
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
    Ok((Tensor::from_slice(&ys).f_view(shape)?.f_to_device(device)?, Tensor::from_slice(&xs).f_view(shape)?.f_to_device(device)?))
}
