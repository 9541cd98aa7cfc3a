//! Unpacked ImageNet folders.
//!
//! - train: `train/<wnid>/*.JPEG` (the official train tarballs unpacked);
//! - val as class folders: `val/<wnid>/*.JPEG` (after the common valprep script);
//! - val flat, `val/ILSVRC2012_val_00000001.JPEG ...`, labelled by `LOC_val_solution.csv`
//!   (Kaggle's; the label is the first token of `PredictionString`), or by the devkit's
//!   `ILSVRC2012_validation_ground_truth.txt`, whose IDs are in the devkit's own order:
//!   then `--devkit` (the devkit's `.tar.gz` or folder, read for `meta.mat`) or
//!   `--devkit-synsets` (the wnid of each ID, one per line) gives the wnid of each ID.
//!
//! Both `ROOT/{train,val}` and Kaggle's `ROOT/ILSVRC/Data/CLS-LOC/{train,val}` are found.
//! Class names come from `LOC_synset_mapping.txt` when present.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use alexnet_shared::{parse_synset_mapping, ClassIndex};
use anyhow::{bail, Context, Result};

use super::labels::{self, Candidate, GROUND_TRUTH_TXT, SOLUTION_CSV, SYNSET_MAPPING};
use super::{is_hidden, InputOptions, Inputs, Item, ListReject, Source};

/// Whether `root` holds a train folder (`train/` or Kaggle's `ILSVRC/Data/CLS-LOC/train/`).
pub fn has_train_folder(root: &Path) -> bool {
    root.join("train").is_dir() || root.join("ILSVRC/Data/CLS-LOC/train").is_dir()
}

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
            train.push(Item { key, label, source: Source::File(f) });
        }
    }
    if train.is_empty() {
        bail!("{}: the class folders hold no files", train_dir.display());
    }

    let (val, list_rejects, val_layout) = match &val_dir {
        None => (Vec::new(), Vec::new(), "none (no val folder)".to_string()),
        Some(dir) => list_val(dir, &classes, opt, &find)?,
    };
    Ok(Inputs {
        classes,
        names,
        train,
        val,
        list_rejects,
        has_val: val_dir.is_some(),
        val_layout,
        source: opt.root.display().to_string(),
        archives: Vec::new(),
        archive_info: Vec::new(),
        notes: Vec::new(),
        indexed: 0,
        index_seconds: 0.0,
    })
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
    if entries.iter().any(|e| e.is_dir()) {
        for d in entries.iter().filter(|e| e.is_dir()) {
            let wnid = file_name(d);
            let label = classes
                .index(&wnid)
                .with_context(|| format!("val class folder {wnid} ({}) is not a class of train", d.display()))?
                as i16;
            for f in image_files(d)?.into_iter().take(take) {
                items.push(Item { key: format!("{wnid}/{}", file_name(&f)), label, source: Source::File(f) });
            }
        }
        return Ok((items, Vec::new(), "class folders".into()));
    }

    // Flat: labels from a file.
    let candidates: Vec<Candidate> = entries
        .into_iter()
        .filter(|e| e.is_file() && !is_hidden(&file_name(e)))
        .map(|f| Candidate { name: file_name(&f), path: f.display().to_string(), source: Source::File(f) })
        .collect();
    let labels_path =
        find(&opt.val_labels, SOLUTION_CSV).or_else(|| find(&None, GROUND_TRUTH_TXT)).with_context(|| {
            format!(
                "{} is flat (no class folders) and no labels were found: give --val-labels \
                 {SOLUTION_CSV} or {GROUND_TRUTH_TXT} (with --devkit)",
                dir.display()
            )
        })?;
    let text = std::fs::read_to_string(&labels_path).with_context(|| format!("reading {}", labels_path.display()))?;
    let (by_stem, layout): (HashMap<String, String>, String) = if labels_path.extension().is_some_and(|e| e == "csv") {
        (
            labels::parse_solution_csv(&text).with_context(|| format!("parsing {}", labels_path.display()))?,
            format!("flat, labels from {}", labels_path.display()),
        )
    } else {
        let ids = devkit_ids(opt, &labels_path)?;
        (
            labels::parse_ground_truth(&text, &ids, labels::stems(&candidates))
                .with_context(|| format!("parsing {}", labels_path.display()))?,
            format!("flat, devkit labels from {}", labels_path.display()),
        )
    };
    let (items, rejects) = labels::label_flat(
        candidates,
        &by_stem,
        classes,
        take,
        &labels_path.display().to_string(),
        &file_name(&labels_path),
    )?;
    Ok((items, rejects, layout))
}

/// Devkit ID -> wnid for a ground-truth file: from `--devkit` (meta.mat) or from
/// `--devkit-synsets`.
fn devkit_ids(opt: &InputOptions, labels_path: &Path) -> Result<HashMap<usize, String>> {
    if let Some(devkit) = &opt.devkit {
        return Ok(crate::archive::devkit::read(devkit)?.id_to_wnid());
    }
    let synsets = opt.devkit_synsets.as_ref().with_context(|| {
        format!(
            "{} holds devkit IDs, which are not in sorted-wnid order: give --devkit \
             ILSVRC2012_devkit_t12.tar.gz (its meta.mat numbers the classes), or --devkit-synsets FILE with \
             the wnid of each ID, one per line",
            labels_path.display()
        )
    })?;
    let text = std::fs::read_to_string(synsets).with_context(|| format!("reading {}", synsets.display()))?;
    Ok(labels::id_list(&text))
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
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && !is_hidden(&file_name(p))).collect())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
