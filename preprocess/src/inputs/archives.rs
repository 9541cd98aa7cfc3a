//! The three official downloads, read in place: `ILSVRC2012_img_train.tar` (an outer tar
//! of 1000 class tars `<wnid>.tar`), `ILSVRC2012_img_val.tar` (flat) and
//! `ILSVRC2012_devkit_t12.tar.gz` (`meta.mat` numbers the classes; the ground truth
//! labels val by those numbers).
//!
//! Found by name in the input folder (`*img_train*.tar`, `*img_val*.tar`,
//! `*devkit*.tar.gz`), or named with `--train-archive`, `--val-archive`, `--devkit`.
//! Files with the official names are checked against the published sizes before the
//! index pass, against the published md5s with `--check-md5`, and their counts against
//! the published ones (a note in the summary).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::progress::Progress;
use alexnet_shared::{parse_synset_mapping, ArchiveInfo, ClassIndex};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::labels::{self, Candidate, SOLUTION_CSV, SYNSET_MAPPING};
use super::{is_hidden, ArchiveSource, InputOptions, Inputs, Item, Member, Naming, Source};
use crate::archive::devkit::{self, Devkit};
use crate::archive::official::{self, thousands};
use crate::archive::tar_index::{index_members, TarMember};
use crate::archive::{refuse_compressed, Mapped, Sniffed};

/// The archives found in a folder by name.
#[derive(Debug, Default)]
pub struct Found {
    pub train: Option<PathBuf>,
    pub val: Option<PathBuf>,
    pub devkit: Option<PathBuf>,
}

const ARCHIVE_ENDINGS: [&str; 7] = [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar.zstd"];

/// Looks for the archives in `dir` by name (the official names first).
pub fn find_in(dir: &Path) -> Found {
    let Ok(rd) = std::fs::read_dir(dir) else { return Found::default() };
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let pick = |official: &str, part: &str, dirs_too: bool| -> Option<PathBuf> {
        let exact = dir.join(official);
        if exact.exists() {
            return Some(exact);
        }
        names
            .iter()
            .find(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
                n.contains(part)
                    && !n.starts_with('.')
                    && ((p.is_file() && ARCHIVE_ENDINGS.iter().any(|e| n.ends_with(e))) || (dirs_too && p.is_dir()))
            })
            .cloned()
    };
    Found {
        train: pick(official::TRAIN.name, "img_train", false),
        val: pick(official::VAL.name, "img_val", false),
        devkit: pick(official::DEVKIT.name, "devkit", true),
    }
}

/// A tar archive to read in place: checked by content and (official names) by size.
fn open_tar(path: &Path, flag: &str, what: &str) -> Result<Mapped> {
    if path.is_dir() {
        bail!(
            "{flag} {} is a folder: give the downloaded {what} (a .tar file), or the unpacked folder with --{}-dir",
            path.display(),
            if flag == "--train-archive" { "train" } else { "val" }
        );
    }
    let len = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?.len();
    official::check_size(path, len)?;
    match Sniffed::of_file(path)? {
        Sniffed::Tar => {}
        s if s.compression().is_some() => return Err(refuse_compressed(path, what, s)),
        Sniffed::Zip => bail!("{} is a zip, not a tar: give Kaggle's zip as --input FILE.zip", path.display()),
        _ => bail!("{} is not a tar archive (no tar header at its start): is it the {what}?", path.display()),
    }
    Mapped::open(path)
}

pub fn discover(opt: &InputOptions) -> Result<Inputs> {
    let found = if opt.root.is_dir() { find_in(&opt.root) } else { Found::default() };
    let train_path = opt.train_archive.clone().or(found.train).with_context(|| {
        format!(
            "no train archive: expected ILSVRC2012_img_train.tar in {}, or give --train-archive FILE",
            opt.root.display()
        )
    })?;
    let val_path = opt.val_archive.clone().or(found.val);
    let devkit_path = opt.devkit.clone().or(found.devkit);
    if let Some(d) = &devkit_path {
        if !d.exists() {
            bail!("--devkit {}: no such file or folder", d.display());
        }
    }
    let train_map = Arc::new(open_tar(&train_path, "--train-archive", "train archive")?);
    let val_map = match &val_path {
        Some(p) => Some(Arc::new(open_tar(p, "--val-archive", "val archive")?)),
        None => None,
    };

    // Integrity first: a damaged download is named before the index pass.
    let mut checked: Vec<(&str, &Path)> = vec![("train", &train_path)];
    checked.extend(val_path.as_deref().map(|p| ("val", p)));
    checked.extend(devkit_path.as_deref().filter(|p| p.is_file()).map(|p| ("devkit", p)));
    let archive_info = describe_archives(&checked, opt)?;

    let devkit = match &devkit_path {
        Some(p) => Some(devkit::read(p)?),
        None => None,
    };

    // The index pass.
    let t0 = Instant::now();
    train_map.advise(memmap2::Advice::Random);
    let by_class = index_train(&train_map, opt.progress)?;
    let mut indexed: u64 = by_class.values().map(|v| v.len() as u64 + 1).sum();
    let classes = ClassIndex::new(by_class.keys().cloned())
        .with_context(|| format!("{}: no class tars (<wnid>.tar) in the train archive", train_path.display()))?;
    let take = opt.limit_per_class.unwrap_or(usize::MAX);
    let mut train = Vec::new();
    let mut train_total = 0usize;
    for (wnid, members) in &by_class {
        let label = classes.index(wnid).expect("class from train") as i16;
        train_total += members.len();
        for m in members.iter().take(take) {
            train.push(Item { key: format!("{wnid}/{}", m.base_name()), label, source: member(0, m) });
        }
    }
    if train.is_empty() {
        bail!("{}: the class tars hold no files", train_path.display());
    }
    train_map.advise(memmap2::Advice::Normal);
    let mut archives = vec![ArchiveSource { mapped: train_map.clone(), naming: Naming::ClassTars }];

    // Names: LOC_synset_mapping.txt when given or beside the archives, else the devkit's words.
    let mapping = opt.synset_mapping.clone().or_else(|| Some(opt.root.join(SYNSET_MAPPING)).filter(|p| p.is_file()));
    let names: BTreeMap<String, String> = match (&mapping, &devkit) {
        (Some(p), _) => {
            parse_synset_mapping(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        (None, Some(d)) => d.names().into_iter().filter(|(w, _)| classes.index(w).is_some()).collect(),
        (None, None) => BTreeMap::new(),
    };

    let (mut val, mut list_rejects, mut val_layout, mut val_total) =
        (Vec::new(), Vec::new(), "none (no val archive)".to_string(), 0usize);
    if let (Some(path), Some(map)) = (&val_path, &val_map) {
        map.advise(memmap2::Advice::Random);
        let members = index_members(map.bytes(), 0, &path.display().to_string())?;
        map.advise(memmap2::Advice::Normal);
        indexed += members.len() as u64;
        let members: Vec<&TarMember> = members.iter().filter(|m| !is_hidden(m.base_name())).collect();
        val_total = members.len();
        archives.push(ArchiveSource { mapped: map.clone(), naming: Naming::Prefix(String::new()) });
        let a = (archives.len() - 1) as u16;
        let describe = |m: &TarMember| format!("{}:{}", path.display(), m.name);
        if members.iter().any(|m| m.name.trim_start_matches("./").contains('/')) {
            // Class folders inside the val tar (a repacked valprep layout).
            let mut by: BTreeMap<String, Vec<&TarMember>> = BTreeMap::new();
            for m in &members {
                let rel = m.name.trim_start_matches("./");
                let Some((dir, _)) = rel.rsplit_once('/') else {
                    bail!("{}: member {} is outside the class folders of the other members", path.display(), m.name);
                };
                by.entry(dir.rsplit('/').next().unwrap_or(dir).to_string()).or_default().push(m);
            }
            for (wnid, mut ms) in by {
                let label = classes
                    .index(&wnid)
                    .with_context(|| format!("{}: val class folder {wnid} is not a class of train", path.display()))?
                    as i16;
                ms.sort_by(|a, b| a.base_name().cmp(b.base_name()));
                for m in ms.into_iter().take(take) {
                    val.push(Item { key: format!("{wnid}/{}", m.base_name()), label, source: member(a, m) });
                }
            }
            val_layout = format!("class folders in {}", path.display());
        } else {
            let mut candidates: Vec<Candidate> = members
                .iter()
                .map(|m| Candidate { name: m.base_name().to_string(), source: member(a, m), path: describe(m) })
                .collect();
            candidates.sort_by(|x, y| x.name.cmp(&y.name));
            let (by_stem, what, name, layout) = val_labels(opt, &devkit, devkit_path.as_deref(), &candidates, path)?;
            let (items, rejects) = labels::label_flat(candidates, &by_stem, &classes, take, &what, &name)?;
            val = items;
            list_rejects = rejects;
            val_layout = layout;
        }
    }
    let index_seconds = t0.elapsed().as_secs_f64();

    let mut notes = Vec::new();
    if official::by_name(&train_path).is_some() {
        let (c, n) = (classes.len(), train_total);
        notes.push(if c == official::CLASSES && n == official::TRAIN_IMAGES {
            format!("{}: {c} classes, {} images, as published", official::TRAIN.name, thousands(n as u64))
        } else {
            format!(
                "{} holds {c} classes and {} images; the published archive holds {} and {}: this is not the \
                 official train set",
                official::TRAIN.name,
                thousands(n as u64),
                official::CLASSES,
                thousands(official::TRAIN_IMAGES as u64)
            )
        });
    }
    if val_path.as_deref().and_then(official::by_name).is_some() {
        notes.push(if val_total == official::VAL_IMAGES {
            format!("{}: {} images, as published", official::VAL.name, thousands(val_total as u64))
        } else {
            format!(
                "{} holds {} images; the published archive holds {}: this is not the official val set",
                official::VAL.name,
                thousands(val_total as u64),
                thousands(official::VAL_IMAGES as u64)
            )
        });
    }

    let mut source = train_path.display().to_string();
    if let Some(v) = &val_path {
        source.push_str(&format!(", {}", v.display()));
    }
    if let Some(d) = &devkit_path {
        source.push_str(&format!(", {}", d.display()));
    }
    Ok(Inputs {
        classes,
        names,
        train,
        val,
        list_rejects,
        has_val: val_path.is_some(),
        val_layout,
        source,
        archives,
        archive_info,
        notes,
        indexed,
        index_seconds,
        decoded: None,
    })
}

/// The manifest's record of each archive; with `--check-md5`, each one's md5 (checked
/// against the published one for the official names) before anything else reads it.
pub(crate) fn describe_archives(files: &[(&str, &Path)], opt: &InputOptions) -> Result<Vec<ArchiveInfo>> {
    let paths: Vec<&Path> = files.iter().map(|(_, p)| *p).collect();
    let md5s: Vec<Option<String>> = if opt.check_md5 {
        official::check_md5(&paths, opt.progress)?.into_iter().map(Some).collect()
    } else {
        vec![None; files.len()]
    };
    Ok(files
        .iter()
        .zip(md5s)
        .map(|((role, p), md5)| ArchiveInfo {
            role: role.to_string(),
            file: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            md5,
        })
        .collect())
}

fn member(archive: u16, m: &TarMember) -> Source {
    Source::Member(Member {
        archive,
        offset: m.offset,
        stored_size: m.size,
        size: m.size,
        deflated: false,
        crc32: None,
    })
}

/// The outer tar's class tars (or class folders), each indexed in parallel: wnid ->
/// its images sorted by name, hidden files left out.
fn index_train(map: &Mapped, progress: bool) -> Result<BTreeMap<String, Vec<TarMember>>> {
    let path = map.path().display().to_string();
    let outer = index_members(map.bytes(), 0, &path)?;
    let mut class_tars = Vec::new();
    let mut by_class: BTreeMap<String, Vec<TarMember>> = BTreeMap::new();
    for m in outer {
        let base = m.base_name().to_string();
        if is_hidden(&base) {
            continue;
        }
        if let Some(wnid) = base.strip_suffix(".tar") {
            class_tars.push((wnid.to_string(), m));
        } else if let Some((dir, _)) = m.name.trim_start_matches("./").rsplit_once('/') {
            // Class folders packed in one tar (train/<wnid>/x.JPEG).
            by_class.entry(dir.rsplit('/').next().unwrap_or(dir).to_string()).or_default().push(m);
        } else {
            bail!(
                "{path}: member {} (offset {}) is neither a class tar (<wnid>.tar) nor in a class folder: is this \
                 the train archive (ILSVRC2012_img_train.tar)?",
                m.name,
                m.offset
            );
        }
    }
    let data = map.bytes();
    // On a cold disk the walk over 1.28 M headers is seek-bound: show it.
    let bar = Progress::counting("index", class_tars.len() as u64, progress, "class tars");
    let inner: Vec<Result<(String, Vec<TarMember>)>> = class_tars
        .par_iter()
        .map(|(wnid, m)| {
            let r = index_class_tar(data, &path, m).map(|members| (wnid.clone(), members));
            bar.inc(1, false);
            r
        })
        .collect();
    bar.finish();
    for r in inner {
        let (wnid, members) = r?;
        by_class.entry(wnid).or_default().extend(members);
    }
    for members in by_class.values_mut() {
        members.retain(|m| !is_hidden(m.base_name()));
        members.sort_by(|a, b| a.base_name().cmp(b.base_name()));
    }
    Ok(by_class)
}

/// The members of one class tar (`m`, a member of the outer tar held in `data`).
fn index_class_tar(data: &[u8], path: &str, m: &TarMember) -> Result<Vec<TarMember>> {
    let bytes = &data[m.offset as usize..(m.offset + m.size) as usize];
    let what = format!("{path}: class tar {}", m.name);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(c) = Sniffed::of_bytes(&bytes[..bytes.len().min(512)]).compression() {
        bail!(
            "{what} (offset {}) is {c}-compressed; the official class tars are plain tars, so this archive cannot \
             be read in place",
            m.offset
        );
    }
    index_members(bytes, m.offset, &what)
}

/// The labels of a flat val archive: the devkit's ground truth through meta.mat's IDs,
/// or `--val-labels` (a csv, or a ground truth with the devkit), or a
/// `LOC_val_solution.csv` beside the archives. Returns (stem -> wnid, labels path,
/// labels file name, layout).
fn val_labels(
    opt: &InputOptions,
    devkit: &Option<Devkit>,
    devkit_path: Option<&Path>,
    candidates: &[Candidate],
    val_path: &Path,
) -> Result<(HashMap<String, String>, String, String, String)> {
    let csv = opt.val_labels.clone().or_else(|| Some(opt.root.join(SOLUTION_CSV)).filter(|p| p.is_file()));
    if let Some(p) = csv.filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let m = labels::parse_solution_csv(&text).with_context(|| format!("parsing {}", p.display()))?;
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok((m, p.display().to_string(), name, format!("flat, labels from {}", p.display())));
    }
    let Some(d) = devkit else {
        bail!(
            "{} is flat and its labels are in the devkit, which was not found: put ILSVRC2012_devkit_t12.tar.gz \
             beside it or give --devkit FILE (or --val-labels {SOLUTION_CSV})",
            val_path.display()
        );
    };
    let dk = devkit_path.map(|p| p.display().to_string()).unwrap_or_default();
    let text = match &opt.val_labels {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => d
            .ground_truth
            .clone()
            .with_context(|| format!("the devkit {dk} holds no {}: give --val-labels FILE", devkit::GROUND_TRUTH))?,
    };
    let what = format!("{dk}:{}", devkit::GROUND_TRUTH);
    let by_stem = labels::parse_ground_truth(&text, &d.id_to_wnid(), labels::stems(candidates))
        .with_context(|| format!("parsing {what}"))?;
    Ok((by_stem, what, labels::GROUND_TRUTH_TXT.to_string(), format!("flat, devkit labels (meta.mat IDs) from {dk}")))
}
