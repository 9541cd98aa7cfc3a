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
    // A sample of the pending work, processed (and encoded) as the build will: the
    // bytes per row, raw and as JPEG (mixed builds keep `raw_fraction` of them raw).
    let sample: Vec<&Item> =
        pending.iter().flat_map(|p| p.items.iter()).step_by((rows as usize / 24).max(1)).take(24).collect();
    let jpeg = cfg.encoding.has_jpeg();
    let sizes: Vec<(u64, u64)> = match (cfg.encoding, cfg.whole) {
        (Encoding::Raw, None) => Vec::new(),
        (_, Some((resize, size))) => pool.install(|| {
            sample
                .par_iter()
                .map_init(fast_image_resize::Resizer::new, |rz, it| {
                    let img = match inputs.pixels(it) {
                        Some(px) => process_whole_image(rz, &px, resize, size).ok()?,
                        None => process_whole(rz, &inputs.read(it).ok()?, resize, size).ok()?,
                    };
                    let j = if jpeg {
                        encode_jpeg_sized(&img.pixels, img.width, img.height, cfg.quality, cfg.chroma()).ok()?.len()
                    } else {
                        0
                    };
                    Some((img.pixels.len() as u64, j as u64))
                })
                .flatten()
                .collect()
        }),
        (_, None) => pool.install(|| {
            sample
                .par_iter()
                .map_init(fast_image_resize::Resizer::new, |rz, it| {
                    let mut px = vec![0u8; IMAGE_BYTES];
                    match inputs.pixels(it) {
                        Some(img) => process_image(rz, &img, &mut px).ok()?,
                        None => process(rz, &inputs.read(it).ok()?, &mut px).ok()?,
                    }
                    let j = encode_jpeg(&px, cfg.quality, cfg.chroma()).ok()?.len();
                    Some((IMAGE_BYTES as u64, j as u64))
                })
                .flatten()
                .collect()
        }),
    };
    // Without a usable sample: centre squares 196,608 bytes raw, 48 KiB as JPEG; whole
    // images a 4:3 image, raw or about 8x smaller as JPEG.
    let (raw_guess, jpeg_guess) = match cfg.whole {
        None => (IMAGE_BYTES as u64, 48 << 10),
        Some((_, size)) => (size as u64 * size as u64 * 4, size as u64 * size as u64 / 2),
    };
    let mean = |f: fn(&(u64, u64)) -> u64, guess: u64| {
        if sizes.is_empty() {
            guess
        } else {
            sizes.iter().map(f).sum::<u64>() / sizes.len() as u64
        }
    };
    let (raw_mean, jpeg_mean) = (mean(|s| s.0, raw_guess), mean(|s| s.1, jpeg_guess));
    let per_row = match (cfg.encoding, cfg.whole) {
        (Encoding::Raw, None) => IMAGE_BYTES as u64 + 128,
        (Encoding::Raw, Some(_)) => raw_mean * 5 / 4 + 128,
        (Encoding::Jpeg, _) => jpeg_mean * 5 / 4 + 128,
        // Both terms with the sample's margin (for centre squares the raw rows are the
        // largest JPEGs, so this bounds it; whole images vary in raw size too).
        (Encoding::Mixed, _) => {
            let f = cfg.raw_fraction;
            let raw = if cfg.whole.is_some() { raw_mean * 5 / 4 } else { raw_mean };
            (f * raw as f64 + (1.0 - f) * (jpeg_mean * 5 / 4) as f64) as u64 + 128
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
            match cfg.encoding {
                Encoding::Raw => ", or use --encoding jpeg (about 8x smaller)",
                Encoding::Mixed => ", or lower --raw-fraction",
                Encoding::Jpeg => ", or lower --quality",
            }
        );
    }
    Ok(())
}
