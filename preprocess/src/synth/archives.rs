//! The demo data as ImageNet is downloaded: `synth_img_train.tar` (an outer tar of
//! class tars `<wnid>.tar`, in no particular order, as in the official file),
//! `synth_img_val.tar` (flat), `synth_devkit_t12.tar.gz` (`data/meta.mat`, a MATLAB v5
//! file written the way MATLAB writes it, whose IDs are a seeded permutation of the
//! sorted-wnid order, with internal nodes after the leaves; and the ground truth), and
//! `synth-object-localization-challenge.zip` (Kaggle's tree, members stored or
//! deflated). The images are byte for byte those of the folder layout.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{image_bytes, solution_csv, synset_mapping, truncated_bytes, wnid, Plan, Storage, SynthConfig};
use crate::mat5::write::{NumberStorage, TextStorage, WValue, WriteOptions};

pub const TRAIN_TAR: &str = "synth_img_train.tar";
pub const VAL_TAR: &str = "synth_img_val.tar";
pub const DEVKIT: &str = "synth_devkit_t12.tar.gz";
pub const KAGGLE_ZIP: &str = "synth-object-localization-challenge.zip";

/// 2012-04-21, a fixed time for every member: the archives are reproducible.
const MTIME: u64 = 1_335_000_000;

fn header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: Write>(b: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    b.append_data(&mut header(bytes.len()), name, bytes).with_context(|| format!("adding {name} to a tar"))
}

/// The devkit ID of each class: a seeded permutation that is not the sorted order.
pub fn devkit_ids(classes: usize, seed: u64) -> Vec<u32> {
    let mut ids: Vec<u32> = (1..=classes as u32).collect();
    ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xdef1));
    if classes > 1 && ids.windows(2).all(|w| w[0] < w[1]) {
        ids.rotate_left(1);
    }
    ids
}

/// `synsets` as in the devkit: the leaves (the classes) with their IDs, then two
/// internal nodes (IDs above the leaves' ones) whose children are the leaves.
pub fn meta_mat(classes: usize, seed: u64) -> Vec<u8> {
    let ids = devkit_ids(classes, seed);
    let fields =
        ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"];
    let n = |x: f64| WValue::numbers(&[x]);
    let mut rows: Vec<(u32, Vec<WValue>)> = (0..classes)
        .map(|c| {
            (
                ids[c],
                vec![
                    n(ids[c] as f64),
                    WValue::text(&wnid(c)),
                    WValue::text(&super::class_name(c)),
                    WValue::text("a procedural demo class"),
                    n(0.0),
                    WValue::Numbers { dims: [1, 0], data: Vec::new() },
                    n(0.0),
                    n(100.0),
                ],
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let (inner, root) = (classes as f64 + 1.0, classes as f64 + 2.0);
    let leaves: Vec<f64> = ids.iter().map(|&i| i as f64).collect();
    rows.push((
        0,
        vec![
            n(inner),
            WValue::text("n09999901"),
            WValue::text("shapes"),
            WValue::text("an internal node"),
            n(leaves.len() as f64),
            WValue::numbers(&leaves),
            n(1.0),
            n(0.0),
        ],
    ));
    rows.push((
        0,
        vec![
            n(root),
            WValue::text("n09999902"),
            WValue::text("everything"),
            WValue::text("the root"),
            n(1.0),
            WValue::numbers(&[inner]),
            n(2.0),
            n(0.0),
        ],
    ));
    let synsets = WValue::Struct {
        dims: [1, rows.len()],
        fields: fields.iter().map(|f| f.to_string()).collect(),
        elements: rows.into_iter().map(|r| r.1).collect(),
    };
    // As MATLAB saves (-v7): compressed, doubles in the smallest integer type, UTF-16
    // text, an Nx1 struct array.
    let opts = WriteOptions {
        compress: true,
        numbers: NumberStorage::Compact,
        text: TextStorage::Uint16,
        column_structs: true,
    };
    crate::mat5::write::write(&[("synsets", synsets)], &opts)
}

/// Writes every archive; returns the storage of every image.
pub(crate) fn write(cfg: &SynthConfig, plan: &Plan) -> Result<Vec<Storage>> {
    let out = &cfg.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let create = |name: &str| -> Result<BufWriter<File>> {
        let p = out.join(name);
        Ok(BufWriter::new(File::create(&p).with_context(|| format!("creating {}", p.display()))?))
    };
    let mut kinds = Vec::new();
    let mut train = tar::Builder::new(create(TRAIN_TAR)?);
    let mut zip = zip::ZipWriter::new(create(KAGGLE_ZIP)?);
    let zip_file = |zip: &mut zip::ZipWriter<BufWriter<File>>, name: &str, bytes: &[u8], k: usize| -> Result<()> {
        let method =
            if k.is_multiple_of(2) { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(name, opts).with_context(|| format!("adding {name} to the zip"))?;
        zip.write_all(bytes).with_context(|| format!("adding {name} to the zip"))?;
        Ok(())
    };
    // Classes in a seeded order, not sorted: the build sorts them.
    let mut order: Vec<usize> = (0..cfg.classes).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x0c1a));
    for c in order {
        let w = wnid(c);
        let images: Vec<(Vec<u8>, Storage)> =
            plan.train[c].par_iter().map(|(_, k)| image_bytes(cfg, c, *k)).collect::<Result<_>>()?;
        let mut class_tar = tar::Builder::new(Vec::new());
        for ((name, k), (bytes, storage)) in plan.train[c].iter().zip(&images) {
            append(&mut class_tar, name, bytes)?;
            zip_file(&mut zip, &format!("ILSVRC/Data/CLS-LOC/train/{w}/{name}"), bytes, *k)?;
            kinds.push(*storage);
        }
        for (name, i) in &plan.corrupt[c] {
            let bytes = truncated_bytes(cfg, c, *i)?;
            append(&mut class_tar, name, &bytes)?;
            zip_file(&mut zip, &format!("ILSVRC/Data/CLS-LOC/train/{w}/{name}"), &bytes, *i)?;
        }
        let class_tar = class_tar.into_inner().context("finishing a class tar")?;
        append(&mut train, &format!("{w}.tar"), &class_tar)?;
    }
    train.into_inner().context("finishing the train tar")?.flush().context("writing the train tar")?;

    let mut val = tar::Builder::new(create(VAL_TAR)?);
    let images: Vec<(Vec<u8>, Storage)> = plan
        .val_classes
        .par_iter()
        .enumerate()
        .map(|(i, &c)| image_bytes(cfg, c, Plan::val_index(i)))
        .collect::<Result<_>>()?;
    for (i, (bytes, storage)) in images.iter().enumerate() {
        let name = Plan::val_name(i);
        append(&mut val, &name, bytes)?;
        zip_file(&mut zip, &format!("ILSVRC/Data/CLS-LOC/val/{name}"), bytes, i)?;
        kinds.push(*storage);
    }
    val.into_inner().context("finishing the val tar")?.flush().context("writing the val tar")?;

    // The devkit: meta.mat and the ground truth (the devkit ID of each val image).
    let ids = devkit_ids(cfg.classes, cfg.seed);
    let truth: String = plan.val_classes.iter().map(|&c| format!("{}\n", ids[c])).collect();
    let gz = flate2::write::GzEncoder::new(create(DEVKIT)?, flate2::Compression::default());
    let mut devkit = tar::Builder::new(gz);
    append(&mut devkit, "ILSVRC2012_devkit_t12/data/meta.mat", &meta_mat(cfg.classes, cfg.seed))?;
    append(&mut devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth.as_bytes())?;
    append(&mut devkit, "ILSVRC2012_devkit_t12/readme.txt", b"The demo's devkit: synsets in data/meta.mat.\n")?;
    let gz = devkit.into_inner().context("finishing the devkit tar")?;
    gz.finish().context("writing the devkit")?.flush().context("writing the devkit")?;

    zip_file(&mut zip, "LOC_synset_mapping.txt", synset_mapping(cfg.classes).as_bytes(), 0)?;
    zip_file(&mut zip, "LOC_val_solution.csv", solution_csv(&plan.val_classes).as_bytes(), 0)?;
    zip.finish().context("finishing the zip")?.flush().context("writing the zip")?;
    Ok(kinds)
}
