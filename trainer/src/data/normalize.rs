//! The float side of the input pipeline, as a few batched tensor ops on the training
//! device: uint8 HWC crops -> float, PCA colour noise (paper section 4.1), normalization,
//! NCHW. Doing this on the device keeps the workers' per-image work to byte copies, and
//! on a GPU the conversion is nearly free.

use std::sync::Arc;

use alexnet_shared::{Manifest, IMAGE_SIDE, IMAGE_SIDE as SIDE};
use tch::{Device, Kind, Tensor};

use super::augment::CropSpec;
use super::loader::{Batch, LoaderError};

/// How pixels are normalized; recorded in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
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
    /// The name in configs and checkpoint metadata (`mean-image`, ...); `None` for
    /// another.
    pub fn from_name(name: &str) -> Option<Self> {
        [Normalization::MeanImage, Normalization::MeanRgb, Normalization::Torchvision].into_iter().find(|n| n.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::MeanImage => "mean-image",
            Normalization::MeanRgb => "mean-rgb",
            Normalization::Torchvision => "torchvision",
        }
    }
}

/// The pixel arithmetic of the pipeline on the host: PCA shift and normalization,
/// fused with the crop, for workers that produce float batches directly (fastest when
/// training on the CPU; on a GPU the uint8 path with [`Normalizer`] moves 4x fewer bytes).
#[derive(Debug, Clone)]
pub struct PixelTransform {
    pub norm: Normalization,
    /// lambda_i / 255
    pub eig: [f32; 3],
    /// eigenvectors, rows
    pub vecs: [[f32; 3]; 3],
    pub mean_rgb: [f32; 3],
    /// 256x256x3 HWC, 0..255, for `MeanImage`
    pub mean_image: Option<Arc<Vec<f32>>>,
}

impl PixelTransform {
    pub fn new(manifest: &Manifest, mean_image: Option<&[f32]>, norm: Normalization) -> Result<Self, LoaderError> {
        let pca = &manifest.stats.pca;
        if norm == Normalization::MeanImage && mean_image.is_none() {
            return Err(LoaderError::Config("mean-image normalization needs the dataset's mean image".into()));
        }
        Ok(Self {
            norm,
            eig: pca.eigenvalues.map(|l| (l / 255.0) as f32),
            vecs: pca.eigenvectors.map(|r| r.map(|v| v as f32)),
            mean_rgb: manifest.stats.mean_rgb.map(|v| v as f32),
            mean_image: match norm {
                Normalization::MeanImage => mean_image.map(|m| Arc::new(m.to_vec())),
                _ => None,
            },
        })
    }

    /// The paper's colour shift on the 0..255 scale: sum_i alpha_i (lambda_i / 255) p_i.
    pub fn shift(&self, alpha: [f32; 3]) -> [f32; 3] {
        let mut s = [0.0f32; 3];
        for i in 0..3 {
            let a = alpha[i] * self.eig[i];
            for c in 0..3 {
                s[c] += a * self.vecs[i][c];
            }
        }
        s
    }

    /// Writes the normalized float crop `spec` of a 256x256x3 HWC image into `dst`
    /// (`3 * crop * crop`, CHW), adding the colour shift of `alpha`.
    pub fn crop_float(&self, src: &[u8], spec: CropSpec, crop: usize, alpha: [f32; 3], dst: &mut [f32]) {
        let shift = self.shift(alpha);
        // v = (pixel + shift - mean) * scale + offset, per channel
        let (scale, offset, mean) = match self.norm {
            Normalization::Torchvision => {
                const M: [f32; 3] = [0.485, 0.456, 0.406];
                const S: [f32; 3] = [0.229, 0.224, 0.225];
                ([0, 1, 2].map(|c| 1.0 / (255.0 * S[c])), [0, 1, 2].map(|c| -M[c] / S[c]), [0.0; 3])
            }
            Normalization::MeanRgb => ([1.0; 3], [0.0; 3], self.mean_rgb),
            Normalization::MeanImage => ([1.0; 3], [0.0; 3], [0.0; 3]),
        };
        let add = [0, 1, 2].map(|c| (shift[c] - mean[c]) * scale[c] + offset[c]);
        let plane = crop * crop;
        let (r, rest) = dst[..3 * plane].split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for y in 0..crop {
            let row = (spec.y + y) * SIDE;
            let line = &src[(row + spec.x) * 3..(row + spec.x + crop) * 3];
            let out = y * crop..(y + 1) * crop;
            let (ro, go, bo) = (&mut r[out.clone()], &mut g[out.clone()], &mut b[out]);
            match &self.mean_image {
                None => {
                    for (x, p) in line.chunks_exact(3).enumerate() {
                        let o = if spec.flip { crop - 1 - x } else { x };
                        ro[o] = p[0] as f32 * scale[0] + add[0];
                        go[o] = p[1] as f32 * scale[1] + add[1];
                        bo[o] = p[2] as f32 * scale[2] + add[2];
                    }
                }
                Some(m) => {
                    // The mean image is cropped and flipped with the image.
                    let mline = &m[(row + spec.x) * 3..(row + spec.x + crop) * 3];
                    for (x, (p, q)) in line.chunks_exact(3).zip(mline.chunks_exact(3)).enumerate() {
                        let o = if spec.flip { crop - 1 - x } else { x };
                        ro[o] = p[0] as f32 - q[0] + add[0];
                        go[o] = p[1] as f32 - q[1] + add[1];
                        bo[o] = p[2] as f32 - q[2] + add[2];
                    }
                }
            }
        }
    }
}

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
    ) -> Result<Self, LoaderError> {
        Ok(Self::from_transform(&PixelTransform::new(manifest, mean_image, norm)?, device))
    }

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
                Tensor::from_slice(&[0.485f32, 0.456, 0.406]).to_device(device),
                Some(Tensor::from_slice(&[0.229f32, 0.224, 0.225]).to_device(device)),
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
    pub fn apply(&self, batch: &Batch, pca: bool) -> Result<Tensor, LoaderError> {
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
    Ok((
        Tensor::from_slice(&ys).f_view(shape)?.f_to_device(device)?,
        Tensor::from_slice(&xs).f_view(shape)?.f_to_device(device)?,
    ))
}
