//! `dataset.json`: the manifest of a built dataset (format v1).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::Split;

pub const FORMAT_VERSION: u32 = 1;
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
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg => "jpeg",
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
    pub image_size: u32,
    pub encoding: Encoding,
    pub classes: Vec<ClassEntry>,
    pub splits: BTreeMap<String, SplitEntry>,
    pub stats: PixelStatsSummary,
    pub mean_image: String,
    pub rejected: u64,
    pub build: BuildInfo,
}

impl Manifest {
    /// Reads and checks `DIR/dataset.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::Manifest { path: path.clone(), message: e.to_string() })?;
        m.validate().map_err(|message| Error::Manifest { path, message })?;
        Ok(m)
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

    fn validate(&self) -> std::result::Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} is not supported (this program reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.image_size as usize != crate::IMAGE_SIDE {
            return Err(format!("image_size {} (expected {})", self.image_size, crate::IMAGE_SIDE));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.index != i {
                return Err(format!("class {} ({}) has index {}", i, c.wnid, c.index));
            }
            if i > 0 && self.classes[i - 1].wnid >= c.wnid {
                return Err(format!("classes are not in sorted wnid order at {}", c.wnid));
            }
        }
        for (name, split) in &self.splits {
            let sum: u64 = split.shards.iter().map(|s| s.rows).sum();
            if sum != split.rows {
                return Err(format!("split {name}: shards hold {sum} rows, the split says {}", split.rows));
            }
            for s in &split.shards {
                if s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                    return Err(format!("shard file name {:?} is not a plain file name", s.file));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
