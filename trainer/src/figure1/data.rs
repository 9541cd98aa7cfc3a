//! The training images of a built dataset, scaled down to `side` x `side` (32 for
//! Figure 1) with an area filter (each output pixel the mean of the source pixels it
//! covers, fractional at the edges: the antialiasing of a box filter), held in memory
//! as u8 CHW ([N, 3, side, side], 3 KiB an image at 32: 150 MB for CIFAR-10's 50,000,
//! 3.9 GB for ImageNet's 1.28 million; `max_images` bounds it). A dataset already at
//! `side` is copied as it is.

use std::path::Path;

use alexnet_shared::{Dataset, Split};
use anyhow::{bail, Context, Result};
use tch::Tensor;

/// The held images.
#[derive(Debug)]
pub struct SmallImages {
    /// u8 [N, 3, side, side].
    pub pixels: Tensor,
    /// i64 [N].
    pub labels: Tensor,
    pub classes: usize,
    pub side: usize,
    /// The dataset's `image_size` (the side of its centre squares, or the size its whole
    /// images were rescaled to) and its layout in words (`center-square 256x256`).
    pub source_side: usize,
    pub source: String,
    /// Per-channel mean and standard deviation of the held pixels (0..255 scale), the
    /// normalization of the batches.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl SmallImages {
    pub fn len(&self) -> usize {
        self.pixels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-axis weights of the area filter from `n` source pixels to `m`: for each output
/// pixel, the source pixels it covers and the fraction of it each one covers (summing
/// to 1).
fn area_weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            let (lo, hi) = (o as f64 * scale, (o + 1) as f64 * scale);
            let mut w = Vec::new();
            let mut i = lo.floor() as usize;
            while (i as f64) < hi && i < n {
                let cover = (hi.min(i as f64 + 1.0) - lo.max(i as f64)) / scale;
                if cover > 1e-12 {
                    w.push((i, cover as f32));
                }
                i += 1;
            }
            w
        })
        .collect()
}

/// An HWC RGB image of `height` x `width` as `side` x `side` CHW, area-filtered
/// (rounded to the nearest level). `out` holds `3 * side * side` bytes.
pub fn area_downscale(src: &[u8], height: usize, width: usize, side: usize, out: &mut [u8]) {
    let wy = area_weights(height, side);
    let wx = area_weights(width, side);
    let mut row = vec![0f32; width * 3];
    for (oy, ys) in wy.iter().enumerate() {
        row.iter_mut().for_each(|v| *v = 0.0);
        for &(y, f) in ys {
            for (acc, &p) in row.iter_mut().zip(&src[y * width * 3..(y + 1) * width * 3]) {
                *acc += f * p as f32;
            }
        }
        for (ox, xs) in wx.iter().enumerate() {
            for c in 0..3 {
                let v: f32 = xs.iter().map(|&(x, f)| f * row[x * 3 + c]).sum();
                out[c * side * side + oy * side + ox] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Decodes one stored image of `height` x `width` to HWC RGB pixels.
fn decoded<'a>(
    bytes: &'a [u8],
    jpeg: bool,
    (height, width): (usize, usize),
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    match jpeg {
        true => {
            let img = image::load_from_memory(bytes).map_err(|e| format!("bad JPEG: {e}"))?.to_rgb8();
            if (img.width() as usize, img.height() as usize) != (width, height) {
                return Err(format!("JPEG is {}x{}, the row says {width}x{height}", img.width(), img.height()));
            }
            *buf = img.into_raw();
            Ok(buf.as_slice())
        }
        _ if bytes.len() == height * width * 3 => Ok(bytes),
        _ => Err(format!("{} image bytes, expected {width}x{height}x3", bytes.len())),
    }
}

/// The central square of an HWC image (offset `(side - s) / 2` on the longer axis,
/// rounded down), copied into `out`; its side.
fn centre_square(src: &[u8], height: usize, width: usize, out: &mut Vec<u8>) -> usize {
    let s = height.min(width);
    let (y0, x0) = ((height - s) / 2, (width - s) / 2);
    out.clear();
    for y in y0..y0 + s {
        out.extend_from_slice(&src[(y * width + x0) * 3..(y * width + x0 + s) * 3]);
    }
    s
}

/// The first `max_images` (all: `None`) train rows of the dataset in `dir` at `side` x
/// `side`, on `threads` threads: a centre-square dataset's images as they are stored,
/// a whole-image dataset's (format 3) central squares. (Train rows are shuffled across
/// shards when built, so the first rows mix the classes.)
pub fn load(dir: &Path, side: usize, max_images: Option<usize>, threads: usize) -> Result<SmallImages> {
    let ds = Dataset::open(dir).with_context(|| format!("opening the dataset {}", dir.display()))?;
    let m = ds.manifest();
    let (source_side, source) = (m.image_size as usize, m.describe_layout());
    let split = ds.split(Split::Train).with_context(|| format!("opening the train split of {}", dir.display()))?;
    let n = max_images.map_or(split.len(), |k| k.min(split.len()));
    if n == 0 {
        bail!("{}: the train split has no images", dir.display());
    }
    let per = 3 * side * side;
    let mut pixels = vec![0u8; n * per];
    let mut labels = vec![0i64; n];
    let chunk = n.div_ceil(threads.max(1));
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = pixels
            .chunks_mut(chunk * per)
            .zip(labels.chunks_mut(chunk))
            .enumerate()
            .map(|(t, (px, lb))| {
                let split = &split;
                s.spawn(move || -> Result<(), String> {
                    let (mut buf, mut square) = (Vec::new(), Vec::new());
                    for (i, (out, label)) in px.chunks_mut(per).zip(lb.iter_mut()).enumerate() {
                        let row = t * chunk + i;
                        let r = split.get(row).map_err(|e| format!("train row {row}: {e}"))?;
                        let at = |e: String| format!("train row {row} ({}): {e}", r.key);
                        let src = decoded(r.bytes, r.jpeg, (r.height, r.width), &mut buf).map_err(at)?;
                        let s = centre_square(src, r.height, r.width, &mut square);
                        if s < side {
                            return Err(at(format!("{}x{} is smaller than {side}x{side}", r.width, r.height)));
                        }
                        area_downscale(&square, s, s, side, out);
                        *label = r.label as i64;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a loading thread panicked".into()))).collect()
    });
    for r in results {
        r.map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let classes = ds.num_classes();
    // Population statistics of the held pixels, per channel, in f64.
    let (mut sum, mut sq) = ([0f64; 3], [0f64; 3]);
    for img in pixels.chunks(per) {
        for c in 0..3 {
            for &p in &img[c * side * side..(c + 1) * side * side] {
                sum[c] += p as f64;
                sq[c] += (p as f64) * (p as f64);
            }
        }
    }
    let count = (n * side * side) as f64;
    let mean = sum.map(|s| (s / count) as f32);
    let std: [f32; 3] =
        std::array::from_fn(|c| ((sq[c] / count - (sum[c] / count).powi(2)).max(0.0).sqrt() as f32).max(1.0));
    let pixels = Tensor::from_slice(&pixels).view([n as i64, 3, side as i64, side as i64]);
    Ok(SmallImages { pixels, labels: Tensor::from_slice(&labels), classes, side, source_side, source, mean, std })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_filter_averages_what_each_output_pixel_covers() {
        // 4 high x 6 wide, asymmetric: R = 10 y + x, G = 255 - R, B = 40 x.
        let (h, w) = (4, 6);
        let mut src = vec![0u8; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                let r = (10 * y + x) as u8;
                src[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[r, 255 - r, (40 * x) as u8]);
            }
        }
        let mut out = vec![0u8; 3 * 2 * 2];
        area_downscale(&src, h, w, 2, &mut out);
        // Output (0, 0) covers rows 0..2 and columns 0..3: R mean = 10 * 0.5 + 1 = 6.
        // (0, 1): columns 3..6: R = 5 + 4 = 9; (1, 0): rows 2..4: R = 25 + 1 = 26.
        assert_eq!(&out[0..4], &[6, 9, 26, 29]);
        assert_eq!(&out[4..8], &[249, 246, 229, 226]);
        assert_eq!(&out[8..12], &[40, 160, 40, 160]);
        // A non-integer ratio: 3 -> 2, the middle pixel shared half and half.
        let src: Vec<u8> = [0u8, 90, 180].iter().flat_map(|&v| [v, v, v]).collect();
        let wy = area_weights(1, 1);
        assert_eq!(wy, vec![vec![(0, 1.0)]]);
        let wx = area_weights(3, 2);
        assert_eq!(wx, vec![vec![(0, 2.0 / 3.0), (1, 1.0 / 3.0)], vec![(1, 1.0 / 3.0), (2, 2.0 / 3.0)]]);
        // One row of three pixels into a 1 x 2 is not square; check the weights give
        // the means: (0 * 2 + 90) / 3 = 30 and (90 + 180 * 2) / 3 = 150.
        let v0: f32 = wx[0].iter().map(|&(x, f)| f * src[x * 3] as f32).sum();
        let v1: f32 = wx[1].iter().map(|&(x, f)| f * src[x * 3] as f32).sum();
        assert_eq!((v0.round(), v1.round()), (30.0, 150.0));
        // The identity when the side is kept.
        let mut same = vec![0u8; 3 * h * h];
        let sq: Vec<u8> = src.iter().cycle().take(h * h * 3).copied().collect();
        area_downscale(&sq, h, h, h, &mut same);
        for y in 0..h {
            for x in 0..h {
                for c in 0..3 {
                    assert_eq!(same[c * h * h + y * h + x], sq[(y * h + x) * 3 + c]);
                }
            }
        }
    }
}
