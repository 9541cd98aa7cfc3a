//! Pixel arithmetic on the host, below the loader: the normalizations of the paper and
//! of torchvision, the paper's PCA colour shift (section 4.1) written once, and
//! [`PixelTransform`], which fuses both with the crop for workers that make float
//! batches directly. The device side ([`super::Normalizer`]) uses the same formula as
//! tensor ops ([`pca_shift_batch`]).

use std::sync::Arc;

use alexnet_shared::{Manifest, IMAGE_SIDE as SIDE};
use tch::Tensor;

use super::augment::CropSpec;
use super::error::DataError;

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
        [Normalization::MeanImage, Normalization::MeanRgb, Normalization::Torchvision]
            .into_iter()
            .find(|n| n.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::MeanImage => "mean-image",
            Normalization::MeanRgb => "mean-rgb",
            Normalization::Torchvision => "torchvision",
        }
    }
}

/// torchvision's normalization constants (0..1 scale).
pub const TORCHVISION_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const TORCHVISION_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The paper's PCA colour shift, added to every pixel of an image, on the 0..255 scale:
///
/// `shift = sum_i alpha_i * (lambda_i / 255) * p_i`
///
/// with `alpha_i ~ N(0, 0.1)` drawn per image ([`super::augment::train_draw`]), `eig[i]
/// = lambda_i / 255` from the manifest's eigenvalues of the 0..255 covariance, and
/// `vecs[i] = p_i` the unit eigenvector paired with it (a row). This is the paper's
/// formula for pixels on 0..1 (`lambda_i / 255^2` is the eigenvalue on that scale),
/// times 255 (DESIGN.md, "Augmentation and crops"). [`pca_shift_batch`] is the same
/// sum for a batch as a matrix product.
pub fn pca_shift(alpha: [f32; 3], eig: &[f32; 3], vecs: &[[f32; 3]; 3]) -> [f32; 3] {
    let mut s = [0.0f32; 3];
    for i in 0..3 {
        let a = alpha[i] * eig[i];
        for c in 0..3 {
            s[c] += a * vecs[i][c];
        }
    }
    s
}

/// [`pca_shift`] of every image of a batch, as tensor ops on their device:
/// `(alphas * eig) @ vecs`, with `alphas` `[N, 3]`, `eig` `[3]` and `vecs` `[3, 3]` (rows
/// `p_i`); returns the shifts `[N, 3]`.
pub fn pca_shift_batch(alphas: &Tensor, eig: &Tensor, vecs: &Tensor) -> Result<Tensor, tch::TchError> {
    alphas.f_mul(eig)?.f_matmul(vecs)
}

/// The pixel arithmetic of the pipeline on the host: PCA shift and normalization,
/// fused with the crop, for workers that produce float batches directly (fastest when
/// training on the CPU; on a GPU the uint8 path with [`super::Normalizer`] moves 4x
/// fewer bytes). [`super::Pipeline`] decides which path a client takes.
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
    /// `mean_image` (256x256x3 HWC, 0..255) is needed for `Normalization::MeanImage`.
    pub fn new(manifest: &Manifest, mean_image: Option<&[f32]>, norm: Normalization) -> Result<Self, DataError> {
        let pca = &manifest.stats.pca;
        if norm == Normalization::MeanImage && mean_image.is_none() {
            return Err(DataError::NoMeanImage);
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

    /// For evaluation without a dataset (`eval predict` on a checkpoint that carries
    /// its inputs): the mean RGB and mean image given, no colour noise (zero
    /// eigenpairs).
    pub fn for_eval(
        norm: Normalization,
        mean_rgb: [f64; 3],
        mean_image: Option<Arc<Vec<f32>>>,
    ) -> Result<Self, DataError> {
        if norm == Normalization::MeanImage && mean_image.is_none() {
            return Err(DataError::NoMeanImage);
        }
        Ok(Self {
            norm,
            eig: [0.0; 3],
            vecs: [[0.0; 3]; 3],
            mean_rgb: mean_rgb.map(|v| v as f32),
            mean_image: if norm == Normalization::MeanImage { mean_image } else { None },
        })
    }

    /// [`pca_shift`] with this dataset's eigenpairs.
    pub fn shift(&self, alpha: [f32; 3]) -> [f32; 3] {
        pca_shift(alpha, &self.eig, &self.vecs)
    }

    /// Writes the normalized float crop `spec` of a 256x256x3 HWC image into `dst`
    /// (`3 * crop * crop`, CHW), adding the colour shift of `alpha`.
    pub fn crop_float(&self, src: &[u8], spec: CropSpec, crop: usize, alpha: [f32; 3], dst: &mut [f32]) {
        self.crop_float_from(src, SIDE, spec, crop, alpha, dst)
    }

    /// [`Self::crop_float`] from an HWC image `src_width` pixels wide (a whole image, or
    /// a resized crop). The mean image is 256 wide: it needs `src_width` 256.
    pub fn crop_float_from(
        &self,
        src: &[u8],
        src_width: usize,
        spec: CropSpec,
        crop: usize,
        alpha: [f32; 3],
        dst: &mut [f32],
    ) {
        assert!(self.mean_image.is_none() || src_width == SIDE, "the mean image is 256x256");
        let shift = self.shift(alpha);
        // v = (pixel + shift - mean) * scale + offset, per channel
        let (scale, offset, mean) = match self.norm {
            Normalization::Torchvision => (
                [0, 1, 2].map(|c| 1.0 / (255.0 * TORCHVISION_STD[c])),
                [0, 1, 2].map(|c| -TORCHVISION_MEAN[c] / TORCHVISION_STD[c]),
                [0.0; 3],
            ),
            Normalization::MeanRgb => ([1.0; 3], [0.0; 3], self.mean_rgb),
            Normalization::MeanImage => ([1.0; 3], [0.0; 3], [0.0; 3]),
        };
        let add = [0, 1, 2].map(|c| (shift[c] - mean[c]) * scale[c] + offset[c]);
        let plane = crop * crop;
        let (r, rest) = dst[..3 * plane].split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for y in 0..crop {
            let row = (spec.y + y) * src_width;
            let line = &src[(row + spec.x) * 3..(row + spec.x + crop) * 3];
            let out = y * crop..(y + 1) * crop;
            let (ro, go, bo) = (&mut r[out.clone()], &mut g[out.clone()], &mut b[out]);
            // One straight loop per case (flip or not, mean image or not), so that the
            // compiler vectorizes the de-interleaving; the same arithmetic either way.
            let outs = ro.iter_mut().zip(go.iter_mut()).zip(bo.iter_mut());
            match (&self.mean_image, spec.flip) {
                (None, false) => {
                    for (((r, g), b), p) in outs.zip(line.chunks_exact(3)) {
                        (*r, *g, *b) = (
                            p[0] as f32 * scale[0] + add[0],
                            p[1] as f32 * scale[1] + add[1],
                            p[2] as f32 * scale[2] + add[2],
                        );
                    }
                }
                (None, true) => {
                    for (((r, g), b), p) in outs.zip(line.chunks_exact(3).rev()) {
                        (*r, *g, *b) = (
                            p[0] as f32 * scale[0] + add[0],
                            p[1] as f32 * scale[1] + add[1],
                            p[2] as f32 * scale[2] + add[2],
                        );
                    }
                }
                (Some(m), flip) => {
                    // The mean image is cropped and flipped with the image.
                    let mline = &m[(row + spec.x) * 3..(row + spec.x + crop) * 3];
                    let px = line.chunks_exact(3).zip(mline.chunks_exact(3));
                    let mut put = |(((r, g), b), (p, q)): (((&mut f32, &mut f32), &mut f32), (&[u8], &[f32]))| {
                        (*r, *g, *b) =
                            (p[0] as f32 - q[0] + add[0], p[1] as f32 - q[1] + add[1], p[2] as f32 - q[2] + add[2]);
                    };
                    if flip {
                        outs.zip(px.rev()).for_each(&mut put);
                    } else {
                        outs.zip(px).for_each(&mut put);
                    }
                }
            }
        }
    }
}
