//! The per-image recipe (paper section 2, torchvision's conventions): decode whatever
//! the file is (sniffed, not trusted from its name); convert to RGB (grayscale, CMYK
//! and YCCK JPEGs, palette, alpha, 16-bit); apply the EXIF orientation; rescale with an
//! antialiasing filter so the shorter side is 256 and the longer `floor(256 * long /
//! short)` (torchvision's `Resize(256)`); keep the central 256x256 at offset
//! `round_half_even((side - 256) / 2)` (torchvision's `CenterCrop(256)`).
//!
//! Decoded size is bounded before anything is allocated (decompression bombs: a few
//! bytes of header can claim 60000x60000 pixels): the header's dimensions give what the
//! decode and the RGB conversion will allocate, a file over [`MAX_SIDE`] or
//! [`MAX_IMAGE_BYTES`] is rejected with the reason, and the bytes of the images being
//! decoded by all the build's threads together are held under [`DECODE_BUDGET_BYTES`]
//! (a thread waits for room rather than each taking the per-image maximum).
//!
//! Whole-image datasets ([`process_whole`]) skip the crop: the image is rescaled with
//! its aspect kept, so that its shorter side is S (`Resize(S)`) or its longer side at
//! most M, and stored at that size.
//!
//! The filter is Pillow's antialiased bilinear (a triangle filter widened by the
//! downscale factor), as torchvision's `Resize` applies it to PIL images; only the
//! kept window is computed, with the same sample positions a full resize would use.

use std::io::Cursor;
use std::sync::{Condvar, Mutex};

use alexnet_shared::{center_offset, Chroma, WholeResize, IMAGE_BYTES, IMAGE_SIDE, WHOLE_MAX_PIXELS_PER_SIDE2};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

/// The name recorded in the manifest.
pub const RESIZE_FILTER: &str = "bilinear-antialias (Pillow/torchvision Resize(256)), center crop 256";
/// The name recorded in the manifest of a whole-image dataset.
pub const RESIZE_FILTER_WHOLE: &str = "bilinear-antialias (Pillow/torchvision Resize), whole image";

/// The longest side decoded: JPEG's own limit (65535); ImageNet's largest images are
/// under 10000 pixels a side.
pub const MAX_SIDE: u32 = 65535;
/// The most memory one image may take to decode: the decoded buffer, its RGB8 copy and
/// a rotated copy (EXIF orientation). The image crate's own default limit.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// The most memory the images being decoded at once may take, all threads together.
pub const DECODE_BUDGET_BYTES: u64 = 2 << 30;

/// Bytes of decode buffers shared by the build's threads: a thread takes what its image
/// needs before decoding and gives it back after, waiting while the others hold too
/// much. A request is at most the whole budget, so it is always granted eventually.
pub struct DecodeBudget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// The build's budget (one per process: every build thread draws from it).
pub static DECODE_BUDGET: DecodeBudget = DecodeBudget::new(DECODE_BUDGET_BYTES);

impl DecodeBudget {
    pub const fn new(total: u64) -> Self {
        Self { total, used: Mutex::new(0), freed: Condvar::new() }
    }

    /// Takes `bytes` (capped at the total), waiting for room; given back when the
    /// returned guard is dropped.
    pub fn take(&self, bytes: u64) -> BudgetGuard<'_> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > self.total {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        BudgetGuard { budget: self, bytes }
    }

    /// Bytes taken now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct BudgetGuard<'a> {
    budget: &'a DecodeBudget,
    bytes: u64,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// What decoding an image of this header will allocate: the decoded buffer, an RGB8
/// copy when it is not RGB8, and a rotated copy when its orientation turns it.
fn decode_bytes(w: u32, h: u32, total: u64, rgb8: bool, turns: bool) -> u64 {
    let rgb = w as u64 * h as u64 * 3;
    total.saturating_add(if rgb8 { 0 } else { rgb }).saturating_add(if turns { rgb } else { 0 })
}

/// Decodes an image file to 8-bit RGB with its EXIF orientation applied, within the
/// limits (see the module doc), drawing its memory from [`DECODE_BUDGET`].
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_rgb_within(bytes, &DECODE_BUDGET)
}

/// [`decode_rgb`] drawing from `budget`.
pub fn decode_rgb_within(bytes: &[u8], budget: &DecodeBudget) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("unreadable: {e}"))?;
    match reader.format() {
        None => return Err("not an image: unknown file format".into()),
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err("truncated JPEG: the file ends before its end-of-image marker".into())
        }
        _ => {}
    }
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => format!("too large: {e}"),
        _ => format!("corrupt image: {e}"),
    })?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("too large: {w}x{h} pixels, a side over {MAX_SIDE}"));
    }
    use image::metadata::Orientation::*;
    let turns = !matches!(orientation, NoTransforms | FlipHorizontal | FlipVertical | Rotate180);
    let need = decode_bytes(w, h, decoder.total_bytes(), decoder.color_type() == image::ColorType::Rgb8, turns);
    if need > MAX_IMAGE_BYTES {
        return Err(format!(
            "too large: {w}x{h} pixels would take {:.1} GB to decode, more than the {} MiB allowed per image",
            need as f64 / 1e9,
            MAX_IMAGE_BYTES >> 20
        ));
    }
    // The decoder's own allocations are held to the same limit.
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    decoder.set_limits(limits).map_err(|e| format!("too large: {e}"))?;
    let _held = budget.take(need);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt image: {e}"))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err("corrupt image: zero size".into());
    }
    Ok(match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.into_rgb8(),
    })
}

/// Whether a JPEG's data runs to its end-of-image marker. The JPEG decoder fills a
/// truncated scan with grey and goes on; Pillow (so torchvision) refuses such a file
/// ("image file is truncated"), and so does the build. Inside the entropy-coded data
/// after the first start-of-scan a 0xFF byte is always stuffed or a restart marker, so
/// an `FF D9` there can only be the end-of-image marker.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    // Walk the marker segments from SOI to the first SOS (skipping APPn segments, which
    // may hold a whole thumbnail JPEG with its own SOS and EOI).
    let mut pos = 2;
    let sos = loop {
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(0xFF), Some(0xDA)) => break pos,
            (Some(0xFF), Some(m)) if (0xD0..=0xD7).contains(m) || *m == 0x01 => pos += 2,
            (Some(0xFF), Some(_)) => match bytes.get(pos + 2..pos + 4) {
                Some(len) => pos += 2 + u16::from_be_bytes([len[0], len[1]]) as usize,
                None => return false,
            },
            _ => return false,
        }
    };
    bytes[sos..].windows(2).rev().any(|w| w == [0xFF, 0xD9])
}

/// The rescaled size: shorter side 256, longer `floor(256 * long / short)` (in u64: an
/// image too extreme in aspect for that to fit u32 is an error, the reject reason).
pub fn rescaled_size(w: u32, h: u32) -> Result<(u32, u32), String> {
    rescaled_size_to(w, h, IMAGE_SIDE as u32)
}

/// [`rescaled_size`] with shorter side `side` (torchvision's `Resize(side)`).
pub fn rescaled_size_to(w: u32, h: u32, side: u32) -> Result<(u32, u32), String> {
    if w == 0 || h == 0 {
        return Err("corrupt image: zero size".into());
    }
    let s = side as u64;
    let (short, long) = (w.min(h) as u64, w.max(h) as u64);
    let rescaled = u32::try_from(s * long / short)
        .map_err(|_| format!("too extreme in aspect: {w}x{h} would rescale to a side of {}", s * long / short))?;
    Ok(if w <= h { (s as u32, rescaled) } else { (rescaled, s as u32) })
}

/// Rescales `img` and writes its central 256x256 window into `out` (196608 bytes, HWC).
pub fn resize_center_crop(resizer: &mut Resizer, img: &RgbImage, out: &mut [u8]) -> Result<(), String> {
    assert_eq!(out.len(), IMAGE_BYTES);
    let (w, h) = img.dimensions();
    let (rw, rh) = rescaled_size(w, h)?;
    let (left, top) = (center_offset(rw as usize - IMAGE_SIDE), center_offset(rh as usize - IMAGE_SIDE));
    // The window of the rescaled image, in source coordinates.
    let (sx, sy) = (w as f64 / rw as f64, h as f64 / rh as f64);
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).map_err(|e| format!("resize: {e}"))?;
    let mut dst = Image::from_slice_u8(IMAGE_SIDE as u32, IMAGE_SIDE as u32, out, PixelType::U8x3)
        .map_err(|e| format!("resize: {e}"))?;
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(
        left as f64 * sx,
        top as f64 * sy,
        IMAGE_SIDE as f64 * sx,
        IMAGE_SIDE as f64 * sy,
    );
    resizer.resize(&src, &mut dst, &opts).map_err(|e| format!("resize: {e}"))
}

/// The stored (width, height) of a `w` x `h` image in a whole-image dataset of `size`:
/// `Resize(size)` for [`WholeResize::ShorterSide`]; for [`WholeResize::MaxSide`] the
/// longer side becomes `size` and the shorter `floor(size * short / long)` (at least 1)
/// when the image is larger, else the image is kept as it is. An image whose stored
/// pixels would exceed [`WHOLE_MAX_PIXELS_PER_SIDE2`] x `size`^2 (an aspect beyond 16:1
/// at `ShorterSide`) is an error, the reject reason.
pub fn whole_size(w: u32, h: u32, resize: WholeResize, size: u32) -> Result<(u32, u32), String> {
    if w == 0 || h == 0 {
        return Err("corrupt image: zero size".into());
    }
    let (rw, rh) = match resize {
        WholeResize::ShorterSide => rescaled_size_to(w, h, size)?,
        WholeResize::MaxSide if w.max(h) <= size => (w, h),
        WholeResize::MaxSide => {
            let short = ((size as u64 * w.min(h) as u64) / w.max(h) as u64).max(1) as u32;
            if w >= h {
                (size, short)
            } else {
                (short, size)
            }
        }
    };
    let max = WHOLE_MAX_PIXELS_PER_SIDE2 as u64 * size as u64 * size as u64;
    if rw as u64 * rh as u64 > max || rw > u16::MAX as u32 || rh > u16::MAX as u32 {
        return Err(format!(
            "too extreme in aspect: {w}x{h} would be stored as {rw}x{rh}, more than {WHOLE_MAX_PIXELS_PER_SIDE2} x \
             {size}^2 pixels"
        ));
    }
    Ok((rw, rh))
}

/// Rescales the whole of `img` to `rw` x `rh` (HWC bytes; a copy when the size is kept).
pub fn resize_whole(resizer: &mut Resizer, img: &RgbImage, rw: u32, rh: u32) -> Result<Vec<u8>, String> {
    let (w, h) = img.dimensions();
    if (w, h) == (rw, rh) {
        return Ok(img.as_raw().clone());
    }
    let mut out = vec![0u8; rw as usize * rh as usize * 3];
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).map_err(|e| format!("resize: {e}"))?;
    let mut dst = Image::from_slice_u8(rw, rh, &mut out, PixelType::U8x3).map_err(|e| format!("resize: {e}"))?;
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer.resize(&src, &mut dst, &opts).map_err(|e| format!("resize: {e}"))?;
    Ok(out)
}

/// A stored whole image: HWC RGB pixels and their height and width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeImage {
    pub pixels: Vec<u8>,
    pub height: u16,
    pub width: u16,
}

/// The whole-image recipe for one file's bytes: decode as [`decode_rgb`], rescale as
/// [`whole_size`] says.
pub fn process_whole(
    resizer: &mut Resizer,
    bytes: &[u8],
    resize: WholeResize,
    size: u32,
) -> Result<WholeImage, String> {
    alexnet_shared::guard::catch(|| process_whole_image(resizer, &decode_rgb(bytes)?, resize, size))
}

/// [`process_whole`] of an image already decoded (CIFAR-10's records): an image already
/// at its target size is kept as it is.
pub fn process_whole_image(
    resizer: &mut Resizer,
    img: &RgbImage,
    resize: WholeResize,
    size: u32,
) -> Result<WholeImage, String> {
    let (rw, rh) = whole_size(img.width(), img.height(), resize, size)?;
    let pixels = resize_whole(resizer, img, rw, rh)?;
    Ok(WholeImage { pixels, height: rh as u16, width: rw as u16 })
}

/// The paper's recipe (shorter side 256, centre 256x256) of an image already decoded.
pub fn process_image(resizer: &mut Resizer, img: &RgbImage, out: &mut [u8]) -> Result<(), String> {
    alexnet_shared::guard::catch(|| resize_center_crop(resizer, img, out))
}

/// The whole recipe for one file's bytes.
pub fn process(resizer: &mut Resizer, bytes: &[u8], out: &mut [u8]) -> Result<(), String> {
    // A decoder that panics on a malformed file rejects that file, not the build.
    alexnet_shared::guard::catch(|| {
        let img = decode_rgb(bytes)?;
        resize_center_crop(resizer, &img, out)
    })
}

/// Encodes a 256x256 RGB image as a baseline JPEG.
pub fn encode_jpeg(rgb: &[u8], quality: u8, chroma: Chroma) -> Result<Vec<u8>, String> {
    encode_jpeg_sized(rgb, IMAGE_SIDE as u16, IMAGE_SIDE as u16, quality, chroma)
}

/// Encodes a `width` x `height` RGB image (HWC) as a baseline JPEG with the given
/// chroma subsampling.
pub fn encode_jpeg_sized(rgb: &[u8], width: u16, height: u16, quality: u8, chroma: Chroma) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(rgb.len() / 6 + 1024);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_sampling_factor(match chroma {
        Chroma::Full => jpeg_encoder::SamplingFactor::F_1_1,
        Chroma::Half => jpeg_encoder::SamplingFactor::F_2_2,
    });
    enc.encode(rgb, width, height, jpeg_encoder::ColorType::Rgb).map_err(|e| format!("jpeg encode: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_resize_sizes() {
        // torchvision Resize(256) on PIL: long = int(256 * long / short)
        assert_eq!(rescaled_size(500, 375), Ok((341, 256)));
        assert_eq!(rescaled_size(375, 500), Ok((256, 341)));
        assert_eq!(rescaled_size(256, 256), Ok((256, 256)));
        assert_eq!(rescaled_size(100, 30), Ok((853, 256)));
    }

    /// B16: 256 * 2^24 does not fit u32: the sizes were truncated (a 1x(2^24+1) image
    /// squashed to 256x256); now it is a reason.
    #[test]
    fn rescaled_size_does_not_overflow() {
        assert_eq!(rescaled_size(1, (1 << 24) - 1), Ok((256, 4_294_967_040)));
        for (w, h) in [(1u32, 1u32 << 24), (1, (1 << 24) + 1), (u32::MAX, 1)] {
            let e = rescaled_size(w, h).unwrap_err();
            assert!(e.starts_with("too extreme in aspect") && e.contains(&format!("{w}x{h}")), "{e}");
        }
    }

    /// A small valid file of each kind with its header patched to claim a huge size.
    fn bomb_jpeg() -> Vec<u8> {
        let rgb: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut v = Vec::new();
        jpeg_encoder::Encoder::new(&mut v, 80).encode(&rgb, 16, 8, jpeg_encoder::ColorType::Rgb).unwrap();
        let sof = v.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
        // FF C0, length (2), precision (1), height (2), width (2)
        v[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
        v
    }

    pub(crate) fn bomb_png() -> Vec<u8> {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
        let mut v = Vec::new();
        img.write_to(&mut Cursor::new(&mut v), image::ImageFormat::Png).unwrap();
        // signature (8), length (4), "IHDR", width, height, ..., CRC over type + data
        assert_eq!(&v[12..16], b"IHDR");
        v[16..20].copy_from_slice(&1_000_000u32.to_be_bytes());
        v[20..24].copy_from_slice(&1_000_000u32.to_be_bytes());
        let crc = crc32fast::hash(&v[12..29]);
        v[29..33].copy_from_slice(&crc.to_be_bytes());
        v
    }

    /// B1: a 600-byte JPEG claiming 60000x60000 and a PNG claiming 10^6 x 10^6 are
    /// rejected with the reason before anything is allocated (they took 10.6 GB, and
    /// aborted the build).
    #[test]
    fn decompression_bombs_are_rejected_before_allocating() {
        let mut out = vec![0u8; IMAGE_BYTES];
        let jpeg = bomb_jpeg();
        assert!(jpeg.len() < 1024);
        let e = process(&mut Resizer::new(), &jpeg, &mut out).unwrap_err();
        assert!(e.starts_with("too large: 60000x60000 pixels would take 10.8 GB"), "{e}");
        let e = process(&mut Resizer::new(), &bomb_png(), &mut out).unwrap_err();
        assert!(e.starts_with("too large: 1000000x1000000 pixels, a side over 65535"), "{e}");
        assert_eq!(DECODE_BUDGET.used(), 0);
    }

    /// The budget is shared: a second taker waits until the first gives its bytes back.
    #[test]
    fn the_decode_budget_makes_threads_wait() {
        let budget = DecodeBudget::new(100);
        let first = budget.take(60);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _second = budget.take(60);
                tx.send(budget.used()).unwrap();
            });
            assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "must wait");
            drop(first);
            assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), 60);
        });
        assert_eq!(budget.used(), 0);
        drop(budget.take(1000)); // more than the total: capped, granted
    }

    /// An asymmetric gradient survives a no-op resize exactly, and the center crop of a
    /// wide 256-high image takes the middle columns (offset round((300-256)/2) = 22).
    #[test]
    fn crop_offsets_on_identity_scale() {
        let (w, h) = (300u32, 256u32);
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, ((x * 7 + y * 3) % 251) as u8]));
        let mut out = vec![0u8; IMAGE_BYTES];
        resize_center_crop(&mut Resizer::new(), &img, &mut out).unwrap();
        for (y, x) in [(0usize, 0usize), (10, 200), (255, 255), (128, 3)] {
            let p = &out[3 * (y * IMAGE_SIDE + x)..][..3];
            let sx = x as u32 + 22;
            assert_eq!(p, &[sx as u8, y as u8, ((sx * 7 + y as u32 * 3) % 251) as u8], "at y={y} x={x}");
        }
    }

    /// torchvision's `Resize(256)` sizes for whole images, FFCV-style caps, and the
    /// aspect bound.
    #[test]
    fn whole_image_sizes() {
        use WholeResize::*;
        assert_eq!(whole_size(500, 375, ShorterSide, 256), Ok((341, 256)));
        assert_eq!(whole_size(375, 500, ShorterSide, 256), Ok((256, 341)));
        assert_eq!(whole_size(100, 30, ShorterSide, 256), Ok((853, 256))); // enlarged, as Resize does
        assert_eq!(whole_size(800, 600, MaxSide, 500), Ok((500, 375)));
        assert_eq!(whole_size(333, 1000, MaxSide, 500), Ok((166, 500)));
        assert_eq!(whole_size(320, 240, MaxSide, 500), Ok((320, 240))); // never enlarged
        assert_eq!(whole_size(32, 32, ShorterSide, 32), Ok((32, 32)));
        assert_eq!(whole_size(1600, 100, ShorterSide, 256), Ok((4096, 256))); // 16:1 fits
        let e = whole_size(1700, 100, ShorterSide, 256).unwrap_err();
        assert!(e.starts_with("too extreme in aspect: 1700x100 would be stored as 4352x256"), "{e}");
    }

    /// The whole image, resized with its aspect kept: a no-op size keeps every pixel,
    /// and a 2x downscale of a wide asymmetric image gives Pillow's box-like averages
    /// on a flat region.
    #[test]
    fn whole_images_keep_their_aspect() {
        let img = RgbImage::from_fn(300, 256, |x, y| image::Rgb([x as u8, y as u8, ((x * 7 + y * 3) % 251) as u8]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let w = process_whole(&mut Resizer::new(), &png, WholeResize::ShorterSide, 256).unwrap();
        assert_eq!((w.height, w.width), (256, 300));
        assert_eq!(w.pixels, *img.as_raw());
        let half = process_whole(&mut Resizer::new(), &png, WholeResize::ShorterSide, 128).unwrap();
        assert_eq!((half.height, half.width), (128, 150));
        // Bilinear 2x down (columns below 256, where the red ramp does not wrap): output x
        // covers source columns 2x-1..2x+2 with weights 1, 3, 3,
        // 1, so a ramp (value = column) gives 2x + 0.5, rounded either way.
        for (x, y) in [(10usize, 5usize), (100, 60), (126, 0), (0, 127)] {
            let p = &half.pixels[(y * 150 + x) * 3..][..2];
            let want = [2.0 * x as f64 + 0.5, 2.0 * y as f64 + 0.5];
            for c in 0..2 {
                // At the edges the filter is cut and renormalized: within 1.
                let tol = if x == 0 || y == 0 || y == 127 { 1.0 } else { 0.5 };
                assert!((p[c] as f64 - want[c]).abs() <= tol, "({x}, {y}) channel {c}: {} vs {}", p[c], want[c]);
            }
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        let mut out = vec![0u8; IMAGE_BYTES];
        assert_eq!(process(&mut Resizer::new(), b"", &mut out).unwrap_err(), "empty file");
        assert!(process(&mut Resizer::new(), b"hello world, not an image", &mut out)
            .unwrap_err()
            .starts_with("not an image"));
    }
}
