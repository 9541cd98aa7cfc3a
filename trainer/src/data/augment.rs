//! Crops, flips and the per-image random draws of the paper's augmentation (section
//! 4.1), on 256x256x3 HWC u8 images, written in place into batch buffers.
//!
//! Offsets follow torchvision: `RandomCrop` draws `y, x` uniformly in `0..=256-s`; the
//! center offset is `round_half_even((256 - s) / 2)` (14 for s = 227, 16 for 224); the
//! ten crops are, in order, top-left, top-right, bottom-left, bottom-right, center, then
//! the same five of the horizontally flipped image (`TenCrop(s)`).

use alexnet_shared::IMAGE_SIDE as SIDE;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::resized_crop::{CropBox, RandomResizedCrop};
use super::seed::derive_seed;

/// Where a crop is taken, and whether it is mirrored (left-right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSpec {
    pub y: usize,
    pub x: usize,
    pub flip: bool,
}

/// The paper's standard deviation of the PCA colour noise coefficients (section 4.1).
pub const PCA_ALPHA_STD: f64 = 0.1;

/// torchvision's center offset: `round_half_even((256 - crop) / 2)`.
pub fn center_offset(crop: usize) -> usize {
    alexnet_shared::center_offset(SIDE - crop)
}

pub fn center_crop(crop: usize) -> CropSpec {
    let c = center_offset(crop);
    CropSpec { y: c, x: c, flip: false }
}

/// torchvision's `TenCrop(crop)` order. A crop of the flipped image at column `x` is the
/// mirror of the original's crop at column `256 - crop - x`.
pub fn ten_crops(crop: usize) -> [CropSpec; 10] {
    let m = SIDE - crop;
    let c = center_offset(crop);
    let five = [(0, 0), (0, m), (m, 0), (m, m), (c, c)];
    let mut out = [CropSpec { y: 0, x: 0, flip: false }; 10];
    for (i, &(y, x)) in five.iter().enumerate() {
        out[i] = CropSpec { y, x, flip: false };
        out[i + 5] = CropSpec { y, x: m - x, flip: true };
    }
    out
}

/// The random draws for one train image: crop offsets, flip, PCA noise coefficients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainDraw {
    pub crop: CropSpec,
    pub alpha: [f32; 3],
}

/// Draws for the image at `position` of `rank`'s epoch: reproducible from (seed, epoch,
/// rank, position) alone, whatever thread does the work.
pub fn train_draw(seed: u64, epoch: u64, rank: usize, position: usize, crop: usize, flip: bool) -> TrainDraw {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[seed, epoch, rank as u64, position as u64, 0xa09]));
    let m = SIDE - crop;
    let y = rng.random_range(0..=m);
    let x = rng.random_range(0..=m);
    let flip = flip && rng.random_bool(0.5);
    let normal = Normal::new(0.0, PCA_ALPHA_STD).expect("valid normal");
    let alpha = [0, 1, 2].map(|_| normal.sample(&mut rng) as f32);
    TrainDraw { crop: CropSpec { y, x, flip }, alpha }
}

/// The random draws for one train image of a whole-image dataset: torchvision's
/// `RandomResizedCrop` box ([`RandomResizedCrop::sample`]) of the `height` x `width`
/// image, the flip and the PCA noise coefficients, reproducible from (seed, epoch, rank,
/// position) like [`train_draw`].
#[allow(clippy::too_many_arguments)]
pub fn resized_crop_draw(
    seed: u64,
    epoch: u64,
    rank: usize,
    position: usize,
    height: usize,
    width: usize,
    rrc: &RandomResizedCrop,
    flip: bool,
) -> (CropBox, bool, [f32; 3]) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[seed, epoch, rank as u64, position as u64, 0xa0a]));
    let b = rrc.sample(height, width, &mut rng);
    let flip = flip && rng.random_bool(0.5);
    let normal = Normal::new(0.0, PCA_ALPHA_STD).expect("valid normal");
    let alpha = [0, 1, 2].map(|_| normal.sample(&mut rng) as f32);
    (b, flip, alpha)
}

/// Copies the `crop`x`crop` window `spec` of a 256x256x3 HWC image into `dst`
/// (`crop * crop * 3` bytes, HWC), mirrored left-right when `spec.flip`.
pub fn crop_into(src: &[u8], spec: CropSpec, crop: usize, dst: &mut [u8]) {
    crop_into_from(src, SIDE, spec, crop, dst)
}

/// [`crop_into`] from an HWC image `src_width` pixels wide (any height).
pub fn crop_into_from(src: &[u8], src_width: usize, spec: CropSpec, crop: usize, dst: &mut [u8]) {
    debug_assert!(spec.x + crop <= src_width && (spec.y + crop) * src_width * 3 <= src.len());
    let row = crop * 3;
    for (y, out) in dst[..crop * row].chunks_exact_mut(row).enumerate() {
        let start = ((spec.y + y) * src_width + spec.x) * 3;
        let line = &src[start..start + row];
        if spec.flip {
            for (o, i) in out.chunks_exact_mut(3).zip(line.chunks_exact(3).rev()) {
                o.copy_from_slice(i);
            }
        } else {
            out.copy_from_slice(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asymmetric: pixel (y, x) = [y, x, (7y + 3x) % 251].
    fn pattern() -> Vec<u8> {
        let mut v = vec![0u8; SIDE * SIDE * 3];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let p = &mut v[(y * SIDE + x) * 3..][..3];
                p.copy_from_slice(&[y as u8, x as u8, ((7 * y + 3 * x) % 251) as u8]);
            }
        }
        v
    }

    fn px(img: &[u8], side: usize, y: usize, x: usize) -> [u8; 3] {
        img[(y * side + x) * 3..][..3].try_into().unwrap()
    }

    #[test]
    fn offsets_are_torchvisions() {
        // Python: [int(round((256 - s) / 2.0)) for s in (227, 224)] == [14, 16]
        assert_eq!((center_offset(227), center_offset(224)), (14, 16));
        // Python:
        //   from torchvision.transforms.functional import ten_crop
        //   img = torch.arange(256).repeat(256, 1)[None]     # value = column index
        //   [int(c[0, 0, 0]) for c in ten_crop(img, 227)] == [0, 29, 0, 29, 14, 255, 226, 255, 226, 241]
        //   (first column of each crop: a flipped crop starts at column 255 - x)
        let t = ten_crops(227);
        let first_col: Vec<usize> = t.iter().map(|c| if c.flip { c.x + 227 - 1 } else { c.x }).collect();
        assert_eq!(first_col, [0, 29, 0, 29, 14, 255, 226, 255, 226, 241]);
        let rows: Vec<usize> = t.iter().map(|c| c.y).collect();
        assert_eq!(rows, [0, 0, 29, 29, 14, 0, 0, 29, 29, 14]);
    }

    #[test]
    fn crops_land_where_the_offsets_say_and_flips_mirror_the_width() {
        let img = pattern();
        let crop = 224;
        let mut out = vec![0u8; crop * crop * 3];
        crop_into(&img, CropSpec { y: 5, x: 30, flip: false }, crop, &mut out);
        assert_eq!(px(&out, crop, 0, 0), px(&img, SIDE, 5, 30));
        assert_eq!(px(&out, crop, 10, 200), px(&img, SIDE, 15, 230));
        crop_into(&img, CropSpec { y: 5, x: 30, flip: true }, crop, &mut out);
        // Column j of the flipped crop is column 30 + 223 - j of the source; rows stay.
        assert_eq!(px(&out, crop, 0, 0), px(&img, SIDE, 5, 253));
        assert_eq!(px(&out, crop, 10, 200), px(&img, SIDE, 15, 53));
        assert_eq!(px(&out, crop, 223, 223), px(&img, SIDE, 228, 30));
    }

    #[test]
    fn draws_are_reproducible_and_within_range() {
        let a = train_draw(1, 2, 0, 17, 227, true);
        assert_eq!(a, train_draw(1, 2, 0, 17, 227, true));
        assert_ne!(a, train_draw(1, 2, 0, 18, 227, true));
        let mut flips = 0;
        for p in 0..2000 {
            let d = train_draw(9, 0, 1, p, 227, true);
            assert!(d.crop.x <= 29 && d.crop.y <= 29);
            flips += d.crop.flip as usize;
        }
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
        assert!((0..100).all(|p| !train_draw(9, 0, 1, p, 227, false).crop.flip));
    }
}
