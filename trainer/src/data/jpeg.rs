//! The loader's JPEG decoder: libjpeg-turbo 3's TurboJPEG API (`turbojpeg-sys`, built
//! from its bundled source with SIMD and linked statically, so the binaries need no
//! shared library on the GPU machine). One [`Decoder`] per worker, reused for every
//! image: nothing is allocated per image (the pixels go straight into the caller's
//! buffer).
//!
//! [`Decoder::decode`] takes the region the crops need: libjpeg-turbo then skips the
//! rows above and below it (`jpeg_skip_scanlines`: no inverse DCT, no colour
//! conversion for them) and decodes only the iMCU columns that cover it
//! (`jpeg_crop_scanline`). The region lands at its own place in a buffer the size of
//! the whole image (pitch = the image's row), so every crop reads the same coordinates
//! as from a full decode. The region is widened by one iMCU on each side (the chroma
//! upsampling at a cropped edge reads beyond it), so that its pixels are exactly the
//! full decode's (`tests::a_region_decodes_to_the_full_decodes_pixels`).
//!
//! The safe `turbojpeg` crate does not offer the cropping region, hence this thin
//! wrapper over the raw API.

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// The part of an image to decode: a crop box ([`CropBox::union`] of several).
pub use super::resized_crop::CropBox as Region;

/// The iMCU width of each TJSAMP value (turbojpeg.h's `tjMCUWidth`, a static table
/// of the header, not an exported symbol): 4:4:4, 4:2:2, 4:2:0, grey, 4:4:0, 4:1:1, 4:4:1.
const MCU_WIDTH: [usize; 7] = [8, 16, 16, 8, 8, 32, 8];

/// Columns and rows decoded beyond a region on each side, per TJSAMP value: an iMCU
/// along each subsampled direction, none along a full-resolution one.
const MARGINS: [(usize, usize); 7] = [(0, 0), (16, 0), (16, 16), (0, 0), (0, 16), (32, 0), (0, 32)];

/// A TurboJPEG decompressor.
pub struct Decoder {
    handle: tj::tjhandle,
}

// The handle is used by one thread at a time (one decoder per worker).
unsafe impl Send for Decoder {}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.handle) }
    }
}

impl Decoder {
    pub fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; a null handle is an error.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        if handle.is_null() {
            return Err("libjpeg-turbo: could not create a decompressor".into());
        }
        Ok(Self { handle })
    }

    /// libjpeg-turbo's fast integer inverse DCT (`TJPARAM_FASTDCT`): less accurate
    /// pixels. Not used by the loader; measured by `decode_bench` (BENCHMARKS.md).
    pub fn set_fast_dct(&mut self, on: bool) -> Result<(), String> {
        let r = unsafe { tj::tj3Set(self.handle, tj::TJPARAM_TJPARAM_FASTDCT as libc::c_int, on as libc::c_int) };
        if r != 0 {
            return Err(format!("libjpeg-turbo: fast DCT: {}", self.error()));
        }
        Ok(())
    }

    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated static or per-handle string.
        let s = unsafe { tj::tj3GetErrorStr(self.handle) };
        if s.is_null() {
            return "unknown libjpeg-turbo error".into();
        }
        unsafe { CStr::from_ptr(s) }.to_string_lossy().trim().to_string()
    }

    /// Decodes the `height` x `width` RGB JPEG `bytes` into `out` (`height * width * 3`
    /// bytes, HWC): the whole image, or at least `region` of it, at its place (other
    /// pixels of `out` are left as they were). Errors say what is wrong with the bytes.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        height: usize,
        width: usize,
        region: Option<Region>,
        out: &mut [u8],
    ) -> Result<(), String> {
        if out.len() != height * width * 3 {
            return Err(format!("{} output bytes for a {width}x{height} image", out.len()));
        }
        // SAFETY: bytes is a live slice; the handle is ours.
        let r = unsafe { tj::tj3DecompressHeader(self.handle, bytes.as_ptr(), bytes.len() as tj::size_t) };
        if r != 0 {
            return Err(format!("bad JPEG in shard: {}", self.error()));
        }
        let get = |p: tj::TJPARAM| unsafe { tj::tj3Get(self.handle, p as libc::c_int) };
        let (jw, jh) = (get(tj::TJPARAM_TJPARAM_JPEGWIDTH), get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
        if (jw as usize, jh as usize) != (width, height) {
            return Err(format!("JPEG in shard is {jw}x{jh}, the row says {width}x{height}"));
        }
        let subsamp = get(tj::TJPARAM_TJPARAM_SUBSAMP);
        // The iMCU width the left edge must be a multiple of (none known: decode all).
        let mcu = match subsamp {
            s @ 0..=6 => Some(MCU_WIDTH[s as usize]),
            _ => None,
        };
        let full = Region { top: 0, left: 0, height, width };
        let want = match (region, mcu) {
            (Some(r), Some(m)) if r.top + r.height <= height && r.left + r.width <= width => {
                // One iMCU more on each side where the chroma is subsampled that way
                // (where the image goes on): the chroma upsampling at a cropped edge
                // reads its neighbours, so the edge pixels of a tight region would differ
                // from the full decode's. Full-resolution chroma (4:4:4) needs none.
                let (mx, my) = MARGINS[subsamp as usize];
                let left = r.left.saturating_sub(mx) / m * m;
                let right = (r.left + r.width + mx).min(width);
                let top = r.top.saturating_sub(my);
                let bottom = (r.top + r.height + my).min(height);
                Region { top, left, height: bottom - top, width: right - left }
            }
            _ => full,
        };
        let crop = if want == full {
            tj::tjregion { x: 0, y: 0, w: 0, h: 0 }
        } else {
            tj::tjregion { x: want.left as _, y: want.top as _, w: want.width as _, h: want.height as _ }
        };
        // SAFETY: the header was read; the region lies inside the image.
        if unsafe { tj::tj3SetCroppingRegion(self.handle, crop) } != 0 {
            return Err(format!("libjpeg-turbo: cropping region {want:?}: {}", self.error()));
        }
        let start = (want.top * width + want.left) * 3;
        let dst = &mut out[start..];
        // The region's last row ends inside `out`: (height - 1) rows of pitch, plus one
        // region row.
        debug_assert!((want.height - 1) * width * 3 + want.width * 3 <= dst.len());
        // SAFETY: dst holds want.height rows of pitch width * 3 from the region's corner.
        let r = unsafe {
            tj::tj3Decompress8(
                self.handle,
                bytes.as_ptr(),
                bytes.len() as tj::size_t,
                dst.as_mut_ptr(),
                (width * 3) as libc::c_int,
                tj::TJPF_TJPF_RGB as libc::c_int,
            )
        };
        if r != 0 {
            return Err(format!("bad JPEG in shard: {}", self.error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-square, asymmetric test picture encoded at 4:2:0 (jpeg-encoder, as the
    /// build writes) or 4:4:4.
    fn jpeg(h: usize, w: usize, sampling: jpeg_encoder::SamplingFactor) -> Vec<u8> {
        let mut px = vec![0u8; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                px[i] = (x * 255 / w) as u8;
                px[i + 1] = ((y * 7 + x * 3) % 256) as u8;
                px[i + 2] = if (x / 9 + y / 5) % 2 == 0 { 200 } else { 30 };
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_sampling_factor(sampling);
        enc.encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    #[test]
    fn a_region_decodes_to_the_full_decodes_pixels() {
        let mut d = Decoder::new().unwrap();
        for sampling in [
            jpeg_encoder::SamplingFactor::F_2_2,
            jpeg_encoder::SamplingFactor::F_2_1,
            jpeg_encoder::SamplingFactor::F_1_1,
            jpeg_encoder::SamplingFactor::F_1_2,
        ] {
            let (h, w) = (203, 317);
            let bytes = jpeg(h, w, sampling);
            let mut full = vec![0u8; h * w * 3];
            d.decode(&bytes, h, w, None, &mut full).unwrap();
            // Close to an independent decoder (zune-jpeg): the two round differently.
            let mut z = zune_jpeg::JpegDecoder::new_with_options(
                zune_core::bytestream::ZCursor::new(&bytes[..]),
                zune_core::options::DecoderOptions::default()
                    .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB),
            );
            let other = z.decode().unwrap();
            let mean =
                full.iter().zip(&other).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / full.len() as f64;
            assert!(mean < 1.0, "{sampling:?}: mean |turbo - zune| {mean}");
            for region in [
                Region { top: 0, left: 0, height: 1, width: 1 },
                Region { top: 17, left: 33, height: 150, width: 227 },
                Region { top: 202, left: 316, height: 1, width: 1 },
                Region { top: 5, left: 1, height: 198, width: 316 },
            ] {
                let mut part = vec![7u8; h * w * 3];
                d.decode(&bytes, h, w, Some(region), &mut part).unwrap();
                for y in region.top..region.top + region.height {
                    let a = (y * w + region.left) * 3;
                    let b = a + region.width * 3;
                    assert_eq!(&part[a..b], &full[a..b], "{sampling:?} {region:?} row {y}");
                }
                // Rows beyond the margin are not written.
                if region.top > 32 {
                    assert!(part[..w * 3].iter().all(|&v| v == 7));
                }
            }
        }
        // Damaged and mismatched bytes are errors, not panics.
        let bytes = jpeg(40, 60, jpeg_encoder::SamplingFactor::F_2_2);
        let mut out = vec![0u8; 40 * 60 * 3];
        // (A header cut short may leave the last image's size in the handle: the
        // decode itself then fails.)
        d.decode(&bytes, 40, 60, None, &mut out).unwrap();
        let e = d.decode(&bytes[..20], 40, 60, None, &mut out).unwrap_err();
        assert!(e.starts_with("bad JPEG"), "{e}");
        let e = Decoder::new().unwrap().decode(&bytes[..20], 40, 60, None, &mut out).unwrap_err();
        assert!(e.starts_with("bad JPEG") || e.contains("the row says"), "{e}");
        assert!(d.decode(&bytes, 60, 40, None, &mut out).unwrap_err().contains("the row says"));
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() * 2 / 3);
        // A truncated scan: libjpeg-turbo warns; the decoder still returns (pixels grey).
        let _ = d.decode(&cut, 40, 60, None, &mut out);
        // The decoder is still usable after errors.
        d.decode(&bytes, 40, 60, Some(Region { top: 3, left: 20, height: 30, width: 30 }), &mut out).unwrap();
    }
}
