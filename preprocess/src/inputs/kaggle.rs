//! Kaggle's `imagenet-object-localization-challenge.zip`, read in place: the members
//! under `ILSVRC/Data/CLS-LOC/{train/<wnid>,val}/`, labelled by `LOC_val_solution.csv`
//! and named by `LOC_synset_mapping.txt`, both read from the zip. Members may be stored
//! (read with no copy) or deflated (inflated by the worker that decodes them); each is
//! checked against its CRC-32.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use alexnet_shared::{parse_synset_mapping, ClassIndex};
use anyhow::{bail, Context, Result};

use super::labels::{self, Candidate, SOLUTION_CSV, SYNSET_MAPPING};
use super::{is_hidden, ArchiveSource, InputOptions, Inputs, Item, ListReject, Member, Naming, Source};
use crate::archive::zip_index::{index_members, Method, ZipMember};
use crate::archive::Mapped;

pub const KAGGLE_ZIP: &str = "imagenet-object-localization-challenge.zip";
const TREE: &str = "ILSVRC/Data/CLS-LOC/";

/// Kaggle's zip in `dir`: the official name, else one `*.zip` whose name says ImageNet.
pub fn find_in(dir: &Path) -> Option<PathBuf> {
    let exact = dir.join(KAGGLE_ZIP);
    if exact.is_file() {
        return Some(exact);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            p.is_file() && n.ends_with(".zip") && (n.contains("imagenet") || n.contains("localization"))
        })
        .collect();
    v.sort();
    v.into_iter().next()
}

/// The whole bytes of a (small) member: the label and name files.
fn read_member(map: &Mapped, m: &ZipMember) -> Result<Vec<u8>> {
    let stored = &map.bytes()[m.offset as usize..(m.offset + m.stored_size) as usize];
    let mut out = Vec::with_capacity(m.size as usize);
    match m.method {
        Method::Stored => out.extend_from_slice(stored),
        Method::Deflated => {
            flate2::read::DeflateDecoder::new(stored)
                .read_to_end(&mut out)
                .with_context(|| format!("{}: member {} does not inflate", map.path().display(), m.name))?;
        }
        Method::Other(k) => bail!("{}: member {} uses compression method {k}", map.path().display(), m.name),
    }
    if crc32fast::hash(&out) != m.crc32 {
        bail!("{}: member {} fails its CRC-32 check: download the zip again", map.path().display(), m.name);
    }
    Ok(out)
}

pub fn discover(opt: &InputOptions) -> Result<Inputs> {
    let path = &opt.root;
    let archive_info = super::archives::describe_archives(&[("kaggle", path.as_path())], opt)?;
    let t0 = Instant::now();
    let map = Arc::new(Mapped::open(path)?);
    let what = path.display().to_string();
    let members = index_members(map.bytes(), &what)?;
    let indexed = members.len() as u64;
    // Everything may sit under a top folder: find the tree's prefix.
    let prefix = members
        .iter()
        .find_map(|m| m.name.find(&format!("{TREE}train/")).map(|i| m.name[..i].to_string()))
        .with_context(|| format!("{what}: no {TREE}train/ in this zip (is it Kaggle's {KAGGLE_ZIP}?)"))?;
    let (train_dir, val_dir) = (format!("{prefix}{TREE}train/"), format!("{prefix}{TREE}val/"));

    let take = opt.limit_per_class.unwrap_or(usize::MAX);
    let mut list_rejects = Vec::new();
    let mut by_class: BTreeMap<String, Vec<&ZipMember>> = BTreeMap::new();
    let mut val_members: Vec<&ZipMember> = Vec::new();
    let mut val_folders: BTreeMap<String, Vec<&ZipMember>> = BTreeMap::new();
    let (mut csv, mut mapping) = (None, None);
    for m in &members {
        if let Some(rel) = m.name.strip_prefix(&train_dir) {
            if let Some((wnid, file)) = rel.split_once('/') {
                if !file.contains('/') && !is_hidden(file) {
                    by_class.entry(wnid.to_string()).or_default().push(m);
                }
            }
        } else if let Some(rel) = m.name.strip_prefix(&val_dir) {
            match rel.split_once('/') {
                None if !is_hidden(rel) => val_members.push(m),
                Some((wnid, file)) if !file.contains('/') && !is_hidden(file) => {
                    val_folders.entry(wnid.to_string()).or_default().push(m)
                }
                _ => {}
            }
        } else if m.name == format!("{prefix}{SOLUTION_CSV}") {
            csv = Some(m);
        } else if m.name == format!("{prefix}{SYNSET_MAPPING}") {
            mapping = Some(m);
        }
    }
    let classes = ClassIndex::new(by_class.keys().cloned())
        .with_context(|| format!("{what}: no class folders under {train_dir}"))?;
    let names = match mapping {
        Some(m) => parse_synset_mapping(&String::from_utf8_lossy(&read_member(&map, m)?)),
        None => BTreeMap::new(),
    };
    let archives = vec![
        ArchiveSource { mapped: map.clone(), naming: Naming::Prefix(train_dir.clone()) },
        ArchiveSource { mapped: map.clone(), naming: Naming::Prefix(val_dir.clone()) },
    ];
    let source = |a: u16, m: &ZipMember| -> std::result::Result<Source, String> {
        match m.method {
            Method::Stored | Method::Deflated => Ok(Source::Member(Member {
                archive: a,
                offset: m.offset,
                stored_size: m.stored_size,
                size: m.size,
                deflated: m.method == Method::Deflated,
                crc32: Some(m.crc32),
            })),
            Method::Other(k) => {
                Err(format!("unsupported zip member: compression method {k} (only stored and deflated are read)"))
            }
        }
    };
    let describe = |m: &ZipMember| format!("{what}:{}", m.name);

    let mut train = Vec::new();
    for (wnid, mut ms) in by_class {
        let label = classes.index(&wnid).expect("class from train") as i16;
        ms.sort_by(|a, b| a.name.cmp(&b.name));
        for m in ms.into_iter().take(take) {
            let key = m.name[train_dir.len()..].to_string();
            match source(0, m) {
                Ok(s) => train.push(Item { key, label, source: s }),
                Err(reason) => list_rejects.push(ListReject { path: describe(m), reason }),
            }
        }
    }

    let has_val = !val_members.is_empty() || !val_folders.is_empty();
    let mut val = Vec::new();
    let val_layout;
    if !val_folders.is_empty() {
        for (wnid, mut ms) in val_folders {
            let label = classes
                .index(&wnid)
                .with_context(|| format!("{what}: val class folder {wnid} is not a class of train"))?
                as i16;
            ms.sort_by(|a, b| a.name.cmp(&b.name));
            for m in ms.into_iter().take(take) {
                match source(1, m) {
                    Ok(s) => val.push(Item { key: m.name[val_dir.len()..].to_string(), label, source: s }),
                    Err(reason) => list_rejects.push(ListReject { path: describe(m), reason }),
                }
            }
        }
        val_layout = "class folders in the zip".to_string();
    } else if has_val {
        let csv = csv
            .with_context(|| format!("{what}: val is flat and the zip holds no {prefix}{SOLUTION_CSV} to label it"))?;
        let by_stem = labels::parse_solution_csv(&String::from_utf8_lossy(&read_member(&map, csv)?))
            .with_context(|| format!("parsing {what}:{}", csv.name))?;
        val_members.sort_by(|a, b| a.name.cmp(&b.name));
        let mut candidates = Vec::new();
        for m in val_members {
            match source(1, m) {
                Ok(s) => candidates.push(Candidate {
                    name: m.name[val_dir.len()..].to_string(),
                    source: s,
                    path: describe(m),
                }),
                Err(reason) => list_rejects.push(ListReject { path: describe(m), reason }),
            }
        }
        let (items, rejects) =
            labels::label_flat(candidates, &by_stem, &classes, take, &format!("{what}:{}", csv.name), SOLUTION_CSV)?;
        val = items;
        list_rejects.extend(rejects);
        val_layout = format!("flat, labels from {SOLUTION_CSV} in the zip");
    } else {
        val_layout = "none (no val in the zip)".to_string();
    }
    if train.is_empty() {
        bail!("{what}: the class folders under {train_dir} hold no files");
    }
    Ok(Inputs {
        classes,
        names,
        train,
        val,
        list_rejects,
        has_val,
        val_layout,
        source: what.clone(),
        archives,
        archive_info,
        notes: Vec::new(),
        indexed,
        index_seconds: t0.elapsed().as_secs_f64(),
        decoded: None,
    })
}
