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
//!
//! Every entry of a class folder is either an input or a line in rejects.tsv: a dangling
//! symlink, a symlink loop, a FIFO, a device, a folder named like an image and a file
//! name that is not UTF-8 are rejected with the reason (and count in the reject rate;
//! nothing is opened to find out). A class folder that is empty, a symlink loop, or
//! named in non-UTF-8 is refused (torchvision's ImageFolder refuses an empty class).

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
    let class_dirs = class_folders(&train_dir)?;
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
    let mut list_rejects = Vec::new();
    for dir in &class_dirs {
        let wnid = file_name(dir);
        let label = classes.index(&wnid).expect("class from train") as i16;
        let (files, rejects) = image_files(dir)?;
        if files.is_empty() {
            bail!(
                "{}: the class folder holds no images{}: every class needs train images (torchvision's \
                 ImageFolder refuses an empty class too); remove the folder or add its images",
                dir.display(),
                if rejects.is_empty() { String::new() } else { format!(" ({} unusable entries)", rejects.len()) }
            );
        }
        list_rejects.extend(rejects);
        let take = opt.limit_per_class.unwrap_or(usize::MAX);
        for f in files.into_iter().take(take) {
            let key = format!("{wnid}/{}", file_name(&f));
            train.push(Item { key, label, source: Source::File(f) });
        }
    }
    if train.is_empty() {
        bail!("{}: the class folders hold no files", train_dir.display());
    }

    let (val, val_rejects, val_layout) = match &val_dir {
        None => (Vec::new(), Vec::new(), "none (no val folder)".to_string()),
        Some(dir) => list_val(dir, &classes, opt, &find)?,
    };
    list_rejects.extend(val_rejects);
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
        decoded: None,
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
        let mut rejects = Vec::new();
        for d in class_folders(dir)? {
            let wnid = file_name(&d);
            let label = classes
                .index(&wnid)
                .with_context(|| format!("val class folder {wnid} ({}) is not a class of train", d.display()))?
                as i16;
            let (files, r) = image_files(&d)?;
            rejects.extend(r);
            for f in files.into_iter().take(take) {
                items.push(Item { key: format!("{wnid}/{}", file_name(&f)), label, source: Source::File(f) });
            }
        }
        return Ok((items, rejects, "class folders".into()));
    }

    // Flat: labels from a file.
    let (files, entry_rejects) = image_files(dir)?;
    let candidates: Vec<Candidate> = files
        .into_iter()
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
    let (items, mut rejects) = labels::label_flat(
        candidates,
        &by_stem,
        classes,
        take,
        &labels_path.display().to_string(),
        &file_name(&labels_path),
    )?;
    rejects.extend(entry_rejects);
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

/// The class folders of a split folder, sorted: its sub-folders (following symlinks).
/// A symlink that leads nowhere or into a loop, and a name that is not UTF-8, are
/// refused (they would be a missing or a lossy, colliding class); files are not classes.
fn class_folders(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for p in read_dir_sorted(dir)? {
        let Some(name) = p.file_name() else { continue };
        if is_hidden(&name.to_string_lossy()) {
            continue;
        }
        let link = std::fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => continue,
            Err(e) if link => bail!("{}: a symlink that cannot be followed ({e}): fix or remove it", p.display()),
            Err(e) => bail!("{}: {e}", p.display()),
        }
        if name.to_str().is_none() {
            bail!(
                "{}: the class folder name is not UTF-8: rename it to its wnid (names that differ only in \
                 invalid bytes would be one class)",
                p.display()
            );
        }
        v.push(p);
    }
    Ok(v)
}

/// The image files of a class (or flat val) folder, sorted, hidden files skipped, and
/// the entries that cannot be inputs with the reason. Nothing is opened.
fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<ListReject>)> {
    let mut files = Vec::new();
    let mut rejects = Vec::new();
    for p in read_dir_sorted(dir)? {
        let Some(name) = p.file_name() else { continue };
        if is_hidden(&name.to_string_lossy()) {
            continue;
        }
        match entry_problem(&p) {
            None => files.push(p),
            Some(reason) => rejects.push(ListReject { path: p.display().to_string(), reason }),
        }
    }
    Ok((files, rejects))
}

/// Why an entry of a class folder cannot be an input, or None for a regular file with
/// a UTF-8 name.
fn entry_problem(p: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let link = std::fs::symlink_metadata(p).map(|m| m.file_type().is_symlink()).unwrap_or(false);
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(40) => return Some("not a file: a symlink loop".into()),
        Err(e) if link && e.kind() == std::io::ErrorKind::NotFound => {
            return Some("not a file: a dangling symlink".into())
        }
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    let t = meta.file_type();
    let via = if link { "a symlink to " } else { "" };
    let what = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(w) = what {
        return Some(format!("not a file: {via}{w}"));
    }
    if p.file_name().and_then(|n| n.to_str()).is_none() {
        return Some("bad name: the file name is not UTF-8; rename it".into());
    }
    None
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
