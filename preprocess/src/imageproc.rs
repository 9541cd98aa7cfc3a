//! The per-image recipe (paper section 2, torchvision's conventions): decode whatever
//! the file is (sniffed, not trusted from its name); convert to RGB (grayscale, CMYK
//! and YCCK JPEGs, palette, alpha, 16-bit); apply the EXIF orientation; rescale with an
//! antialiasing filter so the shorter side is 256 and the longer `floor(256 * long /
//! short)` (torchvision's `Resize(256)`); keep the central 256x256 at offset
//! `round_half_even((side - 256) / 2)` (torchvision's `CenterCrop(256)`).
//!
//! The filter is Pillow's antialiased bilinear (a triangle filter widened by the
//! downscale factor), as torchvision's `Resize` applies it to PIL images; only the
//! kept window is computed, with the same sample positions a full resize would use.

use std::io::Cursor;

use alexnet_shared::{center_offset, IMAGE_BYTES, IMAGE_SIDE};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// The name recorded in the manifest.
pub const RESIZE_FILTER: &str = "bilinear-antialias (Pillow/torchvision Resize(256)), center crop 256";

/// Decodes an image file to 8-bit RGB with its EXIF orientation applied.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
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
    let mut decoder = reader.into_decoder().map_err(|e| format!("corrupt image: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
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

/// The rescaled size: shorter side 256, longer `floor(256 * long / short)`.
pub fn rescaled_size(w: u32, h: u32) -> (u32, u32) {
    let s = IMAGE_SIDE as u64;
    if w <= h {
        (s as u32, (s * h as u64 / w as u64) as u32)
    } else {
        ((s * w as u64 / h as u64) as u32, s as u32)
    }
}

/// Rescales `img` and writes its central 256x256 window into `out` (196608 bytes, HWC).
pub fn resize_center_crop(resizer: &mut Resizer, img: &RgbImage, out: &mut [u8]) -> Result<(), String> {
    assert_eq!(out.len(), IMAGE_BYTES);
    let (w, h) = img.dimensions();
    let (rw, rh) = rescaled_size(w, h);
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

/// The whole recipe for one file's bytes.
pub fn process(resizer: &mut Resizer, bytes: &[u8], out: &mut [u8]) -> Result<(), String> {
    // A decoder that panics on a malformed file rejects that file, not the build.
    alexnet_shared::guard::catch(|| {
        let img = decode_rgb(bytes)?;
        resize_center_crop(resizer, &img, out)
    })
}

/// Encodes a 256x256 RGB image as a baseline JPEG (4:2:0).
pub fn encode_jpeg(rgb: &[u8], quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(32 << 10);
    let enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.encode(rgb, IMAGE_SIDE as u16, IMAGE_SIDE as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("jpeg encode: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_resize_sizes() {
        // torchvision Resize(256) on PIL: long = int(256 * long / short)
        assert_eq!(rescaled_size(500, 375), (341, 256));
        assert_eq!(rescaled_size(375, 500), (256, 341));
        assert_eq!(rescaled_size(256, 256), (256, 256));
        assert_eq!(rescaled_size(100, 30), (853, 256));
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

    #[test]
    fn bad_bytes_are_errors() {
        let mut out = vec![0u8; IMAGE_BYTES];
        assert_eq!(process(&mut Resizer::new(), b"", &mut out).unwrap_err(), "empty file");
        assert!(process(&mut Resizer::new(), b"hello world, not an image", &mut out)
            .unwrap_err()
            .starts_with("not an image"));
    }
}
