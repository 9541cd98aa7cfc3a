//! Finds the images of the input and their labels, in whichever form the user has
//! ImageNet:
//!
//! - the three official downloads, read in place ([`archives`]): `ILSVRC2012_img_train.tar`
//!   (an outer tar of class tars), `ILSVRC2012_img_val.tar` (flat) and
//!   `ILSVRC2012_devkit_t12.tar.gz` (`meta.mat` and the val ground truth);
//! - Kaggle's `imagenet-object-localization-challenge.zip`, read in place ([`kaggle`]);
//! - unpacked folders ([`folders`]): `train/<wnid>/*.JPEG`, val in class folders or
//!   flat with `LOC_val_solution.csv` or the devkit's ground truth;
//! - and, for the paper's Figure 1, CIFAR-10's binary archive ([`cifar`]): images that
//!   are already pixels, not files to decode.
//!
//! Every layout gives the same keys (`<wnid>/<file>` for train, the file name for a
//! flat val) in the same sorted order, so an archive and its unpacked folders build
//! byte-identical shards.

pub mod archives;
pub mod cifar;
pub mod folders;
pub mod kaggle;
pub mod labels;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alexnet_shared::{ArchiveInfo, ClassIndex};
use anyhow::{bail, Result};

use crate::archive::{Mapped, Sniffed};

/// Where the inputs are; everything optional is searched for under `root`.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// A folder (unpacked ImageNet, or the folder holding the downloaded archives), or a
    /// file (Kaggle's zip, or the train tar).
    pub root: PathBuf,
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    /// `LOC_val_solution.csv` or `ILSVRC2012_validation_ground_truth.txt`.
    pub val_labels: Option<PathBuf>,
    pub synset_mapping: Option<PathBuf>,
    /// Devkit ID -> wnid, one wnid per line, line 1 = ID 1.
    pub devkit_synsets: Option<PathBuf>,
    pub limit_per_class: Option<usize>,
    /// `ILSVRC2012_img_train.tar`, when not found in `root`.
    pub train_archive: Option<PathBuf>,
    /// `ILSVRC2012_img_val.tar`, when not found in `root`.
    pub val_archive: Option<PathBuf>,
    /// `ILSVRC2012_devkit_t12.tar.gz` (or its unpacked folder), when not found in `root`.
    pub devkit: Option<PathBuf>,
    /// Check each archive's md5 (the official ones against the published md5).
    pub check_md5: bool,
    /// Progress bars (the md5 check).
    pub progress: bool,
}

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The path relative to its split folder, with `/` separators.
    pub key: String,
    pub label: i16,
    pub source: Source,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// A member of an archive (an index into [`Inputs::archives`]).
    Member(Member),
    /// An image already decoded: an index into [`Inputs::decoded`]'s images.
    Pixels(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub archive: u16,
    pub offset: u64,
    /// Bytes in the archive.
    pub stored_size: u64,
    /// Bytes of the image (differs from `stored_size` when deflated).
    pub size: u64,
    pub deflated: bool,
    /// The zip's CRC-32 of the image bytes (tar has none).
    pub crc32: Option<u32>,
}

/// An input that cannot be used, found while listing (before any decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListReject {
    /// The input, as rejects.tsv names it.
    pub path: String,
    pub reason: String,
}

/// An archive the members are read from, and how its members are named in messages.
pub struct ArchiveSource {
    pub mapped: Arc<Mapped>,
    /// The member name of a key: class tars (`<wnid>.tar/<file>`), or a prefix.
    pub naming: Naming,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// `<wnid>/<file>` is `<wnid>.tar/<file>`.
    ClassTars,
    /// The member is this prefix and the key.
    Prefix(String),
}

pub struct Inputs {
    pub classes: ClassIndex,
    pub names: BTreeMap<String, String>,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    /// Inputs found unusable while listing (a val image without a label, a zip member
    /// compressed with a method not read here).
    pub list_rejects: Vec<ListReject>,
    /// Whether the input has a val split (an empty one still appears in the manifest).
    pub has_val: bool,
    /// How val was labelled, for the summary.
    pub val_layout: String,
    /// What the input is, for the manifest's `build.source`.
    pub source: String,
    pub archives: Vec<ArchiveSource>,
    /// The archives read, for the manifest (`build.archives`).
    pub archive_info: Vec<ArchiveInfo>,
    /// Checks of the official archives' counts, for the summary.
    pub notes: Vec<String>,
    /// Members indexed and the seconds the index pass took (0 for folders).
    pub indexed: u64,
    pub index_seconds: f64,
    /// The images of [`Source::Pixels`] items (CIFAR-10's records).
    pub decoded: Option<Decoded>,
}

/// Images that come as pixels, not as files: CIFAR-10's records.
pub struct Decoded {
    /// The file they were read from, for messages.
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// HWC RGB, `width * height * 3` bytes each.
    pub images: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("classes", &self.classes.len())
            .field("train", &self.train.len())
            .field("val", &self.val.len())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Inputs {
    /// The bytes of an input image: a file's, or a member's straight out of the map
    /// (borrowed when stored, inflated when deflated). Errors are reject reasons.
    pub fn read(&self, item: &Item) -> Result<Cow<'_, [u8]>, String> {
        match &item.source {
            Source::Pixels(_) => Err("internal error: an image of pixels has no file bytes".into()),
            Source::File(p) => std::fs::read(p).map(Cow::Owned).map_err(|e| format!("unreadable: {e}")),
            Source::Member(m) => {
                let map = self.archives[m.archive as usize].mapped.bytes();
                // The extent was checked against the file's length when indexing.
                let stored = &map[m.offset as usize..(m.offset + m.stored_size) as usize];
                let bytes: Cow<[u8]> = if m.deflated {
                    let mut out = Vec::with_capacity(m.size as usize);
                    flate2::read::DeflateDecoder::new(stored)
                        .take(m.size + 1)
                        .read_to_end(&mut out)
                        .map_err(|e| format!("damaged archive member: it does not inflate ({e})"))?;
                    if out.len() as u64 != m.size {
                        return Err(format!(
                            "damaged archive member: it inflates to {} bytes, its header says {}",
                            out.len(),
                            m.size
                        ));
                    }
                    Cow::Owned(out)
                } else {
                    Cow::Borrowed(stored)
                };
                if let Some(want) = m.crc32 {
                    let got = crc32fast::hash(&bytes);
                    if got != want {
                        return Err(format!("damaged archive member: CRC-32 {got:08x}, its header says {want:08x}"));
                    }
                }
                Ok(bytes)
            }
        }
    }

    /// Starts the disk reads of these archive members, so that they overlap the decode
    /// of the shard before them (files are left to the file system's own readahead).
    pub fn prefetch(&self, items: &[Item]) {
        for item in items {
            if let Source::Member(m) = &item.source {
                self.archives[m.archive as usize].mapped.will_need(m.offset, m.stored_size);
            }
        }
    }

    /// The image of a [`Source::Pixels`] item; None for files and members (decoded
    /// from [`Inputs::read`]'s bytes).
    pub fn pixels(&self, item: &Item) -> Option<image::RgbImage> {
        let Source::Pixels(i) = item.source else { return None };
        let d = self.decoded.as_ref()?;
        image::RgbImage::from_raw(d.width, d.height, d.images.get(i as usize)?.clone())
    }

    /// How rejects.tsv names an input: a file's path, or `ARCHIVE:MEMBER`.
    pub fn describe(&self, item: &Item) -> String {
        match &item.source {
            Source::File(p) => p.display().to_string(),
            Source::Pixels(_) => match &self.decoded {
                Some(d) => format!("{}:{}", d.path.display(), item.key),
                None => item.key.clone(),
            },
            Source::Member(m) => {
                let a = &self.archives[m.archive as usize];
                let member = match &a.naming {
                    Naming::ClassTars => match item.key.split_once('/') {
                        Some((w, f)) => format!("{w}.tar/{f}"),
                        None => item.key.clone(),
                    },
                    Naming::Prefix(p) => format!("{p}{}", item.key),
                };
                format!("{}:{member}", a.mapped.path().display())
            }
        }
    }
}

/// Finds the inputs in the layout they are in.
pub fn discover(opt: &InputOptions) -> Result<Inputs> {
    let archives_given = opt.train_archive.is_some() || opt.val_archive.is_some();
    if cifar::is_cifar(opt) {
        return cifar::discover(opt);
    }
    if opt.root.is_file() {
        return match Sniffed::of_file(&opt.root)? {
            Sniffed::Zip => kaggle::discover(opt),
            Sniffed::Tar => {
                // The train tar given as --input: the rest is looked for beside it.
                let mut o = opt.clone();
                o.train_archive.get_or_insert(opt.root.clone());
                o.root = opt.root.parent().map(Path::to_path_buf).unwrap_or_default();
                archives::discover(&o)
            }
            s if s.compression().is_some() => {
                let name = opt.root.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
                if name.contains("devkit") {
                    bail!(
                        "--input {} is the devkit: give the folder that holds the downloaded archives as --input, \
                         or the devkit with --devkit",
                        opt.root.display()
                    )
                }
                Err(crate::archive::refuse_compressed(&opt.root, "file", s))
            }
            _ => bail!(
                "--input {} is a file that is neither a zip (Kaggle's) nor a tar (ILSVRC2012_img_train.tar): give \
                 the folder that holds the downloaded archives, or the unpacked ImageNet folder",
                opt.root.display()
            ),
        };
    }
    if !opt.root.exists() && !archives_given {
        bail!("--input {}: no such file or folder", opt.root.display());
    }
    for (flag, given) in [("--train-dir", &opt.train_dir), ("--val-dir", &opt.val_dir)] {
        if let Some(p) = given.as_ref().filter(|p| p.is_file()) {
            bail!(
                "{flag} {} is a file, not a folder: give a downloaded archive with --{}-archive",
                p.display(),
                if flag == "--train-dir" { "train" } else { "val" }
            );
        }
    }
    if archives_given {
        return archives::discover(opt);
    }
    if opt.train_dir.is_some() || folders::has_train_folder(&opt.root) {
        return folders::discover(opt);
    }
    if archives::find_in(&opt.root).train.is_some() {
        return archives::discover(opt);
    }
    if let Some(zip) = kaggle::find_in(&opt.root) {
        let mut o = opt.clone();
        o.root = zip;
        return kaggle::discover(&o);
    }
    bail!(
        "{}: no ImageNet found: expected the downloaded ILSVRC2012_img_train.tar (with ILSVRC2012_img_val.tar and \
         ILSVRC2012_devkit_t12.tar.gz) or Kaggle's imagenet-object-localization-challenge.zip in this folder, or \
         unpacked folders train/<wnid>/*.JPEG (or ILSVRC/Data/CLS-LOC/train); or name them with --train-archive, \
         --val-archive, --devkit, --train-dir (for CIFAR-10: cifar-10-binary.tar.gz, or cifar-10-batches-bin/)",
        opt.root.display()
    )
}

/// Hidden files (`.DS_Store`, macOS `._*` twins) are not inputs.
pub(crate) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}
