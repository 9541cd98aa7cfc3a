//! Population statistics of the train pixels: mean and std RGB, the PCA of the RGB
//! covariance (paper section 4.1, "PCA on the set of RGB pixel values throughout the
//! ImageNet training set") and the per-pixel mean image (section 2: "subtracting the
//! mean activity over the training set from each pixel").
//!
//! Sums are kept as exact integers (u64 per moment, u128 arithmetic when finishing),
//! so the result does not depend on the order in which shards or threads add their
//! images, a resumed build gets the same numbers, and ImageNet's 84 billion train
//! pixels lose nothing to rounding. The final division is in f64.

use std::path::Path;

use nalgebra::{Matrix3, SymmetricEigen};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{PcaStats, PixelStatsSummary};
use crate::{IMAGE_BYTES, IMAGE_SIDE};

/// Exact integer moments of a set of RGB pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moments {
    pub pixels: u64,
    /// Sum of R, G, B.
    pub sum: [u64; 3],
    /// Sums of RR, GG, BB, RG, RB, GB.
    pub sum_sq: [u64; 6],
}

impl Moments {
    /// The moments of a run of RGB pixels (`rgb.len()` a multiple of 3): whole images
    /// of any size, which have no per-pixel mean.
    pub fn of_pixels(rgb: &[u8]) -> Moments {
        assert!(rgb.len().is_multiple_of(3), "whole RGB pixels");
        let (mut s, mut q) = ([0u64; 3], [0u64; 6]);
        for px in rgb.chunks_exact(3) {
            let (r, g, b) = (px[0] as u64, px[1] as u64, px[2] as u64);
            s[0] += r;
            s[1] += g;
            s[2] += b;
            q[0] += r * r;
            q[1] += g * g;
            q[2] += b * b;
            q[3] += r * g;
            q[4] += r * b;
            q[5] += g * b;
        }
        Moments { pixels: (rgb.len() / 3) as u64, sum: s, sum_sq: q }
    }

    pub fn merge(mut self, o: Moments) -> Moments {
        self.pixels += o.pixels;
        for c in 0..3 {
            self.sum[c] += o.sum[c];
        }
        for k in 0..6 {
            self.sum_sq[k] += o.sum_sq[k];
        }
        self
    }
}

/// Accumulates the statistics of 256x256 RGB images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelStats {
    pub images: u64,
    pub moments: Moments,
    /// Per-pixel sums, 256x256x3 HWC.
    pub pixel_sum: Vec<u64>,
}

impl Default for PixelStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PixelStats {
    pub fn new() -> Self {
        Self { images: 0, moments: Moments::default(), pixel_sum: vec![0; IMAGE_BYTES] }
    }

    /// Statistics of whole images (many sizes): moments only, no per-pixel sums.
    pub fn without_mean_image() -> Self {
        Self { images: 0, moments: Moments::default(), pixel_sum: Vec::new() }
    }

    /// Adds `images` (a whole number of 256x256x3 images, back to back).
    pub fn add_images(&mut self, images: &[u8]) {
        let m = accumulate_region(images, 0, &mut self.pixel_sum);
        self.add_counted(images.len() / IMAGE_BYTES, m);
    }

    /// Records `n` images whose moments were accumulated region by region with
    /// [`accumulate_region`] (for callers that split the work across threads).
    pub fn add_counted(&mut self, n: usize, m: Moments) {
        self.images += n as u64;
        self.moments = self.moments.merge(m);
    }

    pub fn merge(&mut self, other: &PixelStats) {
        assert_eq!(self.pixel_sum.len(), other.pixel_sum.len(), "statistics of one kind");
        self.images += other.images;
        self.moments = self.moments.merge(other.moments);
        for (a, b) in self.pixel_sum.iter_mut().zip(&other.pixel_sum) {
            *a += b;
        }
    }

    /// Mean and population std of R, G, B, and the eigenpairs of their covariance.
    pub fn summary(&self) -> Result<PixelStatsSummary> {
        let m = &self.moments;
        if m.pixels == 0 {
            return Err(Error::Invalid("no train pixels: the statistics need at least one train image".into()));
        }
        let n = m.pixels as i128;
        // cov(c, d) = (n * sum(cd) - sum(c) * sum(d)) / n^2, numerator exact in i128.
        let pairs = [(0, 0, 0), (1, 1, 1), (2, 2, 2), (0, 1, 3), (0, 2, 4), (1, 2, 5)];
        let mut cov = Matrix3::<f64>::zeros();
        for (c, d, k) in pairs {
            let num = n * m.sum_sq[k] as i128 - m.sum[c] as i128 * m.sum[d] as i128;
            let v = num as f64 / (n as f64 * n as f64);
            cov[(c, d)] = v;
            cov[(d, c)] = v;
        }
        let mean_rgb = [0, 1, 2].map(|c| m.sum[c] as f64 / m.pixels as f64);
        let std_rgb = [0, 1, 2].map(|c| cov[(c, c)].max(0.0).sqrt());
        Ok(PixelStatsSummary { mean_rgb, std_rgb, pca: pca(&cov) })
    }

    /// The per-pixel mean image, 256x256x3 HWC, 0..255 scale.
    pub fn mean_image(&self) -> Vec<f32> {
        let n = self.images.max(1) as f64;
        self.pixel_sum.iter().map(|&s| (s as f64 / n) as f32).collect()
    }
}

/// Eigen-decomposition of a symmetric 3x3 covariance: eigenvalues descending, each
/// eigenvector a unit row with the sign that makes its components sum to >= 0 (so the
/// result is unique and the first one, the brightness axis, points to white).
fn pca(cov: &Matrix3<f64>) -> PcaStats {
    let eig = SymmetricEigen::new(*cov);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let mut eigenvalues = [0.0; 3];
    let mut eigenvectors = [[0.0; 3]; 3];
    for (row, &k) in order.iter().enumerate() {
        let v = eig.eigenvectors.column(k);
        let norm = v.norm();
        let mut u = [v[0] / norm, v[1] / norm, v[2] / norm];
        let s: f64 = u.iter().sum();
        let first = u.iter().copied().find(|x| x.abs() > 1e-12).unwrap_or(1.0);
        if s < -1e-12 || (s.abs() <= 1e-12 && first < 0.0) {
            u = u.map(|x| -x);
        }
        // Clamp tiny negative eigenvalues from rounding on degenerate data.
        eigenvalues[row] = eig.eigenvalues[k].max(0.0);
        eigenvectors[row] = u;
    }
    PcaStats { eigenvalues, eigenvectors }
}

/// Adds the pixels of `images` (n whole images back to back) that fall in the byte
/// range `[start, start + pixel_sum.len())` of each image to `pixel_sum`, and returns
/// their moments. `start` and `pixel_sum.len()` are multiples of 3 (whole pixels).
pub fn accumulate_region(images: &[u8], start: usize, pixel_sum: &mut [u64]) -> Moments {
    assert!(images.len().is_multiple_of(IMAGE_BYTES), "images must be whole 256x256x3 images");
    assert!(start.is_multiple_of(3) && pixel_sum.len().is_multiple_of(3) && start + pixel_sum.len() <= IMAGE_BYTES);
    let mut m = Moments::default();
    for img in images.chunks_exact(IMAGE_BYTES) {
        let region = &img[start..start + pixel_sum.len()];
        // Per image and region the sums fit u32 (4096 px * 255^2 < 2^32 would be tight
        // for big regions), so accumulate in u64 directly.
        let (mut s0, mut s1, mut s2) = (0u64, 0u64, 0u64);
        let (mut q00, mut q11, mut q22, mut q01, mut q02, mut q12) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        for (px, acc) in region.chunks_exact(3).zip(pixel_sum.chunks_exact_mut(3)) {
            let (r, g, b) = (px[0] as u64, px[1] as u64, px[2] as u64);
            acc[0] += r;
            acc[1] += g;
            acc[2] += b;
            s0 += r;
            s1 += g;
            s2 += b;
            q00 += r * r;
            q11 += g * g;
            q22 += b * b;
            q01 += r * g;
            q02 += r * b;
            q12 += g * b;
        }
        m = m.merge(Moments {
            pixels: (region.len() / 3) as u64,
            sum: [s0, s1, s2],
            sum_sq: [q00, q11, q22, q01, q02, q12],
        });
    }
    m
}

/// Writes the mean image as a float32 `.npy` of shape [256, 256, 3] (HWC), atomically.
pub fn write_mean_image(path: &Path, mean: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    assert_eq!(mean.len(), IMAGE_BYTES);
    let mut bytes = Vec::with_capacity(IMAGE_BYTES * 4 + 128);
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[IMAGE_SIDE as u64, IMAGE_SIDE as u64, 3])
            .writer(&mut bytes)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(mean.iter().copied()).map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
    }
    crate::fsutil::atomic_write(path, &bytes)
}

/// The largest `.npy` a mean image can be: the float32 data and a header (numpy pads
/// it to a multiple of 64 bytes; a few KiB leave room for any header numpy writes).
pub const MEAN_IMAGE_MAX_BYTES: u64 = (IMAGE_BYTES * 4 + 4096) as u64;

/// Reads a mean image written by [`write_mean_image`] (or numpy): a regular file of at
/// most [`MEAN_IMAGE_MAX_BYTES`], shape [256, 256, 3] float32, every value finite and
/// on the 0..255 scale.
pub fn read_mean_image(path: &Path) -> Result<Vec<f32>> {
    let bytes = crate::open::read_regular(path, MEAN_IMAGE_MAX_BYTES)?;
    parse_mean_image(&bytes).map_err(|m| Error::Invalid(format!("{}: {m}", path.display())))
}

/// Parses and checks the bytes of a mean image `.npy` (see [`read_mean_image`]).
pub fn parse_mean_image(bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    if npy.shape() != [IMAGE_SIDE as u64, IMAGE_SIDE as u64, 3] {
        return Err(format!("mean image has shape {:?}, expected [256, 256, 3]", npy.shape()));
    }
    match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {}
        other => return Err(format!("mean image has dtype {}, expected float32", other.descr())),
    }
    // The data must be all there before it is decoded (a header cannot make the
    // reader allocate past the file).
    if (bytes.len() as u64) < (IMAGE_BYTES * 4) as u64 {
        return Err(format!("{} bytes, too short for a 256x256x3 float32 array", bytes.len()));
    }
    let v = npy.into_vec::<f32>().map_err(|e| format!("unreadable .npy data: {e}"))?;
    if v.len() != IMAGE_BYTES {
        return Err(format!("{} values, expected {IMAGE_BYTES}", v.len()));
    }
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(x.is_finite() && (0.0..=255.0).contains(*x))) {
        return Err(format!("value {x} at index {i} is not a pixel mean on the 0..255 scale"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-uniform, channel-correlated test images.
    fn images(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * IMAGE_BYTES];
        let mut x: u32 = 12345;
        for (i, p) in v.chunks_exact_mut(3).enumerate() {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            let base = (x >> 24) as i32;
            let y = (i / IMAGE_SIDE) % IMAGE_SIDE;
            p[0] = (base + (y as i32 / 4)).clamp(0, 255) as u8;
            p[1] = (base / 2 + 40).clamp(0, 255) as u8;
            p[2] = (255 - base).clamp(0, 255) as u8;
        }
        v
    }

    #[test]
    fn region_split_equals_whole() {
        let imgs = images(3);
        let mut whole = PixelStats::new();
        whole.add_images(&imgs);
        let mut parts = PixelStats::new();
        let mut m = Moments::default();
        for (i, chunk) in parts.pixel_sum.chunks_mut(3 * 1000).enumerate() {
            m = m.merge(accumulate_region(&imgs, i * 3000, chunk));
        }
        parts.add_counted(3, m);
        assert_eq!(whole, parts);
    }

    /// Checked against a direct f64 computation (numpy equivalent:
    /// `x = imgs.reshape(-1, 3).astype(np.float64); c = np.cov(x.T, bias=True);
    ///  w, v = np.linalg.eigh(c)`), done here in plain f64 loops.
    #[test]
    fn summary_matches_direct_computation() {
        let imgs = images(2);
        let mut s = PixelStats::new();
        s.add_images(&imgs);
        let sum = s.summary().unwrap();
        let px: Vec<[f64; 3]> = imgs.chunks_exact(3).map(|p| [p[0] as f64, p[1] as f64, p[2] as f64]).collect();
        let n = px.len() as f64;
        let mean: Vec<f64> = (0..3).map(|c| px.iter().map(|p| p[c]).sum::<f64>() / n).collect();
        let mut cov = [[0.0; 3]; 3];
        for p in &px {
            for c in 0..3 {
                for d in 0..3 {
                    cov[c][d] += (p[c] - mean[c]) * (p[d] - mean[d]) / n;
                }
            }
        }
        for c in 0..3 {
            assert!((sum.mean_rgb[c] - mean[c]).abs() < 1e-9);
            assert!((sum.std_rgb[c] - cov[c][c].sqrt()).abs() < 1e-9);
        }
        // C v = lambda v for each pair, unit length, descending.
        for i in 0..3 {
            let (l, v) = (sum.pca.eigenvalues[i], sum.pca.eigenvectors[i]);
            for c in 0..3 {
                let cv: f64 = (0..3).map(|d| cov[c][d] * v[d]).sum();
                assert!((cv - l * v[c]).abs() < 1e-6 * (1.0 + l), "eigenpair {i}");
            }
            assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert!(sum.pca.eigenvalues[0] >= sum.pca.eigenvalues[1]);
        assert!(sum.pca.eigenvalues[1] >= sum.pca.eigenvalues[2]);
        let trace: f64 = (0..3).map(|c| cov[c][c]).sum();
        assert!((sum.pca.eigenvalues.iter().sum::<f64>() - trace).abs() < 1e-6);
    }

    #[test]
    fn mean_image_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = images(2);
        let mut s = PixelStats::new();
        s.add_images(&imgs);
        let mean = s.mean_image();
        let p = dir.path().join("mean.npy");
        write_mean_image(&p, &mean).unwrap();
        assert_eq!(read_mean_image(&p).unwrap(), mean);
        let i = 3 * (7 * IMAGE_SIDE + 200) + 1; // y=7, x=200, green
        assert_eq!(mean[i], (imgs[i] as f32 + imgs[IMAGE_BYTES + i] as f32) / 2.0);
    }

    /// B3/B22: a mean image with a NaN or an absurd value, or one that is a FIFO or a
    /// big file, is refused by name; nothing blocks.
    #[test]
    fn bad_mean_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mean.npy");
        for (bad, want) in
            [(f32::NAN, "value NaN"), (1e30, "value 1000000000000000000000000000000"), (-1.0, "value -1")]
        {
            let mut mean = vec![100.0f32; IMAGE_BYTES];
            mean[77] = bad;
            write_mean_image(&p, &mean).unwrap();
            let e = read_mean_image(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("index 77") && e.contains("mean.npy"), "{e}");
        }
        let fifo = dir.path().join("fifo.npy");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(read_mean_image(&fifo).unwrap_err().to_string().contains("FIFO"));
        let big = dir.path().join("big.npy");
        std::fs::File::create(&big).unwrap().set_len(1 << 40).unwrap(); // sparse
        assert!(read_mean_image(&big).unwrap_err().to_string().contains("more than"));
    }
}
