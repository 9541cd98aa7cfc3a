//! torchvision's `RandomResizedCrop` box sampler (`get_params`), for training on whole
//! images: up to ten tries of an area fraction uniform in `scale` and an aspect ratio
//! log-uniform in `ratio`; the first box that fits is placed uniformly; after ten misses
//! the fallback is the centre crop of the whole image clamped to `ratio`. The rounding
//! is Python's (`round`, half to even) and the draws are float32 as torch's `uniform_`,
//! so that the same draws give torchvision's boxes (tested on draws recorded from
//! torchvision 0.26).

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::RngExt;

/// A box of an image: torchvision's `(i, j, h, w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

impl CropBox {
    /// The smallest box holding both.
    pub fn union(self, o: CropBox) -> CropBox {
        let (top, left) = (self.top.min(o.top), self.left.min(o.left));
        let bottom = (self.top + self.height).max(o.top + o.height);
        let right = (self.left + self.width).max(o.left + o.width);
        CropBox { top, left, height: bottom - top, width: right - left }
    }
}

/// The random draws the sampler makes, in torchvision's order.
pub trait BoxDraws {
    /// `torch.empty(1).uniform_(lo, hi).item()`: a float32 in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32;
    /// `torch.randint(0, n, (1,)).item()`: `0..n`.
    fn below(&mut self, n: usize) -> usize;
}

/// The draws from a seeded generator (training: one per image, from its position).
impl<R: rand::Rng> BoxDraws for R {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.random::<f32>()
    }

    fn below(&mut self, n: usize) -> usize {
        self.random_range(0..n)
    }
}

/// `RandomResizedCrop(size, scale, ratio)`'s box parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Range of the box's area as a fraction of the image's (torchvision: 0.08..1).
    pub scale: (f64, f64),
    /// Range of the box's width / height (torchvision: 3/4..4/3).
    pub ratio: (f64, f64),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self { scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }
}

impl RandomResizedCrop {
    /// A box of a `height` x `width` image (both at least 1).
    pub fn sample(&self, height: usize, width: usize, draws: &mut impl BoxDraws) -> CropBox {
        let area = (height * width) as f64;
        // torch.log(torch.tensor(ratio)): float32.
        let log_ratio = [(self.ratio.0 as f32).ln(), (self.ratio.1 as f32).ln()];
        for _ in 0..10 {
            let target = area * draws.uniform(self.scale.0 as f32, self.scale.1 as f32) as f64;
            let aspect = draws.uniform(log_ratio[0], log_ratio[1]).exp() as f64; // float32 exp
            let w = (target * aspect).sqrt().round_ties_even();
            let h = (target / aspect).sqrt().round_ties_even();
            if w > 0.0 && w <= width as f64 && h > 0.0 && h <= height as f64 {
                let (h, w) = (h as usize, w as usize);
                let top = draws.below(height - h + 1);
                let left = draws.below(width - w + 1);
                return CropBox { top, left, height: h, width: w };
            }
        }
        // Fallback: the centre, clamped to the ratio range.
        let in_ratio = width as f64 / height as f64;
        let (lo, hi) = (self.ratio.0.min(self.ratio.1), self.ratio.0.max(self.ratio.1));
        let (h, w) = if in_ratio < lo {
            ((width as f64 / lo).round_ties_even() as usize, width)
        } else if in_ratio > hi {
            (height, (height as f64 * hi).round_ties_even() as usize)
        } else {
            (height, width)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }
}

/// The side of an eval crop's box on a whole image whose shorter side is `short`:
/// `crop / resize` of it, the geometry of torchvision's `Resize(resize)` +
/// `CenterCrop(crop)` (`resize` is the dataset's shorter side, or 256 for a dataset of
/// capped longer sides; 224 of a 256 shorter side: the box is the crop itself, no
/// resize). FFCV's centre decoder uses the same ratio.
pub fn eval_box_side(short: usize, crop: usize, resize: usize) -> usize {
    (short * crop / resize.max(1)).clamp(1, short)
}

/// torchvision's `CenterCrop` of a `height` x `width` whole image (offsets
/// `round_half_even(margin / 2)`), as a box of [`eval_box_side`].
pub fn center_box(height: usize, width: usize, crop: usize, resize: usize) -> CropBox {
    let c = eval_box_side(height.min(width), crop, resize);
    let (top, left) = (alexnet_shared::center_offset(height - c), alexnet_shared::center_offset(width - c));
    CropBox { top, left, height: c, width: c }
}

/// Ten crops of a whole image, in torchvision's `TenCrop` order (top-left, top-right,
/// bottom-left, bottom-right, centre, then the same of the mirrored image), each a box
/// of [`eval_box_side`] with its flip. `corners_of_whole`: torchvision's `TenCrop(crop)`
/// of the `Resize(256)` image, whose corners are the whole image's. Otherwise the
/// paper's ten: the corners and centre of the image's central square (256x256 at a
/// shorter side of 256), the same crops as on a centre-square dataset.
pub fn ten_boxes(
    height: usize,
    width: usize,
    crop: usize,
    resize: usize,
    corners_of_whole: bool,
) -> [(CropBox, bool); 10] {
    let short = height.min(width);
    let c = eval_box_side(short, crop, resize);
    let (area_top, area_left, area_h, area_w) = if corners_of_whole {
        (0, 0, height, width)
    } else {
        (alexnet_shared::center_offset(height - short), alexnet_shared::center_offset(width - short), short, short)
    };
    let (my, mx) = (area_h - c, area_w - c);
    let (cy, cx) = (alexnet_shared::center_offset(my), alexnet_shared::center_offset(mx));
    let five = [(0, 0), (0, mx), (my, 0), (my, mx), (cy, cx)];
    let at = |y: usize, x: usize| CropBox { top: area_top + y, left: area_left + x, height: c, width: c };
    let mut out = [(at(0, 0), false); 10];
    for (i, &(y, x)) in five.iter().enumerate() {
        out[i] = (at(y, x), false);
        // The crop at x of the mirrored area is the mirror of the crop at mx - x.
        out[i + 5] = (at(y, mx - x), true);
    }
    out
}

/// Resizes the box `b` of the `height` x `width` HWC RGB image `src` to `side` x `side`
/// into `dst` (`side * side * 3` bytes, HWC), with Pillow's antialiased `BILINEAR`
/// (what torchvision's `resized_crop` does to a PIL image, as its ImageFolder pipeline
/// has), mirrored left-right when `flip`. Nothing is allocated once `resizer` has
/// warmed up; only the box's rows are read.
#[allow(clippy::too_many_arguments)]
pub fn resized_crop_into(
    resizer: &mut Resizer,
    src: &[u8],
    height: usize,
    width: usize,
    b: CropBox,
    side: usize,
    flip: bool,
    dst: &mut [u8],
) -> Result<(), String> {
    if src.len() != height * width * 3 || dst.len() != side * side * 3 {
        return Err(format!(
            "resized crop: {} source bytes for {height}x{width}, {} for {side}x{side}",
            src.len(),
            dst.len()
        ));
    }
    if b.height == 0 || b.width == 0 || b.top + b.height > height || b.left + b.width > width {
        return Err(format!("resized crop: box {b:?} outside the {height}x{width} image"));
    }
    let image = ImageRef::new(width as u32, height as u32, src, PixelType::U8x3).map_err(|e| format!("resize: {e}"))?;
    let mut out =
        Image::from_slice_u8(side as u32, side as u32, dst, PixelType::U8x3).map_err(|e| format!("resize: {e}"))?;
    // A view of the box: its edges are the image's edges for the filter, as Pillow's
    // crop-then-resize has them (a crop option would read pixels outside the box).
    let view = CroppedImage::new(&image, b.left as u32, b.top as u32, b.width as u32, b.height as u32)
        .map_err(|e| format!("resize: {e}"))?;
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer.resize(&view, &mut out, &opts).map_err(|e| format!("resize: {e}"))?;
    if flip {
        for row in dst.chunks_exact_mut(side * 3) {
            for x in 0..side / 2 {
                let (a, b) = (x * 3, (side - 1 - x) * 3);
                for c in 0..3 {
                    row.swap(a + c, b + c);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Draws replayed from a recording.
    struct Replay {
        uniforms: std::collections::VecDeque<f32>,
        ints: std::collections::VecDeque<usize>,
    }

    impl BoxDraws for Replay {
        fn uniform(&mut self, _lo: f32, _hi: f32) -> f32 {
            self.uniforms.pop_front().expect("a recorded uniform draw")
        }
        fn below(&mut self, n: usize) -> usize {
            let v = self.ints.pop_front().expect("a recorded integer draw");
            assert!(v < n, "recorded {v} for 0..{n}: the sampler asks for another range than torchvision");
            v
        }
    }

    /// torchvision 0.26's `RandomResizedCrop.get_params` on images of several shapes
    /// (wide and tall ones that take the fallback), its draws recorded by wrapping
    /// `torch.Tensor.uniform_` and `torch.randint`:
    ///
    /// ```python
    /// log = []
    /// orig_u = torch.Tensor.uniform_
    /// def rec_u(self, *a, **k):
    ///     r = orig_u(self, *a, **k); log.append(("u", r.item())); return r
    /// torch.Tensor.uniform_ = rec_u
    /// orig_ri = torch.randint
    /// def rec_ri(*a, **k):
    ///     r = orig_ri(*a, **k); log.append(("i", int(r.item()))); return r
    /// torch.randint = rec_ri
    /// torch.manual_seed(12)
    /// for (h, w) in [(375, 500), (500, 333), (256, 256), (256, 341), (40, 1000), (1000, 40),
    ///                (120, 90), (7, 300), (300, 7), (33, 37)]:
    ///     for rep in range(4):
    ///         log.clear()
    ///         i, j, ch, cw = RandomResizedCrop.get_params(torch.empty(3, h, w), [0.08, 1.0], [3/4, 4/3])
    ///         print(f"{h} {w} | " + " ".join(f"{k}{v!r}" for k, v in log) + f" | {i} {j} {ch} {cw}")
    /// ```
    #[test]
    fn the_same_draws_give_torchvisions_boxes() {
        let rrc = RandomResizedCrop::default();
        let mut fallbacks = 0;
        for line in include_str!("testdata/rrc_torchvision.txt").lines() {
            let parts: Vec<&str> = line.split(" | ").collect();
            let size: Vec<usize> = parts[0].split(' ').map(|v| v.parse().unwrap()).collect();
            let mut replay = Replay { uniforms: Default::default(), ints: Default::default() };
            for d in parts[1].split(' ') {
                match d.split_at(1) {
                    ("u", v) => replay.uniforms.push_back(v.parse::<f64>().unwrap() as f32),
                    ("i", v) => replay.ints.push_back(v.parse().unwrap()),
                    _ => panic!("{d}"),
                }
            }
            let want: Vec<usize> = parts[2].split(' ').map(|v| v.parse().unwrap()).collect();
            if replay.ints.is_empty() {
                fallbacks += 1;
            }
            let got = rrc.sample(size[0], size[1], &mut replay);
            assert_eq!([got.top, got.left, got.height, got.width], want[..], "{line}");
            assert!(replay.uniforms.is_empty() && replay.ints.is_empty(), "draws left over: {line}");
        }
        assert!(fallbacks >= 4, "the recording exercises the fallback ({fallbacks} cases)");
    }

    /// torchvision's `resized_crop` of a PIL image (BILINEAR) for four boxes of a
    /// 300x410 image made by an integer formula (so both sides make the same pixels):
    /// downscaled, upscaled, and of other aspect ratios, to 56x56.
    ///
    /// ```python
    /// y, x = np.mgrid[0:300, 0:410]
    /// img = np.stack([(x * 7 + y * 13 + c * 50 + (x * y) % 37) % 256 for c in range(3)], -1).astype(np.uint8)
    /// for (i, j, h, w) in [(0, 0, 300, 410), (17, 40, 200, 150), (120, 300, 33, 29), (250, 5, 50, 405)]:
    ///     out += np.asarray(F.resized_crop(Image.fromarray(img), i, j, h, w, [56, 56], F.InterpolationMode.BILINEAR)).tobytes()
    /// ```
    ///
    /// Tolerance: every byte within 2 of Pillow's, and the mean absolute difference
    /// under 0.2 (fast_image_resize and Pillow differ in the fixed-point rounding of
    /// their weights).
    /// torchvision on a `Resize(256)` image of 256x341 (H x W):
    ///
    /// ```python
    /// from torchvision.transforms import functional as F
    /// img = torch.arange(341).repeat(256, 1)[None] * 0 + torch.arange(341)   # value = column
    /// F.center_crop(img, 224)[0, 0, 0] == 58    # round((341 - 224) / 2) = round(58.5) = 58
    /// [int(c[0, 0, 0]) for c in F.ten_crop(img, 224)] == [0, 117, 0, 117, 58, 340, 223, 340, 223, 282]
    /// ```
    /// (the first column of each crop; a mirrored crop starts at its box's last column).
    #[test]
    fn eval_boxes_on_whole_images_are_torchvisions() {
        assert_eq!(center_box(256, 341, 224, 256), CropBox { top: 16, left: 58, height: 224, width: 224 });
        assert_eq!(center_box(384, 256, 224, 256), CropBox { top: 80, left: 16, height: 224, width: 224 });
        // A larger stored image (--max-side): the box keeps the 224/256 ratio.
        assert_eq!(center_box(375, 500, 224, 256), CropBox { top: 24, left: 86, height: 328, width: 328 }); // round(23.5) = 24
        let tv: Vec<usize> = ten_boxes(256, 341, 224, 256, true)
            .iter()
            .map(|(b, f)| if *f { b.left + b.width - 1 } else { b.left })
            .collect();
        assert_eq!(tv, [0, 117, 0, 117, 58, 340, 223, 340, 223, 282]);
        assert!(ten_boxes(256, 341, 224, 256, true)
            .iter()
            .all(|(b, _)| b.height == 224 && (b.top == 0 || b.top == 32 || b.top == 16)));
        // The paper's ten: of the central 256 square (columns 42..298), as on a
        // centre-square dataset (corners at 0 and 32 of the square, centre 16).
        let paper: Vec<(usize, usize)> =
            ten_boxes(256, 341, 224, 256, false).iter().map(|(b, _)| (b.top, b.left)).collect();
        assert_eq!(paper[..5], [(0, 42), (0, 74), (32, 42), (32, 74), (16, 58)]);
        assert_eq!(paper[5..], [(0, 74), (0, 42), (32, 74), (32, 42), (16, 58)]);
    }

    #[test]
    fn a_resized_crop_is_pillows_bilinear_of_the_box_and_mirrors() {
        let (h, w) = (300usize, 410usize);
        let mut img = vec![0u8; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    img[(y * w + x) * 3 + c] = ((x * 7 + y * 13 + c * 50 + (x * y) % 37) % 256) as u8;
                }
            }
        }
        let want = include_bytes!("testdata/resized_crop_pil.bin");
        let boxes = [(0, 0, 300, 410), (17, 40, 200, 150), (120, 300, 33, 29), (250, 5, 50, 405)];
        let side = 56;
        let mut resizer = Resizer::new();
        let mut out = vec![0u8; side * side * 3];
        for (k, &(top, left, height, width)) in boxes.iter().enumerate() {
            let b = CropBox { top, left, height, width };
            resized_crop_into(&mut resizer, &img, h, w, b, side, false, &mut out).unwrap();
            let pil = &want[k * out.len()..(k + 1) * out.len()];
            let diffs: Vec<i32> = out.iter().zip(pil).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
            let (max, mean) = (*diffs.iter().max().unwrap(), diffs.iter().sum::<i32>() as f64 / diffs.len() as f64);
            assert!(max <= 2 && mean < 0.2, "box {b:?}: max {max}, mean {mean:.3}");
            // Mirrored: each row reversed.
            let mut flipped = vec![0u8; out.len()];
            resized_crop_into(&mut resizer, &img, h, w, b, side, true, &mut flipped).unwrap();
            for y in 0..side {
                for x in 0..side {
                    let (a, m) = ((y * side + x) * 3, (y * side + side - 1 - x) * 3);
                    assert_eq!(flipped[a..a + 3], out[m..m + 3]);
                }
            }
        }
        let e = resized_crop_into(
            &mut resizer,
            &img,
            h,
            w,
            CropBox { top: 290, left: 0, height: 20, width: 5 },
            side,
            false,
            &mut out,
        )
        .unwrap_err();
        assert!(e.contains("outside the 300x410 image"), "{e}");
    }

    /// The two-sample Kolmogorov-Smirnov statistic of `a` and `b`.
    fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let (mut i, mut j, mut d) = (0, 0, 0f64);
        while i < a.len() && j < b.len() {
            let x = a[i].min(b[j]);
            while i < a.len() && a[i] <= x {
                i += 1;
            }
            while j < b.len() && b[j] <= x {
                j += 1;
            }
            d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
        }
        d
    }

    /// Over 10,000 boxes of a 375x500 image, the area fraction and the log aspect ratio
    /// follow the distributions the draws define (an independent sample drawn by the
    /// rule directly, without the sampler's code): two-sample KS statistic below 0.0272
    /// (the 0.1% critical value at n = m = 10,000: 1.95 * sqrt(2 / 10,000)). The boxes
    /// also stay inside the image, and their placement is uniform (mean offset within
    /// 3% of the middle).
    #[test]
    fn ten_thousand_boxes_follow_torchvisions_distributions() {
        let rrc = RandomResizedCrop::default();
        let (h, w) = (375usize, 500usize);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut areas, mut aspects, mut tops) = (Vec::new(), Vec::new(), 0f64);
        for _ in 0..10_000 {
            let b = rrc.sample(h, w, &mut rng);
            assert!(b.top + b.height <= h && b.left + b.width <= w && b.height > 0 && b.width > 0);
            areas.push((b.height * b.width) as f64 / (h * w) as f64);
            aspects.push((b.width as f64 / b.height as f64).ln());
            tops += (b.top as f64 + b.height as f64 / 2.0) / h as f64;
        }
        // The reference: the same rule, drawn in float64 from another stream, rounded
        // as torchvision rounds, the same tries and fallback.
        let mut other = ChaCha8Rng::seed_from_u64(99);
        let (mut ref_areas, mut ref_aspects) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            let mut got = None;
            for _ in 0..10 {
                let t = (h * w) as f64 * other.random_range(0.08..1.0);
                let a = other.random_range((0.75f64).ln()..(4.0f64 / 3.0).ln()).exp();
                let (cw, ch) = ((t * a).sqrt().round_ties_even(), (t / a).sqrt().round_ties_even());
                if cw >= 1.0 && cw <= w as f64 && ch >= 1.0 && ch <= h as f64 {
                    got = Some((ch, cw));
                    break;
                }
            }
            let (ch, cw) = got.unwrap_or((h as f64, w as f64)); // 500/375 is within the ratio range
            ref_areas.push(ch * cw / (h * w) as f64);
            ref_aspects.push((cw / ch).ln());
        }
        let (da, dr) = (ks(areas, ref_areas), ks(aspects, ref_aspects));
        assert!(da < 0.0272 && dr < 0.0272, "KS area {da:.4}, aspect {dr:.4}");
        let mid = tops / 10_000.0;
        assert!((mid - 0.5).abs() < 0.03, "mean box centre at {mid:.3} of the height");
    }
}
