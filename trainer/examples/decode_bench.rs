//! JPEG decoders side by side on the same shard bytes (one thread): zune-jpeg (the
//! loader's decoder before issue 16), libjpeg-turbo 3 decoding the whole image, and
//! libjpeg-turbo decoding only the region a random `--crop` crop reads (what the
//! loader does now), and libjpeg-turbo's fast integer IDCT on the whole image (not used
//! by the loader: faster, less accurate; the mean |difference| from the accurate IDCT is
//! printed). Rows are grouped by image size and chroma subsampling. Raw rows of a mixed
//! dataset are left out.
//!
//! usage: cargo run --release -p trainer --example decode_bench -- DATASET_DIR
//!            [--rows 2000] [--crop 227] [--reps 3] [--json]

use std::collections::BTreeMap;
use std::time::Instant;

use alexnet_shared::{Dataset, Split};
use anyhow::{bail, Context};
use clap::Parser;
use rand::{RngExt, SeedableRng};
use trainer::data::jpeg::{Decoder, Region};

#[derive(Parser)]
struct Args {
    dataset: std::path::PathBuf,
    /// Train rows to decode (the first ones).
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// The crop whose region the region decode reads (at a random place).
    #[arg(long, default_value_t = 227)]
    crop: usize,
    /// Passes over the rows; the best is kept.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Group {
    size: String,
    subsampling: String,
    rows: usize,
    zune_images_per_s: f64,
    turbo_images_per_s: f64,
    turbo_region_images_per_s: f64,
    turbo_fast_dct_images_per_s: f64,
    /// Mean |fast IDCT - accurate IDCT| over every decoded byte of the group.
    fast_dct_mean_abs_diff: f64,
}

fn subsampling(bytes: &[u8]) -> String {
    // The SOF0/SOF2 marker's component sampling factors.
    let mut i = 2;
    while i + 4 < bytes.len() {
        if bytes[i] != 0xFF {
            i += 1;
            continue;
        }
        let m = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if m == 0xC0 || m == 0xC1 || m == 0xC2 {
            let n = bytes.get(i + 9).copied().unwrap_or(0) as usize;
            let f = |c: usize| bytes.get(i + 11 + 3 * c).copied().unwrap_or(0);
            return match (n, f(0), f(1)) {
                (1, _, _) => "grey".into(),
                (3, 0x22, 0x11) => "4:2:0".into(),
                (3, 0x21, 0x11) => "4:2:2".into(),
                (3, 0x11, 0x11) => "4:4:4".into(),
                (n, a, b) => format!("{n} components {a:02x}/{b:02x}"),
            };
        }
        i += 2 + len;
    }
    "unknown".into()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let ds = Dataset::open(&a.dataset)?;
    if !ds.manifest().encoding.has_jpeg() {
        bail!("{}: not a JPEG dataset", a.dataset.display());
    }
    let split = ds.split(Split::Train)?;
    let n = a.rows.min(split.len());
    let mut groups: BTreeMap<(usize, usize, String), Vec<usize>> = BTreeMap::new();
    for row in 0..n {
        let r = split.get(row).with_context(|| format!("row {row}"))?;
        if !r.jpeg {
            continue; // a raw row of a mixed dataset
        }
        groups.entry((r.height, r.width, subsampling(r.bytes))).or_default().push(row);
    }
    let mut turbo = Decoder::new().map_err(anyhow::Error::msg)?;
    let mut fast = Decoder::new().map_err(anyhow::Error::msg)?;
    fast.set_fast_dct(true).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut total = [0f64; 4];
    let mut all_rows = 0;
    for ((h, w, sub), rows) in &groups {
        let crop = a.crop.min(*h).min(*w);
        let regions: Vec<Region> = rows
            .iter()
            .map(|_| Region {
                top: rng.random_range(0..=h - crop),
                left: rng.random_range(0..=w - crop),
                height: crop,
                width: crop,
            })
            .collect();
        let mut best = [f64::INFINITY; 4];
        // The fast IDCT's pixels against the accurate one's.
        let (mut diff, mut bytes, mut other) = (0u64, 0u64, Vec::new());
        for &row in rows {
            let r = split.get(row)?;
            buf.resize(h * w * 3, 0);
            other.resize(h * w * 3, 0);
            turbo.decode(r.bytes, *h, *w, None, &mut buf).map_err(anyhow::Error::msg)?;
            fast.decode(r.bytes, *h, *w, None, &mut other).map_err(anyhow::Error::msg)?;
            diff += buf.iter().zip(&other).map(|(a, b)| a.abs_diff(*b) as u64).sum::<u64>();
            bytes += buf.len() as u64;
        }
        for _ in 0..a.reps {
            for (k, best) in best.iter_mut().enumerate() {
                let t = Instant::now();
                for (i, &row) in rows.iter().enumerate() {
                    let r = split.get(row)?;
                    buf.resize(h * w * 3, 0);
                    match k {
                        0 => {
                            let opts = zune_core::options::DecoderOptions::default()
                                .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
                            let mut d = zune_jpeg::JpegDecoder::new_with_options(
                                zune_core::bytestream::ZCursor::new(r.bytes),
                                opts,
                            );
                            d.decode_into(&mut buf).map_err(|e| anyhow::anyhow!("zune: {e:?}"))?;
                        }
                        1 => turbo.decode(r.bytes, *h, *w, None, &mut buf).map_err(anyhow::Error::msg)?,
                        3 => fast.decode(r.bytes, *h, *w, None, &mut buf).map_err(anyhow::Error::msg)?,
                        _ => turbo.decode(r.bytes, *h, *w, Some(regions[i]), &mut buf).map_err(anyhow::Error::msg)?,
                    }
                    std::hint::black_box(&buf);
                }
                *best = best.min(t.elapsed().as_secs_f64());
            }
        }
        for k in 0..4 {
            total[k] += best[k];
        }
        all_rows += rows.len();
        let rate = |s: f64| rows.len() as f64 / s;
        out.push(Group {
            size: format!("{w}x{h}"),
            subsampling: sub.clone(),
            rows: rows.len(),
            zune_images_per_s: rate(best[0]),
            turbo_images_per_s: rate(best[1]),
            turbo_region_images_per_s: rate(best[2]),
            turbo_fast_dct_images_per_s: rate(best[3]),
            fast_dct_mean_abs_diff: diff as f64 / bytes.max(1) as f64,
        });
    }
    let rate = |s: f64| all_rows as f64 / s;
    if a.json {
        let j = serde_json::json!({
            "groups": out,
            "rows": all_rows,
            "crop": a.crop,
            "zune_images_per_s": rate(total[0]),
            "turbo_images_per_s": rate(total[1]),
            "turbo_region_images_per_s": rate(total[2]),
            "turbo_fast_dct_images_per_s": rate(total[3]),
        });
        println!("{j}");
        return Ok(());
    }
    println!(
        "| size | subsampling | rows | zune-jpeg | libjpeg-turbo (whole) | libjpeg-turbo (crop {} region) | \
         libjpeg-turbo fast IDCT (whole; mean abs diff) |",
        a.crop
    );
    println!("|---|---|---|---|---|---|---|");
    let show = |g: &Group| {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} ({:.2}x) | {:.0} ({:.2}x) | {:.0} ({:.2}x; {:.3}) |",
            g.size,
            g.subsampling,
            g.rows,
            g.zune_images_per_s,
            g.turbo_images_per_s,
            g.turbo_images_per_s / g.zune_images_per_s,
            g.turbo_region_images_per_s,
            g.turbo_region_images_per_s / g.zune_images_per_s,
            g.turbo_fast_dct_images_per_s,
            g.turbo_fast_dct_images_per_s / g.zune_images_per_s,
            g.fast_dct_mean_abs_diff
        )
    };
    if out.len() <= 12 {
        out.iter().for_each(show);
    }
    show(&Group {
        size: "all".into(),
        subsampling: "".into(),
        rows: all_rows,
        zune_images_per_s: rate(total[0]),
        turbo_images_per_s: rate(total[1]),
        turbo_region_images_per_s: rate(total[2]),
        turbo_fast_dct_images_per_s: rate(total[3]),
        fast_dct_mean_abs_diff: out.iter().map(|g| g.fast_dct_mean_abs_diff * g.rows as f64).sum::<f64>()
            / all_rows.max(1) as f64,
    });
    println!("images/s on one thread, best of {} passes", a.reps);
    Ok(())
}
