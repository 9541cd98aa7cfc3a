//! The devkit (`ILSVRC2012_devkit_t12.tar.gz`, as downloaded, or its unpacked folder):
//! `data/meta.mat`, whose struct array `synsets` numbers the classes (the devkit IDs
//! the val ground truth uses), and `data/ILSVRC2012_validation_ground_truth.txt`.
//! The `.tar.gz` is small and read as a stream; only those two members are kept.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Sniffed;
use crate::mat5::{self, Value};

pub const META_MAT: &str = "data/meta.mat";
pub const GROUND_TRUTH: &str = "data/ILSVRC2012_validation_ground_truth.txt";

/// One entry of `synsets`.
#[derive(Debug, Clone, PartialEq)]
pub struct Synset {
    pub id: u32,
    pub wnid: String,
    pub words: String,
    pub num_children: u32,
}

impl Synset {
    /// A class of the challenge (a leaf of the hierarchy).
    pub fn is_leaf(&self) -> bool {
        self.num_children == 0
    }
}

#[derive(Debug, Clone)]
pub struct Devkit {
    pub synsets: Vec<Synset>,
    /// The ground truth's text (one devkit ID per val image, in file order), when the
    /// devkit holds it.
    pub ground_truth: Option<String>,
}

impl Devkit {
    /// Devkit ID -> wnid, for the leaves.
    pub fn id_to_wnid(&self) -> HashMap<usize, String> {
        self.synsets.iter().filter(|s| s.is_leaf()).map(|s| (s.id as usize, s.wnid.clone())).collect()
    }

    /// wnid -> words (the class names).
    pub fn names(&self) -> HashMap<String, String> {
        self.synsets.iter().map(|s| (s.wnid.clone(), s.words.clone())).collect()
    }
}

/// Reads a devkit given as its `.tar.gz` (or `.tar`), or as the unpacked folder.
pub fn read(path: &Path) -> Result<Devkit> {
    let (meta, gt) = if path.is_dir() {
        let find = |rel: &str| -> Option<std::path::PathBuf> {
            [path.join(rel), path.join("ILSVRC2012_devkit_t12").join(rel)].into_iter().find(|p| p.is_file())
        };
        let meta =
            find(META_MAT).with_context(|| format!("{}: no {META_MAT} in this devkit folder", path.display()))?;
        let meta = std::fs::read(&meta).with_context(|| format!("reading {}", meta.display()))?;
        let gt = match find(GROUND_TRUTH) {
            Some(p) => Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        };
        (meta, gt)
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader: Box<dyn Read> = match Sniffed::of_file(path)? {
            Sniffed::Gzip => Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))),
            Sniffed::Tar => Box::new(std::io::BufReader::new(file)),
            other => bail!(
                "{}: the devkit should be ILSVRC2012_devkit_t12.tar.gz (a gzip-compressed tar), or its unpacked \
                 folder; this file is {}",
                path.display(),
                match other {
                    Sniffed::Zip => "a zip",
                    _ => "neither",
                }
            ),
        };
        let mut archive = tar::Archive::new(reader);
        let (mut meta, mut gt) = (None, None);
        let entries = archive.entries().with_context(|| format!("reading the devkit {}", path.display()))?;
        for entry in entries {
            let mut entry = entry.with_context(|| {
                format!("reading the devkit {}: the archive is damaged or truncated; download it again", path.display())
            })?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let slot = if name.ends_with(META_MAT) {
                &mut meta
            } else if name.ends_with(GROUND_TRUTH) {
                &mut gt
            } else {
                continue;
            };
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).with_context(|| {
                format!(
                    "reading {name} from the devkit {}: the archive is truncated; download it again",
                    path.display()
                )
            })?;
            *slot = Some(bytes);
        }
        let meta = meta.with_context(|| {
            format!("{}: no {META_MAT} in this archive (is it ILSVRC2012_devkit_t12.tar.gz?)", path.display())
        })?;
        (meta, gt.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let synsets = synsets(&meta).with_context(|| format!("reading {META_MAT} of the devkit {}", path.display()))?;
    Ok(Devkit { synsets, ground_truth: gt })
}

/// The struct array `synsets` of a meta.mat: its ID, wnid, words and number of
/// children (missing `num_children` means every entry is a leaf).
pub fn synsets(meta_mat: &[u8]) -> Result<Vec<Synset>> {
    let v = mat5::read_variable(meta_mat, "synsets")?;
    let Value::Struct { fields, elements, .. } = v else {
        bail!("`synsets` is a {} array, not a struct array", v.kind());
    };
    let col = |name: &str| fields.iter().position(|f| f == name);
    let id = col("ILSVRC2012_ID").context("`synsets` has no field ILSVRC2012_ID")?;
    let wnid = col("WNID").context("`synsets` has no field WNID")?;
    let (words, children) = (col("words"), col("num_children"));
    let mut out = Vec::with_capacity(elements.len());
    let mut seen = HashMap::new();
    for (i, el) in elements.iter().enumerate() {
        let num = |f: usize, what: &str| -> Result<u32> {
            let x = el[f].scalar().with_context(|| format!("synsets({}).{what} is not a number", i + 1))?;
            if x < 0.0 || x.fract() != 0.0 || x > u32::MAX as f64 {
                bail!("synsets({}).{what} is {x}, not a whole number", i + 1);
            }
            Ok(x as u32)
        };
        let s = Synset {
            id: num(id, "ILSVRC2012_ID")?,
            wnid: el[wnid].text().with_context(|| format!("synsets({}).WNID is not text", i + 1))?.trim().to_string(),
            words: match words {
                Some(f) => el[f].text().unwrap_or_default(),
                None => String::new(),
            },
            num_children: match children {
                Some(f) => num(f, "num_children")?,
                None => 0,
            },
        };
        if let Some(j) = seen.insert(s.id, i) {
            bail!("synsets({}) and synsets({}) have the same ILSVRC2012_ID {}", j + 1, i + 1, s.id);
        }
        out.push(s);
    }
    if out.is_empty() {
        bail!("`synsets` is empty");
    }
    Ok(out)
}
