//! The disk space check, before the first shard is written.

use alexnet_shared::{Encoding, IMAGE_BYTES};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::plan::PlannedShard;
use super::BuildConfig;
use crate::imageproc::{encode_jpeg, encode_jpeg_sized, process, process_image, process_whole, process_whole_image};
use crate::inputs::{Inputs, Item};

/// Estimates the bytes the pending shards need and refuses to start when the disk is short.
pub(super) fn check_space(
    cfg: &BuildConfig,
    inputs: &Inputs,
    pending: &[&PlannedShard],
    pool: &rayon::ThreadPool,
) -> Result<()> {
    let rows: u64 = pending.iter().map(|p| p.items.len() as u64).sum();
    if rows == 0 {
        return Ok(());
    }
    let per_row = match (cfg.encoding, cfg.whole) {
        (Encoding::Raw, None) => IMAGE_BYTES as u64 + 128,
        (encoding, Some((resize, size))) => {
            // Whole images vary in size: process a sample spread over the pending work.
            let sample: Vec<&Item> =
                pending.iter().flat_map(|p| p.items.iter()).step_by((rows as usize / 24).max(1)).take(24).collect();
            let sizes: Vec<u64> = pool.install(|| {
                sample
                    .par_iter()
                    .map_init(fast_image_resize::Resizer::new, |rz, it| {
                        let img = match inputs.pixels(it) {
                            Some(px) => process_whole_image(rz, &px, resize, size).ok()?,
                            None => process_whole(rz, &inputs.read(it).ok()?, resize, size).ok()?,
                        };
                        match encoding {
                            Encoding::Raw => Some(img.pixels.len() as u64),
                            Encoding::Jpeg => {
                                encode_jpeg_sized(&img.pixels, img.width, img.height, cfg.quality, cfg.chroma())
                                    .ok()
                                    .map(|j| j.len() as u64)
                            }
                        }
                    })
                    .flatten()
                    .collect()
            });
            // Without a usable sample: a 4:3 image, raw or about 8x smaller as JPEG.
            let raw = size as u64 * size as u64 * 4;
            let guess = if encoding == Encoding::Raw { raw } else { raw / 8 };
            let mean = if sizes.is_empty() { guess } else { sizes.iter().sum::<u64>() / sizes.len() as u64 };
            mean * 5 / 4 + 128
        }
        (Encoding::Jpeg, None) => {
            // Encode a sample spread over the pending work.
            let sample: Vec<&Item> =
                pending.iter().flat_map(|p| p.items.iter()).step_by((rows as usize / 24).max(1)).take(24).collect();
            let sizes: Vec<u64> = pool.install(|| {
                sample
                    .par_iter()
                    .map_init(fast_image_resize::Resizer::new, |rz, it| {
                        let mut px = vec![0u8; IMAGE_BYTES];
                        match inputs.pixels(it) {
                            Some(img) => process_image(rz, &img, &mut px).ok()?,
                            None => process(rz, &inputs.read(it).ok()?, &mut px).ok()?,
                        }
                        encode_jpeg(&px, cfg.quality, cfg.chroma()).ok().map(|j| j.len() as u64)
                    })
                    .flatten()
                    .collect()
            });
            let mean = if sizes.is_empty() { 48 << 10 } else { sizes.iter().sum::<u64>() / sizes.len() as u64 };
            mean * 5 / 4 + 128
        }
    };
    let needed = rows * per_row + (4 << 20);
    let free = match cfg.assume_free_bytes {
        Some(b) => b,
        None => fs4::available_space(&cfg.output)
            .with_context(|| format!("asking the free space of {}", cfg.output.display()))?,
    };
    if needed > free {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "not enough disk space in {}: the build needs about {:.2} GiB for {rows} images ({}), {:.2} GiB are free. \
             Free some space, choose another --output{}",
            cfg.output.display(),
            gib(needed),
            cfg.encoding.name(),
            gib(free),
            if cfg.encoding == Encoding::Raw {
                ", or use --encoding jpeg (about 8x smaller)"
            } else {
                ", or lower --quality"
            }
        );
    }
    Ok(())
}
