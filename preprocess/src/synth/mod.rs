//! `preprocess synth`: a small procedural dataset in the ImageNet layout, the demo's
//! built-in data and the tests'.
//!
//! Each class is a shape (disc, square, triangle, ring, cross, stripes, checks, diamond,
//! an L, a bar) in a colour of its own, drawn at a random place and scale on a noisy
//! two-colour gradient: a small network tells them apart within minutes on a CPU.
//! Images have varied, non-square sizes (some smaller than 256), and the inputs real
//! ImageNet has are all there: grayscale JPEGs, CMYK and YCCK (Adobe) JPEGs, PNGs
//! named `.JPEG` (RGBA, palette, 16-bit), EXIF-rotated JPEGs, and a truncated file.
//! Val is flat (`val/ILSVRC2012_val_NNNNNNNN.JPEG`) with `LOC_val_solution.csv`;
//! `LOC_synset_mapping.txt` names the classes.
//!
//! With [`Layout::Archives`] the same images (byte for byte) are written as ImageNet is
//! downloaded instead ([`archives`]): an outer tar of class tars, a flat val tar, a
//! devkit `.tar.gz` with a MATLAB v5 `meta.mat` whose IDs are not in sorted-wnid order
//! and the ground truth, and a Kaggle-style zip.

pub mod archives;
pub mod cifar;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{DynamicImage, ImageBuffer, Rgb, RgbImage, Rgba};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub output: PathBuf,
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Truncated JPEGs added to train (they must be rejected by `build`).
    pub corrupt: usize,
    pub seed: u64,
    /// Range of image sides in pixels (width and height drawn independently).
    pub sides: (u32, u32),
    pub layout: Layout,
}

/// How the images are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    /// Unpacked: train/<wnid>/*.JPEG, flat val/ with LOC_val_solution.csv,
    /// LOC_synset_mapping.txt.
    #[default]
    Folders,
    /// As downloaded: synth_img_train.tar (a tar of class tars), synth_img_val.tar,
    /// synth_devkit_t12.tar.gz (meta.mat, ground truth), and a Kaggle-style zip.
    Archives,
    /// CIFAR-10's binary format: cifar-10-binary.tar.gz of 32x32 images (data_batch_1..5.bin,
    /// test_batch.bin, batches.meta.txt); --sides and --corrupt do not apply.
    Cifar,
}

impl SynthConfig {
    pub fn new(output: PathBuf) -> Self {
        Self {
            output,
            classes: 10,
            train_per_class: 100,
            val_per_class: 20,
            corrupt: 1,
            seed: 0,
            sides: (150, 460),
            layout: Layout::Folders,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub train: usize,
    pub val: usize,
    pub classes: usize,
    pub special: Vec<(String, usize)>,
}

const SHAPES: [&str; 10] =
    ["disc", "square", "triangle", "ring", "cross", "stripes", "checks", "diamond", "ell", "bar"];
const COLOURS: [(&str, [u8; 3]); 10] = [
    ("red", [220, 40, 40]),
    ("green", [40, 180, 60]),
    ("blue", [40, 70, 220]),
    ("yellow", [230, 210, 40]),
    ("magenta", [200, 50, 200]),
    ("cyan", [40, 200, 210]),
    ("orange", [240, 140, 30]),
    ("white", [240, 240, 240]),
    ("purple", [110, 40, 160]),
    ("brown", [130, 80, 40]),
];

/// How an image file is stored; cycles over the images so every kind occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Jpeg,
    GrayJpeg,
    CmykJpeg,
    YcckJpeg,
    ExifRotatedJpeg,
    RgbaPng,
    PalettePng,
    Png16,
}

impl Storage {
    fn name(self) -> &'static str {
        match self {
            Storage::Jpeg => "rgb jpeg",
            Storage::GrayJpeg => "grayscale jpeg",
            Storage::CmykJpeg => "cmyk jpeg",
            Storage::YcckJpeg => "ycck jpeg",
            Storage::ExifRotatedJpeg => "exif-rotated jpeg",
            Storage::RgbaPng => "rgba png named .JPEG",
            Storage::PalettePng => "palette png named .JPEG",
            Storage::Png16 => "16-bit png named .JPEG",
        }
    }

    /// Mostly plain JPEGs; one in 8 of each special kind every 64 images.
    fn for_index(i: usize) -> Storage {
        match i % 64 {
            5 | 37 => Storage::GrayJpeg,
            13 => Storage::CmykJpeg,
            21 => Storage::YcckJpeg,
            29 | 53 => Storage::ExifRotatedJpeg,
            45 => Storage::RgbaPng,
            61 => Storage::PalettePng,
            58 => Storage::Png16,
            _ => Storage::Jpeg,
        }
    }
}

pub fn wnid(class: usize) -> String {
    format!("n{:08}", 1_000_000 + class * 37)
}

pub fn class_name(class: usize) -> String {
    let (colour, _) = COLOURS[(class + class / SHAPES.len()) % COLOURS.len()];
    format!("{colour} {}", SHAPES[class % SHAPES.len()])
}

/// Draws one image of `class`: the content, not the storage.
pub fn draw(class: usize, sides: (u32, u32), rng: &mut ChaCha8Rng) -> RgbImage {
    let w = rng.random_range(sides.0..=sides.1);
    let h = rng.random_range(sides.0..=sides.1);
    let (_, base) = COLOURS[(class + class / SHAPES.len()) % COLOURS.len()];
    let jitter = |rng: &mut ChaCha8Rng, v: u8| (v as i32 + rng.random_range(-20..=20)).clamp(0, 255) as u8;
    let fg = [jitter(rng, base[0]), jitter(rng, base[1]), jitter(rng, base[2])];
    let bg0: [u8; 3] = [rng.random_range(0..90), rng.random_range(0..90), rng.random_range(0..90)];
    let bg1: [u8; 3] = [rng.random_range(40..140), rng.random_range(40..140), rng.random_range(40..140)];
    let side = w.min(h) as f32 * rng.random_range(0.35..0.7f32);
    let cx = rng.random_range(side / 2.0..=w as f32 - side / 2.0);
    let cy = rng.random_range(side / 2.0..=h as f32 - side / 2.0);
    let shape = class % SHAPES.len();
    let mut noise = ChaCha8Rng::seed_from_u64(rng.random());
    RgbImage::from_fn(w, h, |x, y| {
        // Shape coordinates in [-1, 1].
        let u = (x as f32 + 0.5 - cx) / (side / 2.0);
        let v = (y as f32 + 0.5 - cy) / (side / 2.0);
        let inside = u.abs() <= 1.0
            && v.abs() <= 1.0
            && match shape {
                0 => u * u + v * v <= 1.0,
                1 => true,
                2 => u.abs() <= (v + 1.0) / 2.0,
                3 => (0.45..=1.0).contains(&(u * u + v * v)),
                4 => u.abs() < 0.3 || v.abs() < 0.3,
                5 => ((v + 1.0) * 3.0) as i32 % 2 == 0,
                6 => (((u + 1.0) * 3.0) as i32 + ((v + 1.0) * 3.0) as i32) % 2 == 0,
                7 => u.abs() + v.abs() <= 1.0,
                8 => u < -0.4 || v > 0.4,
                _ => v.abs() < 0.25,
            };
        let t = (x + y) as f32 / (w + h) as f32;
        let n: i32 = noise.random_range(-12..=12);
        let px = if inside {
            [fg[0] as i32 + n, fg[1] as i32 + n, fg[2] as i32 + n]
        } else {
            [0, 1, 2].map(|c| (bg0[c] as f32 * (1.0 - t) + bg1[c] as f32 * t) as i32 + n)
        };
        Rgb(px.map(|c| c.clamp(0, 255) as u8))
    })
}

/// Encodes `img` the way `storage` says (the decoded, oriented RGB stays `img`, up to
/// JPEG loss and the colour conversions).
pub fn encode(img: &RgbImage, storage: Storage, quality: u8) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    let jpeg = |data: &[u8], w: u32, h: u32, ct: jpeg_encoder::ColorType, exif: Option<Vec<u8>>| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
        if let Some(e) = exif {
            enc.add_app_segment(1, e)?;
        }
        enc.encode(data, w as u16, h as u16, ct)?;
        Ok(out)
    };
    match storage {
        Storage::Jpeg => out = jpeg(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb, None)?,
        Storage::GrayJpeg => {
            let g = DynamicImage::ImageRgb8(img.clone()).into_luma8();
            out = jpeg(g.as_raw(), w, h, jpeg_encoder::ColorType::Luma, None)?;
        }
        Storage::CmykJpeg | Storage::YcckJpeg => {
            let cmyk: Vec<u8> = img
                .pixels()
                .flat_map(|p| {
                    // Inverse of the usual CMYK -> RGB, R = (255 - C) * (255 - K) / 255.
                    let max = p.0.iter().copied().max().unwrap_or(0).max(1) as u32;
                    let c = |v: u8| (255 - (v as u32 * 255 + max / 2) / max) as u8;
                    [c(p[0]), c(p[1]), c(p[2]), 255 - max as u8]
                })
                .collect();
            let ct = if storage == Storage::CmykJpeg {
                jpeg_encoder::ColorType::Cmyk
            } else {
                jpeg_encoder::ColorType::CmykAsYcck
            };
            out = jpeg(&cmyk, w, h, ct, None)?;
        }
        Storage::ExifRotatedJpeg => {
            // Orientation 6: the viewer rotates the stored pixels 90 degrees clockwise.
            let stored = image::imageops::rotate270(img);
            out = jpeg(stored.as_raw(), h, w, jpeg_encoder::ColorType::Rgb, Some(exif_orientation(6)))?;
        }
        Storage::RgbaPng => {
            let rgba = ImageBuffer::from_fn(w, h, |x, y| {
                let p = img.get_pixel(x, y);
                Rgba([p[0], p[1], p[2], 128 + ((x + y) % 128) as u8])
            });
            DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)?;
        }
        Storage::Png16 => {
            let wide: ImageBuffer<Rgb<u16>, Vec<u16>> =
                ImageBuffer::from_fn(w, h, |x, y| Rgb(img.get_pixel(x, y).0.map(|c| c as u16 * 257)));
            DynamicImage::ImageRgb16(wide).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)?;
        }
        Storage::PalettePng => {
            // 3-3-2 bit palette.
            let palette: Vec<u8> =
                (0..=255u8).flat_map(|i| [(i >> 5) * 36 + 3, ((i >> 2) & 7) * 36 + 3, (i & 3) * 85]).collect();
            let idx: Vec<u8> = img.pixels().map(|p| (p[0] & 0xe0) | ((p[1] >> 3) & 0x1c) | (p[2] >> 6)).collect();
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_palette(palette);
            let mut wr = enc.write_header()?;
            wr.write_image_data(&idx)?;
            wr.finish()?;
        }
    }
    Ok(out)
}

/// An EXIF APP1 payload holding only an orientation tag.
pub fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut v = b"Exif\0\0".to_vec();
    v.extend_from_slice(b"II*\0");
    v.extend_from_slice(&8u32.to_le_bytes()); // IFD0 offset
    v.extend_from_slice(&1u16.to_le_bytes()); // one entry
    v.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    v.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    v.extend_from_slice(&1u32.to_le_bytes()); // count
    v.extend_from_slice(&orientation.to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    v
}

/// What synth writes, before any image is drawn: the same for every layout.
pub(crate) struct Plan {
    /// Per class: (file name, storage index) of its train images, then its truncated ones.
    pub train: Vec<Vec<(String, usize)>>,
    /// (file name, truncated image index) of the truncated train files, per class.
    pub corrupt: Vec<Vec<(String, usize)>>,
    /// The class of each val image, val image i + 1 being `ILSVRC2012_val_{i+1:08}`.
    pub val_classes: Vec<usize>,
}

impl Plan {
    fn new(cfg: &SynthConfig) -> Plan {
        let train = (0..cfg.classes)
            .map(|c| {
                let w = wnid(c);
                (0..cfg.train_per_class).map(|i| (format!("{w}_{i}.JPEG"), c * cfg.train_per_class + i)).collect()
            })
            .collect();
        let mut corrupt = vec![Vec::new(); cfg.classes];
        for i in 0..cfg.corrupt {
            let c = i % cfg.classes;
            corrupt[c].push((format!("{}_truncated_{i}.JPEG", wnid(c)), i));
        }
        // Val: classes interleaved in a seeded order, numbered from 1 as in ILSVRC.
        let mut val_classes: Vec<usize> =
            (0..cfg.classes).flat_map(|c| std::iter::repeat_n(c, cfg.val_per_class)).collect();
        {
            use rand::seq::SliceRandom;
            val_classes.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5a5a));
        }
        Plan { train, corrupt, val_classes }
    }

    pub fn val_name(i: usize) -> String {
        format!("ILSVRC2012_val_{:08}.JPEG", i + 1)
    }

    /// The storage index of val image `i`.
    pub fn val_index(i: usize) -> usize {
        1_000_003 + i
    }
}

/// The bytes of image `k` (a storage index) of `class`, and how it is stored.
pub(crate) fn image_bytes(cfg: &SynthConfig, class: usize, k: usize) -> Result<(Vec<u8>, Storage)> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64);
    let img = draw(class, cfg.sides, &mut rng);
    let storage = Storage::for_index(k);
    Ok((encode(&img, storage, 90)?, storage))
}

/// Truncated file `i`: the first third of a JPEG of `class`.
pub(crate) fn truncated_bytes(cfg: &SynthConfig, class: usize, i: usize) -> Result<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (0xbad0 + i as u64));
    let bytes = encode(&draw(class, cfg.sides, &mut rng), Storage::Jpeg, 90)?;
    Ok(bytes[..bytes.len() / 3].to_vec())
}

pub(crate) fn solution_csv(val_classes: &[usize]) -> String {
    let mut csv = String::from("ImageId,PredictionString\n");
    for (i, &c) in val_classes.iter().enumerate() {
        csv.push_str(&format!("ILSVRC2012_val_{:08},{} 10 10 100 100\n", i + 1, wnid(c)));
    }
    csv
}

pub(crate) fn synset_mapping(classes: usize) -> String {
    (0..classes).map(|c| format!("{} {}\n", wnid(c), class_name(c))).collect()
}

pub fn run(cfg: &SynthConfig) -> Result<SynthSummary> {
    anyhow::ensure!(cfg.classes >= 1 && cfg.classes <= 1000, "--classes must be in 1..=1000");
    anyhow::ensure!(cfg.train_per_class >= 1, "--train-per-class must be at least 1");
    anyhow::ensure!(
        cfg.sides.0 >= 16 && cfg.sides.0 <= cfg.sides.1 && cfg.sides.1 <= 4096,
        "--sides must be MIN:MAX with 16 <= MIN <= MAX <= 4096"
    );
    let plan = Plan::new(cfg);
    let kinds = match cfg.layout {
        Layout::Folders => write_folders(cfg, &plan)?,
        Layout::Archives => archives::write(cfg, &plan)?,
        Layout::Cifar => {
            anyhow::ensure!(cfg.val_per_class >= 1, "--val-per-class must be at least 1 (the test batch)");
            cifar::write(cfg)?;
            let (train, val) = cifar::labels(cfg);
            return Ok(SynthSummary { train: train.len(), val: val.len(), classes: cfg.classes, special: Vec::new() });
        }
    };
    let mut special: Vec<(String, usize)> = Vec::new();
    for s in [
        Storage::GrayJpeg,
        Storage::CmykJpeg,
        Storage::YcckJpeg,
        Storage::ExifRotatedJpeg,
        Storage::RgbaPng,
        Storage::PalettePng,
        Storage::Png16,
    ] {
        special.push((s.name().to_string(), kinds.iter().filter(|&&k| k == s).count()));
    }
    special.push(("truncated".into(), cfg.corrupt));
    Ok(SynthSummary {
        train: cfg.classes * cfg.train_per_class + cfg.corrupt,
        val: plan.val_classes.len(),
        classes: cfg.classes,
        special,
    })
}

/// The unpacked layout; returns the storage of every image.
fn write_folders(cfg: &SynthConfig, plan: &Plan) -> Result<Vec<Storage>> {
    let out = &cfg.output;
    let train_dir = out.join("train");
    let val_dir = out.join("val");
    for c in 0..cfg.classes {
        std::fs::create_dir_all(train_dir.join(wnid(c)))
            .with_context(|| format!("creating {}", train_dir.display()))?;
    }
    std::fs::create_dir_all(&val_dir).with_context(|| format!("creating {}", val_dir.display()))?;

    // (path, class, storage index)
    let mut jobs: Vec<(PathBuf, usize, usize)> = Vec::new();
    for (c, files) in plan.train.iter().enumerate() {
        for (name, k) in files {
            jobs.push((train_dir.join(wnid(c)).join(name), c, *k));
        }
    }
    for (i, &c) in plan.val_classes.iter().enumerate() {
        jobs.push((val_dir.join(Plan::val_name(i)), c, Plan::val_index(i)));
    }
    let kinds: Vec<Storage> = jobs
        .par_iter()
        .map(|(path, class, k)| -> Result<Storage> {
            let (bytes, storage) = image_bytes(cfg, *class, *k)?;
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
            Ok(storage)
        })
        .collect::<Result<_>>()?;
    for (c, files) in plan.corrupt.iter().enumerate() {
        for (name, i) in files {
            let path = train_dir.join(wnid(c)).join(name);
            std::fs::write(&path, truncated_bytes(cfg, c, *i)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    write_text(&out.join("LOC_val_solution.csv"), &solution_csv(&plan.val_classes))?;
    write_text(&out.join("LOC_synset_mapping.txt"), &synset_mapping(cfg.classes))?;
    Ok(kinds)
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes the images of `s` (into `s.output`) and builds them into a raw dataset at
/// `out` with 2 threads and no progress bar: the small datasets of the tests.
pub fn build_raw(s: &SynthConfig, out: &Path) -> Result<PathBuf> {
    run(s)?;
    let inputs = crate::inputs::InputOptions { root: s.output.clone(), ..Default::default() };
    let mut cfg = crate::build::BuildConfig::new(inputs, out.to_path_buf());
    cfg.encoding = alexnet_shared::Encoding::Raw;
    cfg.threads = 2;
    cfg.progress = false;
    crate::build::run(&cfg)?;
    Ok(out.to_path_buf())
}
