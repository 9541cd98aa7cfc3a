//! `dataset.json`: the manifest of a built dataset.
//!
//! Format versions (DESIGN.md, "Format versions"): 1 is the first format; 2 adds the
//! per-row check, a `crc32c` column in every shard (see [`crate::ShardReader`]); 3 adds
//! whole-image datasets ([`Layout::Whole`]: the image rescaled with its aspect kept,
//! per-row `height` and `width` columns, no mean image); 4 adds mixed shards
//! ([`Encoding::Mixed`]: a chosen fraction of the rows kept raw, the rest JPEG, with a
//! per-row `raw` column). This program reads all four. It writes the oldest version that
//! describes a dataset ([`Manifest::needed_version`]): 2 for a centre-square dataset (so
//! that programs that know only 2 still read it), 3 for a whole-image one, 4 for a mixed
//! one. A newer version is refused by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::Split;

/// The newest version this program reads and writes.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest version this program reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The largest `dataset.json` read (ImageNet's is about 300 KB).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
pub const MANIFEST_FILE: &str = "dataset.json";
pub const MEAN_IMAGE_FILE: &str = "mean_image.npy";
pub const REJECTS_FILE: &str = "rejects.tsv";

/// How the `image` column holds a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// fixed_size_binary(196608): 256x256x3 HWC RGB bytes, read with no decode (about
    /// 250 GB for ImageNet).
    #[default]
    Raw,
    /// binary: a baseline JPEG of the 256x256 image, decoded by the loader (about
    /// 25-30 GB for ImageNet at quality 90).
    Jpeg,
    /// binary, format 4: each row either raw pixels or a JPEG, as its `raw` column says
    /// (`preprocess build --encoding jpeg --raw-fraction F` keeps the fraction F of each
    /// shard raw, those whose JPEG is largest for their size: disk traded for decode
    /// time, as FFCV's mixed shards do). Not a choice of `--encoding` itself.
    #[cfg_attr(feature = "clap", value(skip))]
    Mixed,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg => "jpeg",
            Encoding::Mixed => "mixed",
        }
    }

    /// Whether the `image` column can hold JPEGs (jpeg and mixed).
    pub fn has_jpeg(self) -> bool {
        self != Encoding::Raw
    }
}

/// The chroma resolution of a build's JPEGs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Chroma {
    /// Full-resolution colour (4:4:4): what the encoder writes at quality 90 and above.
    #[serde(rename = "4:4:4")]
    #[cfg_attr(feature = "clap", value(name = "444"))]
    Full,
    /// Colour at half resolution both ways (4:2:0): what the encoder writes below quality
    /// 90, and what most JPEGs (ImageNet's among them) are. Smaller, and faster to decode.
    #[serde(rename = "4:2:0")]
    #[cfg_attr(feature = "clap", value(name = "420"))]
    Half,
}

impl Chroma {
    /// What builds write without `--chroma` (jpeg-encoder's rule).
    pub fn default_for(quality: u8) -> Chroma {
        if quality >= 90 {
            Chroma::Full
        } else {
            Chroma::Half
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Chroma::Full => "4:4:4",
            Chroma::Half => "4:2:0",
        }
    }
}

/// What the stored images are: the paper's centre squares, or whole images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Layout {
    /// The central `image_size` x `image_size` square of the image rescaled so that its
    /// shorter side is `image_size` (256; the paper's section 2). Formats 1 and 2 hold
    /// only these; a manifest without a `layout` is one.
    #[default]
    CenterSquare,
    /// The whole image with its aspect kept (format 3), rescaled as `resize` says with
    /// `image_size` as the size: what torchvision's `RandomResizedCrop` and
    /// `Resize(256)` + `CenterCrop(224)` recipes need. Each row has its `height` and
    /// `width`; there is no mean image (it is not defined over images of many sizes).
    Whole { resize: WholeResize },
}

/// How a whole image is rescaled before it is stored (never enlarged for `MaxSide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WholeResize {
    /// Shorter side `image_size`, longer side `floor(image_size * long / short)`:
    /// torchvision's `Resize(image_size)` (256: about 35 GB of JPEG for ImageNet).
    ShorterSide,
    /// Longer side at most `image_size`, smaller images kept as they are (FFCV's
    /// ImageNet setting, 500: close to the original pixels, about three times the disk).
    MaxSide,
}

impl Layout {
    pub fn is_center_square(&self) -> bool {
        *self == Layout::CenterSquare
    }

    pub fn is_whole(&self) -> bool {
        !self.is_center_square()
    }

    /// `center-square`, `whole (shorter side 256)`, `whole (longer side at most 500)`.
    pub fn describe(&self, image_size: u32) -> String {
        match self {
            Layout::CenterSquare => format!("center-square {image_size}x{image_size}"),
            Layout::Whole { resize: WholeResize::ShorterSide } => format!("whole images, shorter side {image_size}"),
            Layout::Whole { resize: WholeResize::MaxSide } => format!("whole images, longer side at most {image_size}"),
        }
    }
}

/// The most pixels a stored whole image has, as a multiple of `image_size`^2: an aspect
/// of up to 16:1 at `ShorterSide` (the build rejects longer ones, by name).
pub const WHOLE_MAX_PIXELS_PER_SIDE2: usize = 16;

/// What a reader needs to know to index a shard: how its images are encoded, and
/// whether rows are whole images of their own size (format 3) or centre squares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardKind {
    pub encoding: Encoding,
    /// `Some(image_size)` for whole images (the bound on their size follows from it).
    pub whole: Option<u32>,
}

impl From<Encoding> for ShardKind {
    /// A centre-square shard (formats 1 and 2).
    fn from(encoding: Encoding) -> Self {
        ShardKind { encoding, whole: None }
    }
}

impl ShardKind {
    /// The most bytes one row's image can take: a raw 256x256 image for centre squares
    /// (a JPEG of one is smaller: twice leaves room), and for whole images
    /// [`WHOLE_MAX_PIXELS_PER_SIDE2`] x `image_size`^2 pixels.
    pub fn max_image_bytes(&self) -> u64 {
        match self.whole {
            None => 2 * crate::IMAGE_BYTES as u64,
            Some(s) => 2 * 3 * WHOLE_MAX_PIXELS_PER_SIDE2 as u64 * s as u64 * s as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    pub index: usize,
    pub wnid: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SplitEntry {
    pub rows: u64,
    pub shards: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaStats {
    /// Eigenvalues of the RGB covariance on the 0..255 scale, descending.
    pub eigenvalues: [f64; 3],
    /// `eigenvectors[i]` is the unit vector paired with `eigenvalues[i]`.
    pub eigenvectors: [[f64; 3]; 3],
}

/// Population statistics over every pixel of the train split, 0..255 scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PixelStatsSummary {
    pub mean_rgb: [f64; 3],
    pub std_rgb: [f64; 3],
    pub pca: PcaStats,
}

/// The parameters a dataset was built with, and by what program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub program: String,
    pub version: String,
    pub seed: u64,
    pub shard_rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// The JPEGs' chroma subsampling (JPEG builds from issue 16 on; older JPEG builds
    /// are [`Chroma::default_for`] their quality).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chroma: Option<Chroma>,
    /// Mixed datasets (format 4): the fraction of each shard's rows kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_class: Option<usize>,
    pub resize_filter: String,
    pub source: String,
    /// The downloaded archives the images were read from, in place (optional: absent
    /// for builds from folders and for datasets built before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<ArchiveInfo>,
}

/// One input archive of a build: which part it gave, its file name, size and md5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// "train", "val", "devkit" or "kaggle" (Kaggle's zip holds all three).
    pub role: String,
    pub file: String,
    pub bytes: u64,
    /// The md5 of the file, when the build was asked to check it (`--check-md5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The side of the centre squares (256), or the size `layout` rescales whole
    /// images to.
    pub image_size: u32,
    /// What the stored images are (format 3; absent means centre squares).
    #[serde(default, skip_serializing_if = "Layout::is_center_square")]
    pub layout: Layout,
    pub encoding: Encoding,
    pub classes: Vec<ClassEntry>,
    pub splits: BTreeMap<String, SplitEntry>,
    pub stats: PixelStatsSummary,
    /// The per-pixel train mean's file: present for centre squares, absent for whole
    /// images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_image: Option<String>,
    pub rejected: u64,
    pub build: BuildInfo,
}

impl Manifest {
    /// Reads and checks `DIR/dataset.json` (a regular file; see [`Manifest::check`]).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = crate::open::read_regular(&path, MAX_MANIFEST_BYTES)?;
        Self::parse(&bytes).map_err(|message| Error::Manifest { path, message })
    }

    /// Parses and checks the bytes of a `dataset.json`.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    /// Whether the shards carry the per-row `crc32c` column (format 2 and later).
    pub fn has_row_crc(&self) -> bool {
        self.format_version >= 2
    }

    /// The oldest format version that describes this dataset (the version the build
    /// writes): 4 for mixed shards, 3 for whole images, 2 for centre squares.
    pub fn needed_version(&self) -> u32 {
        needed_version(self.encoding, self.layout.is_whole())
    }

    /// How its shards are read.
    pub fn shard_kind(&self) -> ShardKind {
        ShardKind { encoding: self.encoding, whole: self.layout.is_whole().then_some(self.image_size) }
    }

    /// `center-square 256x256` or `whole images, shorter side 256`.
    pub fn describe_layout(&self) -> String {
        self.layout.describe(self.image_size)
    }

    /// Writes `DIR/dataset.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("manifest serializes");
        text.push('\n');
        atomic_write(&dir.join(MANIFEST_FILE), text.as_bytes())
    }

    pub fn split(&self, split: Split) -> Option<&SplitEntry> {
        self.splits.get(split.name())
    }

    pub fn wnids(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.wnid.clone()).collect()
    }

    /// Everything a reader relies on: a known version, sorted classes, plain file names
    /// inside the dataset folder (no shard listed twice), a non-empty train and val
    /// split, and finite statistics a normalization can divide by. The build checks its
    /// manifest with this before writing it, so it never writes one a reader refuses.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(format!(
                "format_version {} is not supported (this program reads versions {OLDEST_FORMAT_VERSION} to \
                 {FORMAT_VERSION}){}",
                self.format_version,
                if self.format_version > FORMAT_VERSION { ": it was built by a newer program" } else { "" }
            ));
        }
        if self.classes.is_empty() || self.classes.len() > i16::MAX as usize + 1 {
            return Err(format!("{} classes (expected 1 to {})", self.classes.len(), i16::MAX as usize + 1));
        }
        match self.layout {
            Layout::CenterSquare => {
                if self.image_size as usize != crate::IMAGE_SIDE {
                    return Err(format!("image_size {} (expected {})", self.image_size, crate::IMAGE_SIDE));
                }
                match &self.mean_image {
                    None => return Err("a center-square dataset needs its mean_image".into()),
                    Some(name) => check_file_name("mean_image", name)?,
                }
            }
            Layout::Whole { .. } => {
                if self.format_version < 3 {
                    return Err(format!(
                        "a whole-image layout in a format {} manifest (whole images are format 3)",
                        self.format_version
                    ));
                }
                if !(8..=4096).contains(&self.image_size) {
                    return Err(format!("image_size {} of whole images is outside 8..=4096", self.image_size));
                }
                if let Some(name) = &self.mean_image {
                    return Err(format!(
                        "mean_image {name:?} in a whole-image dataset (a per-pixel mean is not defined over images of \
                         many sizes)"
                    ));
                }
            }
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.index != i {
                return Err(format!("class {} ({}) has index {}", i, c.wnid, c.index));
            }
            if i > 0 && self.classes[i - 1].wnid >= c.wnid {
                return Err(format!("classes are not in sorted wnid order at {}", c.wnid));
            }
        }
        if self.encoding == Encoding::Mixed {
            if self.format_version < 4 {
                return Err(format!(
                    "encoding \"mixed\" in a format {} manifest (mixed shards are format 4)",
                    self.format_version
                ));
            }
            match self.build.raw_fraction {
                Some(f) if f > 0.0 && f < 1.0 => {}
                other => {
                    return Err(format!(
                        "a mixed dataset needs build.raw_fraction in (0, 1), the manifest has {other:?}"
                    ))
                }
            }
        }
        let mut files = std::collections::HashSet::new();
        for (name, split) in &self.splits {
            if name != "train" && name != "val" {
                return Err(format!("split {name:?} is neither train nor val"));
            }
            let sum = split.shards.iter().try_fold(0u64, |a, s| a.checked_add(s.rows));
            if sum != Some(split.rows) {
                return Err(format!("split {name}: shards hold {sum:?} rows, the split says {}", split.rows));
            }
            for s in &split.shards {
                check_file_name("shard", &s.file)?;
                if !files.insert(s.file.as_str()) {
                    return Err(format!("shard {} is listed twice", s.file));
                }
            }
        }
        if let Some(mean) = &self.mean_image {
            if files.contains(mean.as_str()) {
                return Err(format!("mean_image {mean} is also a shard"));
            }
        }
        for split in Split::ALL {
            match self.split(split) {
                None => return Err(format!("the dataset has no {split} split; rebuild it with a {split} folder")),
                Some(s) if s.rows == 0 => {
                    return Err(format!("the {split} split is empty; rebuild it with {split} images"))
                }
                Some(_) => {}
            }
        }
        check_stats(&self.stats)
    }
}

/// The oldest format version that describes a dataset of `encoding` and layout: 4 for
/// mixed shards, 3 for whole images, 2 for centre squares.
pub fn needed_version(encoding: Encoding, whole: bool) -> u32 {
    match (encoding, whole) {
        (Encoding::Mixed, _) => 4,
        (_, true) => 3,
        _ => 2,
    }
}

/// A file of the dataset is named by a plain file name inside its folder: no folder
/// part, no `..`, no absolute path, no hidden or temporary name.
fn check_file_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name() == Some(std::ffi::OsStr::new(name));
    if plain {
        Ok(())
    } else {
        Err(format!("{what} file name {name:?} is not a plain file name inside the dataset folder"))
    }
}

/// Statistics a normalization can use: finite, on the 0..255 scale, std above zero.
fn check_stats(st: &PixelStatsSummary) -> std::result::Result<(), String> {
    let finite = st.mean_rgb.iter().chain(&st.std_rgb).chain(&st.pca.eigenvalues).all(|v| v.is_finite())
        && st.pca.eigenvectors.iter().flatten().all(|v| v.is_finite());
    if !finite {
        return Err("stats hold a non-finite value (NaN or infinity)".into());
    }
    if st.mean_rgb.iter().any(|m| !(0.0..=255.0).contains(m)) {
        return Err(format!("stats.mean_rgb {:?} is outside 0..255", st.mean_rgb));
    }
    if st.std_rgb.iter().any(|s| !(*s > 0.0 && *s <= 128.0)) {
        return Err(format!(
            "stats.std_rgb {:?} is outside (0, 128]: a channel with std 0 cannot be normalized (every train \
             pixel has the same value)",
            st.std_rgb
        ));
    }
    if st.pca.eigenvalues.iter().any(|v| *v < 0.0 || *v > 3.0 * 128.0 * 128.0) {
        return Err(format!("stats.pca.eigenvalues {:?} are outside 0..49152", st.pca.eigenvalues));
    }
    Ok(())
}

impl Manifest {
    /// A small valid manifest (tests of the readers).
    #[doc(hidden)]
    pub fn example() -> Self {
        let shard = |file: &str, rows| ShardEntry { file: file.into(), rows, sha256: "0".repeat(64) };
        let mut splits = BTreeMap::new();
        splits.insert("train".into(), SplitEntry { rows: 3, shards: vec![shard("train-00000.parquet", 3)] });
        splits.insert("val".into(), SplitEntry { rows: 2, shards: vec![shard("val-00000.parquet", 2)] });
        Manifest {
            format_version: 2,
            image_size: crate::IMAGE_SIDE as u32,
            layout: Layout::CenterSquare,
            encoding: Encoding::Raw,
            classes: ["n01", "n02"]
                .iter()
                .enumerate()
                .map(|(index, w)| ClassEntry { index, wnid: (*w).into(), name: (*w).into() })
                .collect(),
            splits,
            stats: PixelStatsSummary {
                mean_rgb: [120.0, 110.0, 100.0],
                std_rgb: [60.0, 58.0, 57.0],
                pca: PcaStats {
                    eigenvalues: [9000.0, 200.0, 50.0],
                    eigenvectors: [[0.57, 0.58, 0.58], [-0.7, 0.0, 0.7], [0.4, -0.8, 0.4]],
                },
            },
            mean_image: Some(MEAN_IMAGE_FILE.into()),
            rejected: 0,
            build: BuildInfo {
                program: "preprocess".into(),
                version: "0".into(),
                seed: 0,
                shard_rows: 16,
                quality: None,
                chroma: None,
                raw_fraction: None,
                limit_per_class: None,
                resize_filter: "f".into(),
                source: "s".into(),
                archives: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(edit: impl FnOnce(&mut Manifest)) -> String {
        let mut m = Manifest::example();
        edit(&mut m);
        m.check().expect_err("must be refused")
    }

    #[test]
    fn the_example_is_valid_and_version_1_still_reads() {
        let m = Manifest::example();
        assert_eq!(Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap(), m);
        let mut old = m.clone();
        old.format_version = 1;
        assert!(!Manifest::parse(&serde_json::to_vec(&old).unwrap()).unwrap().has_row_crc());
        assert!(refused(|m| m.format_version = 5).contains("format_version 5 is not supported"));
        assert!(!serde_json::to_string(&m).unwrap().contains("layout"), "a centre-square manifest reads as format 2");
    }

    /// Format 3: a whole-image dataset says so, has no mean image, and needs version 3;
    /// a centre-square one still needs only 2 (what the build writes for it).
    #[test]
    fn whole_image_manifests_are_format_3() {
        let mut m = Manifest::example();
        assert_eq!(m.needed_version(), 2);
        m.format_version = 3;
        m.layout = Layout::Whole { resize: WholeResize::ShorterSide };
        m.mean_image = None;
        assert_eq!(m.needed_version(), 3);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""layout":{"kind":"whole","resize":"shorter-side"}"#), "{text}");
        assert!(!text.contains("mean_image"), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.shard_kind(), ShardKind { encoding: Encoding::Raw, whole: Some(256) });
        assert_eq!(m.describe_layout(), "whole images, shorter side 256");
        let whole = |edit: fn(&mut Manifest)| {
            let mut w = m.clone();
            edit(&mut w);
            w.check().expect_err("must be refused")
        };
        assert!(whole(|w| w.format_version = 2).contains("whole images are format 3"));
        assert!(whole(|w| w.mean_image = Some("mean_image.npy".into())).contains("not defined over images"));
        assert!(whole(|w| w.image_size = 5000).contains("outside 8..=4096"));
        assert!(refused(|c| c.mean_image = None).contains("needs its mean_image"));
    }

    /// Format 4: a mixed dataset (part raw, part JPEG) says so, needs version 4 whatever
    /// its layout, and records its raw fraction; `mixed` is no `--encoding` choice.
    #[test]
    fn mixed_manifests_are_format_4() {
        let mut m = Manifest::example();
        m.encoding = Encoding::Mixed;
        assert_eq!(m.needed_version(), 4);
        assert!(m.check().expect_err("format 2").contains("mixed shards are format 4"));
        m.format_version = 4;
        assert!(m.check().expect_err("no fraction").contains("build.raw_fraction in (0, 1)"));
        m.build.raw_fraction = Some(0.25);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""encoding":"mixed""#) && text.contains(r#""raw_fraction":0.25"#), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.shard_kind().encoding, Encoding::Mixed);
        for bad in [0.0, 1.0, f64::NAN] {
            let mut b = m.clone();
            b.build.raw_fraction = Some(bad);
            assert!(b.check().is_err(), "{bad}");
        }
        m.layout = Layout::Whole { resize: WholeResize::MaxSide };
        m.mean_image = None;
        assert_eq!(m.needed_version(), 4);
        m.check().unwrap();
        assert!(Encoding::Mixed.has_jpeg() && Encoding::Jpeg.has_jpeg() && !Encoding::Raw.has_jpeg());
    }

    /// B3: the mean image is a plain file name inside the dataset folder.
    #[test]
    fn mean_image_outside_the_dataset_is_refused() {
        for bad in ["../../../../etc/passwd", "/etc/passwd", "sub/mean.npy", "..", ".", "", ".mean.npy.tmp", "a\\b"] {
            let e = refused(|m| m.mean_image = Some(bad.into()));
            assert!(e.contains("mean_image file name") && e.contains("plain file name"), "{bad}: {e}");
        }
        assert!(refused(|m| m.splits.get_mut("val").unwrap().shards[0].file = "/dev/zero".into())
            .contains("shard file name \"/dev/zero\""));
    }

    /// B8/B22: no val split, an empty one, a shard listed twice, bad statistics.
    #[test]
    fn unusable_splits_and_statistics_are_refused() {
        assert!(refused(|m| {
            m.splits.remove("val");
        })
        .contains("no val split"));
        assert!(refused(|m| *m.splits.get_mut("val").unwrap() = SplitEntry::default()).contains("val split is empty"));
        let e = refused(|m| {
            let t = m.splits.get_mut("train").unwrap();
            t.shards.push(t.shards[0].clone());
            t.rows *= 2;
        });
        assert!(e.contains("train-00000.parquet is listed twice"), "{e}");
        assert!(refused(|m| {
            let s = m.splits["train"].shards[0].clone();
            let v = m.splits.get_mut("val").unwrap();
            v.rows += s.rows;
            v.shards.push(s);
        })
        .contains("listed twice"));
        assert!(refused(|m| m.stats.std_rgb[1] = 0.0).contains("std 0"));
        assert!(refused(|m| m.stats.mean_rgb[2] = f64::NAN).contains("non-finite"));
        assert!(refused(|m| m.stats.mean_rgb[0] = 1e30).contains("outside 0..255"));
        assert!(refused(|m| m.stats.pca.eigenvalues[0] = f64::INFINITY).contains("non-finite"));
    }

    /// `build.archives` is optional: a dataset built before it existed reads as before,
    /// and a build from folders writes no such key.
    #[test]
    fn build_archives_are_optional() {
        let old = r#"{"program":"preprocess","version":"0.1.0","seed":0,"shard_rows":1024,
            "resize_filter":"f","source":"/data/imagenet"}"#;
        let b: BuildInfo = serde_json::from_str(old).unwrap();
        assert!(b.archives.is_empty());
        assert!(!serde_json::to_string(&b).unwrap().contains("archives"));
        let mut b2 = b.clone();
        b2.archives.push(ArchiveInfo {
            role: "train".into(),
            file: "ILSVRC2012_img_train.tar".into(),
            bytes: 147_897_477_120,
            md5: None,
        });
        let text = serde_json::to_string(&b2).unwrap();
        assert!(text.contains("\"archives\"") && !text.contains("md5"), "{text}");
        assert_eq!(serde_json::from_str::<BuildInfo>(&text).unwrap(), b2);
    }
}
