//! Finds the images of an ImageNet-style input folder and their labels.
//!
//! Layouts that work (all the ones users have):
//! - train: `train/<wnid>/*.JPEG` (the official train tarballs unpacked);
//! - val as class folders: `val/<wnid>/*.JPEG` (after the common valprep script);
//! - val flat, `val/ILSVRC2012_val_00000001.JPEG ...`, labelled by `LOC_val_solution.csv`
//!   (Kaggle's; the label is the first token of `PredictionString`), or by the devkit's
//!   `ILSVRC2012_validation_ground_truth.txt`, whose IDs are in the devkit's own order:
//!   then `--devkit-synsets` gives the wnid of each ID, one per line (see the README for
//!   the one-line conversion from `meta.mat`).
//!
//! Both `ROOT/{train,val}` and Kaggle's `ROOT/ILSVRC/Data/CLS-LOC/{train,val}` are found.
//! Class names come from `LOC_synset_mapping.txt` when present.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use alexnet_shared::{parse_synset_mapping, ClassIndex};
use anyhow::{bail, Context, Result};

/// Where the inputs are; everything optional is searched for under `root`.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    pub root: PathBuf,
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    /// `LOC_val_solution.csv` or `ILSVRC2012_validation_ground_truth.txt`.
    pub val_labels: Option<PathBuf>,
    pub synset_mapping: Option<PathBuf>,
    /// Devkit ID -> wnid, one wnid per line, line 1 = ID 1.
    pub devkit_synsets: Option<PathBuf>,
    pub limit_per_class: Option<usize>,
}

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    /// The path relative to its split folder, with `/` separators.
    pub key: String,
    pub label: i16,
}

/// An input that cannot be used, found while listing (before any decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListReject {
    pub key: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct Inputs {
    pub classes: ClassIndex,
    pub names: BTreeMap<String, String>,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    pub val_rejects: Vec<ListReject>,
    pub train_dir: PathBuf,
    pub val_dir: Option<PathBuf>,
    /// How val was labelled, for the summary.
    pub val_layout: String,
}

const SOLUTION_CSV: &str = "LOC_val_solution.csv";
const GROUND_TRUTH_TXT: &str = "ILSVRC2012_validation_ground_truth.txt";
const SYNSET_MAPPING: &str = "LOC_synset_mapping.txt";

pub fn discover(opt: &InputOptions) -> Result<Inputs> {
    let kaggle = opt.root.join("ILSVRC/Data/CLS-LOC");
    let pick = |given: &Option<PathBuf>, name: &str| -> Option<PathBuf> {
        given.clone().or_else(|| [opt.root.join(name), kaggle.join(name)].into_iter().find(|p| p.is_dir()))
    };
    let train_dir = pick(&opt.train_dir, "train").with_context(|| {
        format!(
            "no train folder: expected {}/train/<wnid>/*.JPEG (or ILSVRC/Data/CLS-LOC/train), or give --train-dir",
            opt.root.display()
        )
    })?;
    let val_dir = pick(&opt.val_dir, "val");
    let search_dirs: Vec<PathBuf> = {
        let mut v = vec![opt.root.clone()];
        if let Some(parent) = val_dir.as_ref().and_then(|d| d.parent()) {
            v.push(parent.to_path_buf());
        }
        v
    };
    let find = |given: &Option<PathBuf>, name: &str| -> Option<PathBuf> {
        given.clone().or_else(|| search_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
    };

    // Classes: the sub-folders of train.
    let mut class_dirs = Vec::new();
    for entry in read_dir_sorted(&train_dir)? {
        if entry.is_dir() {
            class_dirs.push(entry);
        }
    }
    let wnids: Vec<String> = class_dirs.iter().map(|d| file_name(d)).collect();
    let classes = ClassIndex::new(wnids.clone())
        .with_context(|| format!("{}: no class sub-folders (train/<wnid>/*.JPEG)", train_dir.display()))?;

    let names = match find(&opt.synset_mapping, SYNSET_MAPPING) {
        Some(p) => {
            parse_synset_mapping(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => BTreeMap::new(),
    };

    let mut train = Vec::new();
    for dir in &class_dirs {
        let wnid = file_name(dir);
        let label = classes.index(&wnid).expect("class from train") as i16;
        let files = image_files(dir)?;
        let take = opt.limit_per_class.unwrap_or(usize::MAX);
        for f in files.into_iter().take(take) {
            let key = format!("{wnid}/{}", file_name(&f));
            train.push(Item { path: f, key, label });
        }
    }
    if train.is_empty() {
        bail!("{}: the class folders hold no files", train_dir.display());
    }

    let (val, val_rejects, val_layout) = match &val_dir {
        None => (Vec::new(), Vec::new(), "none (no val folder)".to_string()),
        Some(dir) => list_val(dir, &classes, opt, &find)?,
    };
    Ok(Inputs { classes, names, train, val, val_rejects, train_dir, val_dir, val_layout })
}

fn list_val(
    dir: &Path,
    classes: &ClassIndex,
    opt: &InputOptions,
    find: &dyn Fn(&Option<PathBuf>, &str) -> Option<PathBuf>,
) -> Result<(Vec<Item>, Vec<ListReject>, String)> {
    let entries = read_dir_sorted(dir)?;
    let take = opt.limit_per_class.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut rejects = Vec::new();
    if entries.iter().any(|e| e.is_dir()) {
        for d in entries.iter().filter(|e| e.is_dir()) {
            let wnid = file_name(d);
            let label = classes
                .index(&wnid)
                .with_context(|| format!("val class folder {wnid} ({}) is not a class of train", d.display()))?
                as i16;
            for f in image_files(d)?.into_iter().take(take) {
                items.push(Item { key: format!("{wnid}/{}", file_name(&f)), path: f, label });
            }
        }
        return Ok((items, rejects, "class folders".into()));
    }

    // Flat: labels from a file.
    let files: Vec<PathBuf> = entries.into_iter().filter(|e| e.is_file() && !is_hidden(e)).collect();
    let labels_path =
        find(&opt.val_labels, SOLUTION_CSV).or_else(|| find(&None, GROUND_TRUTH_TXT)).with_context(|| {
            format!(
                "{} is flat (no class folders) and no labels were found: give --val-labels \
                 {SOLUTION_CSV} or {GROUND_TRUTH_TXT} (with --devkit-synsets)",
                dir.display()
            )
        })?;
    let text = std::fs::read_to_string(&labels_path).with_context(|| format!("reading {}", labels_path.display()))?;
    let (by_stem, layout): (HashMap<String, String>, String) = if labels_path.extension().is_some_and(|e| e == "csv") {
        (
            parse_solution_csv(&text).with_context(|| format!("parsing {}", labels_path.display()))?,
            format!("flat, labels from {}", labels_path.display()),
        )
    } else {
        let synsets = opt.devkit_synsets.as_ref().with_context(|| {
            format!(
                "{} holds devkit IDs, which are not in sorted-wnid order: give \
                     --devkit-synsets FILE with the wnid of each ID, one per line (README: \
                     'Validation labels from the devkit')",
                labels_path.display()
            )
        })?;
        let ids: Vec<String> = std::fs::read_to_string(synsets)
            .with_context(|| format!("reading {}", synsets.display()))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        (
            parse_ground_truth(&text, &ids, &files).with_context(|| format!("parsing {}", labels_path.display()))?,
            format!("flat, devkit labels from {}", labels_path.display()),
        )
    };
    // Every labelled wnid must be a train class.
    let mut unknown: Vec<&String> = by_stem.values().filter(|w| classes.index(w).is_none()).collect();
    unknown.sort();
    unknown.dedup();
    if let Some(w) = unknown.first() {
        bail!(
            "{}: val wnid {w} is not a class of train ({} unknown wnids in all)",
            labels_path.display(),
            unknown.len()
        );
    }
    let mut per_class: HashMap<i16, usize> = HashMap::new();
    for f in files {
        let name = file_name(&f);
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match by_stem.get(&stem) {
            Some(w) => {
                let label = classes.index(w).expect("checked above") as i16;
                let n = per_class.entry(label).or_default();
                if *n < take {
                    *n += 1;
                    items.push(Item { path: f, key: name, label });
                }
            }
            None => rejects
                .push(ListReject { key: name, reason: format!("no label: not listed in {}", file_name(&labels_path)) }),
        }
    }
    Ok((items, rejects, layout))
}

/// `ImageId,PredictionString` rows; the label is the first token of PredictionString.
pub fn parse_solution_csv(text: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("ImageId")) {
            continue;
        }
        let (id, pred) =
            line.split_once(',').with_context(|| format!("line {}: expected ImageId,PredictionString", i + 1))?;
        let wnid = pred.split_whitespace().next().with_context(|| format!("line {}: empty PredictionString", i + 1))?;
        out.insert(id.trim().to_string(), wnid.to_string());
    }
    Ok(out)
}

/// The devkit's ground truth: line i holds the devkit ID of the image numbered i
/// (`ILSVRC2012_val_{i:08}`); `ids[id - 1]` is that ID's wnid.
fn parse_ground_truth(text: &str, ids: &[String], files: &[PathBuf]) -> Result<HashMap<String, String>> {
    let labels: Vec<usize> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| l.parse::<usize>().with_context(|| format!("line {}: {l:?} is not an ID", i + 1)))
        .collect::<Result<_>>()?;
    let mut out = HashMap::new();
    for f in files {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let digits: String =
            stem.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
        let Ok(n) = digits.parse::<usize>() else { continue };
        let Some(&id) = n.checked_sub(1).and_then(|i| labels.get(i)) else { continue };
        let wnid = ids.get(id.wrapping_sub(1)).with_context(|| {
            format!("ID {id} (image {stem}) is not in the --devkit-synsets list of {} wnids", ids.len())
        })?;
        out.insert(stem, wnid.clone());
    }
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading folder {}", dir.display()))?;
    v.sort();
    Ok(v)
}

/// The regular files of a class folder, sorted, hidden files skipped.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && !is_hidden(p)).collect())
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solution_csv_first_token() {
        let m = parse_solution_csv(
            "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n",
        )
        .unwrap();
        assert_eq!(m["ILSVRC2012_val_00008726"], "n02119789");
    }

    #[test]
    fn ground_truth_uses_devkit_ids() {
        // Devkit order differs from sorted order: ID 1 is n2, ID 2 is n1.
        let ids = vec!["n2".to_string(), "n1".to_string()];
        let files = vec![PathBuf::from("ILSVRC2012_val_00000001.JPEG"), PathBuf::from("ILSVRC2012_val_00000002.JPEG")];
        let m = parse_ground_truth("2\n1\n", &ids, &files).unwrap();
        assert_eq!(m["ILSVRC2012_val_00000001"], "n1");
        assert_eq!(m["ILSVRC2012_val_00000002"], "n2");
        assert!(parse_ground_truth("3\n", &ids, &files).is_err());
    }
}
