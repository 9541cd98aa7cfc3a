//! Dataset format v1, the contract between `preprocess`, `trainer`, `eval` and any user
//! tool (see `DESIGN.md` in the shared folder beside the checkout, "Dataset format v1").
//!
//! A built dataset is one folder:
//!
//! - `dataset.json`: the [`Manifest`] (classes, splits and shards with sha256, pixel
//!   statistics and the PCA of the RGB covariance, build parameters);
//! - `train-NNNNN.parquet`, `val-NNNNN.parquet`: shards with columns `image`
//!   (256x256x3 HWC RGB bytes, raw or JPEG), `label` (int16), `key` (utf8) and, from
//!   format 2, `crc32c` (uint32, checked at every read), laid out so
//!   that an image can be read straight out of a memory map ([`ShardReader`]);
//! - `mean_image.npy`: the per-pixel train mean (float32, 256x256x3 HWC; centre-square
//!   datasets only);
//!
//! Whole-image datasets (format 3, [`Layout::Whole`]) keep each image whole at its own
//! size (aspect kept), with per-row `height` and `width` columns, and no mean image.
//! Mixed datasets (format 4, [`Encoding::Mixed`]) keep part of each shard's rows raw
//! and the rest JPEG, with a per-row `raw` column ([`ImageRef::jpeg`] says which).
//! - `rejects.tsv`: every input that could not be used, with the reason.
//!
//! This crate has no libtorch dependency.
//!
//! ```no_run
//! use alexnet_shared::{Dataset, Split};
//! let ds = Dataset::open("data/imagenet".as_ref())?;
//! let train = ds.split(Split::Train)?;
//! let img = train.get(0)?; // bytes borrowed from the memory map, no copy
//! println!("{} label {} {} bytes", img.key, img.label, img.bytes.len());
//! # Ok::<(), alexnet_shared::Error>(())
//! ```

pub mod build_info;
mod classes;
mod error;
mod fsutil;
pub mod guard;
mod manifest;
mod open;
pub mod progress;
mod reader;
pub mod say;
mod stats;
mod writer;

pub use classes::{parse_synset_mapping, ClassIndex};
pub use error::{Error, Result};
pub use fsutil::{atomic_write, sha256_file, HashingWriter, OutputFile};
pub use manifest::{
    needed_version, ArchiveInfo, BuildInfo, Chroma, ClassEntry, Encoding, Layout, Manifest, PcaStats,
    PixelStatsSummary, ShardEntry, ShardKind, SplitEntry, WholeResize, FORMAT_VERSION, MANIFEST_FILE, MEAN_IMAGE_FILE,
    OLDEST_FORMAT_VERSION, REJECTS_FILE, WHOLE_MAX_PIXELS_PER_SIDE2,
};
pub use open::{open_regular, read_regular};
pub use reader::{
    max_shard_bytes, row_crc, row_crc_full, row_crc_sized, Dataset, ImageRef, RowCheck, ShardReader, SplitReader,
    CRC_COLUMN, HEIGHT_COLUMN, RAW_COLUMN, WIDTH_COLUMN,
};
pub use stats::{
    accumulate_region, parse_mean_image, read_mean_image, write_mean_image, Moments, PixelStats, MEAN_IMAGE_MAX_BYTES,
};
pub use writer::{shard_file_name, ShardImages, ShardRows, ShardWriter, ROW_GROUP_ROWS};

/// Side of the stored images (paper section 2: "down-sampled the images to a fixed
/// resolution of 256 x 256").
pub const IMAGE_SIDE: usize = 256;
/// Bytes of one raw image: 256 x 256 x 3, HWC, RGB.
pub const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE * 3;

/// Python's `round(margin / 2)` (half to even) for a non-negative integer margin: the
/// offset of torchvision's `CenterCrop` (`round((side - crop) / 2)`), used by the
/// dataset build (256 from the rescaled image) and the center and ten crops (crops from
/// 256). Python: `[round(m / 2) for m in range(8)] == [0, 0, 1, 2, 2, 2, 3, 4]`.
pub fn center_offset(margin: usize) -> usize {
    let (q, r) = (margin / 2, margin % 2);
    if r == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// The two splits of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::Train, Split::Val];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn center_offset_rounds_half_to_even_like_python() {
        let got: Vec<usize> = (0..8).map(super::center_offset).collect();
        assert_eq!(got, [0, 0, 1, 2, 2, 2, 3, 4]);
        // torchvision CenterCrop(227) and (224) of 256: 14 and 16
        assert_eq!((super::center_offset(29), super::center_offset(32)), (14, 16));
    }
}

/// The arguments of `cmd` and of its subcommands that have no help text (clap's own
/// `--help` and `--version` aside), as `path --flag`: each binary's test asks for none
/// (the first-use review found flags with empty help).
#[cfg(feature = "clap")]
pub fn flags_without_help(cmd: &clap::Command) -> Vec<String> {
    fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in c.get_arguments() {
            let id = a.get_id().as_str();
            if id != "help" && id != "version" && a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} --{}", a.get_long().unwrap_or(id)));
            }
        }
        for s in c.get_subcommands() {
            walk(s, &format!("{path} {}", s.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(cmd, cmd.get_name(), &mut missing);
    missing
}
