//! CIFAR-10's binary version as a build input (the paper's Figure 1 is on CIFAR-10):
//! `cifar-10-binary.tar.gz` as downloaded (given as --input, or in the --input folder),
//! or its unpacked `cifar-10-batches-bin/`. The five train batches are the train split,
//! `test_batch.bin` the val split. The images are 32x32 pixels already, so they skip
//! the decode ([`super::Source::Pixels`]); the build stores them as whole images of
//! shorter side 32, unchanged, unless told to rescale them.
//!
//! Classes: the names of `batches.meta.txt` (spaces as `_`) are the class ids, sorted
//! as every dataset's are; CIFAR-10's ten names are in alphabetical order already, so
//! its labels are the dataset's (airplane 0 .. truck 9). Keys are the record's place,
//! `data_batch_3.bin:417`.

use std::collections::BTreeMap;
use std::path::Path;

use alexnet_shared::ClassIndex;
use anyhow::{bail, Result};

use super::archives::describe_archives;
use super::{Decoded, InputOptions, Inputs, Item, Source};
use crate::archive::cifar::{self, Cifar, SIDE};

/// The class id of a CIFAR class name.
fn class_id(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join("_")
}

/// Reads CIFAR-10 at `opt.root` (see [`cifar::detect`]).
pub fn discover(opt: &InputOptions) -> Result<Inputs> {
    let root = &opt.root;
    let (data, origin, archive) = if root.is_file() {
        (cifar::read(root)?, root.clone(), Some(root.clone()))
    } else if let Some(a) = cifar::find_in(root) {
        (cifar::read(&a)?, a.clone(), Some(a))
    } else {
        (cifar::read_folder(root)?, root.clone(), None)
    };
    let Cifar { classes: names_in_order, train, test } = data;
    let ids: Vec<String> = names_in_order.iter().map(|n| class_id(n)).collect();
    let classes = ClassIndex::new(ids.iter().cloned())
        .map_err(|e| anyhow::anyhow!("{}: the class names: {e}", origin.display()))?;
    if classes.len() != ids.len() {
        bail!("{}: {} names the same class twice", origin.display(), cifar::META);
    }
    let label_of: Vec<i16> = ids.iter().map(|id| classes.index(id).expect("listed") as i16).collect();
    let names: BTreeMap<String, String> = ids.iter().cloned().zip(names_in_order.iter().cloned()).collect();

    let mut images = Vec::with_capacity(train.len() + test.len());
    let mut split = |records: Vec<cifar::CifarImage>| -> Vec<Item> {
        let mut per_class = vec![0usize; ids.len()];
        let mut items = Vec::new();
        for r in records {
            let c = r.label as usize;
            if opt.limit_per_class.is_some_and(|l| per_class[c] >= l) {
                continue;
            }
            per_class[c] += 1;
            items.push(Item { key: r.key, label: label_of[c], source: Source::Pixels(images.len() as u32) });
            images.push(r.hwc);
        }
        items
    };
    let train = split(train);
    let val = split(test);
    let archive_info = match &archive {
        Some(a) => describe_archives(&[("cifar", a.as_path())], opt)?,
        None => Vec::new(),
    };
    let source = match &archive {
        Some(a) => format!("CIFAR-10, binary version ({})", file_name(a)),
        None => format!("CIFAR-10, binary version, unpacked ({})", origin.display()),
    };
    Ok(Inputs {
        classes,
        names,
        train,
        val,
        list_rejects: Vec::new(),
        has_val: true,
        val_layout: format!("CIFAR-10's {}", cifar::TEST_BATCH),
        source,
        archives: Vec::new(),
        archive_info,
        notes: Vec::new(),
        indexed: 0,
        index_seconds: 0.0,
        decoded: Some(Decoded { path: origin, width: SIDE as u32, height: SIDE as u32, images }),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether `--input` is CIFAR-10 (the build then keeps its 32x32 images as they are by
/// default).
pub fn is_cifar(opt: &InputOptions) -> bool {
    opt.train_archive.is_none() && opt.val_archive.is_none() && opt.train_dir.is_none() && cifar::detect(&opt.root)
}
